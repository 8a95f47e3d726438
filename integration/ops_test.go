//go:build integration

package integration

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testocsp"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// The tests below hold the plugin to its operations contract (the README's
// Revocation section, "Configuration checks" and Security notes): what a
// revocation failure is called, how fast a replaced CRL applies, which
// configurations Caddy refuses to run, and what the logs say.

// errSite is a site block on :port whose mtls_auth block holds directives;
// it answers "ok <cn>" and renders errors as "<status> <reason> <message>".
func errSite(port int, directives ...string) string {
	return fmt.Sprintf(`:%d {
	mtls_auth {
		%s
	}
	respond "ok {http.mtls.subject.cn}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error} {err.message}" {err.status_code}
	}
}
`, port, strings.Join(directives, "\n\t\t"))
}

// rfc9440Header is a curl -H argument carrying c as an RFC 9440 Client-Cert.
func rfc9440Header(c *testpki.Cert) string {
	return "Client-Cert: :" + derBase64(c) + ":"
}

// crlPEM is a CRL issued by ca listing revoked.
func crlPEM(t *testing.T, ca *testpki.Cert, number int64, revoked ...*testpki.Cert) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// replaceFile replaces path atomically (write aside, rename), as a CRL
// publisher should.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCRLReplacedWithinSyncInterval: a CRL file replaced on disk takes
// effect within sync_interval, even for a certificate whose good result the
// verification cache holds; a replacement that does not load keeps the last
// good CRL and is logged once; a certificate whose issuer no CRL covers is
// revocation_unknown, not revoked.
func TestCRLReplacedWithinSyncInterval(t *testing.T) {
	const syncInterval = time.Second
	p := newPKI(t)
	port := freePort(t)
	files := p.files(t, "trust.pem")
	files["root.crl"] = crlPEM(t, p.Root, 1)
	c := startCaddy(t, fmt.Sprintf("{\n\tmtls_auth {\n\t\tsync_interval %s\n\t}\n}\n", syncInterval)+errSite(port,
		"profile rfc9440",
		"trusted_sources 127.0.0.1/32",
		"trust_pool file trust.pem",
		"revocation {\n\t\t\tcrl root.crl\n\t\t}",
	), files)
	bob := p.Clients["bob"]

	for i := 0; i < 3; i++ {
		status, body := direct(t, port, "-H", rfc9440Header(bob))
		if status != 200 {
			t.Fatalf("bob before the replacement: %d %q", status, body)
		}
	}
	// alice's issuer, the intermediate, has no CRL: unknown, not revoked.
	status, body := direct(t, port, "-H", rfc9440Header(p.Clients["alice"]), "-H", "Client-Cert-Chain: :"+derBase64(p.Intermediate)+":")
	if status != 401 || !strings.HasPrefix(body, "401 revocation_unknown ") || !strings.Contains(body, "no CRL or OCSP responder covers the certificate's issuer") {
		t.Errorf("alice (issuer without a CRL): got %d %q, want 401 revocation_unknown naming the cause", status, body)
	}

	crlPath := filepath.Join(c.Dir, "root.crl")
	replaced := time.Now()
	replaceFile(t, crlPath, crlPEM(t, p.Root, 2, bob))
	var took time.Duration
	if !eventually(3*syncInterval, func() bool {
		status, body = direct(t, port, "-H", rfc9440Header(bob))
		took = time.Since(replaced)
		return status == 401
	}) {
		t.Fatalf("bob still %d %q %s after the CRL revoking him replaced the file", status, body, 3*syncInterval)
	}
	if !strings.HasPrefix(body, "401 revoked ") {
		t.Errorf("bob after the replacement: %q, want 401 revoked", body)
	}
	t.Logf("the replaced CRL applied after %s (sync_interval %s)", took.Round(time.Millisecond), syncInterval)
	// The refresh runs every sync_interval; the request that sees it may
	// come one poll (50ms) and a curl later, and a loaded CI machine can
	// delay a tick: one more interval of slack still tells "within
	// sync_interval" from the minute-long refresh this replaced.
	if took > 2*syncInterval {
		t.Errorf("the replaced CRL applied after %s, want within sync_interval (%s)", took, syncInterval)
	}

	// A broken replacement: the last good CRL stays, logged once however
	// many ticks pass.
	replaceFile(t, crlPath, []byte("-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n"))
	time.Sleep(3*syncInterval + 200*time.Millisecond)
	if status, body = direct(t, port, "-H", rfc9440Header(bob)); status != 401 || !strings.HasPrefix(body, "401 revoked ") {
		t.Errorf("bob with a broken CRL file: %d %q, want the last good CRL (revoked)", status, body)
	}
	if n := strings.Count(c.Log(), "CRL could not be reloaded"); n != 1 {
		t.Errorf("the broken CRL file was logged %d times over 3 ticks, want once", n)
	}
}

// TestRevocationUnknownResponderDown: with openssl's OCSP responder up, a
// good certificate passes and a revoked one is `revoked`; once it is down,
// a certificate it has not answered for is `revocation_unknown` with the
// cause in the message (and passes with soft_fail), while answers already
// had are still used until their nextUpdate.
func TestRevocationUnknownResponderDown(t *testing.T) {
	p := newPKI(t)
	good, revoked := p.Clients["bob"], p.Root.NewLeaf("revoked-client")
	late, lateSoft := p.Root.NewLeaf("late-client"), p.Root.NewLeaf("late-soft-client")
	ocsp := testocsp.Start(t, p.Root, p.Root)
	ocsp.SetIndex(t, testocsp.IndexLine(good, time.Time{}, "")+testocsp.IndexLine(revoked, time.Now().Add(-time.Hour), "keyCompromise")+
		testocsp.IndexLine(late, time.Time{}, "")+testocsp.IndexLine(lateSoft, time.Time{}, ""))
	url := ocsp.URL()
	hard, soft := freePort(t), freePort(t)
	site := func(port int, extra string) string {
		return errSite(port, "profile rfc9440", "trusted_sources 127.0.0.1/32", "trust_pool file ca.pem",
			"revocation {\n\t\t\tocsp "+url+extra+"\n\t\t}")
	}
	c := startCaddy(t, site(hard, "")+site(soft, "\n\t\t\tsoft_fail"), p.files(t, "ca.pem"))

	status, body := direct(t, hard, "-H", rfc9440Header(good))
	if status != 200 {
		t.Fatalf("good certificate, responder up: %d %q", status, body)
	}
	status, body = direct(t, hard, "-H", rfc9440Header(revoked))
	if status != 401 || !strings.HasPrefix(body, "401 revoked ") {
		t.Errorf("revoked certificate: %d %q, want 401 revoked", status, body)
	}

	ocsp.Close()
	status, body = direct(t, hard, "-H", rfc9440Header(late))
	if status != 401 || !strings.HasPrefix(body, "401 revocation_unknown ") {
		t.Errorf("responder down: %d %q, want 401 revocation_unknown", status, body)
	}
	if !strings.Contains(body, "the OCSP responder could not be reached") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("the message should give the cause and no URL: %q", body)
	}
	if status, body = direct(t, soft, "-H", rfc9440Header(lateSoft)); status != 200 {
		t.Errorf("responder down, soft_fail: %d %q, want 200", status, body)
	}
	if status, body = direct(t, hard, "-H", rfc9440Header(good)); status != 200 {
		t.Errorf("good certificate answered before the responder went down: %d %q, want 200 (answer cached until nextUpdate)", status, body)
	}
	time.Sleep(300 * time.Millisecond)
	var line string
	for _, l := range strings.Split(c.Log(), "\n") {
		if strings.Contains(l, "client certificate rejected") && strings.Contains(l, late.Fingerprint()) {
			line = l
		}
	}
	if !strings.Contains(line, `"reason":"revocation_unknown"`) || !strings.Contains(line, `"subject_cn":"late-client"`) {
		t.Errorf("the rejection line should name the reason, fingerprint and CN; got %q", line)
	}
}

// bypassCaddyfile lets reverse_proxy answer before mtls_auth in a route
// block: the upstream would get every request unauthenticated.
func bypassCaddyfile(port int) string {
	return fmt.Sprintf(`:%d {
	route {
		reverse_proxy 127.0.0.1:9
		mtls_auth {
			trusted_sources 127.0.0.1/32
			trust_pool file ca.pem
		}
	}
}
`, port)
}

// bypassNames are what the refusal must name: the server and its listener,
// the mtls_auth that never runs, and the handler that answers first.
var bypassNames = []string{
	"mtls_auth at routes/0/handle/0/routes/0/handle/1 can never run",
	"reverse_proxy at routes/0/handle/0/routes/0/handle/0",
	"order mtls_auth before reverse_proxy",
}

// TestBypassRefused: a configuration in which mtls_auth can never run is
// refused by `caddy run` (the process exits, naming the server, the route
// and the handler before it) and by a reload (the running configuration
// stays, and keeps authenticating).
func TestBypassRefused(t *testing.T) {
	p := newPKI(t)

	t.Run("caddy run", func(t *testing.T) {
		port := freePort(t)
		dir := t.TempDir()
		cp := &caddyProc{t: t, Dir: dir, AdminPort: freePort(t), HTTPPort: freePort(t), HTTPSPort: freePort(t)}
		full := cp.withGlobals(bypassCaddyfile(port))
		for name, data := range map[string][]byte{"Caddyfile": []byte(full), "ca.pem": p.Root.PEM()} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		proc := startProc(t, "caddy", dir, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
			caddyBin(t), "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
		select {
		case <-proc.done:
		case <-time.After(startTimeout):
			t.Fatalf("caddy kept running a configuration in which mtls_auth can never run:\n%s", proc.out.String())
		}
		if proc.err == nil {
			t.Errorf("caddy exited with success; want a failure")
		}
		out := proc.out.String()
		want := append([]string{fmt.Sprintf("server srv0 (listen 127.0.0.1:%d)", port)}, bypassNames...)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("the refusal does not say %q:\n%s", w, out)
			}
		}
	})

	t.Run("reload", func(t *testing.T) {
		port := freePort(t)
		good := errSite(port, "trusted_sources 127.0.0.1/32", "trust_pool file ca.pem")
		c := startCaddy(t, good, p.files(t, "ca.pem"))
		err := c.TryReload(bypassCaddyfile(port))
		if err == nil {
			t.Fatal("the reload was accepted")
		}
		for _, w := range bypassNames {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the refusal does not say %q: %v", w, err)
			}
		}
		if status, body := direct(t, port); status != 401 || !strings.HasPrefix(body, "401 missing") {
			t.Errorf("after the refused reload: %d %q, want the running configuration (401 missing)", status, body)
		}
	})
}

// TestStartupWarnings: trusted_sources server on a server without
// trusted_proxies, and source tls on a server without TLS, are warned about
// at startup, naming the server; the first one's header is then refused as
// the warning says, logged at the log_rejections level.
func TestStartupWarnings(t *testing.T) {
	p := newPKI(t)
	headerPort, tlsPort := freePort(t), freePort(t)
	c := startCaddy(t, "{\n\tmtls_auth {\n\t\tlog_rejections warn\n\t}\n}\n"+
		errSite(headerPort, "profile rfc9440", "trust_pool file ca.pem")+
		errSite(tlsPort, "source tls", "trust_pool file ca.pem"),
		p.files(t, "ca.pem"))
	log := c.Log()
	for _, w := range []string{"the server has no trusted_proxies: every certificate header will be refused", "source is 'tls' but the server does not serve TLS"} {
		if !strings.Contains(log, w) {
			t.Errorf("no startup warning %q:\n%s", w, log)
		}
	}
	status, body := direct(t, headerPort, "-H", rfc9440Header(p.Clients["bob"]))
	if status != 401 || !strings.HasPrefix(body, "401 untrusted_source") {
		t.Errorf("header without trusted_proxies: %d %q, want 401 untrusted_source", status, body)
	}
	time.Sleep(300 * time.Millisecond)
	found := false
	for _, l := range strings.Split(c.Log(), "\n") {
		found = found || strings.Contains(l, "client certificate rejected") && strings.Contains(l, `"level":"warn"`)
	}
	if !found {
		t.Errorf("no rejection line at warn (log_rejections warn)")
	}
}

// TestRedisLogsThroughCaddy: go-redis' own lines (a dial to a Redis that
// is not there) come out as Caddy log lines, never as raw "redis: ..." text.
func TestRedisLogsThroughCaddy(t *testing.T) {
	p := newPKI(t)
	port, dead := freePort(t), freePort(t)
	c := startCaddy(t, fmt.Sprintf("{\n\tmtls_auth {\n\t\ttier bronze 5 1m\n\t\tthrottle redis redis://127.0.0.1:%d/0\n\t}\n}\n", dead)+
		errSite(port, "profile rfc9440", "trusted_sources 127.0.0.1/32", "trust_pool file ca.pem", "default_tier bronze"),
		p.files(t, "ca.pem"))
	direct(t, port, "-H", rfc9440Header(p.Clients["bob"]))
	time.Sleep(300 * time.Millisecond)
	log := c.Log()
	if !strings.Contains(log, `"logger":"mtls_auth.redis"`) {
		t.Errorf("no go-redis line through Caddy's logger:\n%s", log)
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "redis: ") {
			t.Errorf("a raw go-redis line on stderr: %q", l)
		}
	}
}
