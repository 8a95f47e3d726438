package throttle

import (
	"context"
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxKeys is the number of keys a Local tracks at most when
// LocalOptions.MaxKeys is not set.
const DefaultMaxKeys = 1_000_000

const (
	// numShards is the number of independently locked parts of a Local.
	numShards = 64
	// initialSlots is the ring size of a new key (capped by its capacity);
	// it doubles as needed up to the capacity.
	initialSlots = 2
	// evictSample is how many keys of a shard eviction looks at.
	evictSample = 16
	// shrinkMinPeak is the map size from which Sweep rebuilds a shard's map
	// that has shrunk to a quarter of its peak, so Go's maps, which never
	// shrink on delete, give their memory back.
	shrinkMinPeak = 1024
)

// LocalOptions configures NewLocal. The zero value is usable.
type LocalOptions struct {
	// Now is the clock; default time.Now. Tests inject a fake clock.
	Now func() time.Time
	// SweepInterval, when positive, makes NewLocal start a goroutine that
	// calls Sweep that often, until Close. When zero, the owner calls Sweep
	// itself (or never: MaxKeys still bounds memory).
	SweepInterval time.Duration
	// MaxKeys caps the number of keys tracked at once; when a new key
	// arrives at the cap, one key is evicted (see Local). Values <= 0 mean
	// DefaultMaxKeys.
	MaxKeys int
}

// Local is an in-memory Limiter with a bucketed sliding window per key (see
// the package documentation). It is safe for concurrent use and meant to be
// long lived: one Local can be shared by successive configurations, for
// example stored in a caddy.UsagePool (it implements Destruct for that), so
// counters survive config reloads. Its state is per process: several Caddy
// instances each count separately; use Redis to share limits.
//
// When MaxKeys keys are tracked and a new key arrives, Local evicts one key
// rather than refusing to track the new one: an idle key if one is found,
// else the least recently used of a small random sample from one shard. An
// evicted key that was still active restarts with a full budget. Nothing is
// ever refused for lack of room, and memory never grows past the cap.
type Local struct {
	now     func() time.Time
	base    time.Time // the clock's first reading
	epoch   int64     // base in nanoseconds since the Unix epoch
	seed    maphash.Seed
	maxKeys int64

	keys      atomic.Int64 // keys tracked, plus slots reserved for keys being added
	evictions atomic.Uint64

	shards [numShards]shard

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// shard is one lock and the keys hashed to it, padded to its own cache line.
type shard struct {
	mu   sync.Mutex
	m    map[string]*entry
	peak int // largest len(m) since the map was last rebuilt
	_    [40]byte
}

// entry is the window of one key: its buckets, oldest first, in ring[head],
// ring[head+1], ... (mod len(ring)), n of them, holding total requests;
// len(ring) <= capacity(requests).
type entry struct {
	ring     []bucket
	head     int
	n        int
	total    int
	requests int
	window   time.Duration
}

// bucket is requests allowed within one grid cell: n of them, the newest at
// t (see Local.nanos).
type bucket struct {
	t int64
	n int
}

// NewLocal returns a Local configured by opts and, when opts.SweepInterval is
// positive, starts its sweep goroutine; Close stops it.
func NewLocal(opts LocalOptions) *Local {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	base := opts.Now()
	l := &Local{
		now:     opts.Now,
		base:    base,
		epoch:   base.UnixNano(),
		seed:    maphash.MakeSeed(),
		maxKeys: int64(opts.MaxKeys),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*entry)
	}
	if opts.SweepInterval > 0 {
		l.stop = make(chan struct{})
		l.done = make(chan struct{})
		go l.sweepLoop(opts.SweepInterval)
	}
	return l
}

// Allow counts one request for key under tier. It never returns an error for
// a valid tier (ctx is not used); an invalid tier gives an error wrapping
// ErrInvalidTier. An unlimited tier is allowed without tracking the key.
//
// When tier's Requests or Window differ from those of the key's previous
// call (the key moved to another tier, or the tier was reconfigured), the
// key's buckets are judged by the new Window and Requests; when the new tier
// keeps fewer buckets, the oldest merge into their successors. Changing
// tiers never grants a free burst.
//
// For a key already tracked, Allow takes one shard lock and does not
// allocate, unless the key's ring of buckets has to grow (at most
// Buckets+1 of them).
func (l *Local) Allow(_ context.Context, key string, tier Tier) (Decision, error) {
	if tier.Requests <= 0 || tier.Window <= 0 {
		if tier.Requests == 0 {
			return Decision{Allowed: true}, nil
		}
		return Decision{}, tier.Validate()
	}
	i := l.shardIndex(key)
	s := &l.shards[i]
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		s.mu.Unlock()
		return l.allowNew(i, key, tier), nil
	}
	d := e.allow(l.nanos(l.now()), tier)
	s.mu.Unlock()
	return d, nil
}

// allowNew adds key to shard i, making room first when the cap is reached.
func (l *Local) allowNew(i int, key string, tier Tier) Decision {
	l.reserve(i)
	s := &l.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e != nil {
		// Another goroutine added the key meanwhile.
		l.keys.Add(-1)
	} else {
		e = &entry{requests: tier.Requests, window: tier.Window}
		e.ring = make([]bucket, min(capacity(tier.Requests), initialSlots))
		s.m[strings.Clone(key)] = e
		s.peak = max(s.peak, len(s.m))
	}
	return e.allow(l.nanos(l.now()), tier)
}

// reserve takes one of the MaxKeys slots, evicting keys until one is free.
func (l *Local) reserve(start int) {
	for {
		c := l.keys.Load()
		if c < l.maxKeys {
			if l.keys.CompareAndSwap(c, c+1) {
				return
			}
			continue
		}
		if !l.evictOne(start) {
			// Every slot is reserved by a key being added right now.
			runtime.Gosched()
		}
	}
}

// evictOne removes one key. It samples up to evictSample keys, from shard
// start onwards, and removes the first idle key it meets; failing that, the
// sampled key whose newest request is the oldest (approximate LRU). It
// reports whether it removed a key.
func (l *Local) evictOne(start int) bool {
	now := l.nanos(l.now())
	var (
		lru       *entry
		lruKey    string
		lruShard  *shard
		lruNewest int64
		seen      int
	)
	for k := 0; k < numShards && seen < evictSample; k++ {
		s := &l.shards[(start+k)%numShards]
		s.mu.Lock()
		for key, e := range s.m { // map order is random: a random sample
			if e.idle(now) {
				delete(s.m, key)
				s.mu.Unlock()
				l.evicted()
				return true
			}
			if nw := e.newest(); lru == nil || nw < lruNewest {
				lru, lruKey, lruShard, lruNewest = e, key, s, nw
			}
			if seen++; seen >= evictSample {
				break
			}
		}
		s.mu.Unlock()
	}
	if lru == nil {
		return false
	}
	s := lruShard
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[lruKey] != lru {
		return false // removed meanwhile; the caller looks again
	}
	delete(s.m, lruKey)
	l.evicted()
	return true
}

func (l *Local) evicted() {
	l.keys.Add(-1)
	l.evictions.Add(1)
}

// Sweep forgets every key whose newest request has left its window at time
// now, and returns how many it removed. Forgetting such a key changes no later
// decision. It locks one shard at a time.
func (l *Local) Sweep(now time.Time) int {
	t := l.nanos(now)
	removed := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for key, e := range s.m {
			if e.idle(t) {
				delete(s.m, key)
				removed++
			}
		}
		if s.peak >= shrinkMinPeak && len(s.m) <= s.peak/4 {
			m := make(map[string]*entry, len(s.m))
			for key, e := range s.m {
				m[key] = e
			}
			s.m = m
			s.peak = len(m)
		}
		s.mu.Unlock()
	}
	l.keys.Add(-int64(removed))
	return removed
}

// Len returns the number of keys tracked (including keys being added at this
// instant).
func (l *Local) Len() int { return int(l.keys.Load()) }

// Evictions returns how many keys were evicted because MaxKeys was reached.
// A growing number means MaxKeys is too small for the traffic, and limits are
// no longer exact for the evicted keys.
func (l *Local) Evictions() uint64 { return l.evictions.Load() }

// Close stops the sweep goroutine, if any, and waits for it. It is idempotent
// and always returns nil. The counters stay usable: Allow and Sweep still
// work after Close.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
	})
	return nil
}

// Destruct calls Close. It makes Local a caddy.Destructor, so a
// caddy.UsagePool closes it when the last configuration using it is
// cleaned up.
func (l *Local) Destruct() error { return l.Close() }

func (l *Local) sweepLoop(every time.Duration) {
	defer close(l.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.Sweep(l.now())
		case <-l.stop:
			return
		}
	}
}

func (l *Local) shardIndex(key string) int {
	return int(maphash.String(l.seed, key) % numShards)
}

// nanos converts a time from the clock into the nanoseconds since the Unix
// epoch stored in buckets, measured from base (on the monotonic clock when
// both readings have one), so that a wall clock step does not move them.
// The bucket grid is aligned on the epoch, as it is on Redis' clock.
func (l *Local) nanos(t time.Time) int64 { return l.epoch + int64(t.Sub(l.base)) }

// allow applies the bucketed sliding window (see the package documentation)
// at time now (see Local.nanos).
func (e *entry) allow(now int64, tier Tier) Decision {
	retuned := e.requests != tier.Requests || e.window != tier.Window
	e.requests, e.window = tier.Requests, tier.Window
	if e.n > 0 {
		// Keep the buckets chronological even if the clock steps back.
		now = max(now, e.newest())
	}
	w := int64(e.window)
	cutoff := now - w
	for e.n > 0 && e.ring[e.head].t <= cutoff {
		e.total -= e.ring[e.head].n
		if e.head++; e.head == len(e.ring) {
			e.head = 0
		}
		e.n--
	}
	if e.n == 0 {
		e.head, e.total = 0, 0
	}
	if retuned {
		e.fit()
	}
	if e.total < e.requests {
		e.record(now)
		return Decision{
			Allowed:   true,
			Limit:     e.requests,
			Remaining: e.requests - e.total,
			Reset:     time.Duration(e.ring[e.head].t + w - now),
		}
	}
	// Room comes back when enough of the oldest buckets have left for the
	// rest to hold fewer than requests.
	left, j := e.total, 0
	for ; j < e.n-1; j++ {
		if left -= e.ring[e.index(j)].n; left < e.requests {
			break
		}
	}
	wait := time.Duration(e.ring[e.index(j)].t + w - now)
	return Decision{Limit: e.requests, Reset: wait, RetryAfter: wait}
}

// record counts one request at now in the newest bucket when now falls in
// its grid cell (or when no bucket is free), else in a new bucket.
func (e *entry) record(now int64) {
	e.total++
	if e.n > 0 {
		last := &e.ring[e.index(e.n-1)]
		g := grain(e.requests, int64(e.window))
		if last.t/g == now/g || e.n == capacity(e.requests) {
			last.t = now
			last.n++
			return
		}
	}
	if e.n == len(e.ring) {
		e.resize(min(2*len(e.ring), capacity(e.requests)))
	}
	e.ring[e.index(e.n)] = bucket{t: now, n: 1}
	e.n++
}

// fit shrinks the entry to the capacity of its (new) tier. When it has more
// buckets, the oldest are merged into their successors: their requests then
// count as made later, so the key never gains budget by a tier change.
func (e *entry) fit() {
	c := capacity(e.requests)
	for e.n > c {
		n := e.ring[e.head].n
		if e.head++; e.head == len(e.ring) {
			e.head = 0
		}
		e.n--
		e.ring[e.head].n += n
	}
	if len(e.ring) > c {
		e.resize(c)
	}
}

// resize replaces the ring by one of size slots (at least e.n) holding the
// buckets oldest first from index 0.
func (e *entry) resize(size int) {
	ring := make([]bucket, size)
	for j := range e.n {
		ring[j] = e.ring[e.index(j)]
	}
	e.ring, e.head = ring, 0
}

// index is the ring position of the j-th oldest bucket.
func (e *entry) index(j int) int {
	i := e.head + j
	if i >= len(e.ring) {
		i -= len(e.ring)
	}
	return i
}

// newest is the time of the latest recorded request; only meaningful when
// n > 0.
func (e *entry) newest() int64 {
	if e.n == 0 {
		return 0
	}
	return e.ring[e.index(e.n-1)].t
}

// idle reports whether every recorded request has left the window at now.
func (e *entry) idle(now int64) bool {
	return e.n == 0 || e.newest() <= now-int64(e.window)
}

// Interface guard.
var _ Limiter = (*Local)(nil)
