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
// (microseconds) instead of Redis' TIME, so a test can drive it. Redis
// counts expiries in real time, not on the driven clock: the script's
// expiries are pushed an hour later (fakeTTLShift), so that a slow test
// does not see its state expire.
var fakeClockScript = redis.NewScript(strings.NewReplacer(
	"redis.call('TIME')", "{'0', ARGV[#ARGV]}",
	"local ttl = math.max(math.ceil(window / 1000), 1)", "local ttl = math.max(math.ceil(window / 1000), 1) + 3600000",
).Replace(allowLua))

const fakeTTLShift = time.Hour

// TestRedisScriptMatchesLocal runs the Lua script (on a real redis-server,
// with a driven clock) and Local side by side through the same random
// requests, tier changes and clock steps back: every Decision must be equal,
// and the stored state stays within its documented size.
func TestRedisScriptMatchesLocal(t *testing.T) {
	// Not parallel with other top-level tests: CPU-bound, it would only
	// slow down the ones that measure timeouts.
	for _, s := range []string{"redis.call('TIME')", "local ttl = math.max(math.ceil(window / 1000), 1)"} {
		require.Contains(t, allowLua, s, "the fake clock script replaces it")
	}
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
			nowUS := clk.Now().UnixMicro() // both clocks on one epoch-aligned grid
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
				// expiry to the window (a refused one leaves it).
				ctx := context.Background()
				n, err := raw.StrLen(ctx, r.storedKey(key)).Result()
				require.NoError(t, err)
				require.LessOrEqual(t, n, int64(8+16*capacity(tier.Requests)))
				if got.Allowed {
					ttl, err := raw.PTTL(ctx, r.storedKey(key)).Result()
					require.NoError(t, err)
					ttl -= fakeTTLShift
					require.Greater(t, ttl, -time.Second, "real time passes, a little")
					require.LessOrEqual(t, ttl, tier.Window+time.Millisecond)
				}
			}
			require.Positive(t, allowed)
			require.Positive(t, refusedN)
			require.Positive(t, changes)
		})
	}
}
