//go:build integration

package integration

import (
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// pki is a throwaway PKI written into a temp dir. File names end in .pem
// (caddytest rewrites .crt/.key paths). Clients:
//
//	alice       good; issued by the intermediate (curl sends the chain)
//	bob         good; issued by the root directly
//	expired     validity ended an hour ago
//	notyet      validity starts tomorrow
//	wrongusage  serverAuth only, no clientAuth EKU
//	wrongca     issued by a CA that is in no trust pool
//
// For each client NAME there are NAME.pem (leaf), NAME-key.pem and
// NAME-chain.pem (leaf + intermediates, for curl --cert). Also:
//
//	ca.pem            the client root
//	intermediate.pem  the client intermediate
//	trust.pem         root + intermediate: the trust pool (nginx forwards
//	                  the leaf only, so the intermediate must be in the pool)
//	other-ca.pem      the CA of wrongca
//	server.pem, server-key.pem, server-bundle.pem (cert + key, for HAProxy)
//	                  the server certificate for 127.0.0.1 and localhost
//	server-ca.pem     its issuer (curl --cacert)
type pki struct {
	Dir          string
	Root         *testpki.Cert
	Intermediate *testpki.Cert
	OtherCA      *testpki.Cert
	ServerCA     *testpki.Cert
	Server       *testpki.Cert
	Clients      map[string]*testpki.Cert
}

// clientNames lists the generated clients in a stable order.
var clientNames = []string{"alice", "bob", "expired", "notyet", "wrongusage", "wrongca"}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{Dir: t.TempDir(), Clients: map[string]*testpki.Cert{}}
	p.Root = testpki.NewRoot("mtls-auth test client root")
	p.Intermediate = p.Root.NewIntermediate("mtls-auth test client intermediate")
	p.OtherCA = testpki.NewRoot("some other CA")
	p.ServerCA = testpki.NewRoot("mtls-auth test server CA")
	p.Server = p.ServerCA.NewLeaf("localhost",
		testpki.DNS("localhost"), testpki.IPs("127.0.0.1"),
		testpki.EKU(x509.ExtKeyUsageServerAuth))

	p.Clients["alice"] = p.Intermediate.NewLeaf("alice",
		testpki.Organization("payments"),
		testpki.DNS("alice.example.test"),
		testpki.URIs("spiffe://example.test/alice"))
	p.Clients["bob"] = p.Root.NewLeaf("bob")
	p.Clients["expired"] = p.Root.NewLeaf("expired-client", testpki.Expired())
	p.Clients["notyet"] = p.Root.NewLeaf("notyet-client", testpki.NotYetValid())
	p.Clients["wrongusage"] = p.Root.NewLeaf("wrongusage-client", testpki.EKU(x509.ExtKeyUsageServerAuth))
	p.Clients["wrongca"] = p.OtherCA.NewLeaf("wrongca-client")

	write := func(name string, data []byte) {
		if _, err := testpki.WriteFile(p.Dir, name, data); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", p.Root.PEM())
	write("intermediate.pem", p.Intermediate.PEM())
	write("trust.pem", append(p.Root.PEM(), p.Intermediate.PEM()...))
	write("other-ca.pem", p.OtherCA.PEM())
	write("server-ca.pem", p.ServerCA.PEM())
	write("server.pem", p.Server.PEM())
	write("server-key.pem", p.Server.KeyPEM())
	write("server-bundle.pem", append(p.Server.PEM(), p.Server.KeyPEM()...))
	for _, n := range clientNames {
		c := p.Clients[n]
		write(n+".pem", c.PEM())
		write(n+"-key.pem", c.KeyPEM())
		write(n+"-chain.pem", c.ChainPEM())
	}
	return p
}

// path is the absolute path of a file in the PKI dir.
func (p *pki) path(name string) string { return filepath.Join(p.Dir, name) }

// files returns the named PKI files as startCaddy extraFiles, so a
// Caddyfile can name them relative to Caddy's working directory.
func (p *pki) files(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(p.path(n))
		if err != nil {
			t.Fatal(err)
		}
		m[n] = b
	}
	return m
}

// clientArgs are curl's arguments to present client NAME's certificate
// (with its chain) over TLS to a server with our server certificate.
func (p *pki) clientArgs(name string) []string {
	args := []string{"--cacert", p.path("server-ca.pem")}
	if name != "" {
		args = append(args, "--cert", p.path(name+"-chain.pem"), "--key", p.path(name+"-key.pem"))
	}
	return args
}

// nginxEscaped is a certificate as nginx's $ssl_client_escaped_cert writes
// it: the PEM with everything but ALPHA, DIGIT and "-._~" percent-encoded.
func nginxEscaped(c *testpki.Cert) string { return nginxEscapeString(string(c.PEM())) }

// nginxEscapeString percent-encodes s as nginx's ngx_escape_uri component
// mode does: QueryEscape's set, with space as %20 instead of "+" (a literal
// "+" is already %2B).
func nginxEscapeString(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// derBase64 is a certificate as HAProxy's ssl_c_der,base64 writes it.
func derBase64(c *testpki.Cert) string { return base64.StdEncoding.EncodeToString(c.DER()) }

// leakNeedles are strings whose presence in a log means certificate material
// leaked: PEM armor in its raw and escaped forms, and long runs of the
// certificate's base64 (runs without '+', '/' and '=' so that they match
// whatever escaping a producer applied).
func leakNeedles(certs ...*testpki.Cert) []string {
	needles := []string{"BEGIN CERTIFICATE", "BEGIN%20CERTIFICATE", "BEGIN\\u0020CERTIFICATE"}
	for _, c := range certs {
		b64 := derBase64(c)
		run := 0
		for i := 0; i < len(b64); i++ {
			ch := b64[i]
			if ch == '+' || ch == '/' || ch == '=' {
				run = 0
				continue
			}
			run++
			if run == 24 {
				needles = append(needles, b64[i-23:i+1])
				run = 0
			}
		}
	}
	return needles
}
