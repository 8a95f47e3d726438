package throttle

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// redisCluster is a real Redis Cluster of three masters (no replicas) on
// loopback, created with redis-cli --cluster create and stopped by
// t.Cleanup.
type redisCluster struct {
	nodes []*redisServer
}

// startRedisCluster starts three cluster-enabled redis-servers on free ports
// (client and bus), joins them into one cluster and waits until every node
// sees all 16384 slots served.
func startRedisCluster(t testing.TB) *redisCluster {
	t.Helper()
	cli := lookRedisTool(t, "redis-cli")
	c := &redisCluster{}
	for range 3 {
		c.nodes = append(c.nodes, startRedis(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // in the server's own --dir
			"--cluster-port", strconv.Itoa(freePort(t)),
			// A lost node is declared failed after a second, not fifteen.
			"--cluster-node-timeout", "1000",
		))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create:\n%s", out)

	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.nodes {
		raw := redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2})
		for {
			info, err := raw.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				infoField(info, "cluster_slots_ok") == 16384 && infoField(info, "cluster_known_nodes") == 3 {
				break
			}
			if time.Now().After(deadline) {
				_ = raw.Close()
				t.Fatalf("cluster node %s not ready: %v\n%s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = raw.Close()
	}
	return c
}

// URLs are the nodes' redis:// URLs.
func (c *redisCluster) URLs() []string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = fmt.Sprintf("redis://%s", n.Addr())
	}
	return urls
}

// owner returns the index of the node serving the slot of key: the one
// that answers a command on key instead of redirecting it (asked through
// plain clients, not the code under test).
func (c *redisCluster) owner(t testing.TB, key string) int {
	t.Helper()
	for i, n := range c.nodes {
		raw := redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2, MaxRetries: -1})
		err := raw.Exists(context.Background(), key).Err()
		_ = raw.Close()
		if err == nil {
			return i
		}
		require.ErrorContains(t, err, "MOVED")
	}
	t.Fatalf("no node serves %q", key)
	return -1
}
