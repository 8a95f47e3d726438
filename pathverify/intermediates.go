package pathverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxIntermediates bounds the remembered intermediates of one Intermediates.
const maxIntermediates = 1024

// Intermediates remembers intermediates that verified to one trust pool, so
// that a new leaf under a known intermediate costs one signature check
// instead of a whole chain. It belongs to one pool: a reload of the pool
// needs a new, empty one. Bounded (least recently used out first) and safe
// for concurrent use.
type Intermediates struct {
	m *lru.Cache[[sha256.Size]byte, *interEntry]
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

// NewIntermediates makes an empty Intermediates.
func NewIntermediates() *Intermediates {
	m, _ := lru.New[[sha256.Size]byte, *interEntry](maxIntermediates) // errs only for a size < 1
	return &Intermediates{m: m}
}

// Len is the number of intermediates remembered.
func (in *Intermediates) Len() int { return in.m.Len() }

// Verify verifies leaf for client authentication at now through the
// presented intermediate that issued it, remembering that intermediate's
// own path to pool. It returns the chain, leaf to root. ok is false when
// this fast path does not apply or fails; the caller then verifies the
// whole chain (with Client), which also names the reason of a failure.
func (in *Intermediates) Verify(pool *x509.CertPool, leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) (chain []*x509.Certificate, ok bool) {
	if in == nil {
		return nil, false
	}
	issuer := findIssuer(leaf, presented)
	if issuer == nil {
		return nil, false
	}
	fp := sha256.Sum256(issuer.Raw)
	e, _ := in.m.Get(fp)
	if e == nil || !now.Before(e.expires) {
		if e = newInterEntry(pool, issuer, presented, now); e == nil {
			return nil, false
		}
		in.m.Add(fp, e)
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
	chains, err := Client(issuer, pool, presented, now)
	if err != nil {
		return nil
	}
	chain := chains[0]
	e := &interEntry{chain: chain, expires: NotAfter(chain)}
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
