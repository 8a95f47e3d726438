// Command gencerts writes what bench/load.sh needs: an ECDSA P-256 and an
// RSA-2048 root, N client certificates issued by each, and wrk Lua scripts
// that send them in the X-Client-Cert header (bare base64 DER): one fixed
// certificate, or a different one on every request.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func main() {
	out := flag.String("out", "", "output directory")
	n := flag.Int("n", 4000, "client certificates per root")
	flag.Parse()
	if *out == "" {
		log.Fatal("-out is required")
	}
	for _, kind := range []struct {
		name string
		key  testpki.KeyType
	}{{"ecdsa", testpki.ECDSAP256}, {"rsa", testpki.RSA2048}} {
		root := testpki.NewRoot("bench "+kind.name+" root", testpki.Key(kind.key))
		write(*out, "ca-"+kind.name+".pem", root.PEM())
		values := make([]string, *n)
		for i := range values {
			values[i] = base64.StdEncoding.EncodeToString(root.NewLeaf(fmt.Sprintf("client %d", i)).DER())
		}
		write(*out, "one-"+kind.name+".lua", []byte(fmt.Sprintf("wrk.headers[\"X-Client-Cert\"] = %q\n", values[0])))
		var b strings.Builder
		b.WriteString("local certs = {\n")
		for _, v := range values {
			fmt.Fprintf(&b, "%q,\n", v)
		}
		b.WriteString("}\nlocal i = 0\nrequest = function()\n\ti = i % #certs + 1\n\treturn wrk.format(nil, nil, {[\"X-Client-Cert\"] = certs[i]})\nend\n")
		write(*out, "many-"+kind.name+".lua", []byte(b.String()))
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

func write(dir, name string, data []byte) {
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		log.Fatal(err)
	}
}
