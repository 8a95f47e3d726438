// Command demopki writes a throwaway PKI for the quickstart and for trying
// the plugin by hand:
//
//	go run ./internal/testpki/cmd/demopki -out DIR
//
// It writes, into DIR:
//
//	ca.pem                         the demo client CA (the trust pool)
//	server.pem, server-key.pem     a server certificate for localhost and 127.0.0.1
//	                               (for nginx, HAProxy or Caddy's own TLS)
//	server-ca.pem                  the CA that issued server.pem (for curl --cacert)
//	alice.pem, alice-key.pem       a good client certificate (put it on the allow list)
//	bob.pem, bob-key.pem           a good client certificate from the same CA (leave it off)
//	mallory.pem, mallory-key.pem   a client certificate issued by another CA
//	expired.pem, expired-key.pem   a client certificate from the demo CA that has expired
//
// Nothing it writes protects anything: the keys are fresh and unencrypted,
// and the certificates expire after a day.
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"os"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func main() {
	out := flag.String("out", "", "directory to write the demo PKI into (created if missing)")
	quiet := flag.Bool("q", false, "do not list the files written")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: demopki -out DIR")
		os.Exit(2)
	}
	if err := run(*out, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "demopki:", err)
		os.Exit(1)
	}
}

func run(dir string, quiet bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca := testpki.NewRoot("mtls-auth demo client CA")
	serverCA := testpki.NewRoot("mtls-auth demo server CA")
	otherCA := testpki.NewRoot("some other CA")

	server := serverCA.NewLeaf("localhost",
		testpki.DNS("localhost"), testpki.IPs("127.0.0.1"),
		testpki.EKU(x509.ExtKeyUsageServerAuth))
	alice := ca.NewLeaf("alice", testpki.Organization("payments"))
	bob := ca.NewLeaf("bob")
	mallory := otherCA.NewLeaf("mallory")
	expired := ca.NewLeaf("expired-client", testpki.Expired())

	files := []struct {
		name string
		data []byte
	}{
		{"ca.pem", ca.PEM()},
		{"server-ca.pem", serverCA.PEM()},
		{"server.pem", server.PEM()},
		{"server-key.pem", server.KeyPEM()},
		{"alice.pem", alice.PEM()},
		{"alice-key.pem", alice.KeyPEM()},
		{"bob.pem", bob.PEM()},
		{"bob-key.pem", bob.KeyPEM()},
		{"mallory.pem", mallory.PEM()},
		{"mallory-key.pem", mallory.KeyPEM()},
		{"expired.pem", expired.PEM()},
		{"expired-key.pem", expired.KeyPEM()},
	}
	for _, f := range files {
		p, err := testpki.WriteFile(dir, f.name, f.data)
		if err != nil {
			return err
		}
		if !quiet {
			fmt.Println(p)
		}
	}
	return nil
}
