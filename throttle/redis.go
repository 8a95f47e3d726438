package throttle

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for RedisOptions.
const (
	DefaultRedisTimeout   = 100 * time.Millisecond
	DefaultRedisKeyPrefix = "mtls_auth:throttle:"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL of one Redis server: redis://[user:password@]host[:port][/db], or
	// rediss:// for TLS. Query parameters understood by go-redis' ParseURL
	// (e.g. pool_size, protocol) are honoured, except the timeouts, which
	// Timeout sets. A URL may carry a password: never log it.
	URL string
	// Cluster, instead of URL, lists seed nodes of a Redis Cluster (one is
	// enough; more survive one being down): redis:// or rediss:// URLs with
	// the same credentials and database 0. The client learns the other nodes
	// from the cluster itself. Query parameters are taken from the first.
	Cluster []string
	// Timeout bounds each Allow call as a whole: pool wait, dial, write and
	// read (in a cluster, redirects included). Default DefaultRedisTimeout
	// (100ms).
	Timeout time.Duration
	// KeyPrefix is prepended to every key. Default DefaultRedisKeyPrefix.
	KeyPrefix string
	// TLSConfig, when set, replaces the TLS configuration derived from a
	// rediss:// URL (e.g. to add a client certificate or a private CA). It
	// turns TLS on for redis:// URLs too.
	TLSConfig *tls.Config
	// Log, when set, receives go-redis' own log lines (a failed dial, a
	// cluster node marked as failing) without their "redis: " prefix,
	// instead of stderr. go-redis has one logger per process: the first
	// NewRedis with a Log replaces it for good; each line then goes to the
	// Log of the newest open limiter that has one, or nowhere.
	Log func(msg string)
}

// Redis is a Limiter whose state lives in Redis (one server, or a Redis
// Cluster), so every Caddy instance using the same Redis (and KeyPrefix)
// shares one limit per key; see the package documentation for the algorithm
// and its bounds. It is safe for concurrent use. NewRedis does not connect:
// the first Allow (or Ping) does, so an unreachable server never fails
// configuration loading.
//
// A key's state is one Redis string of at most 8+16×(Buckets+1) bytes under
// KeyPrefix+"{"+key+"}", whatever the tier: the braces are a Redis Cluster
// hash tag, so everything about one identity lives in one slot. It expires
// one Window after the key's newest counted request.
type Redis struct {
	client    redis.UniversalClient
	timeout   time.Duration
	prefix    string
	removeLog func()
}

// allowScript is the bucketed sliding window (package documentation) on the
// server's clock. KEYS[1] is the key; ARGV[1] the limit, ARGV[2] the window,
// ARGV[3] the grain (bucket width), all times in microseconds; ARGV[4] the
// most buckets a key keeps. The state is a string of little-endian doubles:
// the number of requests counted, then (newest request, count) per bucket,
// oldest first; integers up to 2^53 are exact in a double. The grid of
// cells is aligned on the epoch. Long strings are what costs in Redis' Lua, so the script decodes
// only the buckets it looks at (the expired ones, the oldest, the newest)
// and, unless buckets left, updates the newest bucket and the header in place
// (SETRANGE, APPEND): its cost hardly depends on how many buckets there are.
// It returns {allowed 0|1, requests counted after this one, wait
// in microseconds}, where wait is, when allowed, the time until the oldest
// bucket leaves the window and, when refused, the time until the window has
// room again.
var allowScript = redis.NewScript(allowLua)

const allowLua = `
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local grain, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local key = KEYS[1]
local raw = redis.call('GET', key) or ''
local size = #raw
if size == 0 then raw = false end
if raw and (size < 24 or size % 16 ~= 8) then
	return redis.error_reply('throttle state of ' .. size .. ' bytes')
end
local total = 0
local off = 9 -- where the oldest kept bucket starts in raw
if raw then
	total = struct.unpack('<d', raw)
	-- Keep the buckets chronological even if the clock steps back.
	local newest = struct.unpack('<d', raw, size - 15)
	if now < newest then now = newest end
	while off < size do
		local t, n = struct.unpack('<dd', raw, off)
		if t > now - window then break end
		total = total - n
		off = off + 16
	end
end
local k = 0
if raw then k = (size - off + 1) / 16 end
if k == 0 then total = 0 end
-- Long strings are costly in Lua: the buckets are copied (body) only when
-- some left or merge, otherwise updated in place.
local body
if raw and (off > 9 or k > cap) then
	body = string.sub(raw, off)
	-- A tier with fewer buckets: the oldest merge into their successors.
	while k > cap do
		local _, n1, t2, n2 = struct.unpack('<dddd', body)
		body = struct.pack('<dd', t2, n1 + n2) .. string.sub(body, 33)
		k = k - 1
	end
end
if total >= limit then
	local src, at = body or raw, 1
	if not body then at = off end
	local left = total
	while at < #src - 15 do
		local _, n = struct.unpack('<dd', src, at)
		left = left - n
		if left < limit then break end
		at = at + 16
	end
	local wait = struct.unpack('<d', src, at) + window - now
	if body then
		redis.call('SET', key, struct.pack('<d', total) .. body, 'KEEPTTL')
	end
	return {0, total, wait}
end
total = total + 1
local oldest, tail = now, struct.pack('<dd', now, 1)
local merge = false
if k > 0 then
	local src, last, first = body or raw, 0, 0
	last = #src - 15
	if body then first = 1 else first = off end
	oldest = struct.unpack('<d', src, first)
	local t, n = struct.unpack('<dd', src, last)
	if math.floor(t / grain) == math.floor(now / grain) or k >= cap then
		merge = true
		tail = struct.pack('<dd', now, n + 1)
		if k == 1 then oldest = now end
	end
end
local ttl = math.max(math.ceil(window / 1000), 1)
local header = struct.pack('<d', total)
if body then
	if merge then body = string.sub(body, 1, #body - 16) end
	redis.call('SET', key, header .. body .. tail, 'PX', ttl)
elseif k == 0 then
	redis.call('SET', key, header .. tail, 'PX', ttl)
else
	if merge then
		redis.call('SETRANGE', key, size - 16, tail)
	else
		redis.call('APPEND', key, tail)
	end
	redis.call('SETRANGE', key, 0, header)
	redis.call('PEXPIRE', key, ttl)
end
return {1, total, oldest + window - now}
`

// NewRedis validates opts and returns a Redis limiter. It fails only on bad
// URLs; errors never contain a URL's password. See newRedisClient for how
// the client is tuned.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultRedisKeyPrefix
	}
	client, err := newRedisClient(opts)
	if err != nil {
		return nil, err
	}
	r := &Redis{client: client, timeout: opts.Timeout, prefix: opts.KeyPrefix, removeLog: func() {}}
	if opts.Log != nil {
		r.removeLog = addRedisLog(opts.Log)
	}
	return r, nil
}

// storedKey is the Redis key holding key's state.
func (r *Redis) storedKey(key string) string { return r.prefix + "{" + key + "}" }

// Allow counts one request for key under tier in Redis. An unlimited tier is
// allowed without contacting Redis. Any failure (Redis down, slow, timeout,
// a cluster without a master for the key's slot, unexpected reply) returns
// an error after at most about Timeout; the caller applies its on_error
// policy. A request that timed out may still have been counted by the
// server.
func (r *Redis) Allow(ctx context.Context, key string, tier Tier) (Decision, error) {
	if tier.Requests <= 0 || tier.Window <= 0 {
		if tier.Requests == 0 {
			return Decision{Allowed: true}, nil
		}
		return Decision{}, tier.Validate()
	}
	return r.run(ctx, allowScript, key, tier)
}

// run runs script (allowScript, or in tests a variant with a fake clock
// whose time is the last of args) for key and turns its reply into a
// Decision.
func (r *Redis) run(ctx context.Context, script *redis.Script, key string, tier Tier, args ...any) (Decision, error) {
	windowUS := max(int64((tier.Window+time.Microsecond-1)/time.Microsecond), 1)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	args = append([]any{tier.Requests, windowUS, grain(tier.Requests, windowUS), capacity(tier.Requests)}, args...)
	res, err := script.Run(ctx, r.client, []string{r.storedKey(key)}, args...).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("throttle: redis: %w", err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("throttle: redis: unexpected script reply %v", res)
	}
	allowed, count := res[0] == 1, int(res[1])
	wait := max(time.Duration(res[2])*time.Microsecond, 0)
	if allowed {
		return Decision{
			Allowed:   true,
			Limit:     tier.Requests,
			Remaining: max(tier.Requests-count, 0),
			Reset:     wait,
		}, nil
	}
	return Decision{Limit: tier.Requests, Reset: wait, RetryAfter: wait}, nil
}

// Ping checks that Redis answers, within Timeout: the server, or for a
// cluster every master (so a missing node shows at startup). Use it to log
// the backend's state; Allow does not need it.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var err error
	if c, ok := r.client.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	} else {
		err = r.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("throttle: redis: %w", err)
	}
	return nil
}

// Close closes the connections to Redis and unregisters Log. Allow fails
// after Close.
func (r *Redis) Close() error {
	r.removeLog()
	return r.client.Close()
}

// Interface guard.
var _ Limiter = (*Redis)(nil)
