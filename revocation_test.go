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
