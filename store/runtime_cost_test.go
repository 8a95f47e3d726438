package store

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// testClock is a settable clock for the runtime and memStorage.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counted is a runtime over counted in-memory storage on clock.
func counted(t *testing.T, clock *testClock) (*Runtime, *countingStorage) {
	t.Helper()
	cs := newCounting(newMemStorage(clock.now))
	r := NewRuntime(cs, "mtls_auth")
	r.now = clock.now
	require.NoError(t, r.Sync(context.Background()))
	cs.counts()
	return r, cs
}

// records makes n records for distinct leaves of one root.
func records(n int, prefix string) []Record {
	root := testpki.NewRoot("root " + prefix)
	out := make([]Record, n)
	for i := range out {
		alias := fmt.Sprintf("%s-%05d", prefix, i)
		out[i] = Record{Alias: alias, PEM: string(root.NewLeaf(alias).PEM())}
	}
	return out
}

// fill adds recs to api in batches and lets a minute pass, so their stamps
// are old enough to be trusted, then syncs once (the token moved).
func fill(t *testing.T, r *Runtime, clock *testClock, api string, recs []Record) {
	t.Helper()
	ctx := context.Background()
	for len(recs) > 0 {
		n := min(len(recs), 500)
		_, err := r.AddCerts(ctx, api, recs[:n])
		require.NoError(t, err)
		recs = recs[n:]
	}
	clock.advance(time.Minute)
	require.NoError(t, r.Sync(ctx))
}

// TestRuntimeChangeCostsDoNotGrow: one add or remove costs the same storage
// operations whether the API holds 10 or 1,000 certificates: an existence
// check, the record, the version token. No listing, no stat of the others.
func TestRuntimeChangeCostsDoNotGrow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	extra := records(2, "extra")
	for _, n := range []int{10, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			clock := newTestClock()
			r, cs := counted(t, clock)
			fill(t, r, clock, "api", records(n, "base"))
			cs.counts()

			_, err := r.AddCert(ctx, "api", extra[0])
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"Exists": 1, "Store": 2}, cs.counts(), "add")
			assert.Equal(t, n+1, r.Snapshot().APIs["api"].Len())

			require.NoError(t, r.RemoveCert(ctx, "api", extra[0].Alias))
			assert.Equal(t, map[string]int{"Exists": 1, "Delete": 1, "Store": 1}, cs.counts(), "remove")
			assert.Equal(t, n, r.Snapshot().APIs["api"].Len())

			_, err = r.AddCerts(ctx, "api", extra)
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"Exists": 2, "Store": 3}, cs.counts(), "bulk of 2: one token write for both")

			_, err = r.UpdateCert(ctx, "api", extra[1].Alias, func(rec *Record) error { rec.Tier = "gold"; return nil })
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"Load": 1, "Store": 2}, cs.counts(), "update")

			fp := FingerprintOf(mustParse(t, extra[1].PEM))
			_, err = r.Deny(ctx, DenyRecord{Fingerprint: fp.String()})
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"Store": 2}, cs.counts(), "deny")
			require.NoError(t, r.Undeny(ctx, fp.String()))
			assert.Equal(t, map[string]int{"Exists": 1, "Delete": 1, "Store": 1}, cs.counts(), "undeny")
		})
	}
}

// TestRuntimeIdleSyncCostsOneRead: once loaded, a sync with nothing changed
// reads the version record and nothing else, at any size.
func TestRuntimeIdleSyncCostsOneRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, n := range []int{10, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			clock := newTestClock()
			r, cs := counted(t, clock)
			fill(t, r, clock, "api", records(n, "r"))
			snap := r.Snapshot()
			cs.counts()
			for i := 0; i < 10; i++ {
				require.NoError(t, r.Sync(ctx))
			}
			assert.Equal(t, map[string]int{"Load": 10}, cs.counts())
			assert.Same(t, snap, r.Snapshot())
		})
	}
}

// TestRuntimeIdleSyncAt10000Records measures the idle sync loop of the
// issue's table: 10,000 records, sync_interval 500ms, 5 s = 10 ticks. It
// reports the operations (BENCHMARKS.md) and asserts them: one read of the
// version record per tick; no List (which stats every file it walks), no
// Stat, no Exists: 0 file-status calls against the target of 200.
func TestRuntimeIdleSyncAt10000Records(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 10,000 certificates")
	}
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	r, cs := counted(t, clock)
	fill(t, r, clock, "api", records(10000, "r"))
	require.Equal(t, 10000, r.Snapshot().APIs["api"].Len())
	cs.counts()
	const ticks = 10 // 5 s at 500ms
	for i := 0; i < ticks; i++ {
		require.NoError(t, r.Sync(ctx))
	}
	got := cs.counts()
	t.Logf("idle sync, 10,000 records, %d ticks: %v", ticks, got)
	assert.Equal(t, map[string]int{"Load": ticks}, got)
}

func mustParse(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates([]byte(pemText), "pem")
	require.NoError(t, err)
	require.Len(t, certs, 1)
	return certs[0]
}
