package revocation

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testocsp"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// TestOpenSSLResponder checks answers from the real `openssl ocsp`
// responder (internal/testocsp), signed by the CA and by a delegate.
func TestOpenSSLResponder(t *testing.T) {
	ctx := context.Background()
	root := testpki.NewRoot("OpenSSL Root")
	inter := root.NewIntermediate("OpenSSL Intermediate")
	delegate := inter.NewLeaf("OpenSSL OCSP responder", testpki.EKU(x509.ExtKeyUsageOCSPSigning))
	revokedAt := time.Now().Add(-3 * time.Hour).Truncate(time.Second)

	for _, signer := range []struct {
		name string
		cert *testpki.Cert
	}{{"signed by the CA", inter}, {"delegated responder", delegate}} {
		t.Run(signer.name, func(t *testing.T) {
			o := testocsp.Start(t, inter, signer.cert)
			url := o.URL()
			good := inter.NewLeaf("good client", testpki.OCSPServers(url), testpki.Serial(0x1001))
			revoked := inter.NewLeaf("revoked client", testpki.OCSPServers(url), testpki.Serial(0x1002))
			unknown := inter.NewLeaf("unknown client", testpki.OCSPServers(url), testpki.Serial(0x1003))
			o.SetIndex(t, testocsp.IndexLine(good, time.Time{}, "")+testocsp.IndexLine(revoked, revokedAt, "keyCompromise"))

			c := newChecker(t, Config{OCSP: true, OCSPTimeout: 5 * time.Second})
			r := c.Check(ctx, chainOf(good)[:2])
			require.Equal(t, Good, r.Status, "err: %v", r.Err)
			assert.WithinDuration(t, time.Now().Add(5*time.Minute), r.ValidUntil, time.Minute)

			r = c.Check(ctx, chainOf(revoked)[:2])
			require.Equal(t, Revoked, r.Status, "err: %v", r.Err)
			assert.Equal(t, 0, r.Which)
			assert.Equal(t, ocsp.KeyCompromise, r.RevocationReason)
			assert.WithinDuration(t, revokedAt, r.RevokedAt, 0)
			assert.Equal(t, "ocsp "+url, r.Source)

			r = c.Check(ctx, chainOf(unknown)[:2])
			assert.Equal(t, Unknown, r.Status)
			assert.ErrorIs(t, r.Err, ErrResponderUnknown)

			for range 10 {
				c.Check(ctx, chainOf(good)[:2])
				c.Check(ctx, chainOf(revoked)[:2])
			}
			assert.Equal(t, int64(3), o.Hits.Load(), "answers are cached")
		})
	}
}
