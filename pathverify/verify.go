// Package pathverify is X.509 path validation for client certificates
// whose chain the client chose: verifying a leaf to a set of trust anchors
// for client authentication at a bounded cost, and remembering what was
// learnt about presented intermediates, so that a certificate seen before
// costs a lookup instead of signature checks.
//
// Where the load balancer forwards a chain it did not verify, every
// presented certificate is the client's choice, keys included. Go's path
// building starts at the leaf and checks its signature under every
// presented certificate that names itself as the issuer: the key of each
// check is then the client's. Verification here goes the other way: a
// presented intermediate is used only once its own signature verified
// under an anchor's key or under the key of an intermediate so verified
// (see trusted.go), so every signature check runs with a key the anchors
// vouch for; the checks one request may spend are capped (Limits); and
// crypto/x509 then verifies the leaf through those intermediates only,
// which gives exactly the verdict it gives with every presented
// certificate (an intermediate that no anchor vouches for is on no valid
// path).
//
// Nothing remembered ever adds trust: what is remembered is a fact about
// certificates and the anchors alone (this signature verifies under that
// key), never about the client that presented them, so a request's verdict
// is the one a freshly started verifier gives.
//
// The package has no Caddy imports and no init().
package pathverify

import (
	"crypto/sha256"
	"crypto/x509"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Bounds of what one Anchors remembers: signature facts about presented
// certificates, and chains above anchors.
const (
	maxEdges  = 4096
	maxUpward = 1024
)

// Anchors is a set of trust anchors (a trust pool, or the CA entries of an
// allow list) with what was learnt about presented certificates against
// it. It belongs to one set of anchors: when they change, a new Anchors
// starts empty, so nothing learnt outlives them. Safe for concurrent use.
type Anchors struct {
	pool *x509.CertPool
	// subjects counts the anchors of each subject (DER): how many
	// signature checks finding a certificate's issuer among them costs.
	// nil when the pool does not list them (a platform's system pool).
	subjects map[string]int
	// size is the number of anchors the pool lists.
	size int
	// edges remembers signature facts (see trusted.go).
	edges *lru.Cache[edgeKey, bool]
	// issuers remembers verified issuers of leaves for the fast path; nil
	// when the fast path is off (see intermediates.go).
	issuers *Intermediates
	// upward remembers, for an anchor that is not self-issued, the
	// chains from it up through the other anchors (see denied.go).
	upward *lru.Cache[[sha256.Size]byte, [][]*x509.Certificate]
}

// NewAnchors makes an Anchors for pool. remember turns on the fast path
// for a new leaf under a known intermediate (one signature check); it is
// for a trust pool, where any one verified chain will do. Leave it off
// where the caller chooses among all verified chains (the most specific
// CA entry of an allow list).
func NewAnchors(pool *x509.CertPool, remember bool) *Anchors {
	edges, _ := lru.New[edgeKey, bool](maxEdges) // errs only for a size < 1
	upward, _ := lru.New[[sha256.Size]byte, [][]*x509.Certificate](maxUpward)
	a := &Anchors{pool: pool, edges: edges, upward: upward}
	//lint:ignore SA1019 the pools here are built with AddCert (Caddy's CA pool modules, allow lists), which Subjects lists; an empty list is taken as unknown
	if subjects := pool.Subjects(); len(subjects) > 0 {
		a.size = len(subjects)
		a.subjects = make(map[string]int, len(subjects))
		for _, s := range subjects {
			a.subjects[string(s)]++
		}
	}
	if remember {
		a.issuers = NewIntermediates()
	}
	return a
}

// Len is the number of anchors the pool lists (0 for a platform's system
// pool, which lists none).
func (a *Anchors) Len() int { return a.size }

// Verify verifies the request's leaf for client authentication at its
// time, to the anchors, through the presented intermediates that the
// anchors vouch for. It returns the verified chains (leaf first, each
// certificate followed by its issuer, the anchor last) that hold no denied
// certificate; with the fast path, only the one it found. Errors: those of
// x509.Certificate.Verify; ErrTooManyChecks; *DeniedError when chains
// verify but each holds a denied certificate (see denied.go: the chains
// above an anchor count too).
func (a *Anchors) Verify(r *Request) ([][]*x509.Certificate, error) {
	if chain := a.issuers.fastPath(r, a.usable); chain != nil {
		return [][]*x509.Certificate{chain}, nil
	}
	good, err := a.trusted(r)
	if err != nil {
		return nil, err
	}
	chains, err := verifyClient(r.leaf, a.pool, good, r.now)
	if err != nil {
		return nil, err
	}
	var denied *x509.Certificate
	kept := chains[:0]
	for _, chain := range chains {
		if d := a.usable(r, chain); d != nil {
			if denied == nil {
				denied = d
			}
			continue
		}
		kept = append(kept, chain)
	}
	if len(kept) == 0 {
		return nil, &DeniedError{Cert: denied}
	}
	a.issuers.remember(kept[0])
	return kept, nil
}

// verifyClient is x509.Certificate.Verify for client authentication at
// now, to roots, through intermediates.
func verifyClient(cert *x509.Certificate, roots *x509.CertPool, intermediates []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	var pool *x509.CertPool
	if len(intermediates) > 0 {
		pool = x509.NewCertPool()
		for _, c := range intermediates {
			pool.AddCert(c)
		}
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
