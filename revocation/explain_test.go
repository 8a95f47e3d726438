package revocation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// crlSignedWithout makes a CRL listing revoked, signed by ca's key, although
// ca's certificate lacks cRLSign (x509.CreateRevocationList refuses such an
// issuer, so it is handed a copy that claims the bit).
func crlSignedWithout(t *testing.T, ca *testpki.Cert, revoked ...*testpki.Cert) []byte {
	t.Helper()
	claimed := *ca.Cert
	claimed.KeyUsage |= x509.KeyUsageCRLSign
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &claimed, ca.Key)
	require.NoError(t, err)
	return der
}

// TestUnknownCauses checks that each way of not knowing a status is told
// apart: Result.Err wraps its sentinel and Explain names it, without the
// URLs or names the error itself carries.
func TestUnknownCauses(t *testing.T) {
	ctx := context.Background()
	root := testpki.NewRoot("Explain Root")
	inter := root.NewIntermediate("Explain Intermediate")
	noCRLSign := root.NewIntermediate("No cRLSign Intermediate",
		testpki.KeyUsage(x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature))
	other := testpki.NewRoot("Unrelated CA")

	tests := []struct {
		name  string
		setup func(t *testing.T) (Config, []*x509.Certificate)
		want  []error
		text  []string
	}{
		{"no CRL covers the issuer", func(t *testing.T) (Config, []*x509.Certificate) {
			f := writeFile(t, t.TempDir(), "other.crl", makeCRL(t, other, crlOpts{}))
			return Config{CRLs: []string{f}}, chainOf(inter.NewLeaf("client"))[:2]
		}, []error{ErrNotCovered}, []string{"no CRL or OCSP responder covers the certificate's issuer"}},
		{"the CRL's issuer lacks cRLSign", func(t *testing.T) (Config, []*x509.Certificate) {
			leaf := noCRLSign.NewLeaf("client")
			f := writeFile(t, t.TempDir(), "nosign.crl", crlSignedWithout(t, noCRLSign, leaf))
			return Config{CRLs: []string{f}}, chainOf(leaf)[:2]
		}, []error{ErrNoCRLSign}, []string{"lacks the cRLSign key usage"}},
		{"the responder is down", func(t *testing.T) (Config, []*x509.Certificate) {
			return Config{OCSP: true}, chainOf(inter.NewLeaf("client", testpki.OCSPServers(refusedURL(t))))[:2]
		}, []error{ErrResponderDown}, []string{"OCSP responder could not be reached"}},
		{"the responder answers with an error status", func(t *testing.T) (Config, []*x509.Certificate) {
			r := newResponder(t, inter, time.Now)
			r.code = 503
			return Config{OCSP: true}, chainOf(inter.NewLeaf("client", testpki.OCSPServers(r.URL())))[:2]
		}, []error{ErrResponderDown}, []string{"OCSP responder could not be reached"}},
		{"the responder does not know it", func(t *testing.T) (Config, []*x509.Certificate) {
			r := newResponder(t, inter, time.Now)
			leaf := inter.NewLeaf("client", testpki.OCSPServers(r.URL()))
			r.set(leaf, ocsp.Unknown)
			return Config{OCSP: true}, chainOf(leaf)[:2]
		}, []error{ErrResponderUnknown}, []string{"does not know the certificate"}},
		{"the distribution point is down", func(t *testing.T) (Config, []*x509.Certificate) {
			return Config{CRLFromCertificate: true}, chainOf(inter.NewLeaf("client", testpki.CRLDistributionPoints(refusedURL(t)+"c.crl")))[:2]
		}, []error{ErrCRLUnavailable}, []string{"CRL could not be fetched"}},
		{"a stale CRL and a dead responder", func(t *testing.T) (Config, []*x509.Certificate) {
			f := writeFile(t, t.TempDir(), "stale.crl", makeCRL(t, inter, crlOpts{
				thisUpdate: time.Now().Add(-3 * time.Hour), nextUpdate: time.Now().Add(-time.Hour)}))
			leaf := inter.NewLeaf("client", testpki.OCSPServers(refusedURL(t)))
			return Config{CRLs: []string{f}, OCSP: true}, chainOf(leaf)[:2]
		}, []error{ErrStale, ErrResponderDown}, []string{"past its nextUpdate", "OCSP responder could not be reached"}},
		{"no issuer", func(t *testing.T) (Config, []*x509.Certificate) {
			return Config{OCSP: true}, chainOf(inter.NewLeaf("client"))[:1]
		}, []error{ErrNoIssuer}, []string{"no issuer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, chain := tt.setup(t)
			r := newChecker(t, cfg).Check(ctx, chain)
			require.Equal(t, Unknown, r.Status, "err: %v", r.Err)
			text := Explain(r.Err)
			for _, e := range tt.want {
				assert.ErrorIs(t, r.Err, e)
			}
			for _, s := range tt.text {
				assert.Contains(t, text, s)
			}
			assert.NotContains(t, text, "127.0.0.1", "no URL")
			assert.NotContains(t, text, "CN=", "no names")
			assert.NotContains(t, text, "Explain", "no names")
		})
	}
}

// TestNoCRLSignIsNotRevoked checks that a CRL from an issuer that may not
// sign CRLs is not believed, even when it lists the certificate.
func TestNoCRLSignIsNotRevoked(t *testing.T) {
	root := testpki.NewRoot("Root")
	ca := root.NewIntermediate("No cRLSign", testpki.KeyUsage(x509.KeyUsageCertSign))
	leaf := ca.NewLeaf("client")
	f := writeFile(t, t.TempDir(), "nosign.crl", crlSignedWithout(t, ca, leaf))
	rec := &logRecorder{}
	r := newChecker(t, Config{CRLs: []string{f}, Logger: rec.log}).Check(context.Background(), chainOf(leaf)[:2])
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrNoCRLSign)
	assert.NotErrorIs(t, r.Err, ErrBadSignature)
	require.NotEmpty(t, rec.all(), "the unusable CRL is logged")
}

func TestExplainOther(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "", Explain(nil))
	assert.Equal(t, "no trustworthy current answer could be had", Explain(errors.New("something else")))
	assert.Equal(t, "no CRL or OCSP responder covers the certificate's issuer; the CRL is past its nextUpdate and no newer one could be loaded",
		Explain(errors.Join(ErrStale, ErrNotCovered)), "fixed order, whatever the wrapping order")
}
