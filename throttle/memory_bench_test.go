package throttle

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The memory benchmarks do their work once, whatever b.N, and report bytes
// per identity (B/key): they measure state, not speed.

// heapAlloc is the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLocalMemory reports the heap a Local holds per key.
func BenchmarkLocalMemory(b *testing.B) {
	ctx := context.Background()
	hour := Tier{Requests: 100_000, Window: time.Hour}
	tests := []struct {
		name   string
		keys   int
		rounds int           // requests per key
		step   time.Duration // clock advance between rounds
		tier   Tier
	}{
		{"100000 keys, 1 request each", 100_000, 1, 0, Tier{Requests: 100, Window: time.Minute}},
		{"100000 keys, 100 requests each over an hour", 100_000, 100, 35 * time.Second, hour},
		{"100 keys, 90000 requests each over an hour", 100, 90_000, 39 * time.Millisecond, hour},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			keys := benchKeys(tt.keys)
			clk := newFakeClock()
			before := heapAlloc()
			l := NewLocal(LocalOptions{Now: clk.Now})
			for range tt.rounds {
				for _, k := range keys {
					if _, err := l.Allow(ctx, k, tt.tier); err != nil {
						b.Fatal(err)
					}
				}
				clk.Advance(tt.step)
			}
			after := heapAlloc()
			runtime.KeepAlive(l)
			runtime.KeepAlive(keys) // else their collection offsets the count
			b.ReportMetric(float64(after-before)/float64(tt.keys), "B/key")
		})
	}
}

// BenchmarkRedisMemory reports what Redis holds per identity: MEMORY USAGE of
// one identity's key, and the growth of used_memory per identity.
func BenchmarkRedisMemory(b *testing.B) {
	ctx := context.Background()
	srv := startRedis(b)
	r, err := NewRedis(RedisOptions{URL: srv.URL(), Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	raw := rawClient(b, srv)

	// hammer sends n requests for key from 8 goroutines.
	hammer := func(b *testing.B, key string, tier Tier, n int) {
		var wg sync.WaitGroup
		per := n / 8
		for range 8 {
			wg.Go(func() {
				for range per {
					if _, err := r.Allow(ctx, key, tier); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// usage reports MEMORY USAGE of key (B/key) and the length of the
	// value it holds (state-B).
	usage := func(b *testing.B, key string) {
		n, err := raw.MemoryUsage(ctx, r.storedKey(key), 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "B/key")
		n, err = raw.StrLen(ctx, r.storedKey(key)).Result()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "state-B")
	}

	b.Run("1 identity, 90000 requests in 100000 per 1h", func(b *testing.B) {
		key := benchKeys(1)[0]
		hammer(b, key, Tier{Requests: 100_000, Window: time.Hour}, 90_000)
		usage(b, key)
	})
	b.Run("1 identity, requests spread over a whole window", func(b *testing.B) {
		// A 2s window, so that the requests of a short run span all of it.
		key := benchKeys(2)[1]
		tier := Tier{Requests: 100_000, Window: 2 * time.Second}
		for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
			hammer(b, key, tier, 800)
		}
		usage(b, key)
	})
	runs := 0
	b.Run("10000 identities, 1 request each", func(b *testing.B) {
		used := func() float64 {
			s, err := raw.Info(ctx, "memory").Result()
			if err != nil {
				b.Fatal(err)
			}
			return float64(infoField(s, "used_memory"))
		}
		keys := benchKeys(10_000)
		tier := Tier{Requests: 100, Window: time.Hour}
		// New identities on every run of the function (the framework may
		// run it more than once).
		runs++
		scope := fmt.Sprintf("many-%d|", runs)
		before := used()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := g; i < len(keys); i += 8 {
					if _, err := r.Allow(ctx, scope+keys[i], tier); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric((used()-before)/float64(len(keys)), "B/key")
	})
}

// infoField reads an integer field of an INFO reply; -1 when absent.
func infoField(info, field string) int64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
