package mtlsauth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// verifier establishes whether a presented certificate chain is valid here
// and which allow-list entry, if any, admits it. Built once at provision.
type verifier struct {
	// pool is the trust_pool; nil when none is configured.
	pool *x509.CertPool
	// allow is the static allow list; nil when none is configured.
	allow *store.AllowList
}

// verdict is the result of verifying one chain.
type verdict struct {
	reason reason // "" when the certificate is valid and allowed
	detail string // for the error message and logs; never certificate material
	entry  *store.Entry
}

// verify checks the leaf's validity window and extended key usage, then the
// chain against the trust pool, then the allow list. certs is leaf first.
func (v *verifier) verify(certs []*x509.Certificate, fp store.Fingerprint, now time.Time) verdict {
	leaf := certs[0]
	if now.Before(leaf.NotBefore) {
		return verdict{reason: reasonNotYetValid, detail: "certificate is valid from " + leaf.NotBefore.UTC().Format(time.RFC3339)}
	}
	if now.After(leaf.NotAfter) {
		return verdict{reason: reasonExpired, detail: "certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)}
	}
	if !clientAuthAllowed(leaf) {
		return verdict{reason: reasonWrongUsage, detail: "certificate's extended key usage does not include clientAuth"}
	}
	if v.pool != nil {
		if r, detail := v.verifyChain(leaf, certs[1:], now); r != "" {
			return verdict{reason: r, detail: detail}
		}
	}
	if v.allow == nil {
		return verdict{}
	}
	e := v.allow.Match(leaf, fp, certs[1:], now)
	if e == nil {
		return verdict{reason: reasonNotAllowed, detail: "certificate is not on this route's allow list"}
	}
	return verdict{entry: e}
}

// verifyChain verifies leaf to the trust pool through the presented
// intermediates.
func (v *verifier) verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) (reason, string) {
	var inter *x509.CertPool
	if len(intermediates) > 0 {
		inter = x509.NewCertPool()
		for _, c := range intermediates {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		return "", ""
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return reasonExpired, "a certificate in the chain is outside its validity window"
		case x509.IncompatibleUsage:
			return reasonWrongUsage, "the chain does not allow clientAuth"
		}
		return reasonUntrusted, fmt.Sprintf("chain rejected (x509 reason %d)", inv.Reason)
	}
	return reasonUntrusted, "chain does not verify to the trust pool"
}

// clientAuthAllowed reports whether the certificate may be used for client
// authentication: it names clientAuth or anyExtendedKeyUsage, or has no
// extended key usage extension at all (RFC 5280: no restriction).
func clientAuthAllowed(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}
