//go:build integration

package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// The tests below hold the plugin to its contract (the README's Security
// notes, Placeholders and Status codes sections): real Caddy built from this checkout, real nginx/HAProxy terminating
// TLS, real curl presenting certificates. Each test starts its own servers.

// echoBody is what every mtls site answers on success: the identity
// placeholders, and the certificate header as the next handler sees it.
func echoBody(header string) string {
	return `ok auth={http.mtls.authenticated} source={http.mtls.source} cn={http.mtls.subject.cn} ` +
		`alias={http.mtls.alias} fp={http.mtls.fingerprint} profile={http.mtls.profile} ` +
		`team={http.mtls.meta.team} user={http.auth.user.id} not_after={http.mtls.not_after} ` +
		`issuer=[{http.mtls.issuer}] uris=[{http.mtls.san.uris}] hdr=[{http.request.header.` + header + `}]`
}

// mtlsSite is a site block on :port whose mtls_auth block holds directives
// (one per line); it answers echoBody(header) and renders errors as
// "<status> <reason>" with the error's status.
func mtlsSite(port int, header string, directives ...string) string {
	return fmt.Sprintf(`:%d {
	mtls_auth {
		%s
	}
	respond %q
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port, strings.Join(directives, "\n\t\t"), echoBody(header))
}

var fieldRE = regexp.MustCompile(`(\w+)=(\[[^\]]*\]|\S*)`)

// fields parses an echoBody answer into its key=value pairs ([...] values
// keep their brackets stripped).
func fields(body string) map[string]string {
	m := map[string]string{}
	for _, f := range fieldRE.FindAllStringSubmatch(body, -1) {
		m[f[1]] = strings.TrimSuffix(strings.TrimPrefix(f[2], "["), "]")
	}
	return m
}

// expectOK checks a 200 echoBody answer against want (key -> value).
func expectOK(t *testing.T, what string, status int, body string, want map[string]string) map[string]string {
	t.Helper()
	if status != 200 || !strings.HasPrefix(body, "ok ") {
		t.Errorf("%s: got %d %q, want 200 and the identity echo", what, status, body)
		return nil
	}
	got := fields(body)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s=%q, want %q (body %q)", what, k, got[k], v, body)
		}
	}
	return got
}

// expectReject checks an error answer: exactly "<status> <reason>".
func expectReject(t *testing.T, what string, status int, body string, wantStatus int, reason string) {
	t.Helper()
	want := fmt.Sprintf("%d %s", wantStatus, reason)
	if status != wantStatus || strings.TrimSpace(body) != want {
		t.Errorf("%s: got %d %q, want %d %q", what, status, body, wantStatus, want)
	}
}

// front is nginx terminating mTLS in front of a Caddy site.
type front struct {
	p    *pki
	port int
}

func nginxFront(t *testing.T, p *pki, upstream int, header string) front {
	t.Helper()
	port := freePort(t)
	startNginx(t, nginxMTLSServer(p, port, upstream, header))
	return front{p: p, port: port}
}

// get requests path through the front with client's certificate ("" for
// none) and extra curl arguments.
func (f front) get(t *testing.T, client string, extra ...string) (int, string) {
	t.Helper()
	args := append(f.p.clientArgs(client), extra...)
	args = append(args, fmt.Sprintf("https://127.0.0.1:%d/", f.port))
	status, body, _ := curl(t, args...)
	return status, body
}

// direct requests http://127.0.0.1:port/ with extra curl arguments (for
// headers sent straight to Caddy).
func direct(t *testing.T, port int, extra ...string) (int, string) {
	t.Helper()
	status, body, _ := curl(t, append(extra, fmt.Sprintf("http://127.0.0.1:%d/", port))...)
	return status, body
}

func identity(c *testpki.Cert, profile string) map[string]string {
	return map[string]string{
		"auth":    "true",
		"source":  "header",
		"cn":      c.Cert.Subject.CommonName,
		"fp":      c.Fingerprint(),
		"profile": profile,
		"hdr":     "",
	}
}

// TestNginxAccepted: a good client certificate through a real nginx.
func TestNginxAccepted(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	startCaddy(t, mtlsSite(port, "Ssl-Client-Cert",
		"profile nginx",
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
	), p.files(t, "trust.pem"))
	f := nginxFront(t, p, port, "Ssl-Client-Cert")

	alice := p.Clients["alice"]
	status, body := f.get(t, "alice")
	want := identity(alice, "nginx")
	want["user"] = "alice" // {http.auth.user.id}: the alias, else the subject CN
	got := expectOK(t, "alice (leaf of an intermediate)", status, body, want)
	if got != nil {
		if !strings.Contains(got["uris"], "spiffe://example.test/alice") {
			t.Errorf("san.uris = %q, want it to hold spiffe://example.test/alice", got["uris"])
		}
		if !strings.Contains(got["issuer"], "mtls-auth test client intermediate") {
			t.Errorf("issuer = %q, want the intermediate's name", got["issuer"])
		}
		na, err := time.Parse(time.RFC3339, got["not_after"])
		if err != nil || !na.Equal(alice.Cert.NotAfter) {
			t.Errorf("not_after = %q (%v), want %s in RFC 3339", got["not_after"], err, alice.Cert.NotAfter.Format(time.RFC3339))
		}
	}

	status, body = f.get(t, "bob")
	expectOK(t, "bob (leaf of the root)", status, body, identity(p.Clients["bob"], "nginx"))
}

// TestNginxRejected: every way a certificate can be refused, through nginx.
func TestNginxRejected(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	startCaddy(t, mtlsSite(port, "Ssl-Client-Cert",
		"profile nginx",
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
		"allow alice alice.pem",
	), p.files(t, "trust.pem", "alice.pem"))
	f := nginxFront(t, p, port, "Ssl-Client-Cert")

	for _, tc := range []struct {
		client string
		status int
		reason string
	}{
		{"expired", 401, "expired"},
		{"notyet", 401, "not_yet_valid"},
		{"wrongusage", 401, "wrong_usage"},
		{"wrongca", 401, "untrusted"},
		{"", 401, "missing"},
		{"bob", 403, "not_allowed"},
	} {
		name := tc.client
		if name == "" {
			name = "no-certificate"
		}
		t.Run(name, func(t *testing.T) {
			status, body := f.get(t, tc.client)
			expectReject(t, name, status, body, tc.status, tc.reason)
		})
	}
	t.Run("alice-allowed", func(t *testing.T) {
		status, body := f.get(t, "alice")
		want := identity(p.Clients["alice"], "nginx")
		want["alias"] = "alice"
		expectOK(t, "alice", status, body, want)
	})
}

// TestAllowList: allow with meta, a CA on the allow list (allow_ca),
// allow_dir, and an allow list changed by a config reload.
func TestAllowList(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	files := p.files(t, "trust.pem", "alice.pem", "bob.pem", "ca.pem")
	files["allowed/alice.pem"] = files["alice.pem"]
	c := startCaddy(t, mtlsSite(port, "Ssl-Client-Cert",
		"profile nginx",
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
		"allow payments-alice alice.pem meta team payments",
	), files)
	f := nginxFront(t, p, port, "Ssl-Client-Cert")

	status, body := f.get(t, "alice")
	want := identity(p.Clients["alice"], "nginx")
	want["alias"], want["team"], want["user"] = "payments-alice", "payments", "payments-alice"
	expectOK(t, "alice with alias and meta", status, body, want)
	status, body = f.get(t, "bob")
	expectReject(t, "bob not listed", status, body, 403, "not_allowed")

	// Reload: bob is listed now, alice through allow_dir (alias = file name).
	c.Reload(mtlsSite(port, "Ssl-Client-Cert",
		"profile nginx",
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
		"allow bob bob.pem meta team risk",
		"allow_dir allowed",
	))
	status, body = f.get(t, "bob")
	want = identity(p.Clients["bob"], "nginx")
	want["alias"], want["team"] = "bob", "risk"
	expectOK(t, "bob after reload", status, body, want)
	status, body = f.get(t, "alice")
	want = identity(p.Clients["alice"], "nginx")
	want["alias"] = "alice"
	expectOK(t, "alice from allow_dir", status, body, want)

	// A CA on the allow list (allow_ca, no trust_pool): anything it issued
	// is allowed, under the CA entry's alias.
	c.Reload(mtlsSite(port, "Ssl-Client-Cert",
		"profile nginx",
		"trusted_sources 127.0.0.1/32",
		"allow_ca corp ca.pem",
	))
	status, body = f.get(t, "bob")
	want = identity(p.Clients["bob"], "nginx")
	want["alias"] = "corp"
	expectOK(t, "bob issued by the listed CA", status, body, want)
	status, body = f.get(t, "wrongca")
	if status == 200 {
		t.Errorf("wrongca with only the client root listed: got %d %q, want a rejection", status, body)
	} else if body != "401 untrusted" && body != "403 not_allowed" {
		t.Errorf("wrongca with only the client root listed: got %d %q, want 401 untrusted or 403 not_allowed", status, body)
	}
}

// TestUntrustedSource: a header sent straight to Caddy by a peer outside
// trusted_sources never authenticates and never reaches the upstream.
func TestUntrustedSource(t *testing.T) {
	p := newPKI(t)
	mandatory, optional, optionalKeep, upstream := freePort(t), freePort(t), freePort(t), freePort(t)
	proxyTo := fmt.Sprintf(`	reverse_proxy 127.0.0.1:%d {
		header_up X-Mtls-Authenticated {http.mtls.authenticated}
		header_up X-Mtls-Error {http.mtls.error}
	}
`, upstream)
	site := func(port int, extra ...string) string {
		return fmt.Sprintf(":%d {\n\tmtls_auth {\n\t\t%s\n\t}\n%s\thandle_errors {\n\t\trespond \"{err.status_code} {http.mtls.error}\" {err.status_code}\n\t}\n}\n",
			port, strings.Join(append([]string{
				"profile nginx",
				"trust_pool file trust.pem",
				"trusted_sources 10.0.0.0/8",
			}, extra...), "\n\t\t"), proxyTo)
	}
	cfg := mtlsSite(mandatory, "Ssl-Client-Cert",
		"profile nginx",
		"trust_pool file trust.pem",
		"trusted_sources 10.0.0.0/8",
	) + site(optional, "mode optional") + site(optionalKeep, "mode optional", "keep_header") +
		fmt.Sprintf(":%d {\n\trespond \"upstream auth={http.request.header.X-Mtls-Authenticated} err={http.request.header.X-Mtls-Error} hdr=[{http.request.header.Ssl-Client-Cert}]\"\n}\n", upstream)
	startCaddy(t, cfg, p.files(t, "trust.pem"))

	forged := "Ssl-Client-Cert: " + nginxEscaped(p.Clients["alice"])

	status, body := direct(t, mandatory, "-H", forged)
	expectReject(t, "forged header, mandatory", status, body, 401, "untrusted_source")

	status, body = direct(t, optional, "-H", forged)
	if want := "upstream auth=false err=untrusted_source hdr=[]"; status != 200 || body != want {
		t.Errorf("forged header, optional: got %d %q, want 200 %q", status, body, want)
	}
	// keep_header passes on a header that authenticated; one from an
	// untrusted peer is removed regardless (README, Security notes: "it is
	// removed and the request counts as carrying no certificate").
	status, body = direct(t, optionalKeep, "-H", forged)
	if want := "upstream auth=false err=untrusted_source hdr=[]"; status != 200 || body != want {
		t.Errorf("forged header, optional + keep_header: got %d %q, want 200 %q", status, body, want)
	}
	// No header at all from the untrusted peer: plain missing.
	status, body = direct(t, mandatory)
	expectReject(t, "no header, mandatory", status, body, 401, "missing")
}

// TestKeepHeader: the certificate header reaches the upstream only with
// keep_header; the identity does, through header_up placeholders.
func TestKeepHeader(t *testing.T) {
	p := newPKI(t)
	strip, keep, upstream := freePort(t), freePort(t), freePort(t)
	site := func(port int, extra ...string) string {
		return fmt.Sprintf(`:%d {
	mtls_auth {
		%s
	}
	reverse_proxy 127.0.0.1:%d {
		header_up X-Mtls-Cn {http.mtls.subject.cn}
		header_up X-Mtls-Fingerprint {http.mtls.fingerprint}
	}
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port, strings.Join(append([]string{
			"profile nginx",
			"trust_pool file trust.pem",
			"trusted_sources 127.0.0.1/32",
		}, extra...), "\n\t\t"), upstream)
	}
	startCaddy(t, site(strip)+site(keep, "keep_header")+
		fmt.Sprintf(":%d {\n\trespond \"cn={http.request.header.X-Mtls-Cn} fp={http.request.header.X-Mtls-Fingerprint} hdr=[{http.request.header.Ssl-Client-Cert}]\"\n}\n", upstream),
		p.files(t, "trust.pem"))
	fStrip := nginxFront(t, p, strip, "Ssl-Client-Cert")
	fKeep := nginxFront(t, p, keep, "Ssl-Client-Cert")
	alice := p.Clients["alice"]

	status, body := fStrip.get(t, "alice")
	if want := "cn=alice fp=" + alice.Fingerprint() + " hdr=[]"; status != 200 || body != want {
		t.Errorf("default (header removed): got %d %q, want 200 %q", status, body, want)
	}
	status, body = fKeep.get(t, "alice")
	if want := "cn=alice fp=" + alice.Fingerprint() + " hdr=[" + nginxEscaped(alice) + "]"; status != 200 || body != want {
		t.Errorf("keep_header: got %d %q, want 200 %q", status, body, want)
	}
}

// TestBadHeaders: duplicated, too large and malformed headers, sent
// straight to Caddy by a trusted peer.
func TestBadHeaders(t *testing.T) {
	p := newPKI(t)
	dflt, small, chained, short := freePort(t), freePort(t), freePort(t), freePort(t)
	base := []string{"profile nginx", "trust_pool file trust.pem", "trusted_sources 127.0.0.1/32"}
	// ALB passthrough sends a chain in one header; nginx never does.
	alb := []string{"profile aws_alb", "header Ssl-Client-Cert", "trust_pool file trust.pem", "trusted_sources 127.0.0.1/32"}
	startCaddy(t,
		mtlsSite(dflt, "Ssl-Client-Cert", base...)+
			mtlsSite(small, "Ssl-Client-Cert", append(base, "max_header_bytes 256")...)+
			mtlsSite(chained, "Ssl-Client-Cert", alb...)+
			mtlsSite(short, "Ssl-Client-Cert", append(alb, "max_chain 1")...),
		p.files(t, "trust.pem"))
	alice := p.Clients["alice"]
	good := "Ssl-Client-Cert: " + nginxEscaped(alice)

	status, body := direct(t, dflt, "-H", good)
	expectOK(t, "one good header (control)", status, body, identity(alice, "nginx"))

	status, body = direct(t, dflt, "-H", good, "-H", good)
	expectReject(t, "header twice", status, body, 401, "duplicate_header")

	status, body = direct(t, small, "-H", good)
	expectReject(t, fmt.Sprintf("%d-byte header over max_header_bytes 256", len(nginxEscaped(alice))), status, body, 401, "too_large")

	chain := "Ssl-Client-Cert: " + nginxEscapeString(string(alice.ChainPEM()))
	status, body = direct(t, chained, "-H", chain)
	expectOK(t, "leaf + intermediate in one header (control)", status, body, identity(alice, "aws_alb"))
	// nginx sends exactly one certificate: two are a merged value.
	status, body = direct(t, dflt, "-H", chain)
	expectReject(t, "two certificates from nginx", status, body, 401, "malformed")
	status, body = direct(t, short, "-H", chain)
	expectReject(t, "two certificates over max_chain 1", status, body, 401, "too_large")

	for name, value := range map[string]string{
		"garbage":       "this-is-not-a-certificate",
		"truncated PEM": "-----BEGIN%20CERTIFICATE-----%0AMIIBmjCCAUCgAwIBAgIQ%0A-----END%20CERTIFICATE-----%0A",
		"bad base64":    "-----BEGIN%20CERTIFICATE-----%0A%21%21%21%21%0A-----END%20CERTIFICATE-----%0A",
	} {
		status, body = direct(t, dflt, "-H", "Ssl-Client-Cert: "+value)
		expectReject(t, "malformed: "+name, status, body, 401, "malformed")
	}
}

// TestModes: optional and fallback, through nginx.
func TestModes(t *testing.T) {
	p := newPKI(t)
	optional, fallback := freePort(t), freePort(t)
	base := []string{"profile nginx", "trust_pool file trust.pem", "trusted_sources 127.0.0.1/32"}
	startCaddy(t,
		mtlsSite(optional, "Ssl-Client-Cert", append(base, "mode optional")...)+
			mtlsSite(fallback, "Ssl-Client-Cert", append(base, "mode fallback")...),
		p.files(t, "trust.pem"))
	fOpt := nginxFront(t, p, optional, "Ssl-Client-Cert")
	fFall := nginxFront(t, p, fallback, "Ssl-Client-Cert")
	alice := p.Clients["alice"]
	unauth := map[string]string{"auth": "false"}

	t.Run("optional", func(t *testing.T) {
		status, body := fOpt.get(t, "")
		expectOK(t, "no certificate passes unauthenticated", status, body, unauth)
		status, body = fOpt.get(t, "alice")
		expectOK(t, "good certificate", status, body, identity(alice, "nginx"))
		status, body = fOpt.get(t, "expired")
		expectReject(t, "a bad certificate is still rejected", status, body, 401, "expired")
		status, body = fOpt.get(t, "wrongca")
		expectReject(t, "an untrusted certificate is still rejected", status, body, 401, "untrusted")
	})
	t.Run("fallback", func(t *testing.T) {
		status, body := fFall.get(t, "")
		expectOK(t, "no certificate", status, body, unauth)
		status, body = fFall.get(t, "alice")
		expectOK(t, "good certificate", status, body, identity(alice, "nginx"))
		for _, client := range []string{"expired", "wrongca", "wrongusage"} {
			status, body = fFall.get(t, client)
			expectOK(t, client+" is not rejected, only unauthenticated", status, body, unauth)
		}
	})
}

// TestTLSSource: Caddy terminates TLS itself and mtls_auth reads the
// connection's certificate (source tls), with curl --cert.
func TestTLSSource(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	cfg := strings.Replace(mtlsSite(port, "Client-Cert",
		"source tls",
		"trust_pool file trust.pem",
	), "\tmtls_auth {", `	tls server.pem server-key.pem {
		client_auth {
			mode request
		}
	}
	mtls_auth {`, 1)
	startCaddyOpts(t, cfg, p.files(t, "trust.pem", "server.pem", "server-key.pem"), caddyOpts{TLS: true})

	get := func(client string, extra ...string) (int, string) {
		t.Helper()
		// SNI must match the Host: Caddy enforces it when client auth is on.
		args := append(p.clientArgs(client), "--resolve", fmt.Sprintf("localhost:%d:127.0.0.1", port))
		args = append(args, extra...)
		status, body, _ := curl(t, append(args, fmt.Sprintf("https://localhost:%d/", port))...)
		return status, body
	}
	alice := p.Clients["alice"]
	status, body := get("alice")
	want := identity(alice, "")
	delete(want, "profile")
	want["source"] = "tls"
	expectOK(t, "alice over TLS", status, body, want)

	status, body = get("expired")
	expectReject(t, "expired over TLS", status, body, 401, "expired")
	status, body = get("wrongca")
	expectReject(t, "wrong CA over TLS", status, body, 401, "untrusted")
	status, body = get("wrongusage")
	expectReject(t, "wrong usage over TLS", status, body, 401, "wrong_usage")
	status, body = get("")
	expectReject(t, "no certificate over TLS", status, body, 401, "missing")
	// With source tls a header is not a certificate, even from loopback.
	status, body = get("", "-H", "Client-Cert: :"+derBase64(alice)+":")
	expectReject(t, "header with source tls", status, body, 401, "missing")
}

// TestHAProxy: a real HAProxy terminating mTLS and forwarding base64 DER.
func TestHAProxy(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	startCaddy(t, mtlsSite(port, "X-Ssl-Client-Cert",
		"profile haproxy",
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
	), p.files(t, "trust.pem"))
	hap := freePort(t)
	startHAProxy(t, haproxyMTLSFrontend(p, hap, port))
	get := func(client string) (int, string) {
		t.Helper()
		status, body, _ := curl(t, append(p.clientArgs(client), fmt.Sprintf("https://127.0.0.1:%d/", hap))...)
		return status, body
	}

	status, body := get("alice")
	expectOK(t, "alice through HAProxy", status, body, identity(p.Clients["alice"], "haproxy"))
	status, body = get("bob")
	expectOK(t, "bob through HAProxy", status, body, identity(p.Clients["bob"], "haproxy"))
	status, body = get("expired")
	expectReject(t, "expired through HAProxy", status, body, 401, "expired")
	status, body = get("wrongca")
	expectReject(t, "wrong CA through HAProxy", status, body, 401, "untrusted")
	status, body = get("")
	expectReject(t, "no certificate through HAProxy", status, body, 401, "missing")
}

// TestLogNeverLeaksCertificate: at debug level, for accepted and rejected
// requests, Caddy's log holds no PEM and no run of a certificate's base64
// (the plugin's logs carry the fingerprint and alias, never PEM or the raw
// header). Variants: debug logging only; plus a site access log (which
// records request headers); and both with Caddy's log filter deleting the
// certificate header. In every variant the plugin's own lines
// (http.handlers.mtls_auth) are checked separately, so a failure says
// whether the plugin or Caddy's request logging wrote the certificate.
func TestLogNeverLeaksCertificate(t *testing.T) {
	const filter = `format filter {
			wrap json
			request>headers>Ssl-Client-Cert delete
		}`
	for _, v := range []struct {
		name      string
		global    string // global options block body
		accessLog string // site log directive
	}{
		{name: "debug"},
		{name: "debug-and-access-log", accessLog: "log {\n\t\toutput stderr\n\t}"},
		{
			name:      "debug-and-access-log-filtered",
			global:    "\tlog {\n\t\tlevel DEBUG\n\t\t" + filter + "\n\t}\n",
			accessLog: "log {\n\t\toutput stderr\n\t\t" + filter + "\n\t}",
		},
	} {
		t.Run(v.name, func(t *testing.T) {
			p := newPKI(t)
			port := freePort(t)
			cfg := mtlsSite(port, "Ssl-Client-Cert",
				"profile nginx",
				"trust_pool file trust.pem",
				"trusted_sources 127.0.0.1/32",
				"allow alice alice.pem",
			)
			if v.accessLog != "" {
				cfg = strings.Replace(cfg, "\tmtls_auth {", "\t"+v.accessLog+"\n\tmtls_auth {", 1)
			}
			if v.global != "" {
				cfg = "{\n" + v.global + "}\n" + cfg
			}
			c := startCaddy(t, cfg, p.files(t, "trust.pem", "alice.pem"))
			f := nginxFront(t, p, port, "Ssl-Client-Cert")

			var sent []*testpki.Cert
			for _, client := range []string{"alice", "bob", "expired", "wrongca", "wrongusage", "notyet"} {
				f.get(t, client)
				sent = append(sent, p.Clients[client])
			}
			good := "Ssl-Client-Cert: " + nginxEscaped(p.Clients["alice"])
			direct(t, port, "-H", good, "-H", good)
			direct(t, port, "-H", "Ssl-Client-Cert: -----BEGIN%20CERTIFICATE-----%0AMIIBmjCCAUCgAwIBAgIQ%0A")

			// Give Caddy a moment to flush the last log lines.
			time.Sleep(300 * time.Millisecond)
			log := c.Log()
			if !strings.Contains(log, `"level":"debug"`) {
				t.Fatalf("the Caddy log holds no debug lines; the check would prove nothing:\n%s", log)
			}
			needles := leakNeedles(sent...)
			var plugin, caddy []string // leaking lines, by who wrote them
			for _, line := range strings.Split(log, "\n") {
				for _, needle := range needles {
					if strings.Contains(line, needle) {
						if strings.Contains(line, `"logger":"http.handlers.mtls_auth`) {
							plugin = append(plugin, line)
						} else {
							caddy = append(caddy, line)
						}
						break
					}
				}
			}
			if len(plugin) > 0 {
				t.Errorf("the plugin's own log lines hold certificate material (%d lines), first:\n%s", len(plugin), plugin[0])
			}
			// Caddy's request loggers (http.log.error, http.log.access...)
			// log a clone of the request taken before any handler runs, so
			// no handler can keep a request header out of them: only a log
			// filter can (README, "Security notes"). With the filter,
			// nothing may leak anywhere; without it, only those loggers may
			// show the header, and no other Caddy logger may.
			filtered := strings.Contains(v.global, "filter")
			loggers := map[string]int{}
			var other []string
			for _, line := range caddy {
				name := ""
				if m := regexp.MustCompile(`"logger":"([^"]*)"`).FindStringSubmatch(line); m != nil {
					name = m[1]
				}
				loggers[name]++
				if filtered || !strings.HasPrefix(name, "http.log.") {
					other = append(other, line)
				}
			}
			if len(other) > 0 {
				t.Errorf("Caddy's log lines hold certificate material (lines per logger: %v), first:\n%s", loggers, other[0])
			} else if len(caddy) > 0 {
				t.Logf("unfiltered request logs show the header, as Caddy logs every request header (lines per logger: %v); the filter variant proves the README's remedy", loggers)
			}
			// The logs carry the fingerprint (never the certificate);
			// a rejection at debug level should name it.
			if fp := p.Clients["expired"].Fingerprint(); !strings.Contains(log, fp) {
				t.Errorf("no log line names the rejected (expired) certificate's fingerprint %s", fp)
			}
		})
	}
}

// TestTrustedSourcesAnyWarns: `trusted_sources any` is allowed but warns at
// startup (every peer may then speak for a certificate); a CIDR does not.
func TestTrustedSourcesAnyWarns(t *testing.T) {
	const warning = "trusted_sources is 'any'"
	p := newPKI(t)
	for _, v := range []struct {
		sources string
		warns   bool
	}{{"any", true}, {"127.0.0.1/32", false}} {
		port := freePort(t)
		c := startCaddy(t, mtlsSite(port, "Ssl-Client-Cert",
			"profile nginx",
			"trust_pool file trust.pem",
			"trusted_sources "+v.sources,
		), p.files(t, "trust.pem"))
		status, body := direct(t, port, "-H", "Ssl-Client-Cert: "+nginxEscaped(p.Clients["bob"]))
		expectOK(t, "trusted_sources "+v.sources, status, body, map[string]string{"cn": "bob"})
		if got := strings.Contains(c.Log(), warning); got != v.warns {
			t.Errorf("trusted_sources %s: warning logged = %v, want %v", v.sources, got, v.warns)
		}
	}
}
