package mtlsauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults and measured sizes of the verification cache.
const (
	// defaultCacheSize holds a fleet of 50,000 clients in 12 MB (70 MB
	// once placeholders have read every certificate's names and DER), and
	// never more than 100 MiB (see entryBudget): about what 10,000 entries
	// cost when an entry kept the parsed certificate and the header.
	defaultCacheSize = 50000
	// entryBudget is the average memory an entry may cost: the cache holds
	// at most cache_size entries and at most cache_size × entryBudget bytes,
	// so that large certificates lower the count instead of growing memory.
	// A typical entry costs a third of it (see entryFixedBytes).
	entryBudget = 2048
	// entryFixedBytes is what every entry costs besides what varies (the
	// reserve for an identity's DER and names, a failure): its map slot,
	// the entry and the identity, as BenchmarkCacheMemory measures it (255
	// bytes at 100,000 entries, 267 at 10,000: the map's load varies).
	entryFixedBytes = 272
	// failureTTL is how long a failed result is reused: long enough to
	// absorb a burst of the same bad header, short enough never to matter.
	failureTTL  = time.Second
	cacheShards = 16
	// maxChains bounds the interned intermediate lists (see internChain).
	maxChains = 1024
)

// cacheKey is the SHA-256 digest of the exact input a result was computed
// from. SHA-256 is collision-resistant, so two different inputs never share
// a result, and an entry costs 32 bytes of key whatever the input's size.
type cacheKey [sha256.Size]byte

// headerKey digests a request's certificate header lines and chain header
// lines. Every line is prefixed by its length and every header by its line
// count, so the encoding is injective: the same bytes split into other lines,
// or moved between the two headers, give another digest.
func headerKey(values, chain []string) cacheKey {
	d := newKeyDigest('h')
	d.strings(values)
	d.strings(chain)
	return d.sum()
}

// tlsKey digests a TLS connection's certificates (their DER), leaf first.
func tlsKey(certs []*x509.Certificate) cacheKey {
	d := newKeyDigest('t')
	d.length(len(certs))
	for _, c := range certs {
		d.bytes(c.Raw)
	}
	return d.sum()
}

// keyDigest is a length-prefixed SHA-256 encoding of an input, tagged by
// what the input is. Digests are pooled: a hit must not allocate.
type keyDigest struct {
	h   hash.Hash
	buf [4]byte
	out cacheKey // Sum's destination: a local would escape through the interface
}

var keyDigests = sync.Pool{New: func() any { return &keyDigest{h: sha256.New()} }}

func newKeyDigest(tag byte) *keyDigest {
	d := keyDigests.Get().(*keyDigest)
	d.h.Reset()
	d.buf[0] = tag
	d.h.Write(d.buf[:1])
	return d
}

func (d *keyDigest) length(n int) {
	binary.BigEndian.PutUint32(d.buf[:], uint32(n))
	d.h.Write(d.buf[:])
}

func (d *keyDigest) bytes(b []byte) {
	d.length(len(b))
	d.h.Write(b)
}

func (d *keyDigest) strings(lines []string) {
	d.length(len(lines))
	for _, s := range lines {
		// Viewed without a copy: the hash reads it and keeps nothing.
		d.bytes(unsafe.Slice(unsafe.StringData(s), len(s)))
	}
}

// sum returns the digest and the keyDigest to its pool.
func (d *keyDigest) sum() cacheKey {
	d.h.Sum(d.out[:0])
	k := d.out
	keyDigests.Put(d)
	return k
}

// cacheEntry is one remembered result: an identity, or a failure. It is
// immutable once stored, and small: a hit rebuilds the request's outcome
// from it (see outcome).
type cacheEntry struct {
	expires int64 // unix nanoseconds
	// The trust the result was computed against: a file reload or a
	// runtime store change (allow list, deny list) makes it stale.
	static *trustSet
	gen    uint64
	// size is the entry's accounted memory (see entrySize).
	size    int64
	profile string
	id      *identity // on success, compacted
	fail    *failure  // otherwise
}

// failure is what a cached failure tells: its reason, the detail for the
// error message and the fingerprint for the logs.
type failure struct {
	reason                    reason
	detail, rejectedFP        string
	rejectedCN, rejectedAlias string // for the rejection log line
}

// outcome is a new outcome of the entry's result for a request that
// presented from (through source): an identity's placeholders rebuild what
// the cache does not keep from it.
func (e *cacheEntry) outcome(source string, from presented) *outcome {
	o := &outcome{source: source, profile: e.profile, id: e.id}
	if f := e.fail; f != nil {
		o.reason, o.detail, o.rejectedFP = f.reason, f.detail, f.rejectedFP
		o.rejectedCN, o.rejectedAlias = f.rejectedCN, f.rejectedAlias
	} else {
		o.from = from
	}
	return o
}

// verifyCache maps digests of certificate inputs to verification results,
// so that a certificate seen before costs one digest and one map lookup. It
// is bounded in entries and in accounted bytes; when a shard is full,
// arbitrary entries make room (Go's map iteration order is random). Safe for
// concurrent use.
//
// It is the one bounded map of the plugin not built on golang-lru (which
// the decoder's parse cache, the remembered intermediates and the
// revocation caches use), because its semantics are its own: it is bounded
// in entries and in bytes at once (an entry's size is its leaf's, so large
// certificates must lower the count); every entry has its own expiry (the
// chain's earliest NotAfter, a revocation answer's validity, one second for
// failures) and the trust generation it was computed against, both checked
// on every read; and a hit, the request path of every known certificate,
// must stay a read-locked map lookup in one of 16 shards with no
// allocation, where an LRU takes an exclusive lock to reorder on every
// read. Recency buys nothing here: the entries that matter are hit often
// enough to come back at once after an arbitrary eviction.
type verifyCache struct {
	maxEntries int   // per shard
	maxBytes   int64 // per shard
	shards     [cacheShards]cacheShard
	entries    atomic.Int64
	bytes      atomic.Int64
	// chains interns the intermediates of cached identities, so that the
	// clients of one CA share one copy (see internChain).
	chains *lru.Cache[cacheKey, [][]byte]
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[cacheKey]*cacheEntry
	bytes int64
}

// newVerifyCache makes a cache of about size entries; nil when size < 0.
func newVerifyCache(size int) *verifyCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = defaultCacheSize
	}
	perShard := max(1, size/cacheShards)
	chains, _ := lru.New[cacheKey, [][]byte](maxChains) // errs only for a size < 1
	c := &verifyCache{maxEntries: perShard, maxBytes: int64(perShard) * entryBudget, chains: chains}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*cacheEntry)
	}
	return c
}

// shard picks a key's shard by its first byte: the key is a digest, so
// shards fill evenly. (Anyone can aim inputs at one shard; that only evicts
// within it, which a flood over all shards does as well.)
func (c *verifyCache) shard(k *cacheKey) *cacheShard {
	return &c.shards[k[0]%cacheShards]
}

// get returns the entry for k if it is still valid against static and gen.
func (c *verifyCache) get(k *cacheKey, now int64, static *trustSet, gen uint64) *cacheEntry {
	sh := c.shard(k)
	sh.mu.RLock()
	e := sh.m[*k]
	sh.mu.RUnlock()
	if e == nil || e.expires <= now || e.static != static || e.gen != gen {
		return nil
	}
	return e
}

// put remembers o, the result for k, until expires. A success's identity
// is stored compacted (see identity.compact), never the request's own.
func (c *verifyCache) put(k *cacheKey, o *outcome, expires int64, static *trustSet, gen uint64) {
	e := &cacheEntry{expires: expires, static: static, gen: gen, profile: o.profile, size: entrySize(o)}
	if o.id != nil {
		e.id = o.id.compact(c.internChain)
	} else {
		e.fail = &failure{reason: o.reason, detail: o.detail, rejectedFP: o.rejectedFP,
			rejectedCN: o.rejectedCN, rejectedAlias: o.rejectedAlias}
	}
	if e.size > c.maxBytes {
		return
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[*k]; old != nil {
		c.remove(sh, k, old)
	}
	for key, old := range sh.m {
		if len(sh.m) < c.maxEntries && sh.bytes+e.size <= c.maxBytes {
			break
		}
		c.remove(sh, &key, old)
	}
	sh.m[*k] = e
	sh.bytes += e.size
	c.entries.Add(1)
	c.bytes.Add(e.size)
}

// remove deletes an entry of sh; sh must be locked.
func (c *verifyCache) remove(sh *cacheShard, k *cacheKey, e *cacheEntry) {
	delete(sh.m, *k)
	sh.bytes -= e.size
	c.entries.Add(-1)
	c.bytes.Add(-e.size)
}

// len is the number of entries, without locking.
func (c *verifyCache) len() int { return int(c.entries.Load()) }

// size is the accounted memory of the entries, in bytes, without locking.
func (c *verifyCache) size() int64 { return c.bytes.Load() }

// entrySize is the memory an entry for o may cost: the measured fixed
// part, then what varies: the reserve for the DER and names that
// placeholders may make a cached identity keep (identity.reserve), or a
// failure and its strings.
func entrySize(o *outcome) int64 {
	n := entryFixedBytes
	if o.id != nil {
		n += o.id.reserve()
	} else {
		n += int(unsafe.Sizeof(failure{})) + len(o.detail) + len(o.rejectedFP) + len(o.rejectedCN) + len(o.rejectedAlias) + 4*allocRounding
	}
	return int64(n)
}

// internChain returns the one copy of a list of intermediates' DER that
// the cache keeps, so that an entry holds a slice header, not certificates:
// every client of one CA presents the same intermediates. The list it
// returns is owned by the cache (never the request's buffers, which for a
// TLS connection hold the whole handshake message).
func (c *verifyCache) internChain(ders [][]byte) [][]byte {
	if len(ders) == 0 {
		return nil
	}
	d := newKeyDigest('c')
	d.length(len(ders))
	for _, der := range ders {
		d.bytes(der)
	}
	k := d.sum()
	if v, ok := c.chains.Get(k); ok {
		return v
	}
	owned := make([][]byte, len(ders))
	for i, der := range ders {
		owned[i] = append([]byte(nil), der...)
	}
	c.chains.Add(k, owned)
	return owned
}
