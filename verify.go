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
// new one, and with it everything learnt about presented certificates.
type trustSet struct {
	// pool is the trust_pool, with what was learnt about presented
	// intermediates against it; nil when none is configured.
	pool *pathverify.Anchors
	// allow is the static allow list; nil when empty.
	allow *store.AllowList
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
	// limits bound the chain and the signature checks of one request.
	limits pathverify.Limits
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
	// admitted is the path the allow entry's admission rests on (leaf to
	// the CA entry) when it is not chain (a trust pool and allow_ca both
	// configured): a reused success must not outlive it either.
	admitted []*x509.Certificate
}

// verify checks, in order: the deny list against every presented
// certificate, the leaf's validity window and extended key usage, the
// chain against the trust pool, then the allow lists, then revocation.
// certs is leaf first; their keys were checked against the limits before
// (decoder.CheckKeys), so no signature work runs with an oversized key.
//
// The deny list wins over everything, and reaches what the client does not
// send: a chain verified to the pool or to a CA entry counts only if it
// holds no denied certificate (root, intermediate, or the CA entry), so a
// client whose every verified chain passes through a denied certificate
// is refused as denied, however the chain was verified.
func (v *verifier) verify(ctx context.Context, certs []*x509.Certificate, fp store.Fingerprint, now time.Time) verdict {
	snap := v.snapshot()
	var denied func(*x509.Certificate) bool
	if len(snap.Deny) > 0 {
		if vd, isDenied := v.denied(snap, certs, fp); isDenied {
			return vd
		}
		denied = func(c *x509.Certificate) bool {
			_, ok := snap.Deny[store.FingerprintOf(c)]
			return ok
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
	req, err := pathverify.NewRequest(leaf, certs[1:], now, v.limits, denied)
	if err != nil {
		return verdict{reason: reasonTooLarge, detail: err.Error()}
	}
	ts := v.static.Load()
	// chain is what revocation checks and fetches URLs from: only
	// certificates on the verified chain, leaf first, each followed by its
	// issuer. A presented certificate that nothing verified is never on it,
	// so its URLs are never fetched.
	chain := certs[:1]
	if ts.pool != nil {
		chains, err := ts.pool.Verify(req)
		if err != nil {
			r, detail := chainFailure(snap, err)
			return verdict{reason: r, detail: detail}
		}
		chain = chains[0]
	}
	var entry *store.Entry
	var admitted []*x509.Certificate
	if v.listed {
		var path []*x509.Certificate
		entry, path, err = v.match(ts, snap, req, fp)
		if err != nil {
			r, detail := chainFailure(snap, err)
			return verdict{reason: r, detail: detail}
		}
		if entry == nil {
			return verdict{reason: reasonNotAllowed, detail: "certificate is not on this route's allow list"}
		}
		if ts.pool == nil {
			chain = path
			if !entry.IsCA() && v.revocation != nil {
				chain = withVerifiedIssuer(req)
			}
		} else {
			admitted = path
		}
	}
	vd := verdict{entry: entry, chain: chain, admitted: admitted}
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
// NotAfter of the chain and of the allow entry's path (a cold Caddy refuses
// the request once either has expired), and the revocation answers'
// validity.
func (vd *verdict) expiry() time.Time {
	until := pathverify.NotAfter(vd.chain)
	if len(vd.admitted) > 0 {
		if a := pathverify.NotAfter(vd.admitted); a.Before(until) {
			until = a
		}
	}
	if !vd.revocationUntil.IsZero() && vd.revocationUntil.Before(until) {
		until = vd.revocationUntil
	}
	return until
}

// match finds the allow-list entry, static or runtime, that admits the
// request's leaf, and the chain the admission rests on (see
// store.AllowList.Match).
func (v *verifier) match(ts *trustSet, snap *store.Snapshot, req *pathverify.Request, fp store.Fingerprint) (*store.Entry, []*x509.Certificate, error) {
	if ts.allow != nil {
		if e, path, err := ts.allow.Match(req, fp); e != nil || err != nil {
			return e, path, err
		}
	}
	if v.api != "" {
		if list := snap.APIs[v.api]; list != nil {
			return list.Match(req, fp)
		}
	}
	return nil, nil, nil
}

// withVerifiedIssuer is the revocation chain of a pinned leaf verified by
// no pool: the leaf, followed by the presented certificate whose key
// verifies the leaf's signature, when there is one. That issuer's key is
// then genuine (it signed the pinned leaf) and may verify the leaf's CRL
// or OCSP answer; nothing vouches for the rest of that certificate, so as
// the chain's last certificate it is never itself checked and its URLs are
// never fetched. Its key is the client's choice: the checks come out of
// the request's budget (pathverify.Request.LeafSigner).
func withVerifiedIssuer(req *pathverify.Request) []*x509.Certificate {
	if c := req.LeafSigner(); c != nil {
		return []*x509.Certificate{req.Leaf(), c}
	}
	return []*x509.Certificate{req.Leaf()}
}

// snapshot is the runtime state to verify against.
func (v *verifier) snapshot() *store.Snapshot {
	if v.runtime == nil {
		return emptyRuntime
	}
	return v.runtime.Snapshot()
}

var emptyRuntime = &store.Snapshot{}

// denied checks every certificate the client presented against the deny
// list, whether or not it is on a verified chain, so that denying a
// certificate refuses whoever sends it. (Verified chains are checked too:
// see verify.)
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

// chainFailure is the reason and detail of a chain that did not verify
// (to the pool or to an allow list's CA entries).
func chainFailure(snap *store.Snapshot, err error) (reason, string) {
	var denied *pathverify.DeniedError
	if errors.As(err, &denied) {
		return reasonDenied, denyDetail("a certificate in the verified chain", snap.Deny[store.FingerprintOf(denied.Cert)])
	}
	if errors.Is(err, pathverify.ErrTooManyChecks) {
		return reasonUntrusted, err.Error()
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
