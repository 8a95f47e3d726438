package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// fakeClockScript is allowScript reading the time from its last argument
// (microseconds) instead of Redis' TIME, so a test can drive it.
var fakeClockScript = redis.NewScript(strings.Replace(allowLua,
	"redis.call('TIME')", "{'0', ARGV[#ARGV]}", 1))

// TestRedisScriptMatchesLocal runs the Lua script (on a real redis-server,
// with a driven clock) and Local side by side through the same random
// requests, tier changes and clock steps back: every Decision must be equal,
// and the stored state stays within its documented size.
func TestRedisScriptMatchesLocal(t *testing.T) {
	t.Parallel()
	require.Contains(t, allowLua, "redis.call('TIME')")
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{Timeout: 5 * time.Second})
	raw := rawClient(t, srv)
	// Windows are whole multiples of 32µs, so both clocks (ns and µs) cut
	// them into the same buckets.
	tiers := []Tier{
		{Requests: 3, Window: time.Second},
		{Requests: Buckets, Window: 640 * time.Millisecond},
		{Requests: 40, Window: 32 * time.Second},
		{Requests: 100, Window: 64 * time.Millisecond},
		{Requests: 1000, Window: 3200 * time.Millisecond},
	}
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 14))
			l, clk := newTestLocal(t, LocalOptions{})
			key := fmt.Sprintf("model-%d", seed)
			nowUS := int64(1_800_000_000_000_000) // 2027, in µs
			tier := tiers[rng.IntN(len(tiers))]
			var allowed, refusedN, changes int
			for range 3000 {
				switch p := rng.IntN(100); {
				case p < 2:
					tier = tiers[rng.IntN(len(tiers))]
					changes++
				case p < 3:
					// The clock steps back a little.
					back := rng.Int64N(int64(tier.Window/time.Microsecond)) / 4
					nowUS -= back
					clk.Advance(-time.Duration(back) * time.Microsecond)
				case p < 40:
					// a burst: same instant
				default:
					gap := rng.Int64N(max(int64(tier.Window/time.Microsecond)*2/int64(tier.Requests), 2))
					nowUS += gap
					clk.Advance(time.Duration(gap) * time.Microsecond)
				}
				want := allow(t, l, key, tier)
				got, err := r.run(context.Background(), fakeClockScript, key, tier, nowUS)
				require.NoError(t, err)
				require.Equal(t, want, got, "tier %d per %s", tier.Requests, tier.Window)
				if got.Allowed {
					allowed++
				} else {
					refusedN++
				}
				// The state's size is bounded. An allowed request sets its
				// expiry to the window (a refused one leaves it); Redis
				// counts it in real time, not on the driven clock, so it is
				// lifted to last the test.
				ctx := context.Background()
				n, err := raw.StrLen(ctx, r.storedKey(key)).Result()
				require.NoError(t, err)
				require.LessOrEqual(t, n, int64(16+16*capacity(tier.Requests)))
				if got.Allowed {
					ttl, err := raw.PTTL(ctx, r.storedKey(key)).Result()
					require.NoError(t, err)
					require.Positive(t, ttl)
					require.LessOrEqual(t, ttl, tier.Window+time.Millisecond)
					require.NoError(t, raw.Persist(ctx, r.storedKey(key)).Err())
				}
			}
			require.Positive(t, allowed)
			require.Positive(t, refusedN)
			require.Positive(t, changes)
		})
	}
}
