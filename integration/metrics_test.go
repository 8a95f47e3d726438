//go:build integration

package integration

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// Operations (the README's Metrics and Operations sections): a real
// Prometheus scraping Caddy's admin /metrics, config reloads, and the
// expiring and status admin routes.

// writeCRL writes a PEM CRL issued by ca, revoking the given certificates,
// valid for an hour, into the PKI dir.
func (p *pki) writeCRL(t *testing.T, name string, ca *testpki.Cert, revoked ...*testpki.Cert) time.Time {
	t.Helper()
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute),
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path(name), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return next
}

// addClient makes another client of the intermediate, for the get helper.
func (p *pki) addClient(t *testing.T, name string, opts ...testpki.Option) *testpki.Cert {
	t.Helper()
	c := p.Intermediate.NewLeaf(name, opts...)
	p.Clients[name] = c
	if err := os.WriteFile(p.path(name+".pem"), c.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// prometheus is a running Prometheus server.
type prometheus struct {
	t    *testing.T
	base string
}

// startPrometheus runs Debian's prometheus on a free loopback port, with
// its data in a temp dir, scraping Caddy's admin /metrics every 300ms, and
// waits until it is ready.
func startPrometheus(t *testing.T, adminPort int) *prometheus {
	t.Helper()
	bin := lookTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 300ms
  scrape_timeout: 250ms
scrape_configs:
  - job_name: caddy
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:%d']
`, adminPort)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "prometheus", dir, os.Environ(), bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
		"--log.level=warn")
	prom := &prometheus{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := waitPort(port, startTimeout, p.exited); err != nil {
		t.Fatalf("prometheus did not start: %v", err)
	}
	ok := eventually(startTimeout, func() bool {
		resp, err := http.Get(prom.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("prometheus is not ready after %s", startTimeout)
	}
	return prom
}

// query runs an instant query through Prometheus's HTTP API and returns the
// value of its only series; ok is false when it has none.
func (p *prometheus) query(expr string) (v float64, ok bool) {
	p.t.Helper()
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		p.t.Fatalf("query %s: %v", expr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		p.t.Fatalf("query %s: %s %s (%v)", expr, resp.Status, body, err)
	}
	switch len(r.Data.Result) {
	case 0:
		return 0, false
	case 1:
	default:
		p.t.Fatalf("query %s: %d series, want one: %s", expr, len(r.Data.Result), body)
	}
	f, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	if err != nil {
		p.t.Fatalf("query %s: value %v", expr, r.Data.Result[0].Value[1])
	}
	return f, true
}

// expect waits until the query's value is want (Prometheus scrapes every
// 300ms), and fails with the last value seen otherwise.
func (p *prometheus) expect(expr string, want float64) {
	p.t.Helper()
	var got float64
	var ok bool
	if eventually(15*time.Second, func() bool {
		got, ok = p.query(expr)
		return ok && got == want
	}) {
		return
	}
	if !ok {
		p.t.Errorf("%s: no series, want %g", expr, want)
		return
	}
	p.t.Errorf("%s = %g, want %g", expr, got, want)
}

// metricsSite is a route of API "metrics" (tier bronze: 3 a minute, CRLs
// of both CAs) and a fallback route with a trust pool.
func metricsSite(apiPort, fallbackPort int, body string) string {
	return fmt.Sprintf(`{
	mtls_auth {
		tier bronze 3 1m
		sync_interval 300ms
	}
}

:%d {
	mtls_auth {
		api metrics
		trust_pool file trust.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
		default_tier bronze
		revocation {
			crl root.crl inter.crl
		}
	}
	respond "%s {http.mtls.alias}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}

:%d {
	mtls_auth {
		trust_pool file trust.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
		mode fallback
	}
	respond "{http.mtls.authenticated} {http.mtls.error}"
}
`, apiPort, body, fallbackPort)
}

func TestPrometheusScrapesMetrics(t *testing.T) {
	p := newPKI(t)
	p.addClient(t, "dave")
	crlNext := p.writeCRL(t, "root.crl", p.Root, p.Clients["bob"])
	p.writeCRL(t, "inter.crl", p.Intermediate)
	apiPort, fallbackPort := freePort(t), freePort(t)
	c := startCaddy(t, metricsSite(apiPort, fallbackPort, "ok"), p.files(t, "trust.pem", "root.crl", "inter.crl"))
	prom := startPrometheus(t, c.AdminPort)

	for _, name := range []string{"alice", "bob", "dave"} {
		if st, body := admin(t, c, http.MethodPost, "/mtls_auth/apis/metrics/certs", certBody(name, string(p.Clients[name].PEM()), "")); st != http.StatusCreated {
			t.Fatalf("adding %s: %d %s", name, st, body)
		}
	}
	steps := []struct {
		port   int
		client string
		status int
	}{
		{apiPort, "alice", 200}, {apiPort, "alice", 200}, {apiPort, "alice", 200},
		{apiPort, "alice", 429}, // bronze: 3 a minute
		{apiPort, "bob", 401},   // revoked by root.crl
		{apiPort, "wrongca", 401},
		{apiPort, "", 401},
		{fallbackPort, "", 200},
		{fallbackPort, "wrongca", 200},
	}
	for i, s := range steps {
		if st, body := p.get(t, s.port, s.client); st != s.status {
			t.Fatalf("step %d (%s on :%d): %d %q, want %d", i, s.client, s.port, st, body, s.status)
		}
	}

	req := func(api, source, result, reason string) string {
		return fmt.Sprintf(`caddy_mtls_auth_requests_total{api=%q,source=%q,result=%q,reason=%q}`, api, source, result, reason)
	}
	prom.expect(req("metrics", "header", "accepted", ""), 3)
	prom.expect(req("metrics", "header", "rejected", "throttled"), 1)
	prom.expect(req("metrics", "header", "rejected", "revoked"), 1)
	prom.expect(req("metrics", "header", "rejected", "untrusted"), 1)
	prom.expect(req("metrics", "none", "rejected", "missing"), 1)
	prom.expect(req("", "none", "passed", "missing"), 1)
	prom.expect(req("", "header", "passed", "untrusted"), 1)
	prom.expect(`sum(caddy_mtls_auth_requests_total)`, float64(len(steps)))
	prom.expect(`caddy_mtls_auth_throttle_total{tier="bronze",result="allowed"}`, 3)
	prom.expect(`caddy_mtls_auth_throttle_total{tier="bronze",result="throttled"}`, 1)
	// alice (good: the pool holds her intermediate, so the chain ends
	// there) and bob (revoked); results are cached, so once each.
	prom.expect(`caddy_mtls_auth_revocation_checks_total{method="crl",result="good"}`, 1)
	prom.expect(`caddy_mtls_auth_revocation_checks_total{method="crl",result="revoked"}`, 1)
	prom.expect(`caddy_mtls_auth_verify_duration_seconds_count{cache="miss"}`, 4)
	prom.expect(`caddy_mtls_auth_cache_entries`, 4)
	prom.expect(`caddy_mtls_auth_crl_next_update_timestamp_seconds{crl="root.crl"}`, float64(crlNext.Unix()))
	prom.expect(`caddy_mtls_auth_certificate_not_after_timestamp_seconds{api="metrics",alias="alice",kind="runtime"}`, float64(p.Clients["alice"].Cert.NotAfter.Unix()))
	prom.expect(`caddy_mtls_auth_certificate_not_after_timestamp_seconds{api="metrics",alias="trust.pem#1",kind="trust_pool"}`, float64(p.Root.Cert.NotAfter.Unix()))
	prom.expect(`caddy_mtls_auth_certificate_not_after_timestamp_seconds{api="",alias="trust.pem#2",kind="trust_pool"}`, float64(p.Intermediate.Cert.NotAfter.Unix()))
	prom.expect(`caddy_mtls_auth_storage_sync_total{result="ok"} > bool 0`, 1)
	// Caddy's own metrics are still there beside ours.
	prom.expect(`count(caddy_config_last_reload_successful)`, 1)

	// A reload: the counters carry on (no duplicate registration, no reset)
	// and Prometheus keeps scraping.
	c.Reload(metricsSite(apiPort, fallbackPort, "reloaded"))
	if st, body := p.get(t, apiPort, "dave"); st != 200 || !strings.HasPrefix(body, "reloaded dave") {
		t.Fatalf("dave after the reload: %d %q", st, body)
	}
	prom.expect(req("metrics", "header", "accepted", ""), 4)
	prom.expect(`sum(caddy_mtls_auth_requests_total)`, float64(len(steps)+1))
	prom.expect(`caddy_mtls_auth_revocation_checks_total{method="crl",result="good"}`, 2)
	prom.expect(`caddy_mtls_auth_cache_entries`, 1)
	prom.expect(`up{job="caddy"}`, 1)
	resp, err := http.Get(c.Admin() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "caddy_mtls_auth_requests_total") {
		t.Fatalf("GET /metrics after the reload: %s\n%s", resp.Status, body)
	}
	// No label carries a fingerprint or a subject.
	needles := []string{"CN=", "O=payments"}
	for _, cl := range p.Clients {
		needles = append(needles, cl.Fingerprint())
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "caddy_mtls_auth_") {
			continue
		}
		for _, needle := range needles {
			if strings.Contains(line, needle) {
				t.Errorf("/metrics line carries %q: %s", needle, line)
			}
		}
	}
	if log := c.Log(); strings.Contains(log, "registering metrics") || strings.Contains(log, "duplicate metrics collector") {
		t.Errorf("metrics registration failed on reload:\n%s", log)
	}
}

// opsSite pins "soon" (valid 5 more days) beside a trust pool whose root
// has 10 days left and whose intermediate has one, on API "ops".
func opsSite(port int) string {
	return fmt.Sprintf(`{
	mtls_auth {
		expiry_warning 7d
	}
}

:%d {
	mtls_auth {
		api ops
		trust_pool file trust.pem
		allow soon soon.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
		revocation {
			crl root.crl inter.crl
		}
	}
	respond "ok {http.mtls.alias}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port)
}

func TestOperationsEndpoints(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	p.addClient(t, "soon", testpki.Validity(now.Add(-time.Hour), now.Add(5*24*time.Hour)))
	crlNext := p.writeCRL(t, "root.crl", p.Root)
	p.writeCRL(t, "inter.crl", p.Intermediate)
	port := freePort(t)
	c := startCaddy(t, opsSite(port), p.files(t, "trust.pem", "soon.pem", "root.crl", "inter.crl"))
	if st, body := admin(t, c, http.MethodPost, "/mtls_auth/apis/ops/certs", certBody("alice", string(p.Clients["alice"].PEM()), "")); st != http.StatusCreated {
		t.Fatalf("adding alice: %d %s", st, body)
	}
	for i := 0; i < 3; i++ {
		if st, body := p.get(t, port, "soon"); st != 200 {
			t.Fatalf("soon: %d %q", st, body)
		}
	}

	// expiry_warning 7d: warned at startup about the pin and the
	// intermediate, not about the root (10 days).
	log := c.Log()
	for _, alias := range []string{`"alias":"soon"`, `"alias":"trust.pem#2"`} {
		if !strings.Contains(log, `"msg":"configured certificate expires soon"`) || !strings.Contains(log, alias) {
			t.Errorf("no expiry warning for %s in the log", alias)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "configured certificate expires soon") && strings.Contains(line, `"alias":"trust.pem#1"`) {
			t.Errorf("the root (10 days left) is outside expiry_warning 7d: %s", line)
		}
	}

	type expiring struct {
		API, Alias, Kind, Fingerprint, Subject string
		NotAfter                               time.Time `json:"not_after"`
		DaysLeft                               int       `json:"days_left"`
	}
	list := func(query string) []expiring {
		st, body := admin(t, c, http.MethodGet, "/mtls_auth/expiring"+query, "")
		if st != http.StatusOK {
			t.Fatalf("GET /mtls_auth/expiring%s: %d %s", query, st, body)
		}
		var out []expiring
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		for i := 1; i < len(out); i++ {
			if out[i].NotAfter.Before(out[i-1].NotAfter) {
				t.Errorf("not soonest first: %v", out)
			}
		}
		return out
	}
	kinds := func(es []expiring) map[string]string {
		m := map[string]string{}
		for _, e := range es {
			m[e.Alias] = e.Kind
			if e.API != "ops" {
				t.Errorf("%s: api %q", e.Alias, e.API)
			}
		}
		return m
	}
	// Default: expiry_warning. alice (runtime) and the intermediate have a
	// day, soon five, the root ten.
	got := list("")
	want := map[string]string{"alice": "runtime", "trust.pem#2": "trust_pool", "soon": "allow"}
	if k := kinds(got); fmt.Sprint(k) != fmt.Sprint(want) {
		t.Errorf("expiring (default 7d) = %v, want %v", k, want)
	}
	for _, e := range got {
		if e.Alias == "soon" && (e.DaysLeft != 4 && e.DaysLeft != 5 || e.Fingerprint != p.Clients["soon"].Fingerprint() || !strings.Contains(e.Subject, "CN=soon")) {
			t.Errorf("soon: %+v", e)
		}
	}
	want["trust.pem#1"] = "trust_pool"
	if k := kinds(list("?within=30d")); fmt.Sprint(k) != fmt.Sprint(want) {
		t.Errorf("expiring within 30d = %v, want %v", k, want)
	}
	if st, body := admin(t, c, http.MethodGet, "/mtls_auth/expiring?within=soon", ""); st != http.StatusBadRequest {
		t.Errorf("within=soon: %d %s, want 400", st, body)
	}

	st, body := admin(t, c, http.MethodGet, "/mtls_auth/status", "")
	if st != http.StatusOK {
		t.Fatalf("GET /mtls_auth/status: %d %s", st, body)
	}
	var status struct {
		Routes []struct {
			API   string `json:"api"`
			Route string `json:"route"`
			Trust struct {
				PoolSize       int       `json:"pool_size"`
				AllowEntries   int       `json:"allow_entries"`
				RuntimeEntries int       `json:"runtime_entries"`
				LastReload     time.Time `json:"last_reload"`
			} `json:"trust"`
			Revocation struct {
				CRLs []struct {
					CRL        string    `json:"crl"`
					NextUpdate time.Time `json:"next_update"`
				} `json:"crls"`
			} `json:"revocation"`
			Cache struct {
				Entries  int     `json:"entries"`
				Hits     int     `json:"hits"`
				Misses   int     `json:"misses"`
				HitRatio float64 `json:"hit_ratio"`
			} `json:"cache"`
		} `json:"routes"`
		Throttle struct {
			Backend   string `json:"backend"`
			Reachable bool   `json:"reachable"`
		} `json:"throttle"`
		Storage struct {
			LastSuccess time.Time `json:"last_success"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if len(status.Routes) != 1 {
		t.Fatalf("status: %s", body)
	}
	r := status.Routes[0]
	switch {
	case r.API != "ops", !strings.HasPrefix(r.Route, "route:"):
		t.Errorf("route: %s", body)
	case r.Trust.PoolSize != 2, r.Trust.AllowEntries != 1, r.Trust.RuntimeEntries != 1, r.Trust.LastReload.IsZero():
		t.Errorf("trust: %s", body)
	case len(r.Revocation.CRLs) != 2, r.Revocation.CRLs[0].CRL != "root.crl", !r.Revocation.CRLs[0].NextUpdate.Equal(crlNext):
		t.Errorf("revocation: %s", body)
	case r.Cache.Entries != 1, r.Cache.Hits != 2, r.Cache.Misses != 1:
		t.Errorf("cache: %s", body)
	case status.Throttle.Backend != "local", !status.Throttle.Reachable:
		t.Errorf("throttle: %s", body)
	case status.Storage.LastSuccess.IsZero():
		t.Errorf("storage: %s", body)
	}
	for _, cl := range p.Clients {
		if strings.Contains(body, cl.Fingerprint()) {
			t.Errorf("status carries a client fingerprint: %s", body)
		}
	}
}
