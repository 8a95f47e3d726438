//go:build integration

package integration

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// Trust edges (README, Trust and Revocation): a pinned certificate never
// becomes a CA by accident, a certificate header from an untrusted peer
// never reaches the upstream, and revocation never fetches a URL from a
// certificate nothing verified.

// openssl runs the real openssl in dir and fails the test on an error.
func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(lookTool(t, "openssl", "openssl"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// readFile reads dir/name, failing the test on an error.
func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAllowPinsExactly: a partner's self-signed client certificate made the
// usual way (`openssl req -x509`, which says CA:TRUE) and pinned with allow
// admits that certificate only, never a leaf its key holder signs; the same
// file given to allow_ca admits that leaf (so the leaf is otherwise good).
// allow_ca of a certificate that is not a CA fails the configuration at its
// line, and pinned certificates that can never pass are warned about at
// startup, by alias.
func TestAllowPinsExactly(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=partner-client", "-days", "2", "-keyout", "partner-key.pem", "-out", "partner.pem")
	openssl(t, dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=minted-identity", "-keyout", "minted-key.pem", "-out", "minted.csr")
	openssl(t, dir, "x509", "-req", "-in", "minted.csr", "-CA", "partner.pem", "-CAkey", "partner-key.pem",
		"-set_serial", "2", "-days", "1", "-out", "minted.pem")
	partnerPEM, mintedPEM := readFile(t, dir, "partner.pem"), readFile(t, dir, "minted.pem")
	if block, _ := pem.Decode(partnerPEM); block == nil {
		t.Fatal("openssl wrote no PEM")
	} else if c, err := x509.ParseCertificate(block.Bytes); err != nil || !c.IsCA {
		t.Fatalf("the premise: openssl req -x509 makes a CA:TRUE certificate (err %v)", err)
	}

	files := p.files(t, "expired.pem", "notyet.pem", "wrongusage.pem", "alice.pem", "ca.pem")
	files["partner.pem"] = partnerPEM
	pinned, asCA := freePort(t), freePort(t)
	// aws_alb: a URL-encoded PEM chain (nginx's header carries one
	// certificate only, so a chain there is malformed before any trust
	// decision).
	base := []string{"profile aws_alb", "header Ssl-Client-Cert", "trusted_sources 127.0.0.1/32"}
	pinnedSite := mtlsSite(pinned, "Ssl-Client-Cert", append(base,
		"allow partner partner.pem meta team partners",
		"allow old expired.pem",
		"allow early notyet.pem",
		"allow server-only wrongusage.pem",
	)...)
	c := startCaddy(t, pinnedSite, files)
	send := func(port int, pemData []byte) (int, string) {
		return direct(t, port, "-H", "Ssl-Client-Cert: "+nginxEscapeString(string(pemData)))
	}

	status, body := send(pinned, partnerPEM)
	expectOK(t, "the pinned certificate itself", status, body, map[string]string{"alias": "partner", "team": "partners", "cn": "partner-client"})
	status, body = send(pinned, mintedPEM)
	expectReject(t, "a leaf signed by the pinned certificate's key", status, body, 403, "not_allowed")
	status, body = send(pinned, append(append([]byte{}, mintedPEM...), partnerPEM...))
	expectReject(t, "that leaf with the pinned certificate as its chain", status, body, 403, "not_allowed")

	c.Reload(pinnedSite + mtlsSite(asCA, "Ssl-Client-Cert", append(base, "allow_ca partner partner.pem")...))
	status, body = send(asCA, mintedPEM)
	expectOK(t, "the same file given to allow_ca admits the leaf", status, body, map[string]string{"alias": "partner", "cn": "minted-identity", "user": "partner"})

	log := c.Log()
	for alias, problem := range map[string]string{"old": "expired", "early": "not valid before", "server-only": "clientAuth"} {
		re := regexp.MustCompile(`"level":"warn"[^\n]*"msg":"allowed certificate can never authenticate"[^\n]*"alias":"` + regexp.QuoteMeta(alias) + `"[^\n]*"problem":"[^"]*` + regexp.QuoteMeta(problem))
		if !re.MatchString(log) {
			t.Errorf("no startup warning for alias %s (%s)", alias, problem)
		}
	}
	if regexp.MustCompile(`can never authenticate"[^\n]*"alias":"partner"`).MatchString(log) {
		t.Errorf("a usable pinned certificate was warned about")
	}

	// allow_ca of a leaf: the configuration is refused, naming the line.
	bad := mtlsSite(pinned, "Ssl-Client-Cert", append(base, "allow_ca alice alice.pem")...)
	err := c.TryReload(bad)
	if err == nil {
		t.Fatal("allow_ca of a leaf was accepted")
	}
	line := 0
	for i, l := range strings.Split(c.withGlobals(bad), "\n") {
		if strings.Contains(l, "allow_ca alice") {
			line = i + 1
		}
	}
	if msg := err.Error(); !strings.Contains(msg, "not a CA") || !strings.Contains(msg, fmt.Sprintf("Caddyfile:%d", line)) {
		t.Errorf("allow_ca of a leaf: the error should say it is not a CA and name line %d: %v", line, err)
	}
	status, body = send(pinned, partnerPEM)
	expectOK(t, "the running configuration is unchanged", status, body, map[string]string{"alias": "partner"})
}

// TestUntrustedPeerHeaderRemovedWithTLSClient: with source tls or any and
// keep_header, a request that authenticates by its TLS connection never
// meets the source gate; a certificate header (and chain header) the
// client sent itself from outside trusted_sources must still not reach the
// upstream. From a trusted peer, keep_header passes it on (the control).
func TestUntrustedPeerHeaderRemovedWithTLSClient(t *testing.T) {
	p := newPKI(t)
	anyPort, tlsPort, trustedPort, upstream := freePort(t), freePort(t), freePort(t), freePort(t)
	site := func(port int, source, sources string) string {
		return fmt.Sprintf(`:%d {
	tls server.pem server-key.pem {
		client_auth {
			mode request
		}
	}
	mtls_auth {
		source %s
		chain_header Client-Cert-Chain
		trust_pool file trust.pem
		trusted_sources %s
		keep_header
	}
	reverse_proxy 127.0.0.1:%d {
		header_up X-Mtls-Cn {http.mtls.subject.cn}
		header_up X-Mtls-Source {http.mtls.source}
	}
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port, source, sources, upstream)
	}
	cfg := site(anyPort, "any", "10.0.0.0/8") + site(tlsPort, "tls", "10.0.0.0/8") + site(trustedPort, "any", "127.0.0.1/32") +
		fmt.Sprintf("http://:%d {\n\trespond \"cn={http.request.header.X-Mtls-Cn} source={http.request.header.X-Mtls-Source} hdr=[{http.request.header.Client-Cert}] chain=[{http.request.header.Client-Cert-Chain}]\"\n}\n", upstream)
	startCaddyOpts(t, cfg, p.files(t, "trust.pem", "server.pem", "server-key.pem"), caddyOpts{TLS: true})

	bob, inter := derBase64(p.Clients["bob"]), derBase64(p.Intermediate)
	get := func(port int) (int, string) {
		t.Helper()
		args := append(p.clientArgs("alice"), "--resolve", fmt.Sprintf("localhost:%d:127.0.0.1", port),
			"-H", "Client-Cert: :"+bob+":", "-H", "Client-Cert-Chain: :"+inter+":",
			fmt.Sprintf("https://localhost:%d/", port))
		status, body, _ := curl(t, args...)
		return status, body
	}
	for name, port := range map[string]int{"source any": anyPort, "source tls": tlsPort} {
		status, body := get(port)
		if want := "cn=alice source=tls hdr=[] chain=[]"; status != 200 || body != want {
			t.Errorf("%s, keep_header, untrusted peer with a TLS client certificate: got %d %q, want 200 %q", name, status, body, want)
		}
	}
	status, body := get(trustedPort)
	if want := "cn=alice source=tls hdr=[:" + bob + ":] chain=[:" + inter + ":]"; status != 200 || body != want {
		t.Errorf("control, trusted peer: got %d %q, want 200 %q", status, body, want)
	}
}

// TestRevocationFetchesOnlyVerifiedCertificates: without a trust pool, a
// client adds to its chain a forged "intermediate" that copies the allowed
// CA's names, signed with the attacker's own key, whose CRL distribution
// point and OCSP responder (AIA) name a local listener. Caddy fetches the
// leaf's own CRL (the leaf is on the verified chain, and the listener serves
// it) and sends the forged certificate's URLs nothing, for a CA entry, a
// pinned leaf and a trust pool alike.
func TestRevocationFetchesOnlyVerifiedCertificates(t *testing.T) {
	p := newPKI(t)
	listener := testpki.NewListener()
	t.Cleanup(listener.Close)

	leaf := p.Root.NewLeaf("revocable-client", testpki.CRLDistributionPoints(listener.URL+"/leaf.crl"))
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
	}, p.Root.Cert, p.Root.Key)
	if err != nil {
		t.Fatal(err)
	}
	listener.Serve("/leaf.crl", der)
	forged := testpki.NewImpostor(p.Root,
		testpki.CRLDistributionPoints(listener.URL+"/forged.crl"),
		testpki.OCSPServers(listener.URL+"/forged-ocsp"))

	files := p.files(t, "ca.pem")
	files["leaf.pem"] = leaf.PEM()
	caPort, pinnedPort, poolPort := freePort(t), freePort(t), freePort(t)
	revocation := "revocation {\n\t\t\tcrl_from_certificate\n\t\t\tocsp\n\t\t}"
	// aws_alb: a URL-encoded PEM chain, as ALB forwards what the client sent.
	base := []string{"profile aws_alb", "header Ssl-Client-Cert", "trusted_sources 127.0.0.1/32", revocation}
	sites := mtlsSite(pinnedPort, "Ssl-Client-Cert", append(base, "allow client leaf.pem")...) +
		mtlsSite(poolPort, "Ssl-Client-Cert", append(base, "trust_pool file ca.pem")...)
	c := startCaddy(t, sites, files)

	check := func(name string, port int, chain ...*testpki.Cert) {
		t.Run(name, func(t *testing.T) {
			var pems string
			for _, c := range chain {
				pems += string(c.PEM())
			}
			forgedHits := func() int {
				hits := listener.Hits()
				return hits["/forged.crl"] + hits["/forged-ocsp"]
			}
			before := forgedHits()
			// 200 without soft_fail: the leaf's own CRL was fetched from the
			// listener and verified with the real CA's key.
			status, body := direct(t, port, "-H", "Ssl-Client-Cert: "+nginxEscapeString(pems))
			expectOK(t, "leaf with a forged intermediate", status, body, map[string]string{"cn": "revocable-client"})
			if n := forgedHits() - before; n != 0 {
				t.Errorf("Caddy sent %d requests to the forged certificate's URLs", n)
			}
		})
	}
	check("pinned leaf with its real issuer", pinnedPort, leaf, forged, p.Root)
	check("trust_pool", poolPort, leaf, forged)
	c.Reload(sites + mtlsSite(caPort, "Ssl-Client-Cert", append(base, "allow_ca corp ca.pem")...))
	check("allow_ca", caPort, leaf, forged)
	check("allow_ca, real CA sent after the forgery", caPort, leaf, forged, p.Root)

	if hits := listener.Hits(); len(hits) != 1 || hits["/leaf.crl"] == 0 {
		t.Errorf("requests to the listener: %v, want only /leaf.crl", hits)
	}
}

// TestRuntimeRecordPinsUnlessCA: a certificate added through the admin API
// pins exactly that certificate, even a CA one, unless the record says
// "ca": true; a "ca" record must hold a CA.
func TestRuntimeRecordPinsUnlessCA(t *testing.T) {
	p := newPKI(t)
	apiPort, poolPort := freePort(t), freePort(t)
	c := startCaddy(t, runtimeSite(apiPort, poolPort), p.files(t, "trust.pem"))
	rootPEM := string(p.Root.PEM())

	if status, body := admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("corp", rootPEM, "")); status != 201 {
		t.Fatalf("POST the root without ca: %d %s", status, body)
	}
	if s, b := p.get(t, apiPort, "bob"); s != 403 || b != "403 not_allowed" {
		t.Errorf("a leaf of a CA record without \"ca\": got %d %q, want 403 not_allowed", s, b)
	}
	if status, body := admin(t, c, "DELETE", "/mtls_auth/apis/payments/certs/corp", ""); status != 204 {
		t.Fatalf("DELETE corp: %d %s", status, body)
	}
	if status, body := admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("corp", rootPEM, `,"ca":true`)); status != 201 || !strings.Contains(body, `"ca":true`) {
		t.Fatalf("POST the root with \"ca\": true: %d %s", status, body)
	}
	if s, b := p.get(t, apiPort, "bob"); s != 200 || !strings.HasPrefix(b, "ok alias=corp ") {
		t.Errorf("a leaf of a \"ca\" record: got %d %q, want 200 alias=corp", s, b)
	}
	status, body := admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("alice", string(p.Clients["alice"].PEM()), `,"ca":true`))
	if status != 400 || !strings.Contains(body, "not a CA") {
		t.Errorf("POST a leaf with \"ca\": true: got %d %s, want 400 naming it not a CA", status, body)
	}
}
