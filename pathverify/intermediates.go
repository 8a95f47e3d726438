package pathverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxIntermediates bounds the remembered intermediates of one Intermediates.
const maxIntermediates = 1024

// Intermediates remembers intermediates that issued a verified leaf, with
// the chain from each to an anchor, so that a new leaf under a known
// intermediate costs one signature check instead of a whole chain (the
// fast path). It belongs to one Anchors. Bounded (least recently used out
// first) and safe for concurrent use.
//
// The fast path gives a verdict only where full verification, of this
// request's certificates alone, gives the same: the request must present
// the remembered chain and nothing else that could be on a path (the
// anchor aside), the chain must hold no denied certificate, and have
// nothing the leaf could break that the one check does not see (see
// fastPathOK); otherwise full verification runs. It never refuses: a
// failure here falls through to full verification, which names the
// reason.
type Intermediates struct {
	m *lru.Cache[[sha256.Size]byte, *interEntry]
}

// interEntry is one remembered intermediate.
type interEntry struct {
	// anchor holds just the intermediate, as the root of the leaf's
	// verification; nil when the fast path does not apply (fastPathOK).
	anchor *x509.CertPool
	// chain runs from the intermediate to an anchor.
	chain []*x509.Certificate
	// fps are the fingerprints of chain. A request must present every one
	// but the last (the anchor), and nothing else that could be on a path
	// (it may present the anchor), for the fast path to apply.
	fps [][sha256.Size]byte
	// The window in which every certificate of chain is valid.
	notBefore, notAfter time.Time
}

// NewIntermediates makes an empty Intermediates.
func NewIntermediates() *Intermediates {
	m, _ := lru.New[[sha256.Size]byte, *interEntry](maxIntermediates) // errs only for a size < 1
	return &Intermediates{m: m}
}

// Len is the number of intermediates remembered.
func (in *Intermediates) Len() int { return in.m.Len() }

// remember records the issuer of a verified chain (leaf first, anchor
// last) when it is a presented intermediate.
func (in *Intermediates) remember(chain []*x509.Certificate) {
	if in == nil || len(chain) < 3 {
		return // nil, or the leaf's issuer is the anchor itself
	}
	fp := sha256.Sum256(chain[1].Raw)
	upper := chain[1:]
	if e, ok := in.m.Peek(fp); ok && sameChain(e.chain, upper) {
		return
	}
	e := &interEntry{chain: upper, notBefore: upper[0].NotBefore, notAfter: NotAfter(upper)}
	for _, c := range upper[1:] {
		if c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
	}
	for _, c := range upper {
		e.fps = append(e.fps, sha256.Sum256(c.Raw))
	}
	if fastPathOK(upper) {
		e.anchor = x509.NewCertPool()
		e.anchor.AddCert(upper[0])
	}
	in.m.Add(fp, e)
}

func sameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}

// fastPath verifies r's leaf through a remembered intermediate that r
// presents as its issuer, and returns the chain, leaf to anchor; nil when
// the fast path does not apply or fails. A chain usable refuses (the deny
// list) is left to full verification, which decides among all chains.
func (in *Intermediates) fastPath(r *Request, usable func(*Request, []*x509.Certificate) *x509.Certificate) []*x509.Certificate {
	if in == nil || hasPolicyConstraints(r.leaf) {
		// A leaf's own requireExplicitPolicy makes the whole chain's
		// policies matter, which the one check does not see.
		return nil
	}
	for _, c := range r.cands {
		if !bytes.Equal(c.cert.RawSubject, r.leaf.RawIssuer) {
			continue
		}
		e, _ := in.m.Get(c.fingerprint())
		if e == nil || e.anchor == nil || r.now.Before(e.notBefore) || r.now.After(e.notAfter) || !r.presentsExactly(e.fps) {
			continue
		}
		chain := append([]*x509.Certificate{r.leaf}, e.chain...)
		if usable(r, chain) != nil {
			continue
		}
		if _, err := verifyClient(r.leaf, e.anchor, nil, r.now); err != nil {
			continue
		}
		return chain
	}
	return nil
}

// presentsExactly reports whether the request's candidates are the
// certificates of a remembered chain (fps, anchor last): all of them but
// the anchor, and the anchor or nothing else. Full verification of such a
// request checks only certificates that verified before, each under its
// issuer on the chain, and accepts the chain; with any other candidate it
// could fail checks over the limits, which only full verification knows.
func (r *Request) presentsExactly(fps [][sha256.Size]byte) bool {
	n := len(fps) - 1 // without the anchor
	if len(r.cands) < n || len(r.cands) > n+1 {
		return false
	}
	for _, c := range r.cands {
		if !slices.Contains(fps, c.fingerprint()) {
			return false
		}
	}
	for _, fp := range fps[:n] {
		if !slices.ContainsFunc(r.cands, func(c *candidate) bool { return c.fingerprint() == fp }) {
			return false
		}
	}
	return true
}

// fastPathOK reports whether verifying a leaf against chain[0] alone (as a
// trust anchor) enforces everything that verifying the full chain would.
// A trust anchor is not held to the checks of an intermediate, and the
// certificates above it never see the leaf, so the fast path needs:
//   - chain[0] to be a CA allowed to sign certificates;
//   - no path length limit above it that one more intermediate would break;
//   - no name constraints above it (they would apply to the leaf's names);
//   - no policy constraints or mappings anywhere in the chain (and none in
//     the leaf, checked in fastPath): then policy validation cannot fail.
//
// Validity and extended key usage are per certificate: those of chain
// were checked when it verified, and its validity window is kept with it.
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
