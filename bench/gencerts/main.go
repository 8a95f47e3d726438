// Command gencerts writes what bench/load.sh needs: an ECDSA P-256 and an
// RSA-2048 chain (root -> intermediate), N client certificates issued by
// each intermediate, and wrk Lua scripts that send a leaf in X-Client-Cert
// and the intermediate in X-Client-Chain (bare base64 DER): one fixed
// certificate, or a different one on every request. With -rotate M, also M
// more ECDSA client certificates (one per line in rotate-ecdsa.txt, sharing
// one key: they differ in name and serial, as a fleet's do, and cost a
// signature each instead of a key generation), a script that sends each of
// them once and stops (warm.lua) and one that rotates through them
// (rotate.lua). Also the worst chain a client holding no key can send
// within the limits (max_chain 8), under the ECDSA intermediate, a new one
// on every request (forged-ecdsa.lua; see testpki.ForgedChain).
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
	rotate := flag.Int("rotate", 0, "ECDSA client certificates for the rotation case (0: none)")
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
		if kind.key == testpki.ECDSAP256 && *rotate > 0 {
			writeRotation(*out, inter, chain, *rotate)
		}
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

// writeForged writes n worst-case chains under inter, one request per
// line of forged-ecdsa.txt (the leaf, a tab, the rest as a comma list),
// every made-up certificate padded by pad bytes, and forged-ecdsa.lua,
// which rotates through them.
func writeForged(dir string, inter *testpki.Cert, n, pad int) {
	limits := pathverify.Limits{MaxChain: 8}
	failed := limits.MaxFailedChecks()
	opts := []testpki.Option{testpki.PublicKey(testpki.MadeUpRSAKey(decoder.MaxRSABits))}
	if pad > 0 {
		opts = append(opts, testpki.Padding(pad))
	}
	var b strings.Builder
	for range n {
		certs := testpki.ForgedChain(inter, failed, limits.MaxChain-2-failed, opts...)
		var chain []string
		for _, c := range certs[1:] {
			chain = append(chain, base64.StdEncoding.EncodeToString(c.DER()))
		}
		fmt.Fprintf(&b, "%s\t%s\n", base64.StdEncoding.EncodeToString(certs[0].DER()), strings.Join(chain, ","))
	}
	list := filepath.Join(dir, "forged-ecdsa.txt")
	write(dir, "forged-ecdsa.txt", []byte(b.String()))
	write(dir, "forged-ecdsa.lua", []byte(fmt.Sprintf(`local reqs = {}
for line in io.lines(%q) do
	local cert, chain = line:match("^([^\t]*)\t(.*)$")
	reqs[#reqs + 1] = {cert, chain}
end
local i = 0
request = function()
	i = i %% #reqs + 1
	return wrk.format(nil, nil, {["X-Client-Cert"] = reqs[i][1], ["X-Client-Chain"] = reqs[i][2]})
end
`, list)))
}

// writeRotation writes n client certificates of inter, one base64 DER per
// line, and the wrk scripts that read them at start.
func writeRotation(dir string, inter *testpki.Cert, chain string, n int) {
	key := testpki.NewSelfSigned("rotation key").Key
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("device %d", i), testpki.UseKey(key)).DER()))
		b.WriteByte('\n')
	}
	list := filepath.Join(dir, "rotate-ecdsa.txt")
	write(dir, "rotate-ecdsa.txt", []byte(b.String()))
	head := fmt.Sprintf(`local certs = {}
for line in io.lines(%q) do certs[#certs + 1] = line end
local chain = %q
local i = 0
request = function()
	i = i %% #certs + 1
	return wrk.format(nil, nil, {["X-Client-Cert"] = certs[i], ["X-Client-Chain"] = chain})
end
`, list, chain)
	write(dir, "rotate.lua", []byte(head))
	// Each certificate once. wrk cannot end a run early (thread:stop() and
	// SIGINT leave it waiting out its duration), so the script leaves
	// marker files for load.sh, which times the warm-up by them and then
	// ends wrk: warm-started at the first response, warm-done (holding the
	// count of non-200 responses) when every certificate has been answered.
	// Run it with one thread.
	write(dir, "warm.lua", []byte(head+fmt.Sprintf(`local seen, bad = 0, 0
local function mark(name, value)
	local f = io.open(%q .. "/warm-" .. name, "w")
	f:write(value)
	f:close()
end
response = function(status, headers, body)
	seen = seen + 1
	if status ~= 200 then bad = bad + 1 end
	if seen == 1 then mark("started", 0) end
	if seen == #certs then mark("done", bad) end
end
`, dir)))
}

func write(dir, name string, data []byte) {
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		log.Fatal(err)
	}
}
