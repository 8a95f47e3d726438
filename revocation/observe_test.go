package revocation

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// observed counts what an Observer was told, as "method status".
type observed struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *observed) observe(method string, st Status) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[method+" "+st.String()]++
}

// take returns the counts so far and starts again.
func (o *observed) take() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.n
	o.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

func TestObserver(t *testing.T) {
	ctx := context.Background()
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	clk := newClock()
	resp := newResponder(t, inter, clk.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
	crlRevoked := inter.NewLeaf("revoked on the CRL", testpki.OCSPServers(resp.URL()))
	ocspRevoked := inter.NewLeaf("revoked by OCSP", testpki.OCSPServers(resp.URL()))
	resp.set(ocspRevoked, ocsp.Revoked)
	down := inter.NewLeaf("responder down", testpki.OCSPServers(refusedURL(t)))
	uncovered := inter.NewLeaf("no responder")
	fresh := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(30 * time.Minute), revoked: serials(crlRevoked)}
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, inter, fresh))
	obs := &observed{}
	c := newChecker(t, Config{CRLs: []string{f}, OCSP: true, Now: clk.Now, Observer: obs.observe})

	tests := []struct {
		name   string
		cert   *testpki.Cert
		status Status
		want   map[string]int
	}{
		// The CRL answers from memory, OCSP needs the network: the
		// certificate is looked at twice but reported once.
		{"both good", leaf, Good, map[string]int{"crl good": 1, "ocsp good": 1}},
		{"cached both good", leaf, Good, map[string]int{"crl good": 1, "ocsp good": 1}},
		{"revoked on the CRL, OCSP not asked", crlRevoked, Revoked, map[string]int{"crl revoked": 1}},
		{"revoked by OCSP", ocspRevoked, Revoked, map[string]int{"crl good": 1, "ocsp revoked": 1}},
		{"responder down", down, Good, map[string]int{"crl good": 1, "ocsp unknown": 1}},
		{"no responder: OCSP does not cover it", uncovered, Good, map[string]int{"crl good": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Check(ctx, chainOf(tt.cert)[:2])
			require.Equal(t, tt.status, r.Status, r.Err)
			assert.Equal(t, tt.want, obs.take())
		})
	}

	// Past the CRL's nextUpdate, with the responder down: both unknown.
	clk.Advance(time.Hour)
	require.Equal(t, Unknown, c.Check(ctx, chainOf(down)[:2]).Status)
	assert.Equal(t, map[string]int{"crl unknown": 1, "ocsp unknown": 1}, obs.take())

	// A whole chain: each certificate but the root is reported.
	root := testpki.NewRoot("Root 2")
	inter2 := root.NewIntermediate("Intermediate 2")
	leaf2 := inter2.NewLeaf("client 2")
	dir := t.TempDir()
	c2 := newChecker(t, Config{
		CRLs:     []string{writeFile(t, dir, "root.crl", makeCRL(t, root, crlOpts{})), writeFile(t, dir, "inter.crl", makeCRL(t, inter2, crlOpts{}))},
		Observer: obs.observe,
	})
	require.Equal(t, Good, c2.Check(ctx, chainOf(leaf2)).Status)
	assert.Equal(t, map[string]int{"crl good": 2}, obs.take())
}

func TestCRLState(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	clk := newClock()
	fresh := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(24 * time.Hour)}
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, h.inter, fresh))
	c := newChecker(t, Config{CRLs: []string{f}, OCSP: true, Now: clk.Now})

	want := CRLState{Name: f, ThisUpdate: fresh.thisUpdate.UTC().Truncate(time.Second), NextUpdate: fresh.nextUpdate.UTC().Truncate(time.Second), LastRefresh: clk.Now()}
	got := c.CRLs()
	require.Len(t, got, 1)
	assertCRLState(t, want, got[0])
	assert.Equal(t, 0, c.OCSPCacheLen())

	// A broken replacement: the CRL in use stays, the error shows.
	clk.Advance(time.Minute)
	rewriteFile(t, f, []byte("not a CRL"))
	require.Error(t, c.Refresh(ctx))
	got = c.CRLs()
	want.LastRefresh = clk.Now()
	assertCRLState(t, want, got[0])
	assert.ErrorContains(t, got[0].LastError, f)

	// Fixed: the new CRL's dates, no error.
	clk.Advance(time.Minute)
	next := crlOpts{thisUpdate: clk.Now().Add(-time.Minute), nextUpdate: clk.Now().Add(48 * time.Hour), number: 2}
	rewriteFile(t, f, makeCRL(t, h.inter, next))
	require.NoError(t, c.Refresh(ctx))
	want = CRLState{Name: f, ThisUpdate: next.thisUpdate.UTC().Truncate(time.Second), NextUpdate: next.nextUpdate.UTC().Truncate(time.Second), LastRefresh: clk.Now()}
	assertCRLState(t, want, c.CRLs()[0])
	assert.NoError(t, c.CRLs()[0].LastError)

	// OCSP answers (and failures) are counted in the cache.
	c.Check(ctx, chainOf(h.inter.NewLeaf("ocsp client", testpki.OCSPServers(refusedURL(t))))[:2])
	assert.Equal(t, 1, c.OCSPCacheLen())
}

// assertCRLState compares all but LastError, which callers check.
func assertCRLState(t *testing.T, want, got CRLState) {
	t.Helper()
	assert.Equal(t, want.Name, got.Name)
	assert.True(t, want.ThisUpdate.Equal(got.ThisUpdate), "thisUpdate %s, want %s", got.ThisUpdate, want.ThisUpdate)
	assert.True(t, want.NextUpdate.Equal(got.NextUpdate), "nextUpdate %s, want %s", got.NextUpdate, want.NextUpdate)
	assert.True(t, want.LastRefresh.Equal(got.LastRefresh), "last refresh %s, want %s", got.LastRefresh, want.LastRefresh)
}
