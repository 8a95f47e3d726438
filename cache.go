package mtlsauth

import (
	"crypto/x509"
	"hash/maphash"
	"sync"
	"time"
	"unsafe"
)

// Defaults of the verification cache.
const (
	defaultCacheSize = 10000
	// cacheMaxBytes bounds the bytes of keys held, whatever their count:
	// a flood of large unique junk headers must not grow memory.
	cacheMaxBytes = 32 << 20
	// failureTTL is how long a failed result is reused: long enough to
	// absorb a burst of the same bad header, short enough never to matter.
	failureTTL = time.Second
	// entryOverhead approximates an entry's memory besides its key.
	entryOverhead = 256
	cacheShards   = 16
)

// cacheKey is the exact input a result was computed from: the certificate
// header's value and the chain header's value (or, for the TLS source, the
// leaf's and first intermediate's DER). Comparing the full strings, not a
// digest, means two inputs can never share a result.
type cacheKey struct{ cert, chain string }

func (k cacheKey) size() int { return len(k.cert) + len(k.chain) + entryOverhead }

// cacheEntry is one remembered result. It is immutable once stored.
type cacheEntry struct {
	key     cacheKey
	result  outcome // never handed out: callers get a copy
	expires int64   // unix nanoseconds
	// The trust the result was computed against: a file reload or a
	// runtime store change (allow list, deny list) makes it stale.
	static *trustSet
	gen    uint64
}

// verifyCache maps exact certificate inputs to verification results, so
// that a certificate seen before costs one map lookup. It is bounded in
// entries and in bytes; when a shard is full, arbitrary entries make room
// (Go's map iteration order is random). Safe for concurrent use.
//
// It is the one bounded map of the plugin not built on golang-lru (which
// the decoder's parse cache, the remembered intermediates and the
// revocation caches use), because its semantics are its own: it is bounded
// in entries and in key bytes at once (a flood of large unique junk headers
// must not grow memory, whatever their count); every entry has its own
// expiry (the chain's earliest NotAfter, a revocation answer's validity, one
// second for failures) and the trust generation it was computed against,
// both checked on every read; and a hit, the request path of every known
// certificate, must stay a read-locked map lookup in one of 16 shards with
// no allocation, where an LRU takes an exclusive lock to reorder on every
// read. Recency buys nothing here: the entries that matter are hit often
// enough to come back at once after an arbitrary eviction.
type verifyCache struct {
	seed       maphash.Seed
	maxEntries int // per shard
	maxBytes   int // per shard
	shards     [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[cacheKey]*cacheEntry
	bytes int
}

// newVerifyCache makes a cache of about size entries; nil when size < 0.
func newVerifyCache(size int) *verifyCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = defaultCacheSize
	}
	c := &verifyCache{seed: maphash.MakeSeed(), maxEntries: max(1, size/cacheShards), maxBytes: cacheMaxBytes / cacheShards}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*cacheEntry)
	}
	return c
}

func (c *verifyCache) shard(k cacheKey) *cacheShard {
	// Hash a bounded tail only: the shard spreads load, exactness comes
	// from the map's full-key comparison.
	s := k.cert
	if len(s) > 64 {
		s = s[len(s)-64:]
	}
	return &c.shards[maphash.String(c.seed, s)%cacheShards]
}

// get returns the entry for k if it is still valid against static and gen.
func (c *verifyCache) get(k cacheKey, now int64, static *trustSet, gen uint64) *cacheEntry {
	sh := c.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	if e == nil || e.expires <= now || e.static != static || e.gen != gen {
		return nil
	}
	return e
}

// put stores a result, making room if needed. The key's strings are
// copied when they alias memory the cache does not own.
func (c *verifyCache) put(e *cacheEntry) {
	size := e.key.size()
	if size > c.maxBytes {
		return
	}
	sh := c.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[e.key]; old != nil {
		sh.bytes -= old.key.size()
		delete(sh.m, e.key)
	}
	for k, old := range sh.m {
		if len(sh.m) < c.maxEntries && sh.bytes+size <= c.maxBytes {
			break
		}
		sh.bytes -= old.key.size()
		delete(sh.m, k)
	}
	sh.m[e.key] = e
	sh.bytes += size
}

// len is the number of entries (for tests).
func (c *verifyCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}

// tlsKey is the cache key of a TLS connection's certificates: the leaf's
// and first intermediate's DER, viewed as strings without copying (put
// copies them). Longer chains are not cached.
func tlsKey(certs []*x509.Certificate) (cacheKey, bool) {
	switch len(certs) {
	case 1:
		return cacheKey{cert: bytesView(certs[0].Raw)}, true
	case 2:
		return cacheKey{cert: bytesView(certs[0].Raw), chain: bytesView(certs[1].Raw)}, true
	}
	return cacheKey{}, false
}

// bytesView is b as a string without a copy; b must not change while the
// string is in use.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ownedKey copies a key's strings so that the cache owns them.
func ownedKey(k cacheKey) cacheKey {
	return cacheKey{cert: string([]byte(k.cert)), chain: string([]byte(k.chain))}
}
