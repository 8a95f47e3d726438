package throttle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stepClock advances by step on every reading, so a hot key keeps expiring
// old buckets and stays in the allowed steady state.
type stepClock struct {
	base time.Time
	ns   atomic.Int64
	step int64
}

func newStepClock(step time.Duration) *stepClock {
	return &stepClock{base: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), step: int64(step)}
}

func (c *stepClock) Now() time.Time { return c.base.Add(time.Duration(c.ns.Add(c.step))) }

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("orders-api|%064x", i)
	}
	return keys
}

func BenchmarkLocalAllow(b *testing.B) {
	ctx := context.Background()
	b.Run("hot key allowed", func(b *testing.B) {
		// 1000 per second, one request per two simulated milliseconds: every
		// call counts in the newest bucket or opens one, expiring the oldest
		// (32 buckets of 31.25ms).
		l := NewLocal(LocalOptions{Now: newStepClock(2 * time.Millisecond).Now})
		tier := Tier{Requests: 1000, Window: time.Second}
		key := benchKeys(1)[0]
		for range 2000 {
			_, _ = l.Allow(ctx, key, tier)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if d, _ := l.Allow(ctx, key, tier); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("hot key refused", func(b *testing.B) {
		l := NewLocal(LocalOptions{})
		tier := Tier{Requests: 10, Window: time.Hour}
		key := benchKeys(1)[0]
		for range 10 {
			_, _ = l.Allow(ctx, key, tier)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if d, _ := l.Allow(ctx, key, tier); d.Allowed {
				b.Fatal("allowed")
			}
		}
	})
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("%d keys", n), func(b *testing.B) {
			l := NewLocal(LocalOptions{})
			tier := Tier{Requests: 100, Window: time.Minute}
			keys := benchKeys(n)
			for _, k := range keys {
				_, _ = l.Allow(ctx, k, tier)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				_, _ = l.Allow(ctx, keys[i], tier)
				if i++; i == n {
					i = 0
				}
			}
		})
	}
	b.Run("new keys at MaxKeys (evicting)", func(b *testing.B) {
		l := NewLocal(LocalOptions{MaxKeys: 10_000})
		tier := Tier{Requests: 100, Window: time.Minute}
		keys := benchKeys(100_000)
		for _, k := range keys[:10_000] {
			_, _ = l.Allow(ctx, k, tier)
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := 10_000
		for b.Loop() {
			_, _ = l.Allow(ctx, keys[i], tier)
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

func BenchmarkLocalAllowParallel(b *testing.B) {
	ctx := context.Background()
	b.Run("one hot key", func(b *testing.B) {
		l := NewLocal(LocalOptions{})
		tier := Tier{Requests: 1000, Window: time.Second}
		key := benchKeys(1)[0]
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = l.Allow(ctx, key, tier)
			}
		})
	})
	b.Run("100000 keys", func(b *testing.B) {
		l := NewLocal(LocalOptions{})
		tier := Tier{Requests: 100, Window: time.Minute}
		keys := benchKeys(100_000)
		for _, k := range keys {
			_, _ = l.Allow(ctx, k, tier)
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919)) % len(keys)
			for pb.Next() {
				_, _ = l.Allow(ctx, keys[i], tier)
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	})
}

func BenchmarkRedisAllow(b *testing.B) {
	srv := startRedis(b)
	r, err := NewRedis(RedisOptions{URL: srv.URL(), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	raw := rawClient(b, srv)
	run := func(b *testing.B, tier Tier, parallel bool) {
		key := benchKeys(1)[0] + b.Name()
		b.ReportAllocs()
		if err := raw.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		if !parallel {
			for b.Loop() {
				if _, err := r.Allow(ctx, key, tier); err != nil {
					b.Fatal(err)
				}
			}
		} else {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := r.Allow(ctx, key, tier); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		b.StopTimer()
		// What the script costs Redis itself, free of client noise.
		stats, err := raw.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(stats) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
				for _, f := range strings.Split(v, ",") {
					if us, ok := strings.CutPrefix(f, "usec_per_call="); ok {
						if x, err := strconv.ParseFloat(us, 64); err == nil {
							b.ReportMetric(x, "server-us/op")
						}
					}
				}
			}
		}
	}
	// A large limit over a short window: allowed, all 33 buckets in use.
	allowed := Tier{Requests: 1_000_000, Window: 100 * time.Millisecond}
	refusedTier := Tier{Requests: 100, Window: time.Hour}
	b.Run("hot key allowed", func(b *testing.B) { run(b, allowed, false) })
	// A large tier over a long window: allowed, few buckets (the sliding
	// log stored every one of these requests).
	b.Run("hot key allowed, 1000000 per 1h", func(b *testing.B) {
		run(b, Tier{Requests: 1_000_000, Window: time.Hour}, false)
	})
	b.Run("hot key refused", func(b *testing.B) { run(b, refusedTier, false) })
	b.Run("parallel allowed", func(b *testing.B) { run(b, allowed, true) })
}
