// Package pathverify is X.509 path validation for client certificates:
// verifying a chain to a set of roots for client authentication, and
// remembering intermediates that verified, so that a new leaf under a known
// intermediate costs one signature check instead of a whole chain.
//
// The package has no Caddy imports and no init().
package pathverify

import (
	"crypto/x509"
	"time"
)

// Client verifies cert for client authentication at now, to roots, through
// intermediates (cert itself is skipped if it is among them). It returns
// the chains as x509.Certificate.Verify does, leaf to root.
func Client(cert *x509.Certificate, roots *x509.CertPool, intermediates []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	var pool *x509.CertPool
	for _, c := range intermediates {
		if c == cert {
			continue
		}
		if pool == nil {
			pool = x509.NewCertPool()
		}
		pool.AddCert(c)
	}
	return cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// NotAfter is the earliest NotAfter of a non-empty chain: when a verdict
// resting on the whole chain stops holding.
func NotAfter(chain []*x509.Certificate) time.Time {
	until := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	return until
}
