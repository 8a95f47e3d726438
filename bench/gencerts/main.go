// Command gencerts writes what bench/load.sh needs: an ECDSA P-256 and an
// RSA-2048 chain (root -> intermediate), N client certificates issued by
// each intermediate, and wrk Lua scripts that send a leaf in X-Client-Cert
// and the intermediate in X-Client-Chain (bare base64 DER): one fixed
// certificate, or a different one on every request. Also the worst chain
// a client holding no key can send within the limits (max_chain 8), under
// the ECDSA intermediate, a new one on every request (see
// testpki.ForgedChain).
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
)

func main() {
	out := flag.String("out", "", "output directory")
	n := flag.Int("n", 4000, "client certificates per root")
	forged := flag.Int("forged", 2100, "forged worst-case chains (enough to outrun the remembered signature facts)")
	pad := flag.Int("forged-pad", 0, "bytes of padding in each made-up certificate of the forged chains (5300 brings the headers near 64 KiB)")
	flag.Parse()
	if *out == "" {
		log.Fatal("-out is required")
	}
	for _, kind := range []struct {
		name string
		key  testpki.KeyType
	}{{"ecdsa", testpki.ECDSAP256}, {"rsa", testpki.RSA2048}} {
		root := testpki.NewRoot("bench "+kind.name+" root", testpki.Key(kind.key))
		inter := root.NewIntermediate("bench "+kind.name+" intermediate", testpki.Key(kind.key))
		write(*out, "ca-"+kind.name+".pem", root.PEM())
		chain := base64.StdEncoding.EncodeToString(inter.DER())
		write(*out, "chain-"+kind.name+".b64", []byte(chain))
		values := make([]string, *n)
		for i := range values {
			values[i] = base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("client %d", i)).DER())
		}
		write(*out, "one-"+kind.name+".b64", []byte(values[0]))
		write(*out, "one-"+kind.name+".lua", []byte(fmt.Sprintf("wrk.headers[\"X-Client-Cert\"] = %q\nwrk.headers[\"X-Client-Chain\"] = %q\n", values[0], chain)))
		var b strings.Builder
		b.WriteString("local certs = {\n")
		for _, v := range values {
			fmt.Fprintf(&b, "%q,\n", v)
		}
		fmt.Fprintf(&b, "}\nlocal chain = %q\nlocal i = 0\nrequest = function()\n\ti = i %% #certs + 1\n\treturn wrk.format(nil, nil, {[\"X-Client-Cert\"] = certs[i], [\"X-Client-Chain\"] = chain})\nend\n", chain)
		write(*out, "many-"+kind.name+".lua", []byte(b.String()))
		if kind.key == testpki.ECDSAP256 {
			writeForged(*out, inter, *forged, *pad)
		}
	}
	// Junk: a new random header value on every request, shaped like base64
	// DER so that it goes all the way to certificate parsing.
	write(*out, "junk.lua", []byte(`local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
math.randomseed(os.time())
request = function()
	local t = {"MIIB"}
	for j = 1, 160 do
		local k = math.random(1, 64)
		t[#t + 1] = chars:sub(k, k)
	end
	return wrk.format(nil, nil, {["X-Client-Cert"] = table.concat(t)})
end
`))
}

// writeForged writes forged-ecdsa.lua: n worst-case chains under inter,
// rotating, each leaf in X-Client-Cert and the rest in X-Client-Chain,
// every made-up certificate padded by pad bytes.
func writeForged(dir string, inter *testpki.Cert, n, pad int) {
	limits := pathverify.Limits{MaxChain: 8}
	failed := limits.MaxFailedChecks()
	opts := []testpki.Option{testpki.PublicKey(testpki.MadeUpRSAKey(decoder.MaxRSABits))}
	if pad > 0 {
		opts = append(opts, testpki.Padding(pad))
	}
	var b strings.Builder
	b.WriteString("local reqs = {\n")
	for range n {
		certs := testpki.ForgedChain(inter, failed, limits.MaxChain-2-failed, opts...)
		var chain []string
		for _, c := range certs[1:] {
			chain = append(chain, base64.StdEncoding.EncodeToString(c.DER()))
		}
		fmt.Fprintf(&b, "{%q, %q},\n", base64.StdEncoding.EncodeToString(certs[0].DER()), strings.Join(chain, ","))
	}
	b.WriteString("}\nlocal i = 0\nrequest = function()\n\ti = i % #reqs + 1\n\treturn wrk.format(nil, nil, {[\"X-Client-Cert\"] = reqs[i][1], [\"X-Client-Chain\"] = reqs[i][2]})\nend\n")
	write(dir, "forged-ecdsa.lua", []byte(b.String()))
}

func write(dir, name string, data []byte) {
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		log.Fatal(err)
	}
}
