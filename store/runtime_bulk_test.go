package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// storedKeys lists the record keys in storage.
func storedKeys(t *testing.T, cs *countingStorage) []string {
	t.Helper()
	keys, err := cs.Storage.List(context.Background(), "mtls_auth", true)
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range keys {
		if strings.HasSuffix(k, ".json") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestRuntimeBulkRejectsAsAWhole: one bad element refuses the whole
// request, names the element, and writes nothing.
func TestRuntimeBulkRejectsAsAWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := testpki.NewRoot("root")
	good := func(alias string) Record { return Record{Alias: alias, PEM: string(root.NewLeaf(alias).PEM())} }
	clock := newTestClock()
	r, cs := counted(t, clock)
	existing := good("existing")
	_, err := r.AddCert(ctx, "api", existing)
	require.NoError(t, err)
	// Another instance stored this one; r has not loaded it.
	require.NoError(t, cs.Storage.Store(ctx, "mtls_auth/apis/api/certs/elsewhere.json", []byte(`{}`)))
	before := r.Snapshot()
	keysBefore := storedKeys(t, cs)
	dup := good("dup")

	tests := []struct {
		name  string
		recs  []Record
		index int
		want  error
		msg   string
	}{
		{name: "bad pem", recs: []Record{good("a"), good("b"), {Alias: "c", PEM: "nope"}}, index: 2, want: ErrInvalid, msg: "PEM"},
		{name: "bad alias", recs: []Record{good("a"), {Alias: "../x", PEM: good("x").PEM}}, index: 1, want: ErrInvalid, msg: "alias"},
		{name: "expired", recs: []Record{good("a"), {Alias: "old", PEM: string(root.NewLeaf("old", testpki.Expired()).PEM())}}, index: 1, want: ErrInvalid, msg: "expired on"},
		{name: "not yet valid", recs: []Record{{Alias: "soon", PEM: string(root.NewLeaf("soon", testpki.NotYetValid()).PEM())}}, index: 0, want: ErrInvalid, msg: "not valid before"},
		{name: "alias twice", recs: []Record{good("a"), good("b"), good("a")}, index: 2, want: ErrInvalid, msg: "also given by element 0"},
		{name: "certificate twice", recs: []Record{dup, {Alias: "dup2", PEM: dup.PEM}}, index: 1, want: ErrInvalid, msg: "also given by element 0"},
		{name: "alias exists", recs: []Record{good("a"), good("existing")}, index: 1, want: ErrConflict, msg: "already exists"},
		{name: "alias stored by another instance", recs: []Record{good("a"), good("elsewhere")}, index: 1, want: ErrConflict, msg: "already exists"},
		{name: "certificate listed", recs: []Record{good("a"), {Alias: "again", PEM: existing.PEM}}, index: 1, want: ErrConflict, msg: "already in API 'api' as 'existing'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.AddCerts(ctx, "api", tt.recs)
			var item *ItemError
			require.ErrorAs(t, err, &item)
			assert.Equal(t, tt.index, item.Index)
			assert.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), fmt.Sprintf("element %d: ", tt.index))
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
	_, err = r.AddCerts(ctx, "api", nil)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.Same(t, before, r.Snapshot(), "no failed bulk changed the snapshot")
	assert.Equal(t, keysBefore, storedKeys(t, cs), "no failed bulk wrote a record")
}

// TestRuntimeBulkStorageFailureRollsBack: the storage fails on the 5th of 8
// writes: the ones written are removed, the error names the element, and
// nothing changes but a token (other instances may have seen them).
func TestRuntimeBulkStorageFailureRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	r, cs := counted(t, clock)
	recs := records(8, "b")
	cs.setFail(func(op, key string) error {
		if op == "Store" && strings.HasSuffix(key, "/b-00004.json") {
			return errors.New("disk full")
		}
		return nil
	})
	before := r.Snapshot()
	_, err := r.AddCerts(ctx, "api", recs)
	var item *ItemError
	require.ErrorAs(t, err, &item)
	assert.Equal(t, 4, item.Index)
	assert.True(t, IsStorageError(err))
	assert.Contains(t, err.Error(), "disk full")
	assert.Same(t, before, r.Snapshot())
	assert.Empty(t, storedKeys(t, cs), "every written record was removed")

	cs.setFail(nil)
	_, err = r.AddCerts(ctx, "api", recs)
	require.NoError(t, err, "nothing is left claimed after a failure")
	assert.Len(t, storedKeys(t, cs), 8)
}

// TestRuntimeBulkAddsAll: a bulk add is visible at once and survives a
// reload and a restart.
func TestRuntimeBulkAddsAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	r, cs := counted(t, clock)
	recs := records(30, "m")
	recs[3].Tier, recs[3].Meta = "gold", map[string]string{"k": "v"}
	entries, err := r.AddCerts(ctx, "api", recs)
	require.NoError(t, err)
	require.Len(t, entries, 30)
	for i, e := range entries {
		assert.Equal(t, recs[i].Alias, e.Alias)
		assert.Equal(t, clock.now().UTC(), e.AddedAt)
	}
	assert.Equal(t, 30, r.Snapshot().APIs["api"].Len())
	assert.Equal(t, "gold", r.Snapshot().APIs["api"].Alias("m-00003").Tier)

	require.NoError(t, r.Sync(ctx))
	fresh := NewRuntime(cs, "mtls_auth")
	require.NoError(t, fresh.Sync(ctx))
	assert.Equal(t, aliases(r.Snapshot(), "api"), aliases(fresh.Snapshot(), "api"))
	got := fresh.Snapshot().APIs["api"].Alias("m-00003")
	assert.Equal(t, "v", got.Meta["k"])
	assert.True(t, got.AddedAt.Equal(entries[3].AddedAt))
}

// TestRuntimeUpdateCert: an update changes tier and meta only.
func TestRuntimeUpdateCert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	r, _ := counted(t, clock)
	recs := records(2, "u")
	added, err := r.AddCerts(ctx, "api", recs)
	require.NoError(t, err)
	clock.advance(time.Minute)

	e, err := r.UpdateCert(ctx, "api", "u-00000", func(rec *Record) error {
		rec.Tier, rec.Meta = "gold", map[string]string{"a": "b"}
		rec.Alias, rec.PEM, rec.AddedAt = "other", recs[1].PEM, time.Time{} // ignored
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "u-00000", e.Alias)
	assert.Equal(t, added[0].Fingerprint, e.Fingerprint)
	assert.True(t, e.AddedAt.Equal(added[0].AddedAt))
	got := r.Snapshot().APIs["api"].Alias("u-00000")
	assert.Equal(t, "gold", got.Tier)
	assert.Equal(t, map[string]string{"a": "b"}, got.Meta)
	assert.Same(t, got, r.Snapshot().APIs["api"].Lookup(added[0].Fingerprint))
	assert.Equal(t, 2, r.Snapshot().APIs["api"].Len())

	before := r.Snapshot()
	_, err = r.UpdateCert(ctx, "api", "u-00000", func(*Record) error { return fmt.Errorf("%w: unknown tier", ErrInvalid) })
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = r.UpdateCert(ctx, "api", "missing", func(*Record) error { return nil })
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = r.UpdateCert(ctx, "other", "u-00000", func(*Record) error { return nil })
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Same(t, before, r.Snapshot())
}

// TestRuntimeParallelAddsOneInstance: parallel requests on one instance;
// the same alias or certificate twice at once lets exactly one through.
func TestRuntimeParallelAddsOneInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	r, cs := counted(t, clock)
	recs := records(200, "c")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += 4 {
				_, err := r.AddCert(ctx, "api", recs[i])
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 200, r.Snapshot().APIs["api"].Len())
	assert.Len(t, storedKeys(t, cs), 200)

	same := records(1, "same")[0]
	other := Record{Alias: "same-other", PEM: same.PEM}
	var ok, conflicts int
	var mu sync.Mutex
	for _, rec := range []Record{same, same, other, same} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.AddCert(ctx, "api", rec)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if assert.ErrorIs(t, err, ErrConflict) {
				conflicts++
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, ok)
	assert.Equal(t, 3, conflicts)
	assert.Equal(t, 201, r.Snapshot().APIs["api"].Len())
}

// TestRuntimeCorruptRecordKeepsLastGood: a record that parsed before and
// no longer does keeps its last good version, reported once per reload.
func TestRuntimeCorruptRecordKeepsLastGood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	a, b, cs := pair(t, clock)
	fill(t, a, clock, "api", records(2, "g"))
	require.NoError(t, b.Sync(ctx))
	fp := b.Snapshot().APIs["api"].Alias("g-00001").Fingerprint
	// A half-written record, then a change elsewhere moves the token.
	require.NoError(t, cs.Storage.Store(ctx, "mtls_auth/apis/api/certs/g-00001.json", []byte(`{"alias":"g-00001","pem":"-----BEGIN`)))
	_, err := a.AddCert(ctx, "api", records(1, "n")[0])
	require.NoError(t, err)
	err = b.Sync(ctx)
	require.Error(t, err)
	assert.False(t, IsStorageError(err))
	assert.Contains(t, err.Error(), "g-00001.json")
	assert.Equal(t, fp, b.Snapshot().APIs["api"].Alias("g-00001").Fingerprint, "last good version kept")
	assert.NotNil(t, b.Snapshot().APIs["api"].Alias("n-00000"), "the rest loads")
	require.NoError(t, b.Sync(ctx), "reported once, not on every tick")
}
