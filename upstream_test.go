package mtlsauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// decodeAs feeds a forwarded header value to the plugin's own decoder, as
// an upstream running it would, and returns the certificates.
func decodeAs(t *testing.T, profile string, value, chain string) []*x509.Certificate {
	t.Helper()
	opts := decoder.Options{Profile: profile}
	if profile == "rfc9440" {
		opts.ChainHeader = "Client-Cert-Chain"
	}
	d, err := decoder.New(opts)
	require.NoError(t, err)
	var chainValues []string
	if chain != "" {
		chainValues = []string{chain}
	}
	res, err := d.Decode([]string{value}, chainValues)
	require.NoError(t, err)
	return res.Certs
}

func TestUpstreamPlaceholders(t *testing.T) {
	p := newPKI(t)
	spiffe := p.inter.NewLeaf("svc", testpki.URIs("spiffe://cluster.local/ns/prod/sa/svc"), testpki.DNS("svc.example"))
	twoSpiffe := p.inter.NewLeaf("two", testpki.URIs("spiffe://a/x", "spiffe://b/y"))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))

	resp := serve(t, h, request{headers: withChain(rfc9440(spiffe), rfc9440(p.inter))})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, rfc9440(spiffe), resp.ph("http.mtls.rfc9440.cert"))
	assert.Equal(t, rfc9440(p.inter), resp.ph("http.mtls.rfc9440.chain"), "the verified intermediate, root excluded")
	sum := sha256.Sum256(spiffe.DER())
	assert.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:]), resp.ph("http.mtls.x5t_s256"))
	assert.Equal(t, "spiffe://cluster.local/ns/prod/sa/svc", resp.ph("http.mtls.spiffe_id"))

	// What an upstream running this plugin makes of them: the same
	// certificate, and the chain that was verified here.
	got := decodeAs(t, "rfc9440", resp.ph("http.mtls.rfc9440.cert"), resp.ph("http.mtls.rfc9440.chain"))
	require.Len(t, got, 2)
	assert.Equal(t, spiffe.DER(), got[0].Raw)
	assert.Equal(t, p.inter.DER(), got[1].Raw)
	xfcc := resp.ph("http.mtls.xfcc")
	require.NotEmpty(t, xfcc)
	assert.NotContains(t, xfcc, "\n")
	got = decodeAs(t, "envoy_xfcc", xfcc, "")
	require.Len(t, got, 1)
	assert.Equal(t, spiffe.DER(), got[0].Raw)
	assert.Contains(t, xfcc, ";URI=spiffe://cluster.local/ns/prod/sa/svc;DNS=svc.example")

	// A leaf straight under the root: no intermediates to forward.
	resp = serve(t, h, request{headers: header(rfc9440(p.bob))})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, "", resp.ph("http.mtls.rfc9440.chain"))
	assert.Equal(t, "", resp.ph("http.mtls.spiffe_id"), "no URI SAN")

	// Two SPIFFE IDs: not an X509-SVID, no spiffe_id.
	resp = serve(t, h, request{headers: withChain(rfc9440(twoSpiffe), rfc9440(p.inter))})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, "", resp.ph("http.mtls.spiffe_id"))

	// Without a trust pool (allow list only) nothing was verified as a
	// chain: no intermediates are forwarded.
	h2 := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, AllowCA: []AllowEntry{{Alias: "partners", File: p.interFile}}}
	require.NoError(t, provision(t, h2))
	resp = serve(t, h2, request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, rfc9440(p.carol), resp.ph("http.mtls.rfc9440.cert"))
	assert.Equal(t, "", resp.ph("http.mtls.rfc9440.chain"))

	// Empty unless authenticated.
	resp = serve(t, h, request{headers: header(rfc9440(p.mallory))})
	require.Equal(t, 401, resp.status)
	for _, k := range []string{"rfc9440.cert", "rfc9440.chain", "xfcc", "x5t_s256", "spiffe_id"} {
		v, known := resp.repl.Get("http.mtls." + k)
		assert.True(t, known, k)
		assert.Equal(t, "", v, k)
	}
}

func TestUserIDTemplate(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		template, want string
	}{
		{"", "alice"},
		{"{http.mtls.spiffe_id}", "spiffe://example/alice"},
		{"{http.mtls.san.uris}", "spiffe://example/alice"},
		{"{http.mtls.meta.team}/{http.mtls.subject.cn}", "payments/alice"},
		{"{http.mtls.source}:{http.mtls.alias}", "header:alice"},
	} {
		h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, UserID: tc.template,
			Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile, Meta: map[string]string{"team": "payments"}}}}
		require.NoError(t, provision(t, h))
		resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
		require.Equal(t, 200, resp.status)
		assert.Equal(t, tc.want, resp.ph("http.auth.user.id"), tc.template)
		assert.Equal(t, "alice", resp.ph("http.mtls.alias"), "other placeholders still resolve")
		// Unauthenticated: the user id is left to other handlers.
		resp = serve(t, h, request{headers: header(rfc9440(p.bob))})
		_, known := resp.repl.Get("http.auth.user.id")
		assert.False(t, known)
	}
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), UserID: "{http.auth.user.id}x"}
	err := provision(t, h)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "user_id: the template may not use {http.auth.user.id}")
}

func TestAllowInlinePEM(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"},
		Allow:   []AllowEntry{{Alias: "alice", PEM: string(p.alice.PEM()), Tier: "", Meta: map[string]string{"k": "v"}}},
		AllowCA: []AllowEntry{{Alias: "partners", PEM: string(p.inter.PEM())}},
	}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, "alice", resp.ph("http.mtls.alias"))
	assert.Equal(t, "v", resp.ph("http.mtls.meta.k"))
	resp = serve(t, h, request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))})
	assert.Equal(t, "partners", resp.ph("http.mtls.alias"), "an inline CA admits what it issued")
	resp = serve(t, h, request{headers: header(rfc9440(p.bob))})
	assert.Equal(t, 403, resp.status)

	for _, tc := range []struct {
		entry AllowEntry
		want  string
	}{
		{AllowEntry{Alias: "a", File: p.aliceFile, PEM: string(p.alice.PEM())}, "allow a: give file or pem, not both"},
		{AllowEntry{Alias: "a"}, "allow a: no certificate: give file or pem"},
		{AllowEntry{Alias: "a", PEM: string(p.alice.KeyPEM())}, "allow a: inline pem holds a private key"},
		{AllowEntry{Alias: "a", PEM: string(append(p.root.PEM(), p.inter.PEM()...))}, "allow a: inline pem holds 2 certificates"},
		{AllowEntry{Alias: "a", PEM: "not a certificate"}, "allow a: inline pem: neither PEM nor a DER certificate"},
	} {
		err := provision(t, &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{tc.entry}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), "MII", "never echoes the PEM")
	}
}

// TestTLSSourceKeyLimits: a TLS client's chain gets the key checks a
// header's gets, before any signature work.
func TestTLSSourceKeyLimits(t *testing.T) {
	p := newPKI(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	n := new(big.Int).Lsh(big.NewInt(1), 15359)
	huge := &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "Test Intermediate CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, huge, key)
	require.NoError(t, err)
	bogus, err := x509.ParseCertificate(der)
	require.NoError(t, err)

	h := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{tlsPeerCerts: []*x509.Certificate{p.carol.Cert, bogus}})
	assert.Equal(t, 401, resp.status)
	assert.Equal(t, "malformed", resp.ph("http.mtls.error"))
	assert.Contains(t, resp.err.Error(), "RSA key of 15360 bits, over the limit of 8192 bits")
	resp = serve(t, h, request{tlsPeerCerts: certs(p.carol, p.inter)})
	assert.Equal(t, 200, resp.status)
}

// TestSubjectLikeOpenSSL: {http.mtls.subject} and {http.mtls.issuer} print
// names as OpenSSL does, emailAddress= rather than the OID in hex.
func TestSubjectLikeOpenSSL(t *testing.T) {
	p := newPKI(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		Subject: pkix.Name{CommonName: "dave", Organization: []string{"Example, Inc."},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "dave@example.com"}}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root.Cert, key.Public(), p.root.Key)
	require.NoError(t, err)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(":" + base64.StdEncoding.EncodeToString(der) + ":")})
	require.Equal(t, 200, resp.status)
	assert.Equal(t, `emailAddress=dave@example.com,CN=dave,O=Example\, Inc.`, resp.ph("http.mtls.subject"))
	assert.Equal(t, "CN=Test Root CA", resp.ph("http.mtls.issuer"))
	assert.False(t, strings.Contains(resp.ph("http.mtls.subject"), "1.2.840"))
}
