package revocation

import (
	"context"
	"crypto/x509"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestOCSPStatus(t *testing.T) {
	ctx := context.Background()
	root := testpki.NewRoot("OCSP Root")
	inter := root.NewIntermediate("OCSP Intermediate")
	impostor := root.NewIntermediate("OCSP Intermediate")
	delegated := inter.NewLeaf("OCSP responder", testpki.EKU(x509.ExtKeyUsageOCSPSigning))
	client := inter.NewLeaf("a client", testpki.EKU(x509.ExtKeyUsageClientAuth))
	expiredDelegate := inter.NewLeaf("OCSP responder", testpki.EKU(x509.ExtKeyUsageOCSPSigning), testpki.Expired())

	tests := []struct {
		name   string
		setup  func(r *responder, leaf *testpki.Cert)
		status Status
		errIs  error
		want   string // in Err
		ttl    time.Duration
	}{
		{name: "good", status: Good, ttl: time.Hour},
		{name: "revoked", setup: func(r *responder, leaf *testpki.Cert) { r.set(leaf, ocsp.Revoked) }, status: Revoked, ttl: time.Hour},
		{name: "unknown", setup: func(r *responder, leaf *testpki.Cert) { r.set(leaf, ocsp.Unknown) }, status: Unknown, errIs: ErrResponderUnknown},
		{name: "delegated responder", setup: func(r *responder, _ *testpki.Cert) { r.signer = delegated }, status: Good, ttl: time.Hour},
		{name: "delegated responder revokes", setup: func(r *responder, leaf *testpki.Cert) {
			r.signer = delegated
			r.set(leaf, ocsp.Revoked)
		}, status: Revoked, ttl: time.Hour},
		{name: "responder without OCSPSigning", setup: func(r *responder, _ *testpki.Cert) { r.signer = client }, status: Unknown, errIs: ErrBadSignature, want: "OCSPSigning"},
		{name: "expired responder certificate", setup: func(r *responder, _ *testpki.Cert) { r.signer = expiredDelegate }, status: Unknown, want: "validity"},
		{name: "signed by an impostor", setup: func(r *responder, _ *testpki.Cert) { r.signer, r.certID = impostor, impostor }, status: Unknown, want: "another issuer"},
		{name: "impostor signing for the issuer's name", setup: func(r *responder, _ *testpki.Cert) { r.signer = impostor }, status: Unknown, errIs: ErrBadSignature},
		{name: "CertID of another issuer", setup: func(r *responder, _ *testpki.Cert) { r.certID = impostor }, status: Unknown, want: "another issuer"},
		{name: "no nextUpdate", setup: func(r *responder, _ *testpki.Cert) {
			r.tweak = func(t *ocsp.Response) { t.NextUpdate = time.Time{} }
		}, status: Good, ttl: noNextUpdateTTL},
		{name: "old answer without nextUpdate", setup: func(r *responder, _ *testpki.Cert) {
			r.tweak = func(t *ocsp.Response) { t.ThisUpdate, t.NextUpdate = t.ThisUpdate.Add(-2*time.Hour), time.Time{} }
		}, status: Unknown, want: "too old"},
		{name: "expired answer", setup: func(r *responder, _ *testpki.Cert) {
			r.tweak = func(t *ocsp.Response) {
				t.ThisUpdate, t.NextUpdate = t.ThisUpdate.Add(-3*time.Hour), t.NextUpdate.Add(-2*time.Hour)
			}
		}, status: Unknown, want: "expired"},
		{name: "answer from the future", setup: func(r *responder, _ *testpki.Cert) {
			r.tweak = func(t *ocsp.Response) {
				t.ThisUpdate, t.NextUpdate = t.ThisUpdate.Add(time.Hour), t.NextUpdate.Add(time.Hour)
			}
		}, status: Unknown, want: "not valid before"},
		{name: "small clock skew is fine", setup: func(r *responder, _ *testpki.Cert) {
			r.tweak = func(t *ocsp.Response) { t.ThisUpdate = t.ThisUpdate.Add(3 * time.Minute) }
		}, status: Good, ttl: time.Hour},
		{name: "HTTP 500", setup: func(r *responder, _ *testpki.Cert) { r.code = http.StatusInternalServerError }, status: Unknown, want: "HTTP status 500"},
		{name: "tryLater", setup: func(r *responder, _ *testpki.Cert) { r.raw = ocsp.TryLaterErrorResponse }, status: Unknown, want: "try later"},
		{name: "unauthorized", setup: func(r *responder, _ *testpki.Cert) { r.raw = ocsp.UnauthorizedErrorResponse }, status: Unknown, want: "unauthorized"},
		{name: "garbage", setup: func(r *responder, _ *testpki.Cert) { r.raw = []byte("<html>") }, status: Unknown},
		{name: "too large", setup: func(r *responder, _ *testpki.Cert) { r.raw = make([]byte, maxOCSPResponseBytes+1) }, status: Unknown, errIs: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			r := newResponder(t, inter, clk.Now)
			leaf := inter.NewLeaf("client", testpki.OCSPServers(r.URL()))
			if tt.setup != nil {
				tt.setup(r, leaf)
			}
			c := newChecker(t, Config{OCSP: true, Now: clk.Now})
			res := c.Check(ctx, chainOf(leaf)[:2])
			assert.Equal(t, tt.status, res.Status, "err: %v", res.Err)
			if tt.status == Good {
				assert.NoError(t, res.Err)
				assert.Equal(t, -1, res.Which)
			} else {
				assert.Equal(t, 0, res.Which)
			}
			if tt.errIs != nil {
				assert.ErrorIs(t, res.Err, tt.errIs)
			}
			if tt.want != "" {
				assert.ErrorContains(t, res.Err, tt.want)
			}
			if tt.ttl != 0 {
				assert.WithinDuration(t, clk.Now().Add(tt.ttl), res.ValidUntil, 0)
			}
			if tt.status == Revoked {
				assert.Equal(t, "ocsp "+r.URL(), res.Source)
				assert.Equal(t, ocsp.KeyCompromise, res.RevocationReason)
				assert.WithinDuration(t, clk.Now().Add(-2*time.Hour), res.RevokedAt, time.Second)
			}
			// A second check is answered from the cache.
			again := c.Check(ctx, chainOf(leaf)[:2])
			assert.Equal(t, res.Status, again.Status)
			assert.Equal(t, int64(1), r.hits.Load())
		})
	}
}

func TestOCSPResponderDown(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	t.Run("connection refused", func(t *testing.T) {
		leaf := inter.NewLeaf("client", testpki.OCSPServers(refusedURL(t)))
		c := newChecker(t, Config{OCSP: true, OCSPTimeout: 5 * time.Second})
		start := time.Now()
		r := c.Check(ctx, chainOf(leaf)[:2])
		assert.Less(t, time.Since(start), 2*time.Second, "refused is not a timeout")
		assert.Equal(t, Unknown, r.Status)
		assert.ErrorContains(t, r.Err, "refused")
	})
	t.Run("hanging", func(t *testing.T) {
		clk := newClock()
		resp := newResponder(t, inter, clk.Now)
		resp.delay = 10 * time.Second
		leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
		c := newChecker(t, Config{OCSP: true, OCSPTimeout: 300 * time.Millisecond, Now: clk.Now})
		start := time.Now()
		r := c.Check(ctx, chainOf(leaf)[:2])
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 300*time.Millisecond)
		assert.Less(t, took, 2*time.Second)
		assert.Equal(t, Unknown, r.Status)
		assert.ErrorIs(t, r.Err, context.DeadlineExceeded)

		// The failure is remembered briefly: no second wait.
		start = time.Now()
		assert.Equal(t, Unknown, c.Check(ctx, chainOf(leaf)[:2]).Status)
		assert.Less(t, time.Since(start), 100*time.Millisecond)
		assert.Equal(t, int64(1), resp.hits.Load())

		// After failureTTL it is asked again, and now answers.
		resp.mu.Lock()
		resp.delay = 0
		resp.mu.Unlock()
		clk.Advance(failureTTL)
		assert.Equal(t, Good, c.Check(ctx, chainOf(leaf)[:2]).Status)
		assert.Equal(t, int64(2), resp.hits.Load())
	})
	t.Run("caller gives up first", func(t *testing.T) {
		resp := newResponder(t, inter, time.Now)
		resp.delay = 10 * time.Second
		leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
		c := newChecker(t, Config{OCSP: true})
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		r := c.Check(cctx, chainOf(leaf)[:2])
		assert.Less(t, time.Since(start), time.Second)
		assert.Equal(t, Unknown, r.Status)
		assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
	})
	t.Run("whole chain in parallel", func(t *testing.T) {
		root := testpki.NewRoot("Root")
		resp := newResponder(t, root, time.Now)
		resp.delay = 10 * time.Second
		inter := root.NewIntermediate("Intermediate", testpki.OCSPServers(resp.URL()))
		leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
		c := newChecker(t, Config{OCSP: true, OCSPTimeout: time.Second})
		start := time.Now()
		r := c.Check(ctx, chainOf(leaf))
		assert.Less(t, time.Since(start), 1900*time.Millisecond, "one timeout, not two")
		assert.Equal(t, Unknown, r.Status)
		assert.Equal(t, 0, r.Which)
		assert.Equal(t, int64(2), resp.hits.Load())
	})
}

func TestOCSPCache(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	clk := newClock()
	resp := newResponder(t, inter, clk.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()), testpki.Serial(4242))
	c := newChecker(t, Config{OCSP: true, Now: clk.Now})
	for range 100 {
		require.Equal(t, Good, c.Check(ctx, chainOf(leaf)[:2]).Status)
	}
	assert.Equal(t, int64(1), resp.hits.Load())

	// Revoked meanwhile; the cached answer holds until its nextUpdate.
	resp.set(leaf, ocsp.Revoked)
	clk.Advance(time.Hour - time.Second)
	assert.Equal(t, Good, c.Check(ctx, chainOf(leaf)[:2]).Status)
	clk.Advance(time.Second)
	assert.Equal(t, Revoked, c.Check(ctx, chainOf(leaf)[:2]).Status)
	assert.Equal(t, int64(2), resp.hits.Load())

	// Another certificate with the same serial from another issuer is
	// another entry.
	other := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	twin := other.NewLeaf("client", testpki.OCSPServers(resp.URL()), testpki.Serial(4242))
	assert.NotEqual(t, appendOCSPKey(nil, leaf.Cert, inter.Cert), appendOCSPKey(nil, twin.Cert, other.Cert))
	otherResp := newResponder(t, other, clk.Now)
	twin = other.NewLeaf("client", testpki.OCSPServers(otherResp.URL()), testpki.Serial(4242))
	assert.Equal(t, Good, c.Check(ctx, chainOf(twin)[:2]).Status)
	assert.Equal(t, int64(1), otherResp.hits.Load())
}

func TestOCSPCacheBound(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	resp := newResponder(t, inter, time.Now)
	a := inter.NewLeaf("a", testpki.OCSPServers(resp.URL()))
	b := inter.NewLeaf("b", testpki.OCSPServers(resp.URL()))
	c := newChecker(t, Config{OCSP: true, MaxCachedOCSP: 1})
	for range 3 {
		require.Equal(t, Good, c.Check(ctx, chainOf(a)[:2]).Status)
		require.Equal(t, Good, c.Check(ctx, chainOf(b)[:2]).Status)
	}
	assert.Equal(t, int64(6), resp.hits.Load())
	assert.Equal(t, 1, c.ocsp.lru.Len())
}

func TestOCSPCoalesces(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	resp := newResponder(t, inter, time.Now)
	resp.gate, resp.seen = make(chan struct{}), make(chan struct{}, 100)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
	c := newChecker(t, Config{OCSP: true})

	const n = 20
	var started, done sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			results[i] = c.Check(ctx, chainOf(leaf)[:2])
		}()
	}
	started.Wait()
	<-resp.seen
	time.Sleep(100 * time.Millisecond) // let the others reach the lookup
	close(resp.gate)
	done.Wait()
	for _, r := range results {
		assert.Equal(t, Good, r.Status, r.Err)
	}
	assert.Equal(t, int64(1), resp.hits.Load())
}

func TestOCSPConfiguredResponder(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	resp := newResponder(t, inter, time.Now)
	aia := newResponder(t, inter, time.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(aia.URL()))
	bare := inter.NewLeaf("no AIA")
	resp.set(leaf, ocsp.Revoked)

	c := newChecker(t, Config{OCSP: true, OCSPResponder: resp.URL()})
	assert.Equal(t, Revoked, c.Check(ctx, chainOf(leaf)[:2]).Status)
	assert.Equal(t, Good, c.Check(ctx, chainOf(bare)[:2]).Status)
	assert.Equal(t, int64(2), resp.hits.Load())
	assert.Equal(t, int64(0), aia.hits.Load())

	c = newChecker(t, Config{OCSP: true})
	r := c.Check(ctx, chainOf(bare)[:2])
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrNotCovered)
	ldap := inter.NewLeaf("ldap only", testpki.OCSPServers("ldap://x/"))
	assert.ErrorIs(t, c.Check(ctx, chainOf(ldap)[:2]).Err, ErrNotCovered)
}

func TestCRLAndOCSPTogether(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	clk := newClock()
	resp := newResponder(t, inter, clk.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
	crlOnly := inter.NewLeaf("revoked on the CRL", testpki.OCSPServers(resp.URL()))
	fresh := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(30 * time.Minute), revoked: serials(crlOnly)}
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, inter, fresh))
	c := newChecker(t, Config{CRLs: []string{f}, OCSP: true, Now: clk.Now})

	// Both good: ValidUntil is the earliest (the refresh horizon of the CRL).
	r := c.Check(ctx, chainOf(leaf)[:2])
	require.Equal(t, Good, r.Status, r.Err)
	assert.WithinDuration(t, clk.Now().Add(DefaultRefreshInterval), r.ValidUntil, 0)

	// The CRL revokes, whatever OCSP says; OCSP is not even asked.
	assert.Equal(t, Revoked, c.Check(ctx, chainOf(crlOnly)[:2]).Status)
	assert.Equal(t, int64(1), resp.hits.Load())

	// OCSP revokes what the CRL does not list yet.
	other := inter.NewLeaf("revoked by OCSP", testpki.OCSPServers(resp.URL()))
	resp.set(other, ocsp.Revoked)
	r = c.Check(ctx, chainOf(other)[:2])
	assert.Equal(t, Revoked, r.Status)
	assert.Equal(t, "ocsp "+resp.URL(), r.Source)

	// OCSP fails: the CRL's good answer is enough.
	third := inter.NewLeaf("third", testpki.OCSPServers(refusedURL(t)))
	assert.Equal(t, Good, c.Check(ctx, chainOf(third)[:2]).Status)

	// The CRL goes stale but OCSP answers: good.
	clk.Advance(time.Hour)
	assert.Equal(t, Good, c.Check(ctx, chainOf(leaf)[:2]).Status)
	// Both fail: Unknown, with both reasons.
	r = c.Check(ctx, chainOf(third)[:2])
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrStale)
	assert.ErrorContains(t, r.Err, "refused")
}
