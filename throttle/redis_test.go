package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failSlack is how much longer than RedisOptions.Timeout a failing Allow may
// take. It is not a speed assertion (unit tests make none): it only tells
// "bounded by the timeout" from "hangs until the kernel gives up" (a
// blackholed dial without a deadline takes minutes), with room for a
// saturated CI machine under -race. The tests log the real figure.
const failSlack = 2 * time.Second

// newTestRedis is NewRedis for url (a single server; "" when opts names a
// cluster), closed on cleanup.
func newTestRedis(t *testing.T, url string, opts RedisOptions) *Redis {
	t.Helper()
	opts.URL = url
	r, err := NewRedis(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rawClient is a plain go-redis client to inspect the server.
func rawClient(t testing.TB, srv *redisServer) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisExactLimit(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{})
	require.NoError(t, r.Ping(context.Background()))
	tier := Tier{Name: "t", Requests: 5, Window: 10 * time.Second}
	for i := range 5 {
		d := allow(t, r, "api|fp", tier)
		require.True(t, d.Allowed, "request %d", i)
		assert.Equal(t, 5, d.Limit)
		assert.Equal(t, 4-i, d.Remaining)
		// Reset: until the first request leaves, a little under 10s.
		assert.InDelta(t, 10*time.Second, d.Reset, float64(time.Second))
		assert.LessOrEqual(t, d.Reset, 10*time.Second)
		assert.Zero(t, d.RetryAfter)
	}
	for range 3 {
		d := allow(t, r, "api|fp", tier)
		require.False(t, d.Allowed)
		assert.Equal(t, 5, d.Limit)
		assert.Zero(t, d.Remaining)
		assert.Positive(t, d.RetryAfter)
		assert.LessOrEqual(t, d.RetryAfter, 10*time.Second)
		assert.InDelta(t, 10*time.Second, d.RetryAfter, float64(time.Second))
		assert.Equal(t, d.RetryAfter, d.Reset)
	}

	// Keys are isolated, and stored under the prefix, hash-tagged, as one
	// string of at most one bucket per allowed request (a tier this small is
	// exact), with an expiry no longer than the window.
	require.True(t, allow(t, r, "api|other", tier).Allowed)
	raw := rawClient(t, srv)
	ctx := context.Background()
	stored := DefaultRedisKeyPrefix + "{api|fp}"
	require.Equal(t, stored, r.storedKey("api|fp"))
	typ, err := raw.Type(ctx, stored).Result()
	require.NoError(t, err)
	assert.Equal(t, "string", typ)
	n, err := raw.StrLen(ctx, stored).Result()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(8+16))
	assert.LessOrEqual(t, n, int64(8+16*5))
	ttl, err := raw.PTTL(ctx, stored).Result()
	require.NoError(t, err)
	assert.Positive(t, ttl)
	assert.LessOrEqual(t, ttl, 10*time.Second)
}

func TestRedisUnlimitedAndInvalidTiers(t *testing.T) {
	t.Parallel()
	// Nobody listens: an unlimited tier must not even ask.
	r := newTestRedis(t, fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)), RedisOptions{})
	d, err := r.Allow(context.Background(), "k", Tier{Requests: 0})
	require.NoError(t, err)
	assert.Equal(t, Decision{Allowed: true}, d)
	_, err = r.Allow(context.Background(), "k", Tier{Requests: -1, Window: time.Second})
	require.ErrorIs(t, err, ErrInvalidTier)
	_, err = r.Allow(context.Background(), "k", Tier{Requests: 1})
	require.ErrorIs(t, err, ErrInvalidTier)
}

// TestRedisTwoInstancesNeverOvershoot simulates two Caddy instances (two
// limiters, each with its own connection pool) hammering one key.
func TestRedisTwoInstancesNeverOvershoot(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	limiters := []*Redis{
		newTestRedis(t, srv.URL(), RedisOptions{Timeout: 2 * time.Second}),
		newTestRedis(t, srv.URL(), RedisOptions{Timeout: 2 * time.Second}),
	}
	tier := Tier{Requests: 50, Window: time.Minute}
	var allowed, refusedN atomic.Int64
	var wg sync.WaitGroup
	for _, r := range limiters {
		for range 8 {
			wg.Go(func() {
				for range 20 {
					d, err := r.Allow(context.Background(), "shared|fp", tier)
					if !assert.NoError(t, err) {
						return
					}
					if d.Allowed {
						allowed.Add(1)
					} else {
						refusedN.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	assert.EqualValues(t, 50, allowed.Load())
	assert.EqualValues(t, 2*8*20-50, refusedN.Load())
}

func TestRedisWindowExpiry(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{})
	tier := Tier{Requests: 3, Window: time.Second}
	for range 3 {
		require.True(t, allow(t, r, "k", tier).Allowed)
	}
	d := allow(t, r, "k", tier)
	require.False(t, d.Allowed)
	require.Positive(t, d.RetryAfter)
	require.LessOrEqual(t, d.RetryAfter, time.Second)

	// Just before RetryAfter it is still refused (with margin for the round
	// trips), and from RetryAfter on it is allowed again.
	time.Sleep(d.RetryAfter - 300*time.Millisecond)
	require.False(t, allow(t, r, "k", tier).Allowed)
	time.Sleep(300*time.Millisecond + 5*time.Millisecond)
	d = allow(t, r, "k", tier)
	require.True(t, d.Allowed)

	// The key disappears from Redis one window after its last request.
	raw := rawClient(t, srv)
	require.Eventually(t, func() bool {
		n, err := raw.Exists(context.Background(), r.storedKey("k")).Result()
		return err == nil && n == 0
	}, 3*time.Second, 20*time.Millisecond)
}

func TestRedisTierChange(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{})
	gold := Tier{Requests: 10, Window: time.Minute}
	bronze := Tier{Requests: 3, Window: time.Minute}
	for range 6 {
		require.True(t, allow(t, r, "k", gold).Allowed)
	}
	d := allow(t, r, "k", bronze)
	require.False(t, d.Allowed, "lowered limit: six requests already in the window")
	assert.Positive(t, d.RetryAfter)
	d = allow(t, r, "k", gold)
	require.True(t, d.Allowed)
	assert.Equal(t, 3, d.Remaining)

	// A shorter window forgets what is older than it.
	time.Sleep(30 * time.Millisecond)
	d = allow(t, r, "k", Tier{Requests: 3, Window: 20 * time.Millisecond})
	require.True(t, d.Allowed)
	assert.Equal(t, 2, d.Remaining)
}

func TestRedisKeyPrefixAndScriptReload(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	a := newTestRedis(t, srv.URL(), RedisOptions{KeyPrefix: "a:"})
	b := newTestRedis(t, srv.URL(), RedisOptions{KeyPrefix: "b:"})
	tier := Tier{Requests: 1, Window: time.Minute}
	require.True(t, allow(t, a, "k", tier).Allowed)
	require.True(t, allow(t, b, "k", tier).Allowed, "prefixes separate the counters")
	require.False(t, allow(t, a, "k", tier).Allowed)

	// After SCRIPT FLUSH (or a server restart) EVALSHA answers NOSCRIPT and
	// the limiter falls back to EVAL.
	raw := rawClient(t, srv)
	require.NoError(t, raw.ScriptFlush(context.Background()).Err())
	require.True(t, allow(t, a, "k2", tier).Allowed)
	require.False(t, allow(t, a, "k2", tier).Allowed)
}

func TestNewRedisErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url string
	}{
		{"empty", ""},
		{"scheme", "http://127.0.0.1:6379"},
		{"unparsable with password", "redis://user:s3cret@[::1"},
		{"bad db", "redis://user:s3cret@127.0.0.1:6379/notanumber"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRedis(RedisOptions{URL: tt.url})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	r, err := NewRedis(RedisOptions{URL: "rediss://user:pw@127.0.0.1:1/2"})
	require.NoError(t, err, "NewRedis does not connect")
	assert.Equal(t, DefaultRedisTimeout, r.timeout)
	assert.Equal(t, DefaultRedisKeyPrefix, r.prefix)
	o := r.client.(*redis.Client).Options()
	assert.NotNil(t, o.TLSConfig)
	assert.Equal(t, 2, o.DB)
	assert.Equal(t, DefaultRedisTimeout, o.DialTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.ReadTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.WriteTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.PoolTimeout)
	assert.Zero(t, o.MaxRetries, "no retries: a retried script could count twice")
	assert.Equal(t, 1, o.DialerRetries)
	assert.True(t, o.ContextTimeoutEnabled)
	require.NoError(t, r.Close())
}

// measureFailures calls Allow n times in a row and conc times concurrently,
// requires every call to fail, and returns the slowest.
func measureFailures(t *testing.T, r *Redis, n, conc int) time.Duration {
	t.Helper()
	tier := Tier{Requests: 10, Window: time.Minute}
	var mu sync.Mutex
	var slowest time.Duration
	call := func() {
		start := time.Now()
		_, err := r.Allow(context.Background(), "k", tier)
		el := time.Since(start)
		assert.Error(t, err)
		mu.Lock()
		slowest = max(slowest, el)
		mu.Unlock()
	}
	for range n {
		call()
	}
	var wg sync.WaitGroup
	for range conc {
		wg.Go(call)
	}
	wg.Wait()
	return slowest
}

func TestRedisFailsFast(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"nobody listens (connection refused)", func(t *testing.T) string {
			return fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}},
		{"blackhole (accepts, never answers)", func(t *testing.T) string { return blackhole(t) }},
		{"blackhole (connection attempts hang)", func(t *testing.T) string {
			addr, ok := synDrop(t)
			if !ok {
				t.Skip("cannot make connection attempts hang on this system")
			}
			return addr
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTestRedis(t, "redis://"+tt.addr(t), RedisOptions{Timeout: timeout})
			slowest := measureFailures(t, r, 5, 8)
			t.Logf("slowest failing Allow: %s (timeout %s)", slowest, timeout)
			assert.Less(t, slowest, timeout+failSlack)

			// A caller's shorter deadline wins.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := r.Allow(ctx, "k", Tier{Requests: 1, Window: time.Second})
			require.Error(t, err)
			assert.Less(t, time.Since(start), 20*time.Millisecond+failSlack)
		})
	}
}

// TestRedisStoppedAndRestarted kills the server mid-test: Allow errors within
// the timeout, then works again once a server is back on the same port.
func TestRedisStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{Timeout: timeout})
	tier := Tier{Requests: 1000, Window: time.Minute}
	// Fill the pool with a few live connections first.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := r.Allow(context.Background(), "k", tier)
			assert.NoError(t, err)
		})
	}
	wg.Wait()

	srv.stop()
	slowest := measureFailures(t, r, 10, 8)
	t.Logf("slowest failing Allow after the server was killed: %s (timeout %s)", slowest, timeout)
	assert.Less(t, slowest, timeout+failSlack)

	srv.start()
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := r.Allow(context.Background(), "k", tier)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	t.Logf("recovered %s after the restart", time.Since(start))
	d := allow(t, r, "k", tier)
	assert.True(t, d.Allowed)
	// Counting again from scratch: the test server keeps nothing across restarts.
	assert.Equal(t, tier.Requests-2, d.Remaining)
}

func TestRedisErrorNamesBackend(t *testing.T) {
	t.Parallel()
	r := newTestRedis(t, fmt.Sprintf("redis://:hunter2@127.0.0.1:%d", freePort(t)), RedisOptions{})
	_, err := r.Allow(context.Background(), "k", Tier{Requests: 1, Window: time.Second})
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "throttle: redis: "), err.Error())
	assert.NotContains(t, err.Error(), "hunter2")
}

// TestRedisStateNotOurs: a key holding something else than the limiter's
// state (another program's, or from an incompatible version) is an error,
// and is left as it is.
func TestRedisStateNotOurs(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	tier := Tier{Requests: 5, Window: time.Minute}

	require.NoError(t, raw.Set(ctx, r.storedKey("odd"), "garbage", 0).Err())
	_, err := r.Allow(ctx, "odd", tier)
	require.ErrorContains(t, err, "throttle state of 7 bytes")
	v, err := raw.Get(ctx, r.storedKey("odd")).Result()
	require.NoError(t, err)
	assert.Equal(t, "garbage", v)

	require.NoError(t, raw.RPush(ctx, r.storedKey("list"), "x").Err())
	_, err = r.Allow(ctx, "list", tier)
	require.ErrorContains(t, err, "WRONGTYPE")
}

// TestRedisLogHook: go-redis' own log lines go to the Log of the newest open
// limiter that has one, without go-redis' prefix. Not parallel: go-redis'
// logger is process-wide.
func TestRedisLogHook(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{}
	hook := func(name string) func(string) {
		return func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			got[name] = append(got[name], msg)
		}
	}
	lines := func(name string) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got[name]...)
	}
	deadURL := fmt.Sprintf("redis://127.0.0.1:%d", freePort(t))
	tier := Tier{Requests: 1, Window: time.Second}
	older := newTestRedis(t, deadURL, RedisOptions{Log: hook("older")})
	newer, err := NewRedis(RedisOptions{URL: deadURL, Log: hook("newer")})
	require.NoError(t, err)

	_, err = older.Allow(context.Background(), "k", tier)
	require.Error(t, err)
	require.NotEmpty(t, lines("newer"), "the newest limiter's hook gets the lines")
	assert.Empty(t, lines("older"))
	for _, l := range lines("newer") {
		assert.NotContains(t, l, "redis: ")
		assert.Contains(t, l, "dial")
	}

	require.NoError(t, newer.Close())
	_, err = older.Allow(context.Background(), "k", tier)
	require.Error(t, err)
	assert.NotEmpty(t, lines("older"), "once the newer one is closed, the older one's hook")
}
