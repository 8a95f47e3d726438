package mtlsauth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/store"
	"github.com/mtlsauth/caddy-mtls-auth/throttle"
)

// The metrics are process-wide, so these tests read differences and do not
// run in parallel (top-level parallel tests only start once every
// sequential one has finished).

func requests(api, source, result, reason string) float64 {
	return float64(requestTotals()[requestLabels{api, source, result, reason}])
}

// histogram reads one of the verify_duration_seconds histograms.
func histogram(t *testing.T, h *durationHistogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	require.NoError(t, h.metric(verifyDuration.desc, "x").Write(&m))
	return m.GetHistogram()
}

func TestMetricsRequests(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	mandatory := &Handler{API: "metrics-mandatory", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"},
		TrustPoolRaw: trustPool(p.rootFile), Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}, app: app}
	require.NoError(t, provision(t, mandatory))
	fallback := &Handler{API: "metrics-fallback", Mode: "fallback", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"},
		TrustPoolRaw: trustPool(p.rootFile), app: app}
	require.NoError(t, provision(t, fallback))
	tlsRoute := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile), app: app}
	require.NoError(t, provision(t, tlsRoute))

	alice := request{headers: header(rfc9440(p.alice))}
	tests := []struct {
		name                        string
		h                           *Handler
		req                         request
		api, source, result, reason string
		status                      int
	}{
		{"accepted", mandatory, alice, "metrics-mandatory", "header", "accepted", "", 200},
		{"accepted from the cache", mandatory, alice, "metrics-mandatory", "header", "accepted", "", 200},
		{"not allowed", mandatory, request{headers: header(rfc9440(p.bob))}, "metrics-mandatory", "header", "rejected", "not_allowed", 403},
		{"expired", mandatory, request{headers: header(rfc9440(p.expired))}, "metrics-mandatory", "header", "rejected", "expired", 401},
		{"missing", mandatory, request{}, "metrics-mandatory", "none", "rejected", "missing", 401},
		{"forged source", mandatory, request{remote: "192.0.2.7:1234", headers: header(rfc9440(p.alice))}, "metrics-mandatory", "header", "rejected", "untrusted_source", 401},
		{"passed without a certificate", fallback, request{}, "metrics-fallback", "none", "passed", "missing", 200},
		{"passed with a bad one", fallback, request{headers: header(rfc9440(p.mallory))}, "metrics-fallback", "header", "passed", "untrusted", 200},
		{"accepted over TLS", tlsRoute, request{tlsPeerCerts: certs(p.alice)}, "", "tls", "accepted", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := requests(tt.api, tt.source, tt.result, tt.reason)
			resp := serve(t, tt.h, tt.req)
			require.Equal(t, tt.status, resp.status)
			assert.Equal(t, before+1, requests(tt.api, tt.source, tt.result, tt.reason))
		})
	}
}

func TestMetricsUnknownReasonStillCounted(t *testing.T) {
	m := newRouteStats("metrics-unknown-reason", modeMandatory)
	before := requests("metrics-unknown-reason", "header", "rejected", "some_new_reason")
	m.request(&outcome{source: "header", reason: "some_new_reason"})
	assert.Equal(t, before+1, requests("metrics-unknown-reason", "header", "rejected", "some_new_reason"))
}

func TestMetricsVerifyDuration(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	hits, misses := histogram(t, &verifyDuration.hit).GetSampleCount(), histogram(t, &verifyDuration.miss).GetSampleCount()

	alice := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, h, alice).status)
	const n = 20 * hitSample
	for i := 0; i < n; i++ {
		require.Equal(t, 200, serve(t, h, alice).status)
	}
	require.Equal(t, 401, serve(t, h, request{}).status, "nothing to verify: not observed")
	require.Equal(t, 401, serve(t, h, request{headers: header("junk")}).status, "a miss (decoding fails)")

	assert.Equal(t, misses+2, histogram(t, &verifyDuration.miss).GetSampleCount())
	// One hit in 64 is timed at random and counts for 64: the chance that
	// none of 1280 is timed is about 1e-9.
	timed := histogram(t, &verifyDuration.hit).GetSampleCount() - hits
	assert.Positive(t, timed)
	assert.Zero(t, timed%hitSample, "each timed hit counts for %d", hitSample)
	gotHits, gotMisses := h.stats.cacheCounts()
	assert.Equal(t, uint64(n), gotHits, "the route counts every hit")
	assert.Equal(t, uint64(2), gotMisses)
}

func TestDurationHistogram(t *testing.T) {
	var h durationHistogram
	h.observe(100*time.Nanosecond, 16) // first bucket (<= 250ns)
	h.observe(250*time.Nanosecond, 1)  // on a bound: that bucket
	h.observe(3*time.Microsecond, 1)   // <= 4µs
	h.observe(time.Minute, 2)          // over the last bound: +Inf only
	got := histogram(t, &h)
	assert.Equal(t, uint64(20), got.GetSampleCount())
	assert.InDelta(t, (16*100e-9)+250e-9+3e-6+2*60, got.GetSampleSum(), 1e-9)
	want := map[float64]uint64{250e-9: 17, 1e-6: 17, 4e-6: 18, 16e-6: 18}
	bounds := got.GetBucket()
	require.Len(t, bounds, len(durationBounds))
	for _, b := range bounds {
		if w, ok := want[b.GetUpperBound()]; ok {
			assert.Equal(t, w, b.GetCumulativeCount(), "le=%g", b.GetUpperBound())
		}
	}
	assert.InDelta(t, 250e-9*float64(uint64(1)<<24), bounds[len(bounds)-1].GetUpperBound(), 1e-9, "the last bound is about 4s")
	assert.Equal(t, uint64(18), bounds[len(bounds)-1].GetCumulativeCount())
}

func TestMetricsRevocation(t *testing.T) {
	p := newPKI(t)
	rootCRL := p.write(t, "root.crl", crl(t, p.root, p.bob))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{rootCRL}}, CacheSize: -1}
	require.NoError(t, provision(t, h))
	good := revocationChecks.WithLabelValues("crl", "good")
	revoked := revocationChecks.WithLabelValues("crl", "revoked")
	g, r := testutil.ToFloat64(good), testutil.ToFloat64(revoked)

	require.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.alice))}).status)
	require.Equal(t, 401, serve(t, h, request{headers: header(rfc9440(p.bob))}).status)

	assert.Equal(t, g+1, testutil.ToFloat64(good))
	assert.Equal(t, r+1, testutil.ToFloat64(revoked))
}

// failingLimiter is a throttle backend that cannot answer.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, throttle.Tier) (throttle.Decision, error) {
	return throttle.Decision{}, errors.New("backend down")
}
func (failingLimiter) Close() error { return nil }

func TestMetricsThrottle(t *testing.T) {
	p := newPKI(t)
	tier := Tier{Name: "metrics-tier", Requests: 1, Window: tiers()[0].Window}
	app := newTestApp(t, tier)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), DefaultTier: tier.Name, app: app}
	require.NoError(t, provision(t, h))
	count := func(result string) float64 {
		return testutil.ToFloat64(throttleTotal.WithLabelValues(tier.Name, result))
	}
	allowed, throttled, failed := count("allowed"), count("throttled"), count("error")
	rejected := requests("", "header", "rejected", "throttled")

	alice := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, h, alice).status)
	require.Equal(t, 429, serve(t, h, alice).status)
	app.limiter = failingLimiter{}
	require.Equal(t, 200, serve(t, h, alice).status, "on_error allow")

	assert.Equal(t, allowed+1, count("allowed"))
	assert.Equal(t, throttled+1, count("throttled"))
	assert.Equal(t, failed+1, count("error"))
	assert.Equal(t, rejected+1, requests("", "header", "rejected", "throttled"), "the throttled request is a rejection too")
}

// flakyStorage is a file storage whose listings fail while broken is set.
type flakyStorage struct {
	*certmagic.FileStorage
	broken bool
}

func (s *flakyStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if s.broken {
		return nil, errors.New("storage unreachable")
	}
	return s.FileStorage.List(ctx, prefix, recursive)
}

// Load fails too: an idle sync tick reads only the store's version record.
func (s *flakyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if s.broken {
		return nil, errors.New("storage unreachable")
	}
	return s.FileStorage.Load(ctx, key)
}

func TestMetricsStorageSync(t *testing.T) {
	st := &flakyStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	app := &App{}
	require.NoError(t, app.setup(nopLogger(), st))
	t.Cleanup(func() { _ = app.Cleanup() })
	_, err := app.runtime.AddCert(context.Background(), "metrics-sync", store.Record{Alias: "a", PEM: string(newPKI(t).alice.PEM())})
	require.NoError(t, err)
	ok, failed := testutil.ToFloat64(storageSyncOK), testutil.ToFloat64(storageSyncError)

	app.syncOnce(context.Background())
	st.broken = true
	app.syncOnce(context.Background())
	app.syncOnce(context.Background())

	assert.Equal(t, ok+1, testutil.ToFloat64(storageSyncOK))
	assert.Equal(t, failed+2, testutil.ToFloat64(storageSyncError))
}

// gather collects a registry and fails on any inconsistency (duplicate
// series, labels that do not match their description).
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// series finds the value of the series of family name with exactly labels.
func series(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, m := range mfs[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if match {
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsRegistryAndGauges(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	crlFile := p.write(t, "root.crl", crl(t, p.root))
	dir := t.TempDir()
	_, err := testpki.WriteFile(dir, "carol.pem", p.carol.PEM())
	require.NoError(t, err)
	accepted := map[string]string{"api": "metrics-gauges", "source": "header", "result": "accepted", "reason": ""}
	base := requests("metrics-gauges", "header", "accepted", "")
	// Two routes of one API pinning the same alias and reading the same
	// CRL: each series is still reported once.
	mk := func() *Handler {
		h := &Handler{API: "metrics-gauges", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
			Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}, AllowDir: []AllowDir{{Dir: dir}},
			Revocation: &Revocation{CRL: []string{crlFile}}, app: app}
		require.NoError(t, provision(t, h))
		return h
	}
	first, second := mk(), mk()
	_, err = app.runtime.AddCert(context.Background(), "metrics-gauges", store.Record{Alias: "bobby", PEM: string(p.bob.PEM())})
	require.NoError(t, err)
	require.Equal(t, 200, serve(t, first, request{headers: header(rfc9440(p.alice))}).status)
	require.Equal(t, 200, serve(t, second, request{headers: header(rfc9440(p.alice))}).status)
	require.Equal(t, 403, serve(t, second, request{headers: header(rfc9440(p.noEKU))}).status)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, registerMetrics(reg, app))
	require.NoError(t, registerMetrics(reg, app), "registering again (the same registry) is not an error")
	mfs := gather(t, reg)

	entries, ok := series(mfs, "caddy_mtls_auth_cache_entries", nil)
	require.True(t, ok)
	assert.Equal(t, 3.0, entries, "two routes, three cached results")
	for _, c := range []struct {
		alias, kind string
		notAfter    time.Time
	}{
		{"alice", "allow", p.alice.Cert.NotAfter},
		{"carol", "allow_dir", p.carol.Cert.NotAfter},
		{"root.pem", "trust_pool", p.root.Cert.NotAfter},
		{"bobby", "runtime", p.bob.Cert.NotAfter},
	} {
		v, ok := series(mfs, "caddy_mtls_auth_certificate_not_after_timestamp_seconds", map[string]string{"api": "metrics-gauges", "alias": c.alias, "kind": c.kind})
		if assert.True(t, ok, c.alias) {
			assert.Equal(t, float64(c.notAfter.Unix()), v, c.alias)
		}
	}
	v, ok := series(mfs, "caddy_mtls_auth_crl_next_update_timestamp_seconds", map[string]string{"crl": crlFile})
	require.True(t, ok)
	assert.InDelta(t, float64(time.Now().Add(time.Hour).Unix()), v, 60)
	v, ok = series(mfs, "caddy_mtls_auth_requests_total", accepted)
	require.True(t, ok)
	assert.Equal(t, base+2, v)

	// No label anywhere carries a fingerprint or a subject.
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, c := range []string{p.alice.Fingerprint(), p.noEKU.Fingerprint(), p.bob.Fingerprint()} {
					assert.NotContains(t, l.GetValue(), c)
				}
				assert.NotContains(t, l.GetValue(), "CN=")
			}
		}
	}

	// A reload: a new configuration gets a new registry and a new app; the
	// process-wide counters carry on, the gauges are the new app's.
	newApp := newTestApp(t)
	_, err = newApp.runtime.AddCert(context.Background(), "metrics-gauges", store.Record{Alias: "alice-rt", PEM: string(p.alice.PEM())})
	require.NoError(t, err)
	reloaded := &Handler{API: "metrics-gauges", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), app: newApp}
	require.NoError(t, provision(t, reloaded))
	reg2 := prometheus.NewPedanticRegistry()
	require.NoError(t, registerMetrics(reg2, newApp))
	require.NoError(t, first.Cleanup())
	require.NoError(t, second.Cleanup())
	require.Equal(t, 200, serve(t, reloaded, request{headers: header(rfc9440(p.alice))}).status)
	mfs = gather(t, reg2)
	v, _ = series(mfs, "caddy_mtls_auth_requests_total", accepted)
	assert.Equal(t, base+3, v, "counters survive the reload")
	require.NoError(t, first.Cleanup())
	v, _ = series(gather(t, reg2), "caddy_mtls_auth_requests_total", accepted)
	assert.Equal(t, base+3, v, "a route retired twice is counted once")
	entries, _ = series(mfs, "caddy_mtls_auth_cache_entries", nil)
	assert.Equal(t, 1.0, entries, "only the new configuration's cache")
	_, ok = series(mfs, "caddy_mtls_auth_certificate_not_after_timestamp_seconds", map[string]string{"api": "metrics-gauges", "alias": "alice", "kind": "allow"})
	assert.False(t, ok, "the old routes' pins are gone")

	// A registry that holds another app's gauges gets this app's instead.
	require.NoError(t, registerMetrics(reg, newApp))
	entries, _ = series(gather(t, reg), "caddy_mtls_auth_cache_entries", nil)
	assert.Equal(t, 1.0, entries)

	// A foreign collector under one of our names is an error, not a panic.
	clash := prometheus.NewPedanticRegistry()
	require.NoError(t, clash.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "caddy_mtls_auth_requests_total", Help: "not ours"})))
	err = registerMetrics(clash, newApp)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "caddy_mtls_auth_requests_total"), err.Error())
}

func TestMetricsAllocateNothing(t *testing.T) {
	p := newPKI(t)
	mk := func() *Handler {
		h := &Handler{Profile: "der_base64", Header: "X-Client-Cert", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
		require.NoError(t, provision(t, h))
		return h
	}
	on, off := mk(), mk()
	off.stats = nil
	value := base64.StdEncoding.EncodeToString(p.alice.DER())
	allocs := func(h *Handler) float64 {
		r, w := benchRequest(value)
		return testing.AllocsPerRun(200, func() {
			r.Header.Set("X-Client-Cert", value)
			require.NoError(t, h.ServeHTTP(w, r, okNext))
		})
	}
	assert.Equal(t, allocs(off), allocs(on), "a cached request allocates the same with metrics")
}
