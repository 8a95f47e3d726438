package throttle

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// newRedisClient builds the go-redis client for opts: a plain client for
// URL, a cluster client for Cluster. opts.Timeout is set.
//
// Both are tuned to fail fast rather than queue: dial, read, write and pool
// timeouts all equal Timeout, one dial attempt per connection, no command
// retries on a node (a retried script could count a request twice), and the
// context deadline is applied to the socket. The pool keeps go-redis' default
// size (10 connections per GOMAXPROCS, per node) unless the URL says
// pool_size.
func newRedisClient(opts RedisOptions) (redis.UniversalClient, error) {
	urls := opts.Cluster
	switch {
	case opts.URL != "" && len(urls) > 0:
		return nil, errors.New("throttle: redis: a URL and a cluster given; want one of them")
	case opts.URL != "":
		urls = []string{opts.URL}
	case len(urls) == 0:
		return nil, errors.New("throttle: redis URL is empty")
	}
	parsed := make([]*redis.Options, len(urls))
	for i, u := range urls {
		o, err := parseRedisURL(u)
		if err != nil {
			if opts.URL == "" {
				return nil, fmt.Errorf("throttle: redis cluster URL %d of %d: %w", i+1, len(urls), err)
			}
			return nil, fmt.Errorf("throttle: %w", err)
		}
		parsed[i] = o
	}
	first := parsed[0]
	first.DialTimeout = opts.Timeout
	first.ReadTimeout = opts.Timeout
	first.WriteTimeout = opts.Timeout
	first.PoolTimeout = opts.Timeout
	first.ContextTimeoutEnabled = true
	first.DialerRetries = 1
	first.MaxRetries = -1
	if first.Protocol == 0 {
		first.Protocol = 2 // no HELLO round trip; every Redis-compatible server speaks it
	}
	first.DisableIdentity = true
	first.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if opts.URL != "" {
		if opts.TLSConfig != nil {
			first.TLSConfig = opts.TLSConfig
		}
		return redis.NewClient(first), nil
	}
	co, err := clusterOptions(parsed)
	if err != nil {
		return nil, err
	}
	if opts.TLSConfig != nil {
		co.TLSConfig = opts.TLSConfig
	}
	// MOVED and ASK redirects are followed (the script did not run); a
	// failed node is retried only while the call's deadline allows, which
	// is never after a read timeout, since the deadline is the timeout.
	co.MaxRedirects = 3
	// Routing policies fetch COMMAND info on first use with their own 5s
	// deadline; a one-key script needs none of it.
	co.DisableRoutingPolicies = true
	return redis.NewClusterClient(co), nil
}

// parseRedisURL is redis.ParseURL with errors that never repeat the URL (and
// so its password).
func parseRedisURL(u string) (*redis.Options, error) {
	o, err := redis.ParseURL(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("invalid redis URL: %w", err)
	}
	return o, nil
}

// clusterOptions merges the seeds' parsed URLs into cluster options. The
// seeds must agree on everything but the address: the credentials and TLS
// apply to every node the cluster reports, and a cluster has only
// database 0. Connection settings (query parameters, and the tuning
// newRedisClient applied) are taken from the first.
func clusterOptions(seeds []*redis.Options) (*redis.ClusterOptions, error) {
	first := seeds[0]
	for i, o := range seeds {
		switch {
		case o.Network == "unix":
			return nil, fmt.Errorf("throttle: redis cluster: URL %d of %d is a unix socket; cluster seeds are redis:// or rediss:// URLs", i+1, len(seeds))
		case o.DB != 0:
			return nil, fmt.Errorf("throttle: redis cluster: URL %d of %d selects database %d; a cluster has only database 0", i+1, len(seeds), o.DB)
		case o.Username != first.Username || o.Password != first.Password:
			return nil, fmt.Errorf("throttle: redis cluster: URL %d of %d has other credentials than URL 1; every node takes the same", i+1, len(seeds))
		case (o.TLSConfig == nil) != (first.TLSConfig == nil):
			return nil, fmt.Errorf("throttle: redis cluster: URLs mix redis:// and rediss://")
		}
	}
	co := &redis.ClusterOptions{
		Username:                 first.Username,
		Password:                 first.Password,
		Protocol:                 first.Protocol,
		ClientName:               first.ClientName,
		DialTimeout:              first.DialTimeout,
		ReadTimeout:              first.ReadTimeout,
		WriteTimeout:             first.WriteTimeout,
		ContextTimeoutEnabled:    first.ContextTimeoutEnabled,
		DialerRetries:            first.DialerRetries,
		MaxRetries:               first.MaxRetries,
		PoolFIFO:                 first.PoolFIFO,
		PoolSize:                 first.PoolSize,
		PoolTimeout:              first.PoolTimeout,
		MinIdleConns:             first.MinIdleConns,
		MaxIdleConns:             first.MaxIdleConns,
		MaxActiveConns:           first.MaxActiveConns,
		ConnMaxIdleTime:          first.ConnMaxIdleTime,
		ConnMaxLifetime:          first.ConnMaxLifetime,
		DisableIdentity:          first.DisableIdentity,
		MaintNotificationsConfig: first.MaintNotificationsConfig,
	}
	for _, o := range seeds {
		co.Addrs = append(co.Addrs, o.Addr)
	}
	if first.TLSConfig != nil {
		// ParseURL names the first host; each node must be checked against
		// its own address instead, which an empty ServerName does.
		tc := first.TLSConfig.Clone()
		tc.ServerName = ""
		co.TLSConfig = tc
	}
	return co, nil
}
