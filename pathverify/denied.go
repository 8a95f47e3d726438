package pathverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"slices"
)

// usable returns nil when chain (leaf to anchor) may vouch for the leaf
// under r's deny list, else a denied certificate that stops it. The deny
// list reaches up to the root: an anchor that is not self-issued (an
// intermediate in a trust pool beside its root, or a CA entry under
// another) vouches only as far as a chain above it, through the other
// anchors, holds no denied certificate. So denying a root refuses what
// every intermediate under it issued, whether or not that intermediate is
// an anchor itself. Where there are several chains, one free of denied
// certificates is enough.
func (a *Anchors) usable(r *Request, chain []*x509.Certificate) *x509.Certificate {
	if r.denied == nil {
		return nil
	}
	if d := r.isDenied(chain); d != nil {
		return d
	}
	ups := a.above(chain[len(chain)-1])
	if len(ups) == 0 {
		return nil
	}
	var first *x509.Certificate
	for _, up := range ups {
		d := r.isDenied(up[1:])
		if d == nil {
			return nil
		}
		if first == nil {
			first = d
		}
	}
	return first
}

// above returns the chains from anchor up through the other anchors to a
// self-issued one (or one no other anchor signed), anchor first; none for
// an anchor that is self-issued or that no other anchor signed. They
// depend on the anchors alone and are remembered.
func (a *Anchors) above(anchor *x509.Certificate) [][]*x509.Certificate {
	return a.aboveFrom(anchor, nil)
}

// maxUpwardDepth bounds the chains above an anchor (anchors that sign
// each other, cross-signed roots, could otherwise loop).
const maxUpwardDepth = 8

func (a *Anchors) aboveFrom(anchor *x509.Certificate, below []*x509.Certificate) [][]*x509.Certificate {
	if bytes.Equal(anchor.RawIssuer, anchor.RawSubject) || len(below) >= maxUpwardDepth {
		return nil
	}
	fp := sha256.Sum256(anchor.Raw)
	if ups, ok := a.upward.Get(fp); ok {
		return ups
	}
	var ups [][]*x509.Certificate
	for _, parent := range a.parents(anchor) {
		if slices.ContainsFunc(below, parent.Equal) || parent.Equal(anchor) {
			continue // a loop
		}
		higher := a.aboveFrom(parent, append(below, anchor))
		if len(higher) == 0 {
			ups = append(ups, []*x509.Certificate{anchor, parent})
		}
		for _, h := range higher {
			ups = append(ups, append([]*x509.Certificate{anchor}, h...))
		}
	}
	if len(below) == 0 {
		a.upward.Add(fp, ups) // only complete answers are remembered
	}
	return ups
}

// parents returns the anchors whose key signed anchor.
func (a *Anchors) parents(anchor *x509.Certificate) []*x509.Certificate {
	// crypto/x509 takes a certificate that is itself in the pool as
	// verified at once; a copy with other bytes (the parsed fields, and so
	// the signature checks, are the same) makes it look for its issuers.
	// The time is the anchor's own start, when its issuer signed it, so
	// that the answer does not depend on when it is asked.
	probe := *anchor
	probe.Raw = append(slices.Clip(anchor.Raw), 0)
	chains, _ := probe.Verify(x509.VerifyOptions{
		Roots:       a.pool,
		CurrentTime: anchor.NotBefore,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	var out []*x509.Certificate
	for _, ch := range chains {
		if !slices.Contains(out, ch[1]) {
			out = append(out, ch[1])
		}
	}
	return out
}
