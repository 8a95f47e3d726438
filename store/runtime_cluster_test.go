package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair is two runtimes (two Caddy instances) over one counted storage.
func pair(t *testing.T, clock *testClock) (a, b *Runtime, cs *countingStorage) {
	t.Helper()
	cs = newCounting(newMemStorage(clock.now))
	a, b = NewRuntime(cs, "mtls_auth"), NewRuntime(cs, "mtls_auth")
	a.now, b.now = clock.now, clock.now
	require.NoError(t, a.Sync(context.Background()))
	require.NoError(t, b.Sync(context.Background()))
	return a, b, cs
}

func aliases(s *Snapshot, api string) []string {
	var out []string
	for _, e := range s.APIs[api].Entries() {
		out = append(out, e.Alias)
	}
	return out
}

// TestRuntimeInstancesSeeEachOther: every kind of change made on one
// instance reaches the other on its next sync, and a sync with nothing new
// costs one read again afterwards.
func TestRuntimeInstancesSeeEachOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	recs := records(3, "svc")

	_, err := a.AddCerts(ctx, "api", recs)
	require.NoError(t, err)
	require.NoError(t, b.Sync(ctx))
	assert.Equal(t, []string{"svc-00000", "svc-00001", "svc-00002"}, aliases(b.Snapshot(), "api"))

	_, err = b.UpdateCert(ctx, "api", "svc-00001", func(r *Record) error {
		r.Tier, r.Meta = "gold", map[string]string{"team": "x"}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, b.RemoveCert(ctx, "api", "svc-00002"))
	fp := FingerprintOf(mustParse(t, recs[0].PEM))
	_, err = b.Deny(ctx, DenyRecord{Fingerprint: fp.String(), Reason: "leaked"})
	require.NoError(t, err)

	require.NoError(t, a.Sync(ctx))
	snap := a.Snapshot()
	assert.Equal(t, []string{"svc-00000", "svc-00001"}, aliases(snap, "api"))
	assert.Equal(t, "gold", snap.APIs["api"].Alias("svc-00001").Tier)
	assert.Equal(t, "x", snap.APIs["api"].Alias("svc-00001").Meta["team"])
	assert.Equal(t, "leaked", snap.Deny[fp].Reason)

	require.NoError(t, b.Sync(ctx)) // b reloads once after its own changes
	cs.counts()
	for _, r := range []*Runtime{a, b, a, b} {
		require.NoError(t, r.Sync(ctx))
	}
	assert.Equal(t, map[string]int{"Load": 4}, cs.counts(), "quiet again: one read per sync")
	assert.Equal(t, aliases(a.Snapshot(), "api"), aliases(b.Snapshot(), "api"))
}

// TestRuntimeOverwrittenTokenStillSeen: b announces its change, then a's
// token write overwrites b's token before a has synced. a must still load
// b's change (a writer never adopts its own token), and b a's.
func TestRuntimeOverwrittenTokenStillSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, _ := pair(t, clock)
	recs := records(2, "x")
	_, err := b.AddCert(ctx, "api", recs[0])
	require.NoError(t, err)
	_, err = a.AddCert(ctx, "api", recs[1]) // overwrites b's token
	require.NoError(t, err)
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))
	assert.Equal(t, []string{"x-00000", "x-00001"}, aliases(a.Snapshot(), "api"))
	assert.Equal(t, []string{"x-00000", "x-00001"}, aliases(b.Snapshot(), "api"))
}

// TestRuntimeChangeDuringReloadSeenNextSync: another instance writes a
// record and its token while this one is reloading (after it read the
// token and listed). This reload misses it; the next must not.
func TestRuntimeChangeDuringReloadSeenNextSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	recs := records(2, "y")
	_, err := b.AddCert(ctx, "api", recs[0]) // a has a reload to do
	require.NoError(t, err)

	var once sync.Once
	cs.setBefore(func(op, key string) {
		if op == "Stat" {
			once.Do(func() {
				// b's write lands after a's token read and listing.
				_, err := b.AddCert(ctx, "api", recs[1])
				assert.NoError(t, err)
			})
		}
	})
	require.NoError(t, a.Sync(ctx))
	cs.setBefore(nil)
	require.Equal(t, []string{"y-00000"}, aliases(a.Snapshot(), "api"), "listed before b's write")
	require.NoError(t, a.Sync(ctx))
	assert.Equal(t, []string{"y-00000", "y-00001"}, aliases(a.Snapshot(), "api"))
}

// TestRuntimeParallelWritersTwoInstances: two instances add, remove and
// sync at once; when they stop, one sync each gives both the same, complete
// view.
func TestRuntimeParallelWritersTwoInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, _ := pair(t, clock)
	recs := records(200, "p")
	var wg sync.WaitGroup
	for w, r := range []*Runtime{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += 4 {
				_, err := r.AddCert(ctx, "api", recs[i])
				assert.NoError(t, err)
				if i%10 == 0 {
					assert.NoError(t, r.RemoveCert(ctx, "api", recs[i].Alias))
				}
				if i%7 == 0 {
					assert.NoError(t, r.Sync(ctx))
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))
	var want []string
	for i, rec := range recs {
		if i%10 != 0 {
			want = append(want, rec.Alias)
		}
	}
	assert.Equal(t, want, aliases(a.Snapshot(), "api"))
	assert.Equal(t, want, aliases(b.Snapshot(), "api"))
}

// TestRuntimeSameSizeRewriteInOneTick: a record rewritten with the same
// size within one tick of the storage's clock has an unchanged stamp; the
// other instance must still see the new content.
func TestRuntimeSameSizeRewriteInOneTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock() // frozen: every write gets the same time
	a, b, _ := pair(t, clock)
	rec := records(1, "z")[0]
	rec.Tier = "gold"
	_, err := a.AddCert(ctx, "api", rec)
	require.NoError(t, err)
	require.NoError(t, b.Sync(ctx))
	require.Equal(t, "gold", b.Snapshot().APIs["api"].Alias(rec.Alias).Tier)

	_, err = a.UpdateCert(ctx, "api", rec.Alias, func(r *Record) error { r.Tier = "iron"; return nil })
	require.NoError(t, err)
	require.NoError(t, b.Sync(ctx))
	assert.Equal(t, "iron", b.Snapshot().APIs["api"].Alias(rec.Alias).Tier)
}

// TestRuntimeOldStampsTrusted: once records are older than the racy
// window, a reload stats them and reads only what changed.
func TestRuntimeOldStampsTrusted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	fill(t, a, clock, "api", records(50, "o"))
	require.NoError(t, b.Sync(ctx))
	clock.advance(time.Minute)
	more := records(1, "new")
	_, err := a.AddCert(ctx, "api", more[0])
	require.NoError(t, err)
	cs.counts()
	require.NoError(t, b.Sync(ctx))
	// token + the new record; 2 lists (the deny folder is absent, which one
	// Exists confirms); 51 stats.
	assert.Equal(t, map[string]int{"Load": 2, "List": 2, "Exists": 1, "Stat": 51}, cs.counts())
	assert.Equal(t, 51, b.Snapshot().APIs["api"].Len())
}

// TestRuntimeAnnounceFailureRetried: the record is stored but the token
// write fails: the change stands locally, Sync reports the failure and
// retries it, and the other instance sees the change once it succeeds.
func TestRuntimeAnnounceFailureRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	down := errors.New("storage down")
	cs.setFail(func(op, key string) error {
		if op == "Store" && key == "mtls_auth/version" {
			return down
		}
		return nil
	})
	rec := records(1, "t")[0]
	_, err := a.AddCert(ctx, "api", rec)
	require.NoError(t, err, "the record is stored; only the announcement is late")
	assert.NotNil(t, a.Snapshot().APIs["api"].Alias(rec.Alias))
	require.NoError(t, b.Sync(ctx))
	assert.Nil(t, b.Snapshot().APIs["api"], "not announced yet")

	err = a.Sync(ctx)
	require.Error(t, err)
	assert.True(t, IsStorageError(err))
	assert.Contains(t, err.Error(), "storage down")

	cs.setFail(nil)
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))
	assert.NotNil(t, b.Snapshot().APIs["api"].Alias(rec.Alias))
}

// TestRuntimeStorageFailureKeepsSnapshot: a failing read of the token, a
// listing or a record keeps the last good state, and the next sync retries.
func TestRuntimeStorageFailureKeepsSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, op := range []string{"Load", "List", "Stat"} {
		t.Run(op, func(t *testing.T) {
			clock := newTestClock()
			a, b, cs := pair(t, clock)
			fill(t, a, clock, "api", records(3, "k"))
			require.NoError(t, b.Sync(ctx))
			before := b.Snapshot()
			require.NoError(t, a.RemoveCert(ctx, "api", "k-00000"))
			cs.setFail(func(o, key string) error {
				if o == op {
					return fmt.Errorf("%s failed", op)
				}
				return nil
			})
			err := b.Sync(ctx)
			require.Error(t, err)
			assert.True(t, IsStorageError(err))
			assert.Same(t, before, b.Snapshot())
			cs.setFail(nil)
			require.NoError(t, b.Sync(ctx))
			assert.Equal(t, []string{"k-00001", "k-00002"}, aliases(b.Snapshot(), "api"))
		})
	}
}

// TestRuntimeListingEntryVanished: a listing that fails with "not exist"
// while the folder exists (a file vanished under FileStorage's walk) is
// retried, and never read as "no records".
func TestRuntimeListingEntryVanished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	fill(t, a, clock, "api", records(3, "v"))
	require.NoError(t, b.Sync(ctx))
	before := b.Snapshot()
	_, err := a.AddCert(ctx, "api", records(1, "w")[0]) // b has a reload to do
	require.NoError(t, err)

	failures := 0
	cs.setFail(func(op, key string) error {
		if op == "List" && key == "mtls_auth/apis" && failures < 3 {
			failures++
			return fmt.Errorf("lstat mtls_auth/apis/api/certs/.tmp123: %w", fs.ErrNotExist)
		}
		return nil
	})
	err = b.Sync(ctx)
	require.Error(t, err)
	assert.True(t, IsStorageError(err))
	assert.Contains(t, err.Error(), "vanished")
	assert.Same(t, before, b.Snapshot(), "kept, not emptied")
	assert.Equal(t, 3, failures, "retried")

	failures = 1 // fails once more, then the retry succeeds
	require.NoError(t, b.Sync(ctx))
	assert.Equal(t, 4, b.Snapshot().APIs["api"].Len())
}

// TestRuntimeReloadDuringWritesOnFiles: over a real file storage, one
// instance reloads again and again while writes go on, its own and another
// instance's: its snapshot never loses a record that was there all along.
func TestRuntimeReloadDuringWritesOnFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fstore := &certmagic.FileStorage{Path: t.TempDir()}
	a, b := NewRuntime(fstore, "mtls_auth"), NewRuntime(fstore, "mtls_auth")
	base := records(100, "base")
	_, err := a.AddCerts(ctx, "api", base)
	require.NoError(t, err)
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))

	churn := records(40, "churn")
	var wg sync.WaitGroup
	for w, r := range []*Runtime{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(churn); i += 2 {
				_, err := r.AddCert(ctx, "api", churn[i])
				assert.NoError(t, err)
				assert.NoError(t, r.RemoveCert(ctx, "api", churn[i].Alias))
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for syncs := 0; ; syncs++ {
		select {
		case <-done:
			t.Logf("%d syncs during the writes", syncs)
			return
		default:
		}
		if err := a.Sync(ctx); err != nil {
			require.True(t, IsStorageError(err), "%v", err)
		}
		list := a.Snapshot().APIs["api"]
		for _, rec := range base {
			require.NotNil(t, list.Alias(rec.Alias), "sync %d lost %s", syncs, rec.Alias)
		}
	}
}
