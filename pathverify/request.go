package pathverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Limits bound the work one request may cause.
type Limits struct {
	// MaxChain is the most certificates one chain may hold, leaf included
	// (the route's max_chain, with its default filled in).
	MaxChain int
}

// maxChain is MaxChain, which must be positive (zero allows the leaf
// alone).
func (l Limits) maxChain() int { return max(1, l.MaxChain) }

// MaxChecks is the most signature checks one request may spend on finding
// which presented intermediates chain to the anchors: twice max_chain. A
// legitimate chain needs one per intermediate, and a few more where
// several certificates share a name (a cross-signed or re-keyed CA).
func (l Limits) MaxChecks() int { return 2 * l.maxChain() }

// MaxFailedChecks is the most of those checks that may fail: a quarter of
// max_chain, at least 2 (2 by default). A failed check is a presented
// certificate whose signature did not verify under the key its issuer's
// name points to (where several anchors share that name, checking it
// under all of them is one failed check). A legitimate chain fails one
// only where two CA certificates share a name but not a key (an outdated
// root a client still sends, a re-keyed CA), while every check a forged
// "intermediate" costs fails: this is what bounds the cost of chains a
// client makes up.
func (l Limits) MaxFailedChecks() int { return max(2, l.maxChain()/4) }

// ErrChainTooLong is returned by NewRequest when the chain holds more
// certificates than MaxChain.
var ErrChainTooLong = errors.New("chain too long")

// ErrTooManyChecks is returned when verifying a request would take more
// signature checks than its Limits allow.
var ErrTooManyChecks = errors.New("too many signature checks")

// DeniedError is returned when the leaf verifies, but every chain it
// verifies through holds a denied certificate.
type DeniedError struct {
	// Cert is a denied certificate of the first such chain.
	Cert *x509.Certificate
}

func (e *DeniedError) Error() string { return "every verified chain holds a denied certificate" }

// Request is one client's chain as verification sees it: the leaf, and
// the presented certificates that could be on a path from it. It keeps the
// request's signature-check budget, shared by every verification of the
// request (the trust pool and the allow lists). Not safe for concurrent
// use: a request is verified on one goroutine.
type Request struct {
	leaf   *x509.Certificate
	cands  []*candidate
	now    time.Time
	denied func(*x509.Certificate) bool
	limits Limits
	checks int // signature checks charged (made, or remembered)
	failed int // of which failed
	// performed counts the signature checks actually made.
	performed int
}

// candidate is a presented certificate that may be an intermediate.
type candidate struct {
	cert   *x509.Certificate
	fp     [sha256.Size]byte
	hashed bool
}

func (c *candidate) fingerprint() [sha256.Size]byte {
	if !c.hashed {
		c.fp, c.hashed = sha256.Sum256(c.cert.Raw), true
	}
	return c.fp
}

// NewRequest prepares the verification of leaf, presented with
// intermediates, at now. denied, when not nil, names the certificates no
// verified chain may hold (the deny list). Before any signature work it
// drops what can never be on a path from leaf to an anchor:
//
//   - the leaf itself and exact duplicates;
//   - certificates no chain from the leaf can reach by name: path
//     building only ever tries, as the issuer of a certificate, one whose
//     subject is that certificate's issuer, so a certificate whose subject
//     is not the issuer of the leaf or of another kept certificate is never
//     tried (a client's stray self-signed certificate, a forged
//     certificate under a made-up name).
//
// Certificates that share a subject and a key are kept: a cross-signed CA
// is one subject and key under two issuers, and either may be the one that
// chains to the anchors. It returns ErrChainTooLong when leaf and
// intermediates are more than Limits.MaxChain certificates.
func NewRequest(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time, limits Limits, denied func(*x509.Certificate) bool) (*Request, error) {
	if n := 1 + len(intermediates); n > limits.maxChain() {
		return nil, fmt.Errorf("%w: %d certificates, over the limit of %d", ErrChainTooLong, n, limits.maxChain())
	}
	r := &Request{leaf: leaf, now: now, denied: denied, limits: limits}
	if len(intermediates) == 0 {
		return r, nil
	}
	kept := make([]bool, len(intermediates))
	// names holds the issuers a kept certificate may have: reachable
	// subjects. It grows as certificates are kept, until nothing changes.
	names := [][]byte{leaf.RawIssuer}
	for changed := true; changed; {
		changed = false
		for i, c := range intermediates {
			if kept[i] || !containsName(names, c.RawSubject) || isDuplicate(leaf, intermediates, kept, c) {
				continue
			}
			kept[i], changed = true, true
			r.cands = append(r.cands, &candidate{cert: c})
			if !containsName(names, c.RawIssuer) {
				names = append(names, c.RawIssuer)
			}
		}
	}
	return r, nil
}

func containsName(names [][]byte, name []byte) bool {
	for _, n := range names {
		if bytes.Equal(n, name) {
			return true
		}
	}
	return false
}

// isDuplicate reports whether c is the leaf or the same certificate as one
// already kept.
func isDuplicate(leaf *x509.Certificate, all []*x509.Certificate, kept []bool, c *x509.Certificate) bool {
	if c == leaf || bytes.Equal(c.Raw, leaf.Raw) {
		return true
	}
	for i, k := range all {
		if kept[i] && (k == c || bytes.Equal(k.Raw, c.Raw)) {
			return true
		}
	}
	return false
}

// Leaf is the request's leaf.
func (r *Request) Leaf() *x509.Certificate { return r.leaf }

// Checks reports the signature checks charged to this request so far (a
// remembered answer is charged as the check it saves, so that limits
// never depend on what other requests left behind), how many of them
// failed, and how many were actually made.
func (r *Request) Checks() (charged, failed, performed int) { return r.checks, r.failed, r.performed }

// reserve accounts for n signature checks about to be made (of one
// certificate, which may fail), or returns ErrTooManyChecks (and nothing
// is spent) when they could break a limit: work over the limits is never
// done. The caller reports a failure with fail.
func (r *Request) reserve(n int) error {
	if r.checks+n > r.limits.MaxChecks() || r.failed+1 > r.limits.MaxFailedChecks() {
		return fmt.Errorf("%w: a request may spend %d, of which %d may fail", ErrTooManyChecks, r.limits.MaxChecks(), r.limits.MaxFailedChecks())
	}
	r.checks += n
	return nil
}

// fail records that the reserved checks of one certificate failed.
func (r *Request) fail() { r.failed++ }

// isDenied reports whether chain holds a denied certificate, and which.
func (r *Request) isDenied(chain []*x509.Certificate) *x509.Certificate {
	if r.denied == nil {
		return nil
	}
	for _, c := range chain {
		if r.denied(c) {
			return c
		}
	}
	return nil
}

// LeafSigner returns a presented certificate whose key verifies the
// leaf's signature, or nil. Nothing vouches for that key (it serves where
// the leaf itself is pinned, to check the leaf's revocation): it is the
// client's choice, so each check comes out of the request's budget as one
// that may fail, and none is made over its limits.
func (r *Request) LeafSigner() *x509.Certificate {
	for _, c := range r.cands {
		if !bytes.Equal(c.cert.RawSubject, r.leaf.RawIssuer) {
			continue
		}
		if r.reserve(1) != nil {
			return nil
		}
		r.performed++
		if r.leaf.CheckSignatureFrom(c.cert) == nil {
			return c.cert
		}
		r.fail()
	}
	return nil
}
