// Package throttle counts requests per key against named budgets (tiers) and
// says whether one more request fits. It is the throttle stage of
// caddy-mtls-auth: the caller builds a key from the API (or route) and the
// certificate fingerprint, looks up the certificate's Tier and calls
// Limiter.Allow; a refused Decision becomes a 429 `throttled` with
// Retry-After.
//
// The package is a plain library: no init, no Caddy imports. Two limiters
// implement Limiter.
//
// # The algorithm: a sliding window of at most 33 buckets
//
// Both limiters run the same algorithm, so that a key's state is small and
// of a size independent of its tier. Time is cut into a grid of cells of
// width g, aligned on the Unix epoch: for a tier of N requests per window W,
// g = W/Buckets (32), rounded up, when N > Buckets, else one clock tick (1ns
// locally, 1µs in Redis). A key keeps one bucket per cell it allowed
// requests in: the count of those requests and the time of the newest,
// oldest bucket first, and nothing else. A request at time now first drops
// every bucket whose newest request is at or before now-W, then is allowed
// when the remaining buckets hold fewer than N requests, and is counted in
// the newest bucket if now falls in its cell, else in a new one. Refused requests are not counted. Live buckets lie in
// at most Buckets+1 consecutive cells, so a key holds at most
// min(N, Buckets+1) buckets, whatever N and however many requests it made.
//
// In effect every request counts as made at its bucket's newest request,
// which is never earlier than the request and less than g later. Against an
// ideal sliding window of N per W (a request is allowed iff fewer than N
// allowed requests lie in (t-W, t]) this gives:
//
//   - Never more: in every interval (t-W, t], at most N requests are
//     allowed, for every key, fresh or not, however requests are spaced (as
//     long as its tier is not changed). A burst at a window boundary never
//     doubles the budget, as it can with fixed windows, with two weighted
//     fixed windows (which assume the previous window's requests were
//     evenly spread: up to almost 2N in one W) or with GCRA (N at once, then
//     one every W/N: 2N-1 in one W).
//   - At most g less: a request is always allowed when fewer than N requests
//     were allowed in (t-W-g, t]. Each request leaves the window at most g
//     later than in the ideal window, so Retry-After is at most g longer, a
//     client that keeps retrying is served at least N per W+g (32/33, about
//     97%, of the ideal rate), and RateLimit-Remaining is between N-1 minus
//     the requests allowed in (t-W-g, t] and N-1 minus those in (t-W, t].
//     A burst at one instant with nothing after it in its cell is exact: it
//     leaves exactly W later.
//   - Exact for small tiers: with N <= Buckets, g is one clock tick, every
//     distinct request time has its own bucket, and the limiter is the ideal
//     sliding window (the caddy-ratelimit sliding log).
//
// For a 100000 per 1h tier, g is 112.5s; for 100 per 1m, 1.875s.
// Decision.Reset and Decision.RetryAfter are the limiter's own future, not an
// estimate: a refused request repeated exactly RetryAfter later is allowed
// (unless other requests came in between), 1ns earlier it is refused; Reset
// is when the oldest bucket leaves and Remaining grows.
//
// # Local: in memory
//
// Local keeps each key's buckets in a ring that grows by doubling from two
// slots up to min(N, Buckets+1), so a key costs memory in proportion to the
// cells it used inside one window, never to its tier's budget. Once grown,
// Allow on an existing key does not allocate. Keys live in 64 shards picked
// by a hash of the key, each with its own mutex: there is no global lock on
// the request path.
//
// Memory is bounded. Sweep (run every LocalOptions.SweepInterval by a
// goroutine that Close stops) forgets keys whose newest request has left its
// window; forgetting such a key changes no future decision, so sweeping is
// lossless. LocalOptions.MaxKeys (default 1,000,000) caps the number of keys
// tracked at once: when a new key arrives and the cap is reached, Local
// evicts one key, preferring one that is already idle, else the least
// recently used of a small random sample (approximate LRU, as Redis does).
// An evicted key that was still active starts over with a fresh budget, so
// the bounds above hold for as long as the number of live keys stays under
// MaxKeys, and degrade gracefully, never by growing memory, beyond it. With
// 75-byte keys, a key costs about 210 bytes with its first buckets and 690
// with all 33 (BenchmarkLocalMemory), whatever its tier: at most about
// 700 MB for the default MaxKeys with every key's ring full, 210 MB with
// light keys.
//
// Local is a long-lived object: one value can serve successive
// configurations (for example through a caddy.UsagePool across config
// reloads), and a key whose Tier changed between calls keeps its buckets
// under the new tier (see Local.Allow).
//
// # Redis: shared by several instances
//
// Redis keeps the same buckets in one Redis string per key, updated by one
// Lua script that runs atomically on the server: read the state, drop what
// left the window, decide, count, write it back with an expiry at the newest
// request plus the window, and return what Decision needs. The script reads
// the time with Redis' TIME command, so instances with skewed clocks still
// agree, and every Caddy instance pointing at the same Redis shares one
// limit with the bounds above: two instances never allow more than N in a W
// together. The state is 8 bytes plus 16 per bucket: at most 536 bytes
// whatever the tier (MEMORY USAGE about 800 bytes with the key, 190 for a
// key that made all its requests within one cell, BenchmarkRedisMemory).
// Redis evicts idle keys itself by expiry. The key is
// KeyPrefix+"{"+key+"}": the braces are a Redis Cluster hash tag, so one
// identity's state lives in one slot.
//
// RedisOptions.Cluster lists seed nodes of a Redis Cluster: the client
// learns the cluster's layout from them and sends each key's script to the
// master of its slot (following MOVED and ASK redirects). The bounds hold for one
// server, or one master per slot: requests counted on a master that dies
// before replicating are forgotten, and a step back of the server's clock
// is absorbed (a key's buckets stay in order) but lengthens that key's
// window by the step. Sentinel URLs are not supported.
//
// Every call to Redis is bounded by RedisOptions.Timeout (default 100ms):
// dial, pool wait, write and read, and in a cluster redirects and retries on
// another node. When Redis is down, unreachable or silent, or a cluster node
// is lost, Allow returns an error within about that timeout and never hangs;
// the caller decides what an error means (the on_error allow|deny option).
package throttle
