package throttle

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults for RedisOptions.
const (
	DefaultRedisTimeout   = 100 * time.Millisecond
	DefaultRedisKeyPrefix = "mtls_auth:throttle:"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL of the Redis server: redis://[user:password@]host[:port][/db], or
	// rediss:// for TLS. Query parameters understood by go-redis' ParseURL
	// (e.g. pool_size, protocol) are honoured, except the timeouts, which
	// Timeout sets. The URL may carry a password: never log it.
	URL string
	// Timeout bounds each Allow call as a whole: pool wait, dial, write and
	// read. Default DefaultRedisTimeout (100ms).
	Timeout time.Duration
	// KeyPrefix is prepended to every key. Default DefaultRedisKeyPrefix.
	KeyPrefix string
	// TLSConfig, when set, replaces the TLS configuration derived from a
	// rediss:// URL (e.g. to add a client certificate or a private CA). It
	// turns TLS on for redis:// URLs too.
	TLSConfig *tls.Config
}

// Redis is a Limiter whose counters live in a Redis server, so every Caddy
// instance using the same server (and KeyPrefix) shares one exact limit per
// key; see the package documentation for the algorithm. It is safe for
// concurrent use. NewRedis does not connect: the first Allow (or Ping) does,
// so an unreachable server never fails configuration loading.
//
// Each allowed request is one member of the key's sorted set; a key holds at
// most Requests members and expires one Window after its last request. When
// a key's tier changes, members older than the new Window are dropped and
// the count is compared with the new Requests: a lowered limit refuses until
// enough old requests have left the window, never grants a free burst.
//
// go-redis logs failed dials through its package-wide logger (standard log
// to stderr unless redis.SetLogger replaces it); this package leaves that
// global alone.
type Redis struct {
	client  *redis.Client
	timeout time.Duration
	prefix  string
	id      string // random per limiter, makes sorted-set members unique
	seq     atomic.Uint64
}

// allowScript is the sliding window: KEYS[1] the key, ARGV[1] the limit,
// ARGV[2] the window in microseconds, ARGV[3] the key's expiry in
// milliseconds, ARGV[4] a member suffix unique to this call. It returns
// {allowed 0|1, requests in window after this one, wait in microseconds},
// where wait is, when allowed, the time until the oldest request leaves the
// window and, when refused, the time until the window has room again. Scores
// are microseconds on the server's clock (exact in a double until 2255).
var allowScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
	redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. ':' .. ARGV[4])
	count = count + 1
	allowed = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local idx = 0
if allowed == 0 then idx = count - limit end
local e = redis.call('ZRANGE', KEYS[1], idx, idx, 'WITHSCORES')
local wait = 0
if e[2] then wait = tonumber(e[2]) + window - now end
return {allowed, count, wait}
`)

// NewRedis validates opts and returns a Redis limiter. It fails only on a bad
// URL; errors never contain the URL's password.
//
// The client is tuned to fail fast rather than queue: dial, read, write and
// pool timeouts all equal Timeout, one dial attempt per connection, no
// command retries (a retried script could count a request twice), and the
// context deadline is applied to the socket. The pool keeps go-redis' default
// size (10 connections per GOMAXPROCS) unless the URL says pool_size.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.URL == "" {
		return nil, errors.New("throttle: redis URL is empty")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultRedisKeyPrefix
	}
	o, err := redis.ParseURL(opts.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("throttle: invalid redis URL: %w", err)
	}
	if opts.TLSConfig != nil {
		o.TLSConfig = opts.TLSConfig
	}
	o.DialTimeout = opts.Timeout
	o.ReadTimeout = opts.Timeout
	o.WriteTimeout = opts.Timeout
	o.PoolTimeout = opts.Timeout
	o.ContextTimeoutEnabled = true
	o.DialerRetries = 1
	o.MaxRetries = -1
	if o.Protocol == 0 {
		o.Protocol = 2 // no HELLO round trip; every Redis-compatible server speaks it
	}
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return &Redis{
		client:  redis.NewClient(o),
		timeout: opts.Timeout,
		prefix:  opts.KeyPrefix,
		id:      hex.EncodeToString(id[:]) + ":",
	}, nil
}

// Allow counts one request for key under tier in Redis. An unlimited tier is
// allowed without contacting Redis. Any failure (Redis down, slow, timeout,
// unexpected reply) returns an error after at most about Timeout; the caller
// applies its on_error policy. A request that timed out may still have been
// counted by the server.
func (r *Redis) Allow(ctx context.Context, key string, tier Tier) (Decision, error) {
	if tier.Requests <= 0 || tier.Window <= 0 {
		if tier.Requests == 0 {
			return Decision{Allowed: true}, nil
		}
		return Decision{}, tier.Validate()
	}
	windowUS := max(int64((tier.Window+time.Microsecond-1)/time.Microsecond), 1)
	expireMS := max(int64((tier.Window+time.Millisecond-1)/time.Millisecond), 1)
	member := r.id + strconv.FormatUint(r.seq.Add(1), 36)

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := allowScript.Run(ctx, r.client, []string{r.prefix + key},
		tier.Requests, windowUS, expireMS, member).Int64Slice()
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

// Ping checks that the server answers, within Timeout. Use it to log the
// backend's state at startup; Allow does not need it.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("throttle: redis: %w", err)
	}
	return nil
}

// Close closes the connections to Redis. Allow fails after Close.
func (r *Redis) Close() error { return r.client.Close() }

// Interface guard.
var _ Limiter = (*Redis)(nil)
