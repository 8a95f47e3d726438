package mtlsauth

import (
	"bytes"
	"crypto/x509"
	"sync"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// maxIntermediates bounds the verified-intermediates cache of a trust set.
const maxIntermediates = 1024

// intermediates remembers intermediates that verified to a trust pool, so
// that a new leaf under a known intermediate costs one signature check
// instead of a whole chain. It belongs to one trust set: a reload of the
// pool makes a new, empty one.
type intermediates struct {
	mu sync.RWMutex
	m  map[store.Fingerprint]*interEntry
}

// interEntry is one intermediate's verdict.
type interEntry struct {
	// anchor holds just the intermediate, as the root of the leaf's
	// verification; nil when the fast path does not apply (see fastPathOK).
	anchor *x509.CertPool
	// chain runs from the intermediate to a root of the pool.
	chain   []*x509.Certificate
	expires time.Time
}

func newIntermediates() *intermediates {
	return &intermediates{m: make(map[store.Fingerprint]*interEntry)}
}

// verifyViaIntermediate verifies leaf through the presented intermediate
// that issued it, using (or filling) the cache. ok is false when the fast
// path does not apply; the caller then verifies the whole chain.
func (in *intermediates) verifyViaIntermediate(pool *x509.CertPool, leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) (chain []*x509.Certificate, ok bool) {
	if in == nil {
		return nil, false
	}
	issuer := findIssuer(leaf, presented)
	if issuer == nil {
		return nil, false
	}
	fp := store.FingerprintOf(issuer)
	in.mu.RLock()
	e := in.m[fp]
	in.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		if e = newInterEntry(pool, issuer, presented, now); e == nil {
			return nil, false
		}
		in.mu.Lock()
		if len(in.m) >= maxIntermediates {
			for k := range in.m { // arbitrary: map order is random
				delete(in.m, k)
				break
			}
		}
		in.m[fp] = e
		in.mu.Unlock()
	}
	if e.anchor == nil {
		return nil, false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       e.anchor,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, false // let the full verification name the reason
	}
	return append([]*x509.Certificate{leaf}, e.chain...), true
}

// findIssuer is the presented certificate named as leaf's issuer.
func findIssuer(leaf *x509.Certificate, presented []*x509.Certificate) *x509.Certificate {
	for _, c := range presented {
		if !bytes.Equal(c.RawSubject, leaf.RawIssuer) {
			continue
		}
		if len(leaf.AuthorityKeyId) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(leaf.AuthorityKeyId, c.SubjectKeyId) {
			continue
		}
		return c
	}
	return nil
}

// newInterEntry verifies issuer to pool. It returns nil when issuer does
// not verify (the full verification then reports why, and nothing is
// remembered), and an entry without anchor when the chain has properties
// that split verification would not enforce.
func newInterEntry(pool *x509.CertPool, issuer *x509.Certificate, presented []*x509.Certificate, now time.Time) *interEntry {
	chains, err := store.VerifyClient(issuer, pool, presented, now)
	if err != nil {
		return nil
	}
	chain := chains[0]
	e := &interEntry{chain: chain, expires: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotAfter.Before(e.expires) {
			e.expires = c.NotAfter
		}
	}
	if fastPathOK(chain) {
		e.anchor = x509.NewCertPool()
		e.anchor.AddCert(issuer)
	}
	return e
}

// fastPathOK reports whether verifying a leaf against chain[0] alone (as a
// trust anchor) enforces everything that verifying the full chain would.
// A trust anchor is not held to the checks of an intermediate, and the
// certificates above it never see the leaf, so the fast path needs:
//   - chain[0] to be a CA allowed to sign certificates;
//   - no path length limit above it that one more intermediate would break;
//   - no name constraints above it (they would apply to the leaf's names);
//   - no policy constraints or mappings anywhere in the chain.
func fastPathOK(chain []*x509.Certificate) bool {
	issuer := chain[0]
	if !issuer.BasicConstraintsValid || !issuer.IsCA {
		return false
	}
	if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return false
	}
	for i, c := range chain {
		if hasPolicyConstraints(c) {
			return false
		}
		if i == 0 {
			continue
		}
		// In the full chain (leaf first), c has i intermediates below it.
		if c.BasicConstraintsValid && c.MaxPathLen >= 0 && i > c.MaxPathLen {
			return false
		}
		if hasNameConstraints(c) {
			return false
		}
	}
	return true
}

func hasNameConstraints(c *x509.Certificate) bool {
	return len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+len(c.PermittedIPRanges)+
		len(c.ExcludedIPRanges)+len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses)+
		len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0 || c.PermittedDNSDomainsCritical
}

func hasPolicyConstraints(c *x509.Certificate) bool {
	return len(c.PolicyMappings) > 0 || c.RequireExplicitPolicy > 0 || c.RequireExplicitPolicyZero ||
		c.InhibitPolicyMapping > 0 || c.InhibitPolicyMappingZero || c.InhibitAnyPolicy > 0 || c.InhibitAnyPolicyZero
}
