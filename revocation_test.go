package mtlsauth

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// crl is a PEM CRL issued by ca listing the given certificates as revoked.
func crl(t *testing.T, ca *testpki.Cert, revoked ...*testpki.Cert) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute),
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func TestHandlerRevocationCRL(t *testing.T) {
	p := newPKI(t)
	rootCRL := p.write(t, "root.crl", crl(t, p.root, p.bob))
	interCRL := p.write(t, "inter.crl", crl(t, p.inter))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{rootCRL, interCRL}}}
	require.NoError(t, provision(t, h))

	tests := []struct {
		name   string
		req    request
		status int
		reason string
	}{
		{name: "good leaf", req: request{headers: header(rfc9440(p.alice))}, status: 200},
		{name: "revoked leaf", req: request{headers: header(rfc9440(p.bob))}, status: 401, reason: "revoked"},
		{name: "good leaf under a good intermediate", req: request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, h, tt.req)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.reason, resp.ph("http.mtls.error"))
		})
	}
}

func TestHandlerRevokedIntermediate(t *testing.T) {
	p := newPKI(t)
	rootCRL := p.write(t, "root.crl", crl(t, p.root, p.inter))
	interCRL := p.write(t, "inter.crl", crl(t, p.inter))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{rootCRL, interCRL}}}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))})
	assert.Equal(t, 401, resp.status)
	assert.Equal(t, "revoked", resp.ph("http.mtls.error"))
	assert.Contains(t, resp.err.Error(), "a certificate in the chain is revoked")
}

func TestHandlerRevocationUnknown(t *testing.T) {
	p := newPKI(t)
	// OCSP at a responder that is not there: the status cannot be had.
	deadResponder := "http://127.0.0.1:1/ocsp"
	for _, soft := range []bool{false, true} {
		h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
			Revocation: &Revocation{OCSP: true, OCSPResponder: deadResponder, SoftFail: soft}}
		require.NoError(t, provision(t, h))
		resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
		if soft {
			assert.Equal(t, 200, resp.status, "soft_fail allows when no answer can be had")
		} else {
			assert.Equal(t, 401, resp.status, "hard fail by default")
			assert.Equal(t, "revocation_unknown", resp.ph("http.mtls.error"), "not revoked: nobody said so")
			assert.Contains(t, resp.err.Error(), "client certificate revocation_unknown: revocation status of the certificate could not be established: the OCSP responder could not be reached")
			assert.NotContains(t, resp.err.Error(), "127.0.0.1", "the message carries the cause, not the URL")
		}
	}
}

func TestHandlerRevocationBadCRLFailsProvision(t *testing.T) {
	p := newPKI(t)
	h := &Handler{TrustPoolRaw: trustPool(p.rootFile), Revocation: &Revocation{CRL: []string{p.dir + "/missing.crl"}}}
	assert.ErrorContains(t, provision(t, h), "missing.crl")
}

func TestUnmarshalRevocation(t *testing.T) {
	t.Parallel()
	var h Handler
	require.NoError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`mtls_auth {
		revocation {
			crl /etc/mtls/root.crl https://pki.example/inter.crl
			crl_from_certificate
			ocsp http://ocsp.example
			soft_fail
		}
	}`)))
	assert.Equal(t, &Revocation{CRL: []string{"/etc/mtls/root.crl", "https://pki.example/inter.crl"}, CRLFromCertificate: true, OCSP: true, OCSPResponder: "http://ocsp.example", SoftFail: true}, h.Revocation)

	errs := []struct{ body, want string }{
		{"revocation", "nothing to check"},
		{"revocation on {\nocsp\n}", "wrong argument count"},
		{"revocation {\ncrl\n}", "wrong argument count"},
		{"revocation {\ncrl ldap://x/crl\n}", "only files and http/https URLs"},
		{"revocation {\nocsp a b\n}", "wrong argument count"},
		{"revocation {\nocsp ftp://x\n}", "http or https URL"},
		{"revocation {\nocsp\nocsp\n}", "ocsp already specified"},
		{"revocation {\nsoft_fail yes\nocsp\n}", "wrong argument count"},
		{"revocation {\nstapling\n}", "unrecognized subdirective 'stapling'"},
		{"revocation {\nocsp\n}\nrevocation {\nocsp\n}", "revocation already specified"},
	}
	for _, tt := range errs {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mtls_auth {\n" + tt.body + "\n}"))
		require.Error(t, err, tt.body)
		assert.Contains(t, err.Error(), tt.want, tt.body)
		assert.Contains(t, err.Error(), "Testfile:", tt.body)
	}
}

// TestRevocationFetchesOnlyFromTheVerifiedChain: without a trust pool, a
// client adds an "intermediate" that copies the allowed CA's names, signed
// with its own key, naming URLs on a listener (CRL distribution point and
// OCSP responder). Revocation must fetch the leaf's own CRL (the leaf is on
// the verified chain) and never the impostor's URLs.
func TestRevocationFetchesOnlyFromTheVerifiedChain(t *testing.T) {
	srv := testpki.NewListener()
	t.Cleanup(srv.Close)
	p := newPKI(t)
	leaf := p.root.NewLeaf("client", testpki.CRLDistributionPoints(srv.URL+"/leaf.crl"))
	srv.Serve("/leaf.crl", crl(t, p.root))
	impostor := testpki.NewImpostor(p.root,
		testpki.CRLDistributionPoints(srv.URL+"/impostor.crl"),
		testpki.OCSPServers(srv.URL+"/impostor-ocsp"))
	rev := &Revocation{CRLFromCertificate: true, OCSP: true}

	for _, tt := range []struct {
		name string
		h    Handler
		sent []*testpki.Cert
	}{
		{name: "allow_ca", h: Handler{AllowCA: []AllowEntry{{Alias: "corp", File: p.rootFile}}}, sent: []*testpki.Cert{leaf, impostor}},
		{name: "allow_ca, impostor first", h: Handler{AllowCA: []AllowEntry{{Alias: "corp", File: p.rootFile}}}, sent: []*testpki.Cert{leaf, impostor, p.root}},
		{name: "pinned leaf with its real issuer", h: Handler{Allow: []AllowEntry{{Alias: "client", File: p.write(t, "client.pem", leaf.PEM())}}}, sent: []*testpki.Cert{leaf, impostor, p.root}},
		{name: "trust pool", h: Handler{TrustPoolRaw: trustPool(p.rootFile)}, sent: []*testpki.Cert{leaf, impostor}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Hits()
			h := tt.h
			h.Profile, h.TrustedSources, h.Revocation, h.CacheSize = "rfc9440", []string{"10.0.0.0/8"}, rev, -1
			require.NoError(t, provision(t, &h))
			var chain []string
			for _, c := range tt.sent[1:] {
				chain = append(chain, rfc9440(c))
			}
			resp := serve(t, &h, request{headers: withChain(rfc9440(tt.sent[0]), chain...)})
			assert.Equal(t, 200, resp.status, "the leaf's own CRL, verified with its real issuer, says good: %v", resp.err)
			after := srv.Hits()
			for path := range after {
				after[path] -= before[path]
			}
			assert.Equal(t, map[string]int{"/leaf.crl": 1}, after, "only the verified leaf's URL is fetched")
		})
	}
}

// TestHandlerRevocationUnknownCauses checks the reason and the detail for
// causes found without the network: a CRL for another issuer only, and a
// CRL whose issuer lacks cRLSign (believed by neither).
func TestHandlerRevocationUnknownCauses(t *testing.T) {
	p := newPKI(t)
	otherCRL := p.write(t, "other.crl", crl(t, testpki.NewRoot("Other CA")))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{otherCRL}}}
	require.NoError(t, provision(t, h))
	resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
	assert.Equal(t, 401, resp.status)
	assert.Equal(t, "revocation_unknown", resp.ph("http.mtls.error"))
	assert.Contains(t, resp.err.Error(), "no CRL or OCSP responder covers the certificate's issuer")

	// Only the intermediate's CRL: the leaf is known good, its issuer (the
	// intermediate, under the root) is not covered.
	interCRL := p.write(t, "inter.crl", crl(t, p.inter))
	h = &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{interCRL}}}
	require.NoError(t, provision(t, h))
	resp = serve(t, h, request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))})
	assert.Equal(t, "revocation_unknown", resp.ph("http.mtls.error"))
	assert.Contains(t, resp.err.Error(), "revocation status of a certificate in the chain could not be established: no CRL")
}
