package throttle

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedisClusterSharedBudget: two limiters (two cluster clients, one
// seeded with all three nodes, the other with two) hammer identities spread
// over a real 3-node cluster; each identity gets exactly its budget.
func TestRedisClusterSharedBudget(t *testing.T) {
	t.Parallel()
	c := startRedisCluster(t)
	urls := c.URLs()
	limiters := []*Redis{
		newTestRedis(t, "", RedisOptions{Cluster: urls, Timeout: 2 * time.Second}),
		newTestRedis(t, "", RedisOptions{Cluster: []string{urls[2], urls[1]}, Timeout: 2 * time.Second}),
	}
	for _, r := range limiters {
		require.NoError(t, r.Ping(context.Background()))
	}
	const limit, identities = 25, 12
	tier := Tier{Requests: limit, Window: time.Minute}
	keys := make([]string, identities)
	owners := map[int]int{}
	for i := range keys {
		keys[i] = Key("api:orders", fmt.Sprintf("%064x", i))
		// The stored key hashes by its tag, the identity itself.
		owners[c.owner(t, limiters[0].storedKey(keys[i]))]++
		require.Equal(t, c.owner(t, keys[i]), c.owner(t, limiters[0].storedKey(keys[i])))
	}
	require.Len(t, owners, 3, "the identities live on every node: %v", owners)

	allowed := make([]atomic.Int64, identities)
	var wg sync.WaitGroup
	for _, r := range limiters {
		for g := range 4 {
			wg.Go(func() {
				for i := range 10 * identities {
					k := (i + g*5) % identities
					d, err := r.Allow(context.Background(), keys[k], tier)
					if !assert.NoError(t, err) {
						return
					}
					if d.Allowed {
						allowed[k].Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	for i := range allowed {
		assert.EqualValues(t, limit, allowed[i].Load(), "identity %d: 80 requests for a budget of %d", i, limit)
	}
	// A last request through either limiter is refused, with the same wait.
	d0, err := limiters[0].Allow(context.Background(), keys[0], tier)
	require.NoError(t, err)
	d1, err := limiters[1].Allow(context.Background(), keys[0], tier)
	require.NoError(t, err)
	assert.False(t, d0.Allowed)
	assert.False(t, d1.Allowed)
	assert.InDelta(t, d0.RetryAfter, d1.RetryAfter, float64(time.Second))
}

// TestRedisClusterNodeKilled kills one of the three masters: every Allow
// returns within the timeout, an error for the identities the dead node
// served (and, once the others declare the cluster down, for all), never a
// hang.
func TestRedisClusterNodeKilled(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	c := startRedisCluster(t)
	r := newTestRedis(t, "", RedisOptions{Cluster: c.URLs(), Timeout: timeout})
	tier := Tier{Requests: 1000, Window: time.Minute}
	var keys []string
	var onDead []bool
	for i := range 12 {
		k := Key("api:orders", fmt.Sprintf("%064x", i))
		keys = append(keys, k)
		onDead = append(onDead, c.owner(t, r.storedKey(k)) == 0)
		_, err := r.Allow(context.Background(), k, tier)
		require.NoError(t, err)
	}
	require.Contains(t, onDead, true)
	require.Contains(t, onDead, false)

	c.nodes[0].stop()
	require.Error(t, r.Ping(context.Background()), "Ping checks every master")
	var slowest time.Duration
	var okLive, errLive int
	// Longer than the cluster's node timeout, so both states are seen.
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		for i, k := range keys {
			start := time.Now()
			_, err := r.Allow(context.Background(), k, tier)
			slowest = max(slowest, time.Since(start))
			switch {
			case onDead[i]:
				require.Error(t, err, "identity served by the dead node")
			case err == nil:
				okLive++
			default:
				errLive++
			}
		}
	}
	t.Logf("slowest Allow with a node dead: %s (timeout %s); live nodes: %d ok, %d errors", slowest, timeout, okLive, errLive)
	assert.Less(t, slowest, timeout+failSlack)
}

func TestNewRedisClusterOptions(t *testing.T) {
	t.Parallel()
	r, err := NewRedis(RedisOptions{Cluster: []string{
		"rediss://u:pw@10.0.0.1:7000?pool_size=7", "rediss://u:pw@10.0.0.2:7000/0", "rediss://u:pw@node3",
	}})
	require.NoError(t, err, "NewRedis does not connect")
	defer r.Close()
	cc, ok := r.client.(*redis.ClusterClient)
	require.True(t, ok, "a cluster client")
	o := cc.Options()
	assert.Equal(t, []string{"10.0.0.1:7000", "10.0.0.2:7000", "node3:6379"}, o.Addrs)
	assert.Equal(t, "u", o.Username)
	assert.Equal(t, "pw", o.Password)
	assert.Equal(t, 7, o.PoolSize)
	require.NotNil(t, o.TLSConfig)
	assert.Empty(t, o.TLSConfig.ServerName, "each node is checked against its own name")
	assert.Equal(t, DefaultRedisTimeout, o.DialTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.ReadTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.WriteTimeout)
	assert.Equal(t, DefaultRedisTimeout, o.PoolTimeout)
	assert.Equal(t, -1, o.MaxRetries, "no retries on a node: a retried script could count twice")
	assert.Equal(t, 1, o.DialerRetries)
	assert.True(t, o.ContextTimeoutEnabled)
	assert.True(t, o.DisableRoutingPolicies)
	assert.Equal(t, 2, o.Protocol)

	r, err = NewRedis(RedisOptions{Cluster: []string{"redis://a:1"}})
	require.NoError(t, err)
	defer r.Close()
	_, ok = r.client.(*redis.ClusterClient)
	assert.True(t, ok, "one seed is enough for a cluster")
}

func TestNewRedisClusterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		urls []string
		want string
	}{
		{"database", []string{"redis://a:1", "redis://b:1/2"}, "URL 2 of 2 selects database 2"},
		{"unix socket", []string{"redis://a:1", "unix:///tmp/r.sock"}, "URL 2 of 2 is a unix socket"},
		{"credentials", []string{"redis://:s3cret@a:1", "redis://:other@b:1"}, "URL 2 of 2 has other credentials"},
		{"mixed TLS", []string{"rediss://a:1", "redis://b:1"}, "mix redis:// and rediss://"},
		{"bad URL", []string{"redis://:s3cret@a:1", "redis://:s3cret@[::1", "redis://c:1"}, "redis cluster URL 2 of 3: invalid redis URL"},
		{"bad scheme", []string{"redis://a:1", "http://b:1"}, "redis cluster URL 2 of 2: invalid redis URL"},
		{"empty", []string{}, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRedis(RedisOptions{Cluster: tt.urls})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	_, err := NewRedis(RedisOptions{URL: "redis://a:1", Cluster: []string{"redis://b:1"}})
	require.ErrorContains(t, err, "a URL and a cluster given")
}
