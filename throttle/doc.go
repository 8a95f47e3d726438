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
// # Local: exact sliding window in memory
//
// Local keeps, per key, the timestamps of the requests it allowed during the
// last Window, oldest first, in a ring buffer of at most Tier.Requests slots
// (the caddy-ratelimit algorithm). A request at time now first drops every
// timestamp t with t <= now-Window, then is allowed when fewer than Requests
// timestamps remain, and its timestamp is recorded. Refused requests are not
// recorded. The limit is therefore exact: in every half-open interval of
// length Window, (t-Window, t], at most Requests requests are allowed, so a
// burst at a window boundary can never double the budget, as it can with fixed
// windows. A refused request may retry exactly when the oldest recorded
// timestamp leaves the window (Decision.RetryAfter).
//
// The ring buffer grows by doubling from a few slots up to Tier.Requests, so
// a key costs memory in proportion to the most requests it actually made
// inside one window, not to its tier's budget. Once grown, Allow on an
// existing key does not allocate. Keys live in 64 shards picked by a hash of
// the key, each with its own mutex: there is no global lock on the request
// path.
//
// Memory is bounded. Sweep (run every LocalOptions.SweepInterval by a
// goroutine that Close stops) forgets keys whose newest request has left its
// window; forgetting such a key changes no future decision, so sweeping is
// lossless. LocalOptions.MaxKeys (default 1,000,000) caps the number of keys
// tracked at once: when a new key arrives and the cap is reached, Local
// evicts one key, preferring one that is already idle, else the least
// recently used of a small random sample (approximate LRU, as Redis does).
// An evicted key that was still active starts over with a fresh budget, so
// the limit is exact for as long as the number of live keys stays under
// MaxKeys, and degrades gracefully, never by growing memory, beyond it.
// A key costs about 130 bytes plus the key's length plus 8 bytes per ring
// slot (measured: 207 bytes for a 75-byte key and a one-slot ring), so the
// worst case is MaxKeys × (130 bytes + key + 8 bytes × the largest
// Tier.Requests in use); about 210 MB for the default MaxKeys with small
// budgets.
//
// Local is a long-lived object: one value can serve successive
// configurations (for example through a caddy.UsagePool across config
// reloads), and a key whose Tier changed between calls keeps its newest
// timestamps, up to the new Requests, under the new Window (see Local.Allow).
//
// # Redis: exact sliding window shared by several instances
//
// Redis keeps the same sliding window in a Redis sorted set per key (score =
// microseconds on the Redis server's clock, one member per allowed request),
// updated by one Lua script that runs atomically on the server: remove the
// members older than the window, count, add one if under the limit, set the
// key's expiry to the window, and return what Decision needs. Every Caddy
// instance pointing at the same Redis therefore shares one exact limit, and
// because the script reads the time with Redis' TIME command, instances with
// skewed clocks still agree. Redis evicts idle keys itself by expiry; a key
// holds at most Requests members. The exactness holds for one Redis server
// (or a primary whose replicas only take over on failure): requests counted
// on a primary that dies before replicating are forgotten, and a step back of
// the server's clock briefly widens the window. Redis Cluster and Sentinel
// URLs are not supported.
//
// Every call to Redis is bounded by RedisOptions.Timeout (default 100ms):
// dial, pool wait, write and read. When Redis is down, unreachable or
// silent, Allow returns an error within about that timeout and never hangs;
// the caller decides what an error means (the on_error allow|deny option).
package throttle
