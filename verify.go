package mtlsauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
	"github.com/mtlsauth/caddy-mtls-auth/revocation"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// trustSet is the trust built from the configuration's files: the trust
// pool and the static allow list. It is immutable; a file reload swaps in a
// new one.
type trustSet struct {
	// pool is the trust_pool; nil when none is configured.
	pool *x509.CertPool
	// allow is the static allow list; nil when empty.
	allow *store.AllowList
	// inters remembers intermediates verified to pool.
	inters *pathverify.Intermediates
	// poolCAs are the pool's CAs where they can be listed, for the
	// expiry reports.
	poolCAs []poolCA
}

// verifier establishes whether a presented certificate chain is valid here
// and which allow-list entry, if any, admits it.
type verifier struct {
	static atomic.Pointer[trustSet]
	// runtime holds the deny list and the runtime allow lists; nil only in
	// tests that build a verifier by hand.
	runtime *store.Runtime
	// api names this route's runtime allow list; "" for none.
	api string
	// listed is true when the route pins certificates (allow, allow_dir or
	// api): the leaf must then be admitted by a list.
	listed bool
	// revocation checks CRLs/OCSP; nil when not configured.
	revocation *revocation.Checker
	softFail   bool
	logger     *zap.Logger
}

// verdict is the result of verifying one chain.
type verdict struct {
	reason reason // "" when the certificate is valid and allowed
	detail string // for the error message and logs; never certificate material
	entry  *store.Entry
	// For reuse of a success: the chain it rests on, the revocation
	// answers' validity, and whether it may be reused at all.
	chain           []*x509.Certificate
	revocationUntil time.Time
	noCache         bool
	// poolChain is the chain verified to the trust pool, leaf to root;
	// nil without a pool.
	poolChain []*x509.Certificate
}

// verify checks, in order: the deny list (it wins over everything), the
// leaf's validity window and extended key usage, the chain against the trust
// pool, then the allow lists. certs is leaf first.
func (v *verifier) verify(ctx context.Context, certs []*x509.Certificate, fp store.Fingerprint, now time.Time) verdict {
	snap := v.snapshot()
	if len(snap.Deny) > 0 {
		if vd, denied := v.denied(snap, certs, fp); denied {
			return vd
		}
	}
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
	ts := v.static.Load()
	// chain is what revocation checks and fetches URLs from: only
	// certificates on the verified chain, leaf first, each followed by its
	// issuer. A presented certificate that nothing verified is never on it,
	// so its URLs are never fetched.
	chain := certs[:1]
	if ts.pool != nil {
		verified, ok := ts.inters.Verify(ts.pool, leaf, certs[1:], now)
		if !ok {
			var r reason
			var detail string
			if verified, r, detail = verifyChain(ts.pool, leaf, certs[1:], now); r != "" {
				return verdict{reason: r, detail: detail}
			}
		}
		chain = verified
	}
	var entry *store.Entry
	if v.listed {
		var path []*x509.Certificate
		entry, path = v.match(ts, snap, leaf, fp, certs[1:], now)
		if entry == nil {
			return verdict{reason: reasonNotAllowed, detail: "certificate is not on this route's allow list"}
		}
		if ts.pool == nil {
			chain = path
			if !entry.IsCA() && v.revocation != nil {
				chain = withVerifiedIssuer(leaf, certs[1:])
			}
		}
	}
	vd := verdict{entry: entry, chain: chain}
	if ts.pool != nil {
		vd.poolChain = chain
	}
	if v.revocation != nil {
		r, detail, until, known := v.checkRevocation(ctx, chain, fp.String())
		if r != "" {
			return verdict{reason: r, detail: detail, entry: entry}
		}
		vd.revocationUntil, vd.noCache = until, !known
	}
	return vd
}

// expiry is when a verified result stops being reusable: the earliest
// NotAfter of the chain, and the revocation answers' validity.
func expiry(chain []*x509.Certificate, revocationUntil time.Time) time.Time {
	until := pathverify.NotAfter(chain)
	if !revocationUntil.IsZero() && revocationUntil.Before(until) {
		until = revocationUntil
	}
	return until
}

// match finds the allow-list entry, static or runtime, that admits leaf,
// and the chain the admission rests on (see store.AllowList.Match).
func (v *verifier) match(ts *trustSet, snap *store.Snapshot, leaf *x509.Certificate, fp store.Fingerprint, intermediates []*x509.Certificate, now time.Time) (*store.Entry, []*x509.Certificate) {
	if ts.allow != nil {
		if e, path := ts.allow.Match(leaf, fp, intermediates, now); e != nil {
			return e, path
		}
	}
	if v.api != "" {
		if list := snap.APIs[v.api]; list != nil {
			return list.Match(leaf, fp, intermediates, now)
		}
	}
	return nil, nil
}

// withVerifiedIssuer is the revocation chain of a pinned leaf verified by
// no pool: the leaf, followed by the presented certificate whose key
// verifies the leaf's signature, when there is one. That issuer's key is
// then genuine (it signed the pinned leaf) and may verify the leaf's CRL
// or OCSP answer; nothing vouches for the rest of that certificate, so as
// the chain's last certificate it is never itself checked and its URLs are
// never fetched.
func withVerifiedIssuer(leaf *x509.Certificate, presented []*x509.Certificate) []*x509.Certificate {
	for _, c := range presented {
		if string(c.RawSubject) == string(leaf.RawIssuer) && leaf.CheckSignatureFrom(c) == nil {
			return []*x509.Certificate{leaf, c}
		}
	}
	return []*x509.Certificate{leaf}
}

// snapshot is the runtime state to verify against.
func (v *verifier) snapshot() *store.Snapshot {
	if v.runtime == nil {
		return emptyRuntime
	}
	return v.runtime.Snapshot()
}

var emptyRuntime = &store.Snapshot{}

// denied checks every certificate of the presented chain against the deny
// list, so that denying a compromised intermediate refuses what it issued.
func (v *verifier) denied(snap *store.Snapshot, certs []*x509.Certificate, fp store.Fingerprint) (verdict, bool) {
	if d, ok := snap.Deny[fp]; ok {
		return verdict{reason: reasonDenied, detail: denyDetail("certificate", d)}, true
	}
	for _, c := range certs[1:] {
		if d, ok := snap.Deny[store.FingerprintOf(c)]; ok {
			return verdict{reason: reasonDenied, detail: denyDetail("a certificate in the chain", d)}, true
		}
	}
	return verdict{}, false
}

func denyDetail(what string, d store.DenyRecord) string {
	if d.Reason == "" {
		return what + " is on the deny list"
	}
	return what + " is on the deny list: " + d.Reason
}

// verifyChain verifies leaf to pool through the presented intermediates and
// returns the verified chain, leaf to root.
func verifyChain(pool *x509.CertPool, leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) ([]*x509.Certificate, reason, string) {
	chains, err := pathverify.Client(leaf, pool, intermediates, now)
	if err == nil {
		return chains[0], "", ""
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return nil, reasonExpired, "a certificate in the chain is outside its validity window"
		case x509.IncompatibleUsage:
			return nil, reasonWrongUsage, "the chain does not allow clientAuth"
		}
		return nil, reasonUntrusted, fmt.Sprintf("chain rejected (x509 reason %d)", inv.Reason)
	}
	return nil, reasonUntrusted, "chain does not verify to the trust pool"
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
