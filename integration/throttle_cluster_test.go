//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Throttling through a real Redis Cluster (issue 14): two Caddy instances
// seeded with different nodes of a 3-node cluster share one exact budget,
// and with the node holding the identity's counters killed, requests answer
// per on_error at once.

// clusterNode is one cluster-enabled redis-server.
type clusterNode struct {
	port int
	proc *proc
}

// redisCli runs redis-cli against the node on port and returns its output.
func redisCli(t *testing.T, port int, args ...string) string {
	t.Helper()
	cli := lookTool(t, "redis-cli", "redis-tools")
	out, err := exec.Command(cli, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli -p %d %v: %v\n%s", port, args, err, out)
	}
	return string(out)
}

// startRedisCluster starts three masters (no replicas) on free loopback
// ports, joins them with redis-cli --cluster create, and waits until every
// node sees all slots served.
func startRedisCluster(t *testing.T) []*clusterNode {
	t.Helper()
	bin := lookTool(t, "redis-server", "redis-server")
	cli := lookTool(t, "redis-cli", "redis-tools")
	var nodes []*clusterNode
	create := []string{"--cluster", "create"}
	for range 3 {
		port, bus := freePort(t), freePort(t)
		dir := t.TempDir()
		p := startProc(t, "redis-server", dir, []string{"PATH=" + os.Getenv("PATH")}, bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "1000")
		if err := waitPort(port, 10*time.Second, p.exited); err != nil {
			t.Fatalf("redis-server did not start: %v\n%s", err, p.out.String())
		}
		nodes = append(nodes, &clusterNode{port: port, proc: p})
		create = append(create, fmt.Sprintf("127.0.0.1:%d", port))
	}
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		if !eventually(20*time.Second, func() bool {
			info := redisCli(t, n.port, "cluster", "info")
			return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:3")
		}) {
			t.Fatalf("cluster node %d not ready:\n%s", n.port, redisCli(t, n.port, "cluster", "info"))
		}
	}
	return nodes
}

func TestThrottleRedisClusterSharedExactLimit(t *testing.T) {
	p := newPKI(t)
	nodes := startRedisCluster(t)
	seeds := func(ns ...*clusterNode) string {
		s := "redis"
		for _, n := range ns {
			s += fmt.Sprintf(" redis://127.0.0.1:%d", n.port)
		}
		return s
	}
	const limit = 40
	aPort, bPort := freePort(t), freePort(t)
	// One instance knows all three nodes, the other two of them; when the
	// backend fails, A lets requests through and B refuses them.
	a := startCaddy(t, throttleSite(aPort, limit, seeds(nodes...), "allow"), p.files(t, "trust.pem"))
	b := startCaddy(t, throttleSite(bPort, limit, seeds(nodes[2], nodes[1]), "deny"), p.files(t, "trust.pem"))

	// 8 clients, half on each instance, 15 requests each: 120 requests for a
	// budget of 40. Exactly 40 may pass, however they interleave.
	ok, throttled, other := hammer(t, p, "bob", aPort, bPort)
	t.Logf("two instances, one 3-node cluster: %d allowed, %d throttled, %d other", ok, throttled, other)
	if ok != limit || throttled != 120-limit || other != 0 {
		t.Fatalf("want exactly %d allowed and %d throttled across both instances", limit, 120-limit)
	}

	// bob's counters are the only key: kill the node that holds it.
	dead := -1
	for i, n := range nodes {
		if strings.TrimSpace(redisCli(t, n.port, "dbsize")) == "1" {
			dead = i
		}
	}
	if dead < 0 {
		t.Fatal("no node holds the identity's counters")
	}
	nodes[dead].proc.stop()
	t.Logf("killed node %d (port %d), which held bob's counters", dead, nodes[dead].port)

	// bob is over budget, so 200 on A can only be on_error allow; B answers
	// on_error deny's 429 with Retry-After 1 (a real refusal says ~60).
	for i := 0; i < 5; i++ {
		start := time.Now()
		resp, err := p.getResp(t, aPort, "bob")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("node down, on_error allow: %v %v", resp, err)
		}
		resp, err = p.getResp(t, bPort, "bob")
		if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("node down, on_error deny: %v %v", resp, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("two requests with a node down took %v (timeout 100ms each)", d)
		}
	}
	for _, c := range []*caddyProc{a, b} {
		log := c.Log()
		if !strings.Contains(log, "throttle backend failed") {
			t.Errorf("the failure is not logged:\n%s", log)
		}
		// go-redis' own lines (failed dials to the dead node) go through
		// Caddy's logger, never straight to stderr.
		if !strings.Contains(log, "redis client") {
			t.Errorf("go-redis' lines do not reach Caddy's log:\n%s", log)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.HasPrefix(line, "redis: ") {
				t.Errorf("go-redis wrote to stderr past Caddy's logger: %q", line)
			}
		}
	}
}
