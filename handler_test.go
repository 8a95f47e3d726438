package mtlsauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

const lbAddr = "10.0.0.1:5555"

func header(vals ...string) map[string][]string {
	return map[string][]string{"Client-Cert": vals}
}

func withChain(leaf string, chain ...string) map[string][]string {
	return map[string][]string{"Client-Cert": {leaf}, "Client-Cert-Chain": {join(chain...)}}
}

func TestHandlerTrustPool(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), MaxChain: 3}
	require.NoError(t, provision(t, h))

	tests := []struct {
		name    string
		req     request
		status  int
		reason  string
		subject string
	}{
		{name: "valid leaf", req: request{headers: header(rfc9440(p.alice))}, status: 200, subject: "alice"},
		{name: "no extended key usage at all is allowed", req: request{headers: header(rfc9440(p.noEKU))}, status: 200, subject: "no-eku"},
		{name: "leaf with intermediate from chain header", req: request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}, status: 200, subject: "carol"},
		{name: "leaf without its intermediate", req: request{headers: header(rfc9440(p.carol))}, status: 401, reason: "untrusted"},
		{name: "no certificate", req: request{}, status: 401, reason: "missing"},
		{name: "header from untrusted peer", req: request{remote: "192.168.1.1:4444", headers: header(rfc9440(p.alice))}, status: 401, reason: "untrusted_source"},
		{name: "malformed", req: request{headers: header(":not base64!:")}, status: 401, reason: "malformed"},
		{name: "duplicate header", req: request{headers: header(rfc9440(p.alice), rfc9440(p.bob))}, status: 401, reason: "duplicate_header"},
		{name: "expired", req: request{headers: header(rfc9440(p.expired))}, status: 401, reason: "expired"},
		{name: "not yet valid", req: request{headers: header(rfc9440(p.notYet))}, status: 401, reason: "not_yet_valid"},
		{name: "server auth only", req: request{headers: header(rfc9440(p.serverOnly))}, status: 401, reason: "wrong_usage"},
		{name: "other CA", req: request{headers: header(rfc9440(p.mallory))}, status: 401, reason: "untrusted"},
		{name: "chain longer than max_chain", req: request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter), rfc9440(p.root), rfc9440(p.alice))}, status: 401, reason: "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, h, tt.req)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.reason, resp.ph("http.mtls.error"))
			assert.Equal(t, tt.status == 200, resp.nextCalled)
			assert.Equal(t, tt.subject, resp.ph("http.mtls.subject.cn"))
			assert.Equal(t, map[bool]string{true: "true", false: "false"}[tt.status == 200], resp.ph("http.mtls.authenticated"))
			if resp.err != nil {
				assert.Contains(t, resp.err.Error(), tt.reason, "the error message names the reason")
				assert.NotContains(t, resp.err.Error(), "MII", "the error message never echoes certificate material")
			}
		})
	}
}

func TestHandlerTooLargeHeader(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), MaxHeaderBytes: 256}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
	assert.Equal(t, 401, resp.status)
	assert.Equal(t, "too_large", resp.ph("http.mtls.error"))
}

func TestHandlerAllowList(t *testing.T) {
	p := newPKI(t)
	forgedInter := testpki.NewRoot("Test Intermediate CA") // same name, other key
	h := &Handler{
		Profile:        "rfc9440",
		TrustedSources: []string{"10.0.0.0/8"},
		Allow:          []AllowEntry{{Alias: "alice", File: p.aliceFile, Meta: map[string]string{"team": "payments"}}},
		AllowCA:        []AllowEntry{{Alias: "partners", File: p.interFile}},
	}
	require.NoError(t, provision(t, h))

	tests := []struct {
		name   string
		req    request
		status int
		reason string
		alias  string
	}{
		{name: "pinned leaf", req: request{headers: header(rfc9440(p.alice))}, status: 200, alias: "alice"},
		{name: "issued by an allowed CA", req: request{headers: withChain(rfc9440(p.carol))}, status: 200, alias: "partners"},
		{name: "valid elsewhere but not listed", req: request{headers: header(rfc9440(p.bob))}, status: 403, reason: "not_allowed"},
		{name: "another CA's leaf", req: request{headers: header(rfc9440(p.mallory))}, status: 403, reason: "not_allowed"},
		{name: "names the allowed CA as issuer but signed by another key", req: request{headers: header(rfc9440(forgedInter.NewLeaf("carol")))}, status: 403, reason: "not_allowed"},
		{name: "expired is still 401", req: request{headers: header(rfc9440(p.expired))}, status: 401, reason: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, h, tt.req)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.reason, resp.ph("http.mtls.error"))
			assert.Equal(t, tt.alias, resp.ph("http.mtls.alias"))
		})
	}
}

func TestHandlerPoolAndAllowBothMustHold(t *testing.T) {
	p := newPKI(t)
	otherRoot := testpki.NewRoot("Other Root")
	outsider := otherRoot.NewLeaf("outsider")
	h := &Handler{
		Profile:        "rfc9440",
		TrustedSources: []string{"10.0.0.0/8"},
		TrustPoolRaw:   trustPool(p.rootFile),
		Allow: []AllowEntry{
			{Alias: "alice", File: p.aliceFile},
			{Alias: "outsider", File: p.write(t, "outsider.pem", outsider.PEM())},
		},
	}
	require.NoError(t, provision(t, h))
	assert.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.alice))}).status)
	assert.Equal(t, 403, serve(t, h, request{headers: header(rfc9440(p.bob))}).status, "in the pool, not listed")
	resp := serve(t, h, request{headers: header(rfc9440(outsider))})
	assert.Equal(t, 401, resp.status, "listed, not in the pool")
	assert.Equal(t, "untrusted", resp.ph("http.mtls.error"))
}

func TestHandlerPlaceholders(t *testing.T) {
	p := newPKI(t)
	h := &Handler{
		Profile:        "rfc9440",
		TrustedSources: []string{"10.0.0.0/8"},
		Allow:          []AllowEntry{{Alias: "alice", File: p.aliceFile, Meta: map[string]string{"team": "payments"}}},
	}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
	require.Equal(t, 200, resp.status)
	leaf := p.alice.Cert
	want := map[string]string{
		"http.mtls.authenticated":          "true",
		"http.mtls.source":                 "header",
		"http.mtls.profile":                "rfc9440",
		"http.mtls.fingerprint":            p.alice.Fingerprint(),
		"http.mtls.subject":                "CN=alice",
		"http.mtls.subject.cn":             "alice",
		"http.mtls.issuer":                 "CN=Test Root CA",
		"http.mtls.serial":                 leaf.SerialNumber.String(),
		"http.mtls.not_after":              leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z07:00"),
		"http.mtls.san.dns_names":          "alice.example",
		"http.mtls.san.dns_names.0":        "alice.example",
		"http.mtls.san.dns_names.1":        "",
		"http.mtls.san.uris":               "spiffe://example/alice",
		"http.mtls.san.emails":             "alice@example.com",
		"http.mtls.san.ips":                "10.1.2.3",
		"http.mtls.alias":                  "alice",
		"http.mtls.tier":                   "",
		"http.mtls.meta.team":              "payments",
		"http.mtls.meta.unknown":           "",
		"http.mtls.certificate_der_base64": base64.StdEncoding.EncodeToString(leaf.Raw),
		"http.mtls.error":                  "",
		"http.auth.user.id":                "alice",
	}
	for k, v := range want {
		assert.Equal(t, v, resp.ph(k), k)
	}
}

func TestHandlerPlaceholdersUnauthenticated(t *testing.T) {
	p := newPKI(t)
	h := &Handler{TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), Mode: "optional"}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{})
	require.True(t, resp.nextCalled)
	assert.Equal(t, "false", resp.ph("http.mtls.authenticated"))
	assert.Equal(t, "missing", resp.ph("http.mtls.error"))
	v, known := resp.repl.Get("http.mtls.subject.cn")
	assert.True(t, known, "identity placeholders resolve, to empty, so templates render cleanly")
	assert.Equal(t, "", v)
	_, known = resp.repl.Get("http.auth.user.id")
	assert.False(t, known, "user id is left to other auth handlers")
}

func TestHandlerUserIDFallsBackToCN(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(p.bob))})
	assert.Equal(t, "bob", resp.ph("http.auth.user.id"))
	assert.Equal(t, "", resp.ph("http.mtls.alias"))
}

func TestHandlerModes(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		mode   string
		req    request
		status int
		passed bool
		reason string
		authed string
	}{
		{mode: "mandatory", req: request{}, status: 401, reason: "missing", authed: "false"},
		{mode: "mandatory", req: request{remote: "192.168.0.9:1", headers: header(rfc9440(p.alice))}, status: 401, reason: "untrusted_source", authed: "false"},
		{mode: "optional", req: request{}, status: 200, passed: true, reason: "missing", authed: "false"},
		{mode: "optional", req: request{remote: "192.168.0.9:1", headers: header(rfc9440(p.alice))}, status: 200, passed: true, reason: "untrusted_source", authed: "false"},
		{mode: "optional", req: request{headers: header(rfc9440(p.expired))}, status: 401, reason: "expired", authed: "false"},
		{mode: "optional", req: request{headers: header(rfc9440(p.bob))}, status: 403, reason: "not_allowed", authed: "false"},
		{mode: "optional", req: request{headers: header(rfc9440(p.alice))}, status: 200, passed: true, authed: "true"},
		{mode: "fallback", req: request{}, status: 200, passed: true, reason: "missing", authed: "false"},
		{mode: "fallback", req: request{headers: header(":junk:")}, status: 200, passed: true, reason: "malformed", authed: "false"},
		{mode: "fallback", req: request{headers: header(rfc9440(p.bob))}, status: 200, passed: true, reason: "not_allowed", authed: "false"},
		{mode: "fallback", req: request{headers: header(rfc9440(p.alice))}, status: 200, passed: true, authed: "true"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.reason+tt.authed, func(t *testing.T) {
			h := &Handler{
				Profile: "rfc9440", Mode: tt.mode, TrustedSources: []string{"10.0.0.0/8"},
				Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}},
			}
			require.NoError(t, provision(t, h))
			resp := serve(t, h, tt.req)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.passed, resp.nextCalled)
			assert.Equal(t, tt.reason, resp.ph("http.mtls.error"))
			assert.Equal(t, tt.authed, resp.ph("http.mtls.authenticated"))
			if tt.authed == "false" {
				assert.Equal(t, "", resp.ph("http.mtls.subject.cn"), "no identity for an unauthenticated request")
			}
		})
	}
}

func TestHandlerHeaderStripping(t *testing.T) {
	p := newPKI(t)
	forged := withChain(rfc9440(p.bob), rfc9440(p.inter))
	tests := []struct {
		name     string
		source   string
		profile  string
		keep     bool
		req      request
		wantKept bool
	}{
		{name: "removed after success", req: request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}},
		{name: "kept with keep_header", keep: true, req: request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}, wantKept: true},
		{name: "untrusted source removed even with keep_header", keep: true, req: request{remote: "172.16.0.1:1", headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}},
		// The connection authenticates, so the source gate never looks at
		// the header: an untrusted peer's own header must still go.
		{name: "source any, TLS client, untrusted peer's header removed with keep_header", source: "any", keep: true, req: request{remote: "172.16.0.1:1", tlsPeerCerts: certs(p.alice), headers: forged}},
		{name: "source tls, TLS client, untrusted peer's header removed with keep_header", source: "tls", keep: true, req: request{remote: "172.16.0.1:1", tlsPeerCerts: certs(p.alice), headers: forged}},
		{name: "source tls, no TLS client, untrusted peer's header removed with keep_header", source: "tls", keep: true, req: request{remote: "172.16.0.1:1", headers: forged}},
		{name: "source any, TLS client, trusted peer's header kept with keep_header", source: "any", keep: true, req: request{tlsPeerCerts: certs(p.alice), headers: forged}, wantKept: true},
		// auto does not read Client-Cert-Chain, but an RFC 9440 upstream
		// would: a client-sent one never reaches it.
		{name: "auto removes the chain header of the profiles it may pick", profile: "auto", req: request{headers: withChain(rfc9440(p.alice), rfc9440(p.inter))}},
		{name: "auto keeps them with keep_header", profile: "auto", keep: true, req: request{headers: withChain(rfc9440(p.alice), rfc9440(p.inter))}, wantKept: true},
		{name: "auto removes a chain header sent without a certificate", profile: "auto", req: request{headers: map[string][]string{"Client-Cert-Chain": {rfc9440(p.inter)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			profile := tt.profile
			if profile == "" {
				profile = "rfc9440"
			}
			h := &Handler{Source: tt.source, Profile: profile, Mode: "optional", KeepHeader: tt.keep, TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
			require.NoError(t, provision(t, h))
			resp := serve(t, h, tt.req)
			require.True(t, resp.nextCalled)
			if tt.req.tlsPeerCerts != nil {
				assert.Equal(t, "alice", resp.ph("http.mtls.subject.cn"), "the connection's certificate authenticates")
			}
			_, hasCert := resp.nextHeader["Client-Cert"]
			_, hasChain := resp.nextHeader["Client-Cert-Chain"]
			_, sentCert := tt.req.headers["Client-Cert"]
			assert.Equal(t, tt.wantKept && sentCert, hasCert)
			assert.Equal(t, tt.wantKept, hasChain)
		})
	}
}

func TestHandlerSources(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name    string
		source  string
		req     request
		status  int
		subject string
		src     string
	}{
		{name: "tls", source: "tls", req: request{tlsPeerCerts: certs(p.carol, p.inter)}, status: 200, subject: "carol", src: "tls"},
		{name: "tls ignores the header", source: "tls", req: request{headers: header(rfc9440(p.alice))}, status: 401},
		{name: "tls rejects a bad connection certificate", source: "tls", req: request{tlsPeerCerts: certs(p.mallory)}, status: 401, src: "tls"},
		{name: "header ignores the connection", source: "header", req: request{tlsPeerCerts: certs(p.alice)}, status: 401},
		{name: "any prefers the connection", source: "any", req: request{tlsPeerCerts: certs(p.alice), headers: header(rfc9440(p.bob))}, status: 200, subject: "alice", src: "tls"},
		{name: "any falls back to the header", source: "any", req: request{headers: header(rfc9440(p.bob))}, status: 200, subject: "bob", src: "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Source: tt.source, Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
			require.NoError(t, provision(t, h))
			resp := serve(t, h, tt.req)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.subject, resp.ph("http.mtls.subject.cn"))
			assert.Equal(t, tt.src, resp.ph("http.mtls.source"))
		})
	}
}

func TestHandlerTrustedSources(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name          string
		sources       []string
		remote        string
		serverTrusted bool
		status        int
	}{
		{name: "default defers to trusted_proxies: trusted", remote: lbAddr, serverTrusted: true, status: 200},
		{name: "default defers to trusted_proxies: not trusted", remote: lbAddr, status: 401},
		{name: "cidr match", sources: []string{"192.0.2.0/24"}, remote: "192.0.2.7:80", status: 200},
		{name: "cidr ignores the server verdict", sources: []string{"192.0.2.0/24"}, remote: "198.51.100.1:80", serverTrusted: true, status: 401},
		{name: "single address", sources: []string{"192.0.2.7"}, remote: "192.0.2.7:80", status: 200},
		{name: "ipv6", sources: []string{"2001:db8::/32"}, remote: "[2001:db8::1]:443", status: 200},
		{name: "ipv4-mapped ipv6 peer", sources: []string{"192.0.2.0/24"}, remote: "[::ffff:192.0.2.7]:80", status: 200},
		{name: "any", sources: []string{"any"}, remote: "203.0.113.9:1", status: 200},
		{name: "private_ranges: private", sources: []string{"private_ranges"}, remote: "172.20.1.1:80", status: 200},
		{name: "private_ranges: loopback v6", sources: []string{"private_ranges"}, remote: "[::1]:80", status: 200},
		{name: "private_ranges: public", sources: []string{"private_ranges"}, remote: "203.0.113.9:1", status: 401},
		{name: "private_ranges with a CIDR", sources: []string{"private_ranges", "203.0.113.0/24"}, remote: "203.0.113.9:1", status: 200},
		{name: "unparseable peer is not trusted", sources: []string{"192.0.2.0/24"}, remote: "garbage", status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Profile: "rfc9440", TrustedSources: tt.sources, TrustPoolRaw: trustPool(p.rootFile)}
			require.NoError(t, provision(t, h))
			resp := serve(t, h, request{remote: tt.remote, serverTrusted: tt.serverTrusted, headers: header(rfc9440(p.alice))})
			assert.Equal(t, tt.status, resp.status)
			if tt.status == 401 {
				assert.Equal(t, "untrusted_source", resp.ph("http.mtls.error"))
			}
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	p := newPKI(t)
	keyFile := p.write(t, "alice-key.pem", p.alice.KeyPEM())
	bundle := p.write(t, "bundle.pem", append(p.root.PEM(), p.inter.PEM()...))
	tests := []struct {
		name string
		h    Handler
		want string
	}{
		{name: "no trust", h: Handler{}, want: "no trust configured"},
		{name: "unreadable allow file", h: Handler{Allow: []AllowEntry{{Alias: "x", File: p.dir + "/nope.pem"}}}, want: "nope.pem"},
		{name: "private key as allow file", h: Handler{Allow: []AllowEntry{{Alias: "x", File: keyFile}}}, want: "private key"},
		{name: "bundle as allow file", h: Handler{Allow: []AllowEntry{{Alias: "x", File: bundle}}}, want: "2 certificates"},
		{name: "same certificate twice", h: Handler{Allow: []AllowEntry{{Alias: "a", File: p.aliceFile}, {Alias: "b", File: p.aliceFile}}}, want: "already allowed as 'a'"},
		{name: "missing trust pool file", h: Handler{TrustPoolRaw: trustPool(p.dir + "/missing-ca.pem")}, want: "missing-ca.pem"},
		{name: "bad mode", h: Handler{Mode: "sometimes", TrustPoolRaw: trustPool(p.rootFile)}, want: "mode"},
		{name: "bad source", h: Handler{Source: "udp", TrustPoolRaw: trustPool(p.rootFile)}, want: "source"},
		{name: "bad profile", h: Handler{Profile: "nginxx", TrustPoolRaw: trustPool(p.rootFile)}, want: "nginxx"},
		{name: "bad cidr", h: Handler{TrustedSources: []string{"10.0.0.0/33"}, TrustPoolRaw: trustPool(p.rootFile)}, want: "10.0.0.0/33"},
		{name: "keyword mixed with cidr", h: Handler{TrustedSources: []string{"any", "10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}, want: "cannot be combined"},
		{name: "empty allow_dir is fine but missing is not", h: Handler{AllowDir: []AllowDir{{Dir: p.dir + "/absent"}}}, want: "absent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			err := provision(t, &h)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestAllowPinsAllowCAAdmits: allow pins a certificate exactly, whatever
// its extensions; allow_ca makes the same certificate a CA entry.
func TestAllowPinsAllowCAAdmits(t *testing.T) {
	p := newPKI(t)
	pinned := &Handler{Allow: []AllowEntry{{Alias: "root", File: p.rootFile}}}
	require.NoError(t, provision(t, pinned))
	assert.False(t, pinned.verifier.static.Load().allow.Entries()[0].IsCA(), "allow of a CA:TRUE certificate pins it")
	asCA := &Handler{AllowCA: []AllowEntry{{Alias: "root", File: p.rootFile, Tier: "", Meta: map[string]string{"k": "v"}}}}
	require.NoError(t, provision(t, asCA))
	e := asCA.verifier.static.Load().allow.Entries()[0]
	assert.True(t, e.IsCA())
	assert.Equal(t, "v", e.Meta["k"])
}

// TestSelfSignedCAPinnedAdmitsOnlyItself: a partner's self-signed client
// certificate made with `openssl req -x509` says CA:TRUE; pinned with
// allow, it must not admit the leaves its key holder signs.
func TestSelfSignedCAPinnedAdmitsOnlyItself(t *testing.T) {
	p := newPKI(t)
	partner := testpki.NewRoot("partner client") // CA:TRUE, keyCertSign, no EKU
	minted := partner.NewLeaf("someone else")
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"},
		Allow: []AllowEntry{{Alias: "partner", File: p.write(t, "partner.pem", partner.PEM())}}}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(partner))})
	assert.Equal(t, 200, resp.status)
	assert.Equal(t, "partner", resp.ph("http.mtls.alias"))
	for name, req := range map[string]request{
		"leaf alone":              {headers: header(rfc9440(minted))},
		"leaf with the pinned CA": {headers: withChain(rfc9440(minted), rfc9440(partner))},
	} {
		resp = serve(t, h, req)
		assert.Equal(t, 403, resp.status, name)
		assert.Equal(t, "not_allowed", resp.ph("http.mtls.error"), name)
	}
}

func TestAllowCANotACA(t *testing.T) {
	p := newPKI(t)
	noCertSign := p.write(t, "no-certsign.pem", mkCAFile(t, x509.KeyUsageDigitalSignature))
	for name, tt := range map[string]struct {
		file, want string
	}{
		"leaf":                   {p.aliceFile, "CA:TRUE"},
		"CA without keyCertSign": {noCertSign, "keyCertSign"},
	} {
		t.Run(name, func(t *testing.T) {
			h := &Handler{AllowCA: []AllowEntry{{Alias: "partners", File: tt.file}}}
			err := provision(t, h)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "allow_ca partners")
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// mkCAFile is the PEM of a self-signed CA:TRUE certificate with key usage ku.
func mkCAFile(t *testing.T, ku x509.KeyUsage) []byte {
	t.Helper()
	tmpl := caTmpl("odd CA")
	tmpl.KeyUsage = ku
	c, _ := mkCert(t, tmpl, nil, nil)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TestWarnsUnusableAllowEntries: when the allow lists are loaded (at
// provision and on every file reload), every allowed certificate
// that can never authenticate is logged at warn with its alias; a good
// one is not.
func TestWarnsUnusableAllowEntries(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	_, err := testpki.WriteFile(dir, "late.pem", p.notYet.PEM())
	require.NoError(t, err)
	core, logs := observer.New(zapcore.WarnLevel)
	h := &Handler{
		logger: zap.New(core),
		Allow: []AllowEntry{
			{Alias: "alice", File: p.aliceFile},
			{Alias: "old", File: p.write(t, "expired.pem", p.expired.PEM())},
			{Alias: "server", File: p.write(t, "server.pem", p.serverOnly.PEM())},
		},
		AllowCA:  []AllowEntry{{Alias: "old-ca", File: p.write(t, "old-ca.pem", testpki.NewRoot("old CA", testpki.Expired()).PEM())}},
		AllowDir: []AllowDir{{Dir: dir}},
	}
	_, err = h.loadAllowEntries()
	require.NoError(t, err)
	got := map[string]string{}
	for _, e := range logs.FilterMessage("allowed certificate can never authenticate").All() {
		got[e.ContextMap()["alias"].(string)] = e.ContextMap()["problem"].(string)
	}
	assert.Len(t, got, 4, "%v", got)
	assert.Contains(t, got["old"], "expired")
	assert.Contains(t, got["old-ca"], "expired")
	assert.Contains(t, got["late"], "not valid before")
	assert.Contains(t, got["server"], "clientAuth")
	assert.NotContains(t, got, "alice")
}

func TestAllowDir(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	_, err := testpki.WriteFile(dir, "alice.pem", p.alice.PEM())
	require.NoError(t, err)
	_, err = testpki.WriteFile(dir, "partners.CRT", p.inter.PEM())
	require.NoError(t, err)
	_, err = testpki.WriteFile(dir, "notes.txt", []byte("not a certificate"))
	require.NoError(t, err)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, AllowDir: []AllowDir{{Dir: dir}}}
	require.NoError(t, provision(t, h))
	assert.Equal(t, "alice", serve(t, h, request{headers: header(rfc9440(p.alice))}).ph("http.mtls.alias"))
	assert.Equal(t, "partners", serve(t, h, request{headers: header(rfc9440(p.inter))}).ph("http.mtls.alias"), "a CA file in allow_dir is pinned as itself")
	assert.Equal(t, http.StatusForbidden, serve(t, h, request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}).status, "and admits nothing it issued")
	assert.Equal(t, http.StatusForbidden, serve(t, h, request{headers: header(rfc9440(p.bob))}).status)
}

func TestHandlerNeverLogsOrEchoesPEM(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "pem", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	flat := strings.ReplaceAll(string(p.mallory.PEM()), "\n", " ")
	resp := serve(t, h, request{headers: header(flat)})
	require.Error(t, resp.err)
	assert.NotContains(t, resp.err.Error(), "BEGIN")
	assert.NotContains(t, resp.err.Error(), base64.StdEncoding.EncodeToString(p.mallory.DER())[:40])
}
