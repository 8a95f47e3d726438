package pathverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"time"
)

// edgeKey names one signature fact: child's signature verifies under
// parent's key, or, with a zero parent, under the key of one of the
// anchors. Such a fact holds whoever presents the two certificates and
// whenever: it depends on their bytes and the anchors alone.
type edgeKey struct {
	child, parent [sha256.Size]byte
}

var anchorParent [sha256.Size]byte

// trusted returns, in the order presented, the candidates of r that the
// anchors vouch for: those whose signature verifies under an anchor's key,
// or under the key of a candidate so vouched for, found top-down. Every
// signature it checks is made with an anchor's key or a vouched-for key,
// never with a key only the client vouches for; each is charged to r's
// budget, and remembered, so that the same certificates sent again cost
// lookups. A candidate left out can be on no valid path: path validation
// checks each certificate's signature under its issuer's key, from the
// leaf up to an anchor, so every intermediate of a valid path is vouched
// for, from the anchor down.
func (a *Anchors) trusted(r *Request) ([]*x509.Certificate, error) {
	n := len(r.cands)
	if n == 0 {
		return nil, nil
	}
	good := make([]bool, n)
	anchorTried := make([]bool, n)
	tried := make([]bool, n*n) // tried[child*n+parent]
	for changed := true; changed; {
		changed = false
		for i, c := range r.cands {
			if good[i] {
				continue
			}
			if !anchorTried[i] {
				anchorTried[i] = true
				ok, err := a.anchored(r, c)
				if err != nil {
					return nil, err
				}
				if ok {
					good[i], changed = true, true
					continue
				}
			}
			for j, p := range r.cands {
				if j == i || !good[j] || tried[i*n+j] || !bytes.Equal(p.cert.RawSubject, c.cert.RawIssuer) {
					continue
				}
				tried[i*n+j] = true
				ok, err := a.signedBy(r, c, p)
				if err != nil {
					return nil, err
				}
				if ok {
					good[i], changed = true, true
					break
				}
			}
		}
	}
	var out []*x509.Certificate
	for i, c := range r.cands {
		if good[i] {
			out = append(out, c.cert)
		}
	}
	return out, nil
}

// anchored reports whether c's signature verifies under the key of one of
// the anchors named as its issuer.
func (a *Anchors) anchored(r *Request, c *candidate) (bool, error) {
	checks := 1
	if a.subjects != nil {
		checks = a.subjects[string(c.cert.RawIssuer)]
		if checks == 0 {
			return false, nil // no anchor of that name: nothing to check
		}
	}
	return a.fact(r, edgeKey{child: c.fingerprint(), parent: anchorParent}, checks, func() bool {
		return anchorSigned(a.pool, c.cert, r.now)
	})
}

// signedBy reports whether c's signature verifies under p's key (p being
// vouched for), as path validation checks it: p must be allowed to sign
// certificates.
func (a *Anchors) signedBy(r *Request, c, p *candidate) (bool, error) {
	return a.fact(r, edgeKey{child: c.fingerprint(), parent: p.fingerprint()}, 1, func() bool {
		return c.cert.CheckSignatureFrom(p.cert) == nil
	})
}

// fact establishes one signature fact that costs checks signature checks,
// from memory or by check. It is charged to r's budget either way (and one
// that does not hold as a failure), so that whether a request fits its
// limits never depends on what was remembered from others; only the work
// is saved.
func (a *Anchors) fact(r *Request, key edgeKey, checks int, check func() bool) (bool, error) {
	if err := r.reserve(checks); err != nil {
		return false, err
	}
	ok, known := a.edges.Get(key)
	if !known {
		ok = check()
		r.performed += checks
		a.edges.Add(key, ok)
	}
	if !ok {
		r.fail()
	}
	return ok, nil
}

// anchorSigned reports whether c's signature verifies under the key of an
// anchor of pool, asking crypto/x509 (which alone can look inside a pool)
// to verify c itself to pool with no intermediates, so that it checks c's
// signature under the pool's certificates of c's issuer name and nothing
// else. Only that signature matters here: the time is moved into c's own
// validity window so that c's dates cannot hide the answer, and any error
// crypto/x509 gives after a signature verified (an expired anchor, a
// constraint, a policy) still means the signature verified. So the answer
// depends on c and the pool alone, not on the time. The full verification
// of the leaf checks everything else.
func anchorSigned(pool *x509.CertPool, c *x509.Certificate, now time.Time) bool {
	if c.NotAfter.Before(c.NotBefore) {
		return false // valid at no time: on no valid path
	}
	t := now
	if t.Before(c.NotBefore) {
		t = c.NotBefore
	} else if t.After(c.NotAfter) {
		t = c.NotAfter
	}
	_, err := c.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: t,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err == nil {
		return true
	}
	// crypto/x509 reports a candidate issuer that failed after its
	// signature check, and a chain refused after it was built, as a
	// CertificateInvalidError; a certificate no candidate signed is an
	// UnknownAuthorityError. The one CertificateInvalidError about c
	// itself before any signature work is its dates, ruled out above
	// (and refused here in case).
	var inv x509.CertificateInvalidError
	return errors.As(err, &inv) && !(inv.Cert == c && inv.Reason == x509.Expired)
}
