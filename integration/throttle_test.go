//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Throttling tiers (issue 5): 429 and the RateLimit headers through a real
// Caddy, counters across a reload, and an exact limit shared by two Caddy
// instances through a real redis-server.

// throttleSite throttles every certificate the pool trusts with tier
// "bronze" (limit requests per minute), counted by backend.
func throttleSite(port, limit int, backend, onError string) string {
	return fmt.Sprintf(`{
	mtls_auth {
		tier bronze %d 1m
		throttle %s
		on_error %s
	}
}

:%d {
	mtls_auth {
		trust_pool file trust.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
		default_tier bronze
	}
	respond "ok tier={http.mtls.tier}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, limit, backend, onError, port)
}

// getResp is p.get keeping the response headers.
func (p *pki) getResp(t *testing.T, port int, name string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	req.Header.Set("X-Client-Cert", derBase64(p.Clients[name]))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestThrottleLocal(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	c := startCaddy(t, throttleSite(port, 5, "local", "allow"), p.files(t, "trust.pem"))
	for i := 1; i <= 3; i++ {
		resp, err := p.getResp(t, port, "bob")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		if resp.Header.Get("RateLimit-Limit") != "5" || resp.Header.Get("RateLimit-Remaining") != strconv.Itoa(5-i) || resp.Header.Get("RateLimit-Reset") == "" {
			t.Errorf("request %d: RateLimit headers %v", i, resp.Header)
		}
	}
	// A reload in between: the counters carry over.
	c.Reload(throttleSite(port, 5, "local", "allow"))
	for i := 4; i <= 5; i++ {
		if s, b := p.get(t, port, "bob"); s != 200 {
			t.Fatalf("request %d after reload: %d %q", i, s, b)
		}
	}
	resp, err := p.getResp(t, port, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 {
		t.Fatalf("6th request: %d, want 429 (the budget used before the reload must count)", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want whole seconds in 1..60", resp.Header.Get("Retry-After"))
	}
	if s, b := p.get(t, port, "bob"); s != 429 || b != "429 throttled" {
		t.Errorf("throttled body: %d %q", s, b)
	}
	if s, _ := p.get(t, port, "alice"); s != 200 {
		t.Errorf("another certificate has its own budget: %d", s)
	}
}

// hammer sends 120 requests for client name from 8 concurrent clients, half
// on each port, 15 each, and counts the answers: 200, 429 and anything else
// (a transport error included). With a shared budget below 120, exactly the
// budget must pass however they interleave.
func hammer(t *testing.T, p *pki, name string, aPort, bPort int) (ok, throttled, other int64) {
	t.Helper()
	var okN, throttledN, otherN atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		port := aPort
		if w%2 == 1 {
			port = bPort
		}
		wg.Go(func() {
			for i := 0; i < 15; i++ {
				resp, err := p.getResp(t, port, name)
				switch {
				case err != nil:
					otherN.Add(1)
				case resp.StatusCode == 200:
					okN.Add(1)
				case resp.StatusCode == 429:
					throttledN.Add(1)
				default:
					otherN.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), throttledN.Load(), otherN.Load()
}

// redisServer is a real redis-server on a free loopback port.
type redisServer struct {
	port int
	proc *proc
}

func startRedis(t *testing.T, port int) *redisServer {
	t.Helper()
	bin := lookTool(t, "redis-server", "redis-server")
	dir := t.TempDir()
	p := startProc(t, "redis-server", dir, []string{"PATH=" + os.Getenv("PATH")}, bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := waitPort(port, 10*time.Second, p.exited); err != nil {
		t.Fatalf("redis-server did not start: %v\n%s", err, p.out.String())
	}
	return &redisServer{port: port, proc: p}
}

func TestThrottleRedisSharedExactLimit(t *testing.T) {
	p := newPKI(t)
	redisPort := freePort(t)
	rs := startRedis(t, redisPort)
	url := fmt.Sprintf("redis redis://127.0.0.1:%d/0", redisPort)
	const limit = 40
	aPort, bPort := freePort(t), freePort(t)
	startCaddy(t, throttleSite(aPort, limit, url, "allow"), p.files(t, "trust.pem"))
	startCaddy(t, throttleSite(bPort, limit, url, "allow"), p.files(t, "trust.pem"))

	ok, throttled, other := hammer(t, p, "bob", aPort, bPort)
	t.Logf("two instances, one redis: %d allowed, %d throttled, %d other", ok, throttled, other)
	if ok != limit || throttled != 120-limit || other != 0 {
		t.Fatalf("want exactly %d allowed and %d throttled across both instances", limit, 120-limit)
	}

	// Redis stops: with on_error allow requests pass at once, not hang.
	rs.proc.stop()
	start := time.Now()
	if s, b := p.get(t, aPort, "alice"); s != 200 {
		t.Errorf("redis down, on_error allow: %d %q", s, b)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a request with redis down took %v", d)
	}
}

func TestThrottleRedisDownDeny(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	deadRedis := freePort(t) // nothing listens there
	c := startCaddy(t, throttleSite(port, 10, fmt.Sprintf("redis redis://127.0.0.1:%d/0", deadRedis), "deny"), p.files(t, "trust.pem"))
	start := time.Now()
	resp, err := p.getResp(t, port, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("redis down, on_error deny: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the request took %v with redis down", d)
	}
	// Redis comes up on that port: requests are counted again.
	startRedis(t, deadRedis)
	if !eventually(5*time.Second, func() bool { s, _ := p.get(t, port, "bob"); return s == 200 }) {
		t.Errorf("never recovered once redis came up; log:\n%s", c.Log())
	}
}
