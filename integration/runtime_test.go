//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Runtime certificates (the README's admin API section): the admin API, persistence in Caddy
// storage, clusters sharing one storage, config reloads.

// runtimeSite is a site whose route belongs to API "payments" (runtime
// allow list) and a second site with a trust pool, to show the deny list
// applies to every route.
func runtimeSite(apiPort, poolPort int) string {
	return fmt.Sprintf(`{
	mtls_auth {
		tier gold 1000 1m
		sync_interval 300ms
	}
}

:%d {
	mtls_auth {
		api payments
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
	}
	respond "ok alias={http.mtls.alias} tier={http.mtls.tier} plan={http.mtls.meta.plan}"
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
	}
	respond "ok cn={http.mtls.subject.cn}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, apiPort, poolPort)
}

// admin calls the admin API and returns status and body.
func admin(t *testing.T, c *caddyProc, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.Admin()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func certBody(alias, pem, extra string) string {
	pemJSON, _ := json.Marshal(pem)
	return fmt.Sprintf(`{"alias":%q,"pem":%s%s}`, alias, pemJSON, extra)
}

// get sends the client certificate of name in X-Client-Cert (bare base64
// DER) straight to Caddy from 127.0.0.1, a trusted source.
func (p *pki) get(t *testing.T, port int, name string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if name != "" {
		req.Header.Set("X-Client-Cert", derBase64(p.Clients[name]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET :%d as %s: %v", port, name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls f until it returns true or timeout passes.
func eventually(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAdminAPI(t *testing.T) {
	p := newPKI(t)
	apiPort, poolPort := freePort(t), freePort(t)
	c := startCaddy(t, runtimeSite(apiPort, poolPort), p.files(t, "trust.pem"))

	status, body := admin(t, c, "GET", "/mtls_auth/apis", "")
	if status != 200 || !strings.Contains(body, `"api":"payments"`) || !strings.Contains(body, `"configured":true`) {
		t.Fatalf("GET apis: %d %s", status, body)
	}
	if s, b := p.get(t, apiPort, "bob"); s != 403 || b != "403 not_allowed" {
		t.Fatalf("empty store: got %d %q, want 403 not_allowed", s, b)
	}

	bobPEM := string(p.Clients["bob"].PEM())
	status, body = admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("bob", bobPEM, `,"tier":"gold","meta":{"plan":"pro"}`))
	if status != 201 || !strings.Contains(body, p.Clients["bob"].Fingerprint()) {
		t.Fatalf("POST bob: %d %s", status, body)
	}
	if s, b := p.get(t, apiPort, "bob"); s != 200 || b != "ok alias=bob tier=gold plan=pro" {
		t.Fatalf("after POST: got %d %q, want bob allowed at once", s, b)
	}

	// Every bad request: a clear 4xx, and nothing changes.
	bad := []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/mtls_auth/apis/payments/certs", `{"alias":`, 400, "invalid JSON"},
		{"POST", "/mtls_auth/apis/payments/certs", `{"alias":"x","pem":"p","colour":"red"}`, 400, "unknown field"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("x", "not a certificate", ""), 400, "PEM"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("x", string(p.Clients["alice"].KeyPEM()), ""), 400, "private key"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("", string(p.Clients["alice"].PEM()), ""), 400, "alias is required"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("x", string(p.Clients["alice"].PEM()), `,"tier":"platinum"`), 400, "unknown tier"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("bob", string(p.Clients["alice"].PEM()), ""), 409, "already exists"},
		{"POST", "/mtls_auth/apis/payments/certs", certBody("bob2", bobPEM, ""), 409, "already in API"},
		{"POST", "/mtls_auth/apis/bad%20name/certs", certBody("x", string(p.Clients["alice"].PEM()), ""), 400, "api may hold only"},
		{"PUT", "/mtls_auth/apis/payments/certs", certBody("x", string(p.Clients["alice"].PEM()), ""), 405, "method not allowed"},
		{"DELETE", "/mtls_auth/apis/payments/certs/nobody", "", 404, "no alias"},
		{"GET", "/mtls_auth/nothing", "", 404, "no such"},
		{"POST", "/mtls_auth/deny", `{"fingerprint":"abc"}`, 400, "64 hex digits"},
		{"DELETE", "/mtls_auth/deny/" + strings.Repeat("ab", 32), "", 404, "not denied"},
	}
	for _, b := range bad {
		status, body := admin(t, c, b.method, b.path, b.body)
		if status != b.status || !strings.Contains(body, b.msg) {
			t.Errorf("%s %s %.40s: got %d %s, want %d containing %q", b.method, b.path, b.body, status, body, b.status, b.msg)
		}
		if strings.Contains(body, "BEGIN") {
			t.Errorf("%s %s: error echoes the PEM: %s", b.method, b.path, body)
		}
	}
	status, body = admin(t, c, "GET", "/mtls_auth/apis/payments/certs", "")
	if status != 200 || strings.Count(body, `"alias"`) != 1 || !strings.Contains(body, `"alias":"bob"`) {
		t.Fatalf("after bad requests the store must hold bob only: %d %s", status, body)
	}

	// The deny list wins on every route.
	bobFP := p.Clients["bob"].Fingerprint()
	if s, _ := p.get(t, poolPort, "bob"); s != 200 {
		t.Fatalf("bob on the pool route before deny: %d", s)
	}
	if status, body = admin(t, c, "POST", "/mtls_auth/deny", fmt.Sprintf(`{"fingerprint":%q,"reason":"laptop stolen"}`, strings.ToUpper(bobFP))); status != 201 {
		t.Fatalf("POST deny: %d %s", status, body)
	}
	for _, port := range []int{apiPort, poolPort} {
		if s, b := p.get(t, port, "bob"); s != 403 || b != "403 denied" {
			t.Errorf("denied bob on :%d: got %d %q", port, s, b)
		}
	}
	if _, body = admin(t, c, "GET", "/mtls_auth/deny", ""); !strings.Contains(body, bobFP) || !strings.Contains(body, "laptop stolen") {
		t.Errorf("GET deny: %s", body)
	}
	if status, _ = admin(t, c, "DELETE", "/mtls_auth/deny/"+bobFP, ""); status != 204 {
		t.Fatalf("DELETE deny: %d", status)
	}
	if s, _ := p.get(t, poolPort, "bob"); s != 200 {
		t.Errorf("undenied bob: %d", s)
	}

	// Survives a config reload.
	c.Reload(runtimeSite(apiPort, poolPort))
	if s, b := p.get(t, apiPort, "bob"); s != 200 {
		t.Fatalf("after reload: %d %q", s, b)
	}

	if status, _ = admin(t, c, "DELETE", "/mtls_auth/apis/payments/certs/bob", ""); status != 204 {
		t.Fatalf("DELETE bob: %d", status)
	}
	if s, b := p.get(t, apiPort, "bob"); s != 403 {
		t.Fatalf("after DELETE: %d %q", s, b)
	}
}

// TestAdminAPIWithoutPlugin: the admin module must not break a config that
// does not use the plugin, and says so when called.
func TestAdminAPIWithoutPlugin(t *testing.T) {
	port := freePort(t)
	c := startCaddy(t, fmt.Sprintf(":%d {\n\trespond \"plain\"\n}\n", port), nil)
	if s, b := direct(t, port); s != 200 || b != "plain" {
		t.Fatalf("plain site: %d %q", s, b)
	}
	status, body := admin(t, c, "GET", "/mtls_auth/apis", "")
	if status != 404 || !strings.Contains(body, "not in use") {
		t.Fatalf("GET apis without the plugin: %d %s", status, body)
	}
}

// TestAdminAPIBulkGetPatch: the bulk form (all or nothing), one record,
// PATCH of tier and meta, uploads refused for their validity, and the
// warning for an API no route names, through a real Caddy.
func TestAdminAPIBulkGetPatch(t *testing.T) {
	p := newPKI(t)
	apiPort, poolPort := freePort(t), freePort(t)
	c := startCaddy(t, runtimeSite(apiPort, poolPort), p.files(t, "trust.pem"))
	for _, n := range []string{"b0", "b1", "b2"} {
		p.Clients[n] = p.Root.NewLeaf(n)
	}
	arr := func(elems ...string) string { return "[" + strings.Join(elems, ",") + "]" }
	pemOf := func(n string) string { return string(p.Clients[n].PEM()) }

	// One bad element: 400 naming it, and nothing is added.
	status, body := admin(t, c, "POST", "/mtls_auth/apis/payments/certs",
		arr(certBody("b0", pemOf("b0"), ""), certBody("b1", pemOf("b1"), ""), certBody("old", pemOf("expired"), "")))
	if status != 400 || !strings.Contains(body, "element 2") || !strings.Contains(body, "expired on") {
		t.Fatalf("bulk with an expired element: %d %s", status, body)
	}
	if s, _ := p.get(t, apiPort, "b0"); s != 403 {
		t.Fatalf("b0 allowed after a refused bulk: %d", s)
	}
	status, body = admin(t, c, "POST", "/mtls_auth/apis/payments/certs",
		arr(certBody("b0", pemOf("b0"), ""), certBody("b1", pemOf("b1"), `,"tier":"gold","meta":{"plan":"pro"}`), certBody("b2", pemOf("b2"), "")))
	if status != 201 || strings.Count(body, `"alias"`) != 3 || strings.Contains(body, "warning") {
		t.Fatalf("bulk: %d %s", status, body)
	}
	for _, n := range []string{"b0", "b1", "b2"} {
		if s, b := p.get(t, apiPort, n); s != 200 || !strings.HasPrefix(b, "ok alias="+n) {
			t.Fatalf("%s after bulk: %d %q", n, s, b)
		}
	}
	status, body = admin(t, c, "POST", "/mtls_auth/apis/payments/certs", arr(certBody("b3", pemOf("bob"), ""), certBody("b0", pemOf("alice"), "")))
	if status != 409 || !strings.Contains(body, "element 1") {
		t.Fatalf("bulk with a taken alias: %d %s", status, body)
	}

	// One record, then PATCH it: the next request carries the new tier and meta.
	status, body = admin(t, c, "GET", "/mtls_auth/apis/payments/certs/b1", "")
	if status != 200 || !strings.Contains(body, `"tier":"gold"`) || !strings.Contains(body, "BEGIN CERTIFICATE") {
		t.Fatalf("GET one: %d %s", status, body)
	}
	if status, body = admin(t, c, "GET", "/mtls_auth/apis/payments/certs/nobody", ""); status != 404 {
		t.Fatalf("GET absent: %d %s", status, body)
	}
	status, body = admin(t, c, "PATCH", "/mtls_auth/apis/payments/certs/b0", `{"tier":"gold","meta":{"plan":"basic"}}`)
	if status != 200 || !strings.Contains(body, `"tier":"gold"`) {
		t.Fatalf("PATCH: %d %s", status, body)
	}
	if s, b := p.get(t, apiPort, "b0"); s != 200 || b != "ok alias=b0 tier=gold plan=basic" {
		t.Fatalf("after PATCH: %d %q", s, b)
	}
	for _, bad := range []struct {
		body, msg string
	}{{`{"tier":"platinum"}`, "unknown tier"}, {`{"pem":"x"}`, "tier and meta only"}} {
		if status, body = admin(t, c, "PATCH", "/mtls_auth/apis/payments/certs/b0", bad.body); status != 400 || !strings.Contains(body, bad.msg) {
			t.Errorf("PATCH %s: %d %s", bad.body, status, body)
		}
	}

	// Validity and the API name.
	if status, body = admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("soon", pemOf("notyet"), "")); status != 400 || !strings.Contains(body, "not valid before") {
		t.Errorf("not yet valid: %d %s", status, body)
	}
	status, body = admin(t, c, "POST", "/mtls_auth/apis/paymnets/certs", certBody("bob", pemOf("bob"), ""))
	if status != 201 || !strings.Contains(body, `"warning":"no route in the running configuration has `+"`api paymnets`") {
		t.Errorf("upload to an API no route names: %d %s", status, body)
	}
}

// TestCluster: two Caddy processes sharing one storage folder. A
// certificate added on one is accepted by the other within sync_interval;
// removed, it is rejected by both; a restart keeps it.
func TestCluster(t *testing.T) {
	p := newPKI(t)
	shared := filepath.Join(t.TempDir(), "shared-storage")
	withStorage := func(site string) string {
		return strings.Replace(site, "\tmtls_auth {\n\t\ttier", "\tstorage file_system "+shared+"\n\tmtls_auth {\n\t\ttier", 1)
	}
	aAPI, aPool, bAPI, bPool := freePort(t), freePort(t), freePort(t), freePort(t)
	a := startCaddy(t, withStorage(runtimeSite(aAPI, aPool)), p.files(t, "trust.pem"))
	b := startCaddy(t, withStorage(runtimeSite(bAPI, bPool)), p.files(t, "trust.pem"))

	if status, body := admin(t, a, "POST", "/mtls_auth/apis/payments/certs", certBody("bob", string(p.Clients["bob"].PEM()), "")); status != 201 {
		t.Fatalf("POST on A: %d %s", status, body)
	}
	start := time.Now()
	if !eventually(3*time.Second, func() bool { s, _ := p.get(t, bAPI, "bob"); return s == 200 }) {
		t.Fatal("B never accepted the certificate added on A")
	}
	t.Logf("B accepted the certificate %v after it was added on A (sync_interval 300ms)", time.Since(start).Round(10*time.Millisecond))

	// A PATCH on A reaches B too (same record, same size class: the version
	// record, not the file's stamp, tells B to look).
	if status, body := admin(t, a, "PATCH", "/mtls_auth/apis/payments/certs/bob", `{"tier":"gold","meta":{"plan":"pro"}}`); status != 200 {
		t.Fatalf("PATCH on A: %d %s", status, body)
	}
	if !eventually(3*time.Second, func() bool { _, b := p.get(t, bAPI, "bob"); return b == "ok alias=bob tier=gold plan=pro" }) {
		t.Fatal("B never saw the tier set on A")
	}

	if status, _ := admin(t, b, "POST", "/mtls_auth/deny", fmt.Sprintf(`{"fingerprint":%q}`, p.Clients["alice"].Fingerprint())); status != 201 {
		t.Fatal("POST deny on B")
	}
	if !eventually(3*time.Second, func() bool { s, _ := p.get(t, aPool, "alice"); return s == 403 }) {
		t.Fatal("A never refused the certificate denied on B")
	}

	if status, _ := admin(t, b, "DELETE", "/mtls_auth/apis/payments/certs/bob", ""); status != 204 {
		t.Fatal("DELETE on B")
	}
	if s, _ := p.get(t, bAPI, "bob"); s != 403 {
		t.Errorf("B still accepts bob right after deleting it: %d", s)
	}
	if !eventually(3*time.Second, func() bool { s, _ := p.get(t, aAPI, "bob"); return s == 403 }) {
		t.Fatal("A still accepts the certificate removed on B")
	}

	// Restart: a new process over the same storage has the state at once.
	if status, _ := admin(t, a, "POST", "/mtls_auth/apis/payments/certs", certBody("bob", string(p.Clients["bob"].PEM()), "")); status != 201 {
		t.Fatal("re-adding bob")
	}
	a.proc.stop()
	cAPI, cPool := freePort(t), freePort(t)
	startCaddy(t, withStorage(runtimeSite(cAPI, cPool)), p.files(t, "trust.pem"))
	if s, body := p.get(t, cAPI, "bob"); s != 200 {
		t.Errorf("after restart: %d %q", s, body)
	}
	if s, _ := p.get(t, cPool, "alice"); s != 403 {
		t.Errorf("deny list after restart: %d", s)
	}
}

// TestReloadUnderLoad: config reloads while valid requests run lose no
// request and keep the runtime certificates.
func TestReloadUnderLoad(t *testing.T) {
	p := newPKI(t)
	apiPort, poolPort := freePort(t), freePort(t)
	c := startCaddy(t, runtimeSite(apiPort, poolPort), p.files(t, "trust.pem"))
	if status, body := admin(t, c, "POST", "/mtls_auth/apis/payments/certs", certBody("bob", string(p.Clients["bob"].PEM()), "")); status != 201 {
		t.Fatalf("POST: %d %s", status, body)
	}
	header := derBase64(p.Clients["bob"])
	var ok, bad, errs atomic.Int64
	var firstBad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, port := range []int{apiPort, poolPort} {
					req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
					req.Header.Set("X-Client-Cert", header)
					resp, err := client.Do(req)
					if err != nil {
						errs.Add(1)
						firstBad.CompareAndSwap(nil, err.Error())
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 == 2 {
						ok.Add(1)
					} else {
						bad.Add(1)
						firstBad.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)))
					}
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 5; i++ {
		c.Reload(runtimeSite(apiPort, poolPort))
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("requests during 5 reloads: %d ok, %d non-2xx, %d connection errors", ok.Load(), bad.Load(), errs.Load())
	if ok.Load() < 100 {
		t.Errorf("only %d requests ran; the load did not really run", ok.Load())
	}
	if bad.Load() != 0 || errs.Load() != 0 {
		t.Errorf("lost requests during reloads: %d non-2xx, %d errors; first: %v", bad.Load(), errs.Load(), firstBad.Load())
	}
}
