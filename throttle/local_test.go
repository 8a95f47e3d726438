package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestLocal(t *testing.T, opts LocalOptions) (*Local, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	l := NewLocal(opts)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l, clk
}

func allow(t *testing.T, l Limiter, key string, tier Tier) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, tier)
	require.NoError(t, err)
	return d
}

// step is one Allow call in a scripted scenario: advance the clock by after,
// then expect want.
type step struct {
	after time.Duration
	want  Decision
}

func ok(limit, remaining int, reset time.Duration) Decision {
	return Decision{Allowed: true, Limit: limit, Remaining: remaining, Reset: reset}
}

func refused(limit int, wait time.Duration) Decision {
	return Decision{Limit: limit, Reset: wait, RetryAfter: wait}
}

func TestLocalScenarios(t *testing.T) {
	t.Parallel()
	s := time.Second
	tests := []struct {
		name  string
		tier  Tier
		steps []step
	}{
		{
			name: "burst: exactly Requests allowed, the next refused, allowed again when the oldest leaves",
			tier: Tier{Requests: 3, Window: 10 * s},
			steps: []step{
				{0, ok(3, 2, 10*s)},
				{0, ok(3, 1, 10*s)},
				{0, ok(3, 0, 10*s)},
				{0, refused(3, 10*s)},
				{10*s - 1, refused(3, 1)},
				{1, ok(3, 2, 10*s)}, // all three left at the same instant
			},
		},
		{
			name: "spread: Reset and RetryAfter follow the oldest request",
			tier: Tier{Requests: 3, Window: 10 * s},
			steps: []step{
				{0, ok(3, 2, 10*s)},      // t=0
				{2 * s, ok(3, 1, 8*s)},   // t=2
				{2 * s, ok(3, 0, 6*s)},   // t=4
				{2 * s, refused(3, 4*s)}, // t=6: t=0 leaves at 10
				{4*s - 1, refused(3, 1)}, // t=10-1ns
				{1, ok(3, 0, 2*s)},       // t=10: t=0 left; oldest now t=2
				{1 * s, refused(3, 1*s)}, // t=11
				{1 * s, ok(3, 0, 2*s)},   // t=12: t=2 left; oldest t=4
				{10 * s, ok(3, 2, 10*s)}, // t=22: everything left
			},
		},
		{
			name: "fixed-window boundary burst is refused",
			tier: Tier{Requests: 2, Window: 60 * s},
			steps: []step{
				{60*s - 1, ok(2, 1, 60*s)},
				{0, ok(2, 0, 60*s)},
				{1, refused(2, 60*s-1)}, // a new "minute" starts: still refused
				{0, refused(2, 60*s-1)},
				{60*s - 1, ok(2, 1, 60*s)},
			},
		},
		{
			name: "limit of one",
			tier: Tier{Requests: 1, Window: s},
			steps: []step{
				{0, ok(1, 0, s)},
				{s / 2, refused(1, s/2)},
				{s / 2, ok(1, 0, s)},
			},
		},
		{
			name: "refused requests are not counted",
			tier: Tier{Requests: 1, Window: s},
			steps: []step{
				{0, ok(1, 0, s)},
				{s / 4, refused(1, 3*s/4)},
				{s / 4, refused(1, s/2)},
				{s / 4, refused(1, s/4)},
				{s / 4, ok(1, 0, s)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, clk := newTestLocal(t, LocalOptions{})
			for i, st := range tt.steps {
				clk.Advance(st.after)
				got := allow(t, l, "api|fp", tt.tier)
				require.Equal(t, st.want, got, "step %d", i)
			}
		})
	}
}

// modelRun drives a Local with random arrival times (gaps from 0 to
// 2*Window/Requests, a third of them 0: bursts) and hands check every
// decision with the allowed history so far. After a refusal it sometimes
// jumps to exactly RetryAfter-1ns (still refused, RetryAfter 1ns) and then
// RetryAfter (allowed): the header is true.
func modelRun(t *testing.T, tier Tier, steps int, check func(now time.Time, allowed []time.Time, d Decision)) {
	l, clk := newTestLocal(t, LocalOptions{})
	rng := rand.New(rand.NewPCG(1, uint64(tier.Requests)))
	var allowed []time.Time
	nAllowed, nRefused := 0, 0
	for range steps {
		gap := time.Duration(0)
		if rng.IntN(3) > 0 {
			gap = time.Duration(rng.Int64N(int64(tier.Window) * 2 / int64(tier.Requests)))
		}
		clk.Advance(gap)
		d := allow(t, l, "k", tier)
		check(clk.Now(), allowed, d)
		if d.Allowed {
			allowed = append(allowed, clk.Now())
			nAllowed++
			continue
		}
		nRefused++
		if rng.IntN(4) == 0 {
			clk.Advance(d.RetryAfter - 1)
			again := allow(t, l, "k", tier)
			require.Equal(t, refused(tier.Requests, 1), again, "1ns before RetryAfter")
			clk.Advance(1)
			again = allow(t, l, "k", tier)
			require.True(t, again.Allowed, "at RetryAfter")
			check(clk.Now(), allowed, again)
			allowed = append(allowed, clk.Now())
		}
	}
	assert.Positive(t, nAllowed)
	assert.Positive(t, nRefused)
}

// inWindow returns how many of allowed (in time order) lie in
// (now-window, now], and the time the (skip+1)-th oldest of them leaves the
// window.
func inWindow(allowed []time.Time, now time.Time, window time.Duration, skip int) (int, time.Time) {
	first, _ := slices.BinarySearchFunc(allowed, now.Add(-window), func(a, cut time.Time) int {
		if a.After(cut) {
			return 1
		}
		return -1
	})
	n := len(allowed) - first
	var leaves time.Time
	if skip < n {
		leaves = allowed[first+skip].Add(window)
	}
	return n, leaves
}

// TestLocalExactAgainstModel checks tiers of at most Buckets requests against
// the definition of a sliding window: a request at t is allowed iff fewer
// than Requests allowed requests lie in (t-Window, t].
func TestLocalExactAgainstModel(t *testing.T) {
	t.Parallel()
	tiers := []Tier{
		{Requests: 1, Window: 100 * time.Millisecond},
		{Requests: 5, Window: time.Second},
		{Requests: 17, Window: 3 * time.Second},
		{Requests: Buckets, Window: time.Minute},
	}
	for _, tier := range tiers {
		t.Run(fmt.Sprintf("%d per %s", tier.Requests, tier.Window), func(t *testing.T) {
			t.Parallel()
			modelRun(t, tier, 5000, func(now time.Time, allowed []time.Time, d Decision) {
				n, _ := inWindow(allowed, now, tier.Window, 0)
				if n < tier.Requests {
					require.True(t, d.Allowed, "at %s with %d in window", now, n)
					require.Equal(t, tier.Requests-n-1, d.Remaining)
					return
				}
				_, leaves := inWindow(allowed, now, tier.Window, n-tier.Requests)
				require.False(t, d.Allowed, "at %s with %d in window", now, n)
				require.Equal(t, leaves.Sub(now), d.RetryAfter)
			})
		})
	}
}

// TestLocalBucketsAgainstModel checks tiers of more than Buckets requests
// against the bounds the package documents, with g = Window/Buckets: never
// more than Requests allowed in any Window; always allowed when fewer than
// Requests were allowed in the last Window+g; RetryAfter at most g later
// than an exact sliding window's, never earlier.
func TestLocalBucketsAgainstModel(t *testing.T) {
	// Not parallel with other top-level tests: CPU-bound, it would only
	// slow down the ones that measure timeouts.
	tiers := []Tier{
		{Requests: Buckets + 1, Window: time.Second},
		{Requests: 100, Window: time.Minute},
		{Requests: 50, Window: 7*time.Second + 3},
		{Requests: 1000, Window: 10 * time.Second},
	}
	for _, tier := range tiers {
		t.Run(fmt.Sprintf("%d per %s", tier.Requests, tier.Window), func(t *testing.T) {
			t.Parallel()
			g := time.Duration(grain(tier.Requests, int64(tier.Window)))
			require.Greater(t, g, time.Duration(1))
			var lagged int
			modelRun(t, tier, 20000, func(now time.Time, allowed []time.Time, d Decision) {
				n, _ := inWindow(allowed, now, tier.Window, 0)
				wide, _ := inWindow(allowed, now, tier.Window+g, 0)
				if wide < tier.Requests {
					require.True(t, d.Allowed, "at %s with %d in window+g", now, wide)
				}
				if n >= tier.Requests {
					require.False(t, d.Allowed, "at %s with %d in window", now, n)
				}
				if d.Allowed {
					require.GreaterOrEqual(t, d.Remaining, tier.Requests-wide-1)
					require.LessOrEqual(t, d.Remaining, tier.Requests-n-1)
					require.Positive(t, d.Reset)
					require.LessOrEqual(t, d.Reset, tier.Window)
					if n < tier.Requests-1 && d.Remaining < tier.Requests-n-1 {
						lagged++
					}
					return
				}
				if n >= tier.Requests {
					_, leaves := inWindow(allowed, now, tier.Window, n-tier.Requests)
					require.GreaterOrEqual(t, d.RetryAfter, leaves.Sub(now))
					require.Less(t, d.RetryAfter, leaves.Sub(now)+g)
				} else {
					lagged++ // refused although the exact window has room
					require.Less(t, d.RetryAfter, g)
				}
				require.Equal(t, d.RetryAfter, d.Reset)
			})
			assert.Positive(t, lagged, "the model exercises the approximation")
		})
	}
}

func TestLocalUnlimitedAndInvalidTiers(t *testing.T) {
	t.Parallel()
	l, _ := newTestLocal(t, LocalOptions{})
	for range 1000 {
		d := allow(t, l, "k", Tier{Name: "unlimited", Requests: 0})
		require.Equal(t, Decision{Allowed: true}, d)
	}
	d := allow(t, l, "k", Tier{Name: "unlimited", Requests: 0, Window: time.Second})
	require.Equal(t, Decision{Allowed: true}, d)
	assert.Zero(t, l.Len(), "an unlimited tier does not track keys")

	tests := []struct {
		name string
		tier Tier
	}{
		{"negative requests", Tier{Name: "bad", Requests: -1, Window: time.Second}},
		{"zero window", Tier{Name: "bad", Requests: 5}},
		{"negative window", Tier{Name: "bad", Requests: 5, Window: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Allow(context.Background(), "k", tt.tier)
			require.ErrorIs(t, err, ErrInvalidTier)
			require.ErrorIs(t, tt.tier.Validate(), ErrInvalidTier)
		})
	}
	assert.Zero(t, l.Len())
}

func TestLocalTierChange(t *testing.T) {
	t.Parallel()
	s := time.Second
	gold := Tier{Name: "gold", Requests: 10, Window: 10 * s}
	bronze := Tier{Name: "bronze", Requests: 3, Window: 10 * s}
	tests := []struct {
		name  string
		first Tier
		n     int // requests made under first, one per second
		then  Tier
		steps []step
	}{
		{
			name:  "raised limit keeps the count and gives the difference",
			first: bronze, n: 3, then: gold,
			steps: []step{
				{0, ok(10, 6, 7*s)}, // t=3: recorded t=0,1,2 plus this one
				{0, ok(10, 5, 7*s)},
			},
		},
		{
			name:  "lowered limit refuses until enough old requests leave",
			first: gold, n: 6, then: bronze,
			// recorded t=0..5, keeps the newest three (3,4,5) at t=6
			steps: []step{
				{0, refused(3, 7*s)},     // t=6: t=3 leaves at 13
				{7*s - 1, refused(3, 1)}, // t=13-1ns
				{1, ok(3, 0, 1*s)},       // t=13: in window 4,5,13
			},
		},
		{
			name:  "shorter window forgets old requests",
			first: Tier{Requests: 3, Window: time.Hour}, n: 3, then: Tier{Requests: 3, Window: 2 * s},
			// recorded t=0,1,2; at t=3 with a 2s window only t=2 remains
			steps: []step{
				{0, ok(3, 1, 1*s)},
				{0, ok(3, 0, 1*s)},
				{0, refused(3, 1*s)},
			},
		},
		{
			name:  "longer window remembers more",
			first: Tier{Requests: 3, Window: 10 * s}, n: 3, then: Tier{Requests: 3, Window: time.Hour},
			steps: []step{
				{0, refused(3, time.Hour-3*s)}, // t=0,1,2 all inside the hour
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, clk := newTestLocal(t, LocalOptions{})
			for range tt.n {
				require.True(t, allow(t, l, "k", tt.first).Allowed)
				clk.Advance(s)
			}
			for i, st := range tt.steps {
				clk.Advance(st.after)
				require.Equal(t, st.want, allow(t, l, "k", tt.then), "step %d", i)
			}
		})
	}
}

func TestLocalKeysIsolated(t *testing.T) {
	t.Parallel()
	l, _ := newTestLocal(t, LocalOptions{})
	tier := Tier{Requests: 2, Window: time.Minute}
	for _, k := range []string{"a|fp1", "a|fp2", "b|fp1"} {
		require.True(t, allow(t, l, k, tier).Allowed)
		require.True(t, allow(t, l, k, tier).Allowed)
		require.False(t, allow(t, l, k, tier).Allowed)
	}
	assert.Equal(t, 3, l.Len())
}

func TestLocalSweep(t *testing.T) {
	t.Parallel()
	l, clk := newTestLocal(t, LocalOptions{})
	short := Tier{Requests: 5, Window: time.Second}
	long := Tier{Requests: 5, Window: time.Hour}
	for i := range 100 {
		allow(t, l, fmt.Sprintf("idle-%d", i), short)
	}
	allow(t, l, "busy-long-window", long)
	allow(t, l, "busy-refreshed", short)
	require.Equal(t, 102, l.Len())

	assert.Zero(t, l.Sweep(clk.Now().Add(time.Second-1)), "nothing has left its window yet")

	clk.Advance(900 * time.Millisecond)
	allow(t, l, "busy-refreshed", short) // newest request now 900ms later
	clk.Advance(100 * time.Millisecond)
	assert.Equal(t, 100, l.Sweep(clk.Now()))
	assert.Equal(t, 2, l.Len())

	// The kept keys kept their counts.
	assert.Equal(t, 3, allow(t, l, "busy-refreshed", short).Remaining)
	assert.Equal(t, 3, allow(t, l, "busy-long-window", long).Remaining)

	// A forgotten key starts afresh, as it would have anyway.
	assert.Equal(t, 4, allow(t, l, "idle-7", short).Remaining)
}

func TestLocalSweepShrinksMaps(t *testing.T) {
	t.Parallel()
	l, clk := newTestLocal(t, LocalOptions{})
	tier := Tier{Requests: 1, Window: time.Second}
	for i := range 200_000 {
		allow(t, l, fmt.Sprintf("k%d", i), tier)
	}
	peak := 0
	for i := range l.shards {
		peak = max(peak, l.shards[i].peak)
	}
	require.GreaterOrEqual(t, peak, shrinkMinPeak)
	clk.Advance(time.Second)
	require.Equal(t, 200_000, l.Sweep(clk.Now()))
	for i := range l.shards {
		assert.Zero(t, l.shards[i].peak, "shard %d rebuilt", i)
	}
	assert.Zero(t, l.Len())
}

func TestLocalSweepGoroutine(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now, SweepInterval: 5 * time.Millisecond})
	allow(t, l, "k", Tier{Requests: 1, Window: time.Second})
	clk.Advance(time.Second)
	require.Eventually(t, func() bool { return l.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is idempotent")
	require.NoError(t, l.Destruct())

	// After Close the limiter still counts; it just no longer sweeps.
	allow(t, l, "k", Tier{Requests: 1, Window: time.Second})
	clk.Advance(time.Hour)
	time.Sleep(30 * time.Millisecond)
	assert.Equal(t, 1, l.Len())
}

func TestLocalMaxKeys(t *testing.T) {
	t.Parallel()
	busy := Tier{Requests: 3, Window: time.Hour}

	t.Run("never more than MaxKeys", func(t *testing.T) {
		t.Parallel()
		l, clk := newTestLocal(t, LocalOptions{MaxKeys: 10})
		for i := range 1000 {
			clk.Advance(time.Millisecond)
			require.True(t, allow(t, l, fmt.Sprintf("k%d", i), busy).Allowed)
			require.LessOrEqual(t, l.Len(), 10)
		}
		assert.Equal(t, 10, l.Len())
		assert.Equal(t, 10, countKeys(l))
		assert.EqualValues(t, 990, l.Evictions())
	})

	t.Run("idle keys go first", func(t *testing.T) {
		t.Parallel()
		l, clk := newTestLocal(t, LocalOptions{MaxKeys: 10})
		short := Tier{Requests: 3, Window: time.Second}
		allow(t, l, "busy", busy)
		allow(t, l, "busy", busy)
		for i := range 9 {
			allow(t, l, fmt.Sprintf("idle%d", i), short)
		}
		clk.Advance(time.Second)
		for i := range 9 {
			allow(t, l, fmt.Sprintf("new%d", i), short)
		}
		assert.EqualValues(t, 9, l.Evictions())
		assert.Equal(t, 0, allow(t, l, "busy", busy).Remaining, "busy key kept its count")
	})

	t.Run("least recently used goes when none is idle", func(t *testing.T) {
		t.Parallel()
		l, clk := newTestLocal(t, LocalOptions{MaxKeys: 3})
		for _, k := range []string{"old", "mid", "new"} {
			allow(t, l, k, busy)
			clk.Advance(time.Second)
		}
		allow(t, l, "newest", busy)
		assert.Equal(t, 1, allow(t, l, "mid", busy).Remaining, "mid kept")
		assert.Equal(t, 1, allow(t, l, "new", busy).Remaining, "new kept")
		assert.EqualValues(t, 1, l.Evictions())
	})

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		l, _ := newTestLocal(t, LocalOptions{})
		assert.EqualValues(t, DefaultMaxKeys, l.maxKeys)
	})
}

func countKeys(l *Local) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// ringLen is the ring size of key, and how many buckets it uses.
func ringLen(l *Local, key string) (int, int) {
	s := &l.shards[l.shardIndex(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	return len(e.ring), e.n
}

func TestLocalBucketsBounded(t *testing.T) {
	t.Parallel()
	t.Run("large tier: one bucket per grain, at most Buckets+1", func(t *testing.T) {
		t.Parallel()
		l, clk := newTestLocal(t, LocalOptions{})
		tier := Tier{Requests: 100_000, Window: time.Hour}
		for range 1000 { // 1000 requests within one grain: one bucket
			clk.Advance(time.Millisecond)
			require.True(t, allow(t, l, "k", tier).Allowed)
		}
		size, used := ringLen(l, "k")
		assert.Equal(t, initialSlots, size)
		assert.Equal(t, 1, used)
		for range 20_000 { // spread over the whole hour and more
			clk.Advance(200 * time.Millisecond)
			require.True(t, allow(t, l, "k", tier).Allowed)
			size, used = ringLen(l, "k")
			require.LessOrEqual(t, used, Buckets+1)
			require.LessOrEqual(t, size, Buckets+1)
		}
		assert.Equal(t, Buckets+1, size, "grown to the cap")
	})
	t.Run("small tier: one bucket per request time, at most Requests", func(t *testing.T) {
		t.Parallel()
		l, clk := newTestLocal(t, LocalOptions{})
		tier := Tier{Requests: 10, Window: time.Minute}
		for range 100 {
			clk.Advance(time.Second)
			allow(t, l, "k", tier)
			size, used := ringLen(l, "k")
			require.LessOrEqual(t, used, 10)
			require.LessOrEqual(t, size, 10)
		}
	})
}

// TestLocalCoarseBuckets walks a tier of 40 per 32s (1s buckets) through
// the approximation: requests in one bucket count as made at its newest.
func TestLocalCoarseBuckets(t *testing.T) {
	t.Parallel()
	s := time.Second
	tier := Tier{Requests: 40, Window: 32 * s}
	require.EqualValues(t, s, grain(tier.Requests, int64(tier.Window)))
	l, clk := newTestLocal(t, LocalOptions{})
	burst := func(n int) (d Decision) {
		for range n {
			d = allow(t, l, "k", tier)
			require.True(t, d.Allowed)
		}
		return d
	}
	burst(10)                                                   // t=0: bucket A
	clk.Advance(s / 2)                                          //
	require.Equal(t, ok(40, 20, 32*s), burst(10))               // t=0.5: still A, newest 0.5
	clk.Advance(s)                                              //
	require.Equal(t, ok(40, 0, 31*s), burst(20))                // t=1.5: bucket B
	require.Equal(t, refused(40, 31*s), allow(t, l, "k", tier)) // until A leaves at 32.5
	clk.Advance(31*s - 1)
	require.Equal(t, refused(40, 1), allow(t, l, "k", tier))
	// An exact window would have had room for 10 since t=32 (the requests
	// made at t=0); here they leave with A's newest, half a second later.
	clk.Advance(1)
	require.Equal(t, ok(40, 19, 1*s), allow(t, l, "k", tier)) // t=32.5: B is the oldest
}

func TestLocalClockStepsBack(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	tier := Tier{Requests: 2, Window: 10 * time.Second}
	allow(t, l, "k", tier)
	clk.Advance(-5 * time.Second)
	// Treated as happening at the newest recorded time: never a wider budget.
	require.Equal(t, ok(2, 0, 10*time.Second), allow(t, l, "k", tier))
	require.Equal(t, refused(2, 10*time.Second), allow(t, l, "k", tier))
}

func TestLocalAllowDoesNotAllocate(t *testing.T) {
	l, clk := newTestLocal(t, LocalOptions{})
	tier := Tier{Requests: 1000, Window: 320 * time.Millisecond} // 10ms buckets
	key := "some-api|0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for range 400 { // one request per ms: every bucket used, the ring full
		allow(t, l, key, tier)
		clk.Advance(time.Millisecond)
	}
	size, _ := ringLen(l, key)
	require.Equal(t, capacity(tier.Requests), size)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		clk.Advance(time.Millisecond)
		_, _ = l.Allow(ctx, key, tier)
	})
	assert.Zero(t, allocs)
}

// TestLocalConcurrentOneKey: many goroutines on one key never exceed the
// limit in total. Run with -race.
func TestLocalConcurrentOneKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		now  func() time.Time
	}{
		{"fake clock", newFakeClock().Now},
		{"real clock", time.Now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := NewLocal(LocalOptions{Now: tt.now})
			tier := Tier{Requests: 500, Window: time.Hour}
			var got atomic.Int64
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() {
					for range 100 {
						d, err := l.Allow(context.Background(), "hot", tier)
						if err == nil && d.Allowed {
							got.Add(1)
						}
					}
				})
			}
			wg.Wait()
			assert.EqualValues(t, 500, got.Load())
		})
	}
}

// TestLocalConcurrentManyKeys exercises eviction and sweeping racing with
// Allow. Run with -race.
func TestLocalConcurrentManyKeys(t *testing.T) {
	t.Parallel()
	l := NewLocal(LocalOptions{MaxKeys: 100, SweepInterval: time.Millisecond})
	defer l.Close()
	tier := Tier{Requests: 3, Window: 50 * time.Millisecond}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				_, err := l.Allow(context.Background(), fmt.Sprintf("k%d", (g*7919+i)%500), tier)
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, l.Len(), 100)
	assert.Equal(t, l.Len(), countKeys(l))
}

func TestDecisionSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d          Decision
		reset, ret int64
	}{
		{Decision{Allowed: true, Reset: 0}, 0, 0},
		{Decision{Allowed: true, Reset: time.Nanosecond}, 1, 0},
		{Decision{Allowed: true, Reset: time.Second}, 1, 0},
		{Decision{Allowed: true, Reset: time.Second + 1}, 2, 0},
		{Decision{Reset: 1500 * time.Millisecond, RetryAfter: 1500 * time.Millisecond}, 2, 2},
		{Decision{Reset: 0, RetryAfter: 0}, 0, 1}, // refused: never "retry now"
		{Decision{Reset: time.Minute, RetryAfter: time.Minute}, 60, 60},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.reset, tt.d.ResetSeconds(), "%+v", tt.d)
		assert.Equal(t, tt.ret, tt.d.RetryAfterSeconds(), "%+v", tt.d)
	}
	assert.Zero(t, CeilSeconds(-time.Second))
	assert.Equal(t, "api|ab12", Key("api", "ab12"))
}
