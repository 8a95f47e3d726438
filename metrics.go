package mtlsauth

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mtlsauth/caddy-mtls-auth/revocation"
)

// The counters and the histogram live for the whole process, not for one
// configuration: Caddy gives every configuration a fresh registry, and each
// new mtls_auth app registers these same collectors into it, so a config
// reload neither fails on a duplicate registration nor sets the counters
// back to zero. Labels never carry a fingerprint, subject or other
// per-client value: only names from the configuration and fixed codes.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mtls_auth", Name: "requests_total",
		Help: "Requests seen by mtls_auth handlers, by API, certificate source, result (accepted, rejected, passed) and reason code.",
	}, []string{"api", "source", "result", "reason"})

	verifyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "mtls_auth", Name: "verify_duration_seconds",
		Help: "Time to establish a certificate's verdict: a verification cache hit, or decoding and verifying (miss).",
		// From a cache hit (well under a microsecond) to an OCSP
		// responder's timeout (seconds).
		Buckets: prometheus.ExponentialBuckets(250e-9, 4, 13),
	}, []string{"cache"})

	revocationChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mtls_auth", Name: "revocation_checks_total",
		Help: "Revocation answers per checked certificate, by method (crl, ocsp) and result (good, revoked, unknown).",
	}, []string{"method", "result"})

	throttleTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mtls_auth", Name: "throttle_total",
		Help: "Throttle decisions by tier and result (allowed, throttled, error: the backend could not answer).",
	}, []string{"tier", "result"})

	storageSyncTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mtls_auth", Name: "storage_sync_total",
		Help: "Re-reads of the runtime certificates and deny list from storage, by result (ok, error).",
	}, []string{"result"})

	processCollectors = []prometheus.Collector{requestsTotal, verifyDuration, revocationChecks, throttleTotal, storageSyncTotal}

	// Children resolved once: the request path never hashes label values.
	verifyHit, verifyMiss = verifyDuration.WithLabelValues("hit"), verifyDuration.WithLabelValues("miss")
	storageSyncOK         = storageSyncTotal.WithLabelValues("ok")
	storageSyncError      = storageSyncTotal.WithLabelValues("error")
	revocationCounters    = func() (m [2][3]prometheus.Counter) {
		for i, method := range []string{revocation.MethodCRL, revocation.MethodOCSP} {
			for j, st := range []revocation.Status{revocation.Good, revocation.Revoked, revocation.Unknown} {
				m[i][j] = revocationChecks.WithLabelValues(method, st.String())
			}
		}
		return m
	}()
)

// registerMetrics adds the plugin's collectors to a configuration's
// registry: the process-wide counters (already there when the same registry
// is given twice, which is fine) and the app's gauges, read at scrape time
// (an app given a registry that holds another app's gauges replaces them).
func registerMetrics(reg *prometheus.Registry, app *App) error {
	if reg == nil {
		return nil
	}
	for _, c := range processCollectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	g := &gaugeCollector{app: app}
	err := reg.Register(g)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		reg.Unregister(are.ExistingCollector)
		err = reg.Register(g)
	}
	return err
}

// observeRevocation is the revocation checkers' Observer.
func observeRevocation(method string, st revocation.Status) {
	i := 0
	if method == revocation.MethodOCSP {
		i = 1
	}
	j := 2
	switch st {
	case revocation.Good:
		j = 0
	case revocation.Revoked:
		j = 1
	}
	revocationCounters[i][j].Inc()
}

// Throttle results.
const (
	throttleAllowed   = "allowed"
	throttleThrottled = "throttled"
	throttleError     = "error"
)

// countThrottle counts one throttle decision for a configured tier.
func countThrottle(tier, result string) {
	throttleTotal.WithLabelValues(tier, result).Inc()
}

// countStorageSync counts one re-read of storage.
func countStorageSync(err error) {
	if err != nil {
		storageSyncError.Inc()
		return
	}
	storageSyncOK.Inc()
}

// Request results.
const (
	resultAccepted = "accepted"
	resultRejected = "rejected"
	resultPassed   = "passed" // let through unauthenticated by optional or fallback
)

// knownReasons index a route's counters; a reason missing here is still
// counted, through the slower labelled lookup.
var knownReasons = [...]reason{
	"", reasonMissing, reasonUntrustedSource, reasonMalformed, reasonTooLarge,
	reasonDuplicateHeader, reasonUntrusted, reasonExpired, reasonNotYetValid,
	reasonWrongUsage, reasonRevoked, reasonNotAllowed, reasonDenied, reasonThrottled,
}

// routeStats is what one handler counts, for the metrics and the status
// page. Its counters are resolved on first use, so a request costs an index
// and an atomic add, and only the label combinations that happen appear.
type routeStats struct {
	api  string
	mode mode
	id   string // the route's routeID
	// requests[source][reason]: the result follows from the reason and
	// the mode, both fixed for a (route, reason) pair.
	requests [3][len(knownReasons)]atomic.Pointer[counterRef]
	_        [64]byte // keep the hot counts below off the table's cache lines
	// Cache hits and misses of this route, for its hit ratio.
	hits, misses atomic.Uint64
	// trust is the outcome of the last load of the certificate files.
	trust atomic.Pointer[trustNote]
}

type counterRef struct{ prometheus.Counter }

func newRouteStats(api string, m mode) *routeStats {
	return &routeStats{api: api, mode: m}
}

// sourceLabel is the source label: where the certificate came from, or
// none when no certificate was found.
func sourceLabel(s string) (string, int) {
	switch s {
	case "header":
		return s, 0
	case "tls":
		return s, 1
	}
	return "none", 2
}

func reasonIndex(r reason) int {
	if r == "" {
		return 0
	}
	for i, k := range knownReasons {
		if k == r {
			return i
		}
	}
	return -1
}

// result is what became of a request with this reason.
func (m *routeStats) result(r reason) string {
	switch {
	case r == "":
		return resultAccepted
	case m.mode.rejects(r):
		return resultRejected
	}
	return resultPassed
}

// request counts one request by its final outcome.
func (m *routeStats) request(o *outcome) {
	if m == nil {
		return
	}
	src, si := sourceLabel(o.source)
	ri := reasonIndex(o.reason)
	if ri < 0 {
		requestsTotal.WithLabelValues(m.api, src, m.result(o.reason), string(o.reason)).Inc()
		return
	}
	slot := &m.requests[si][ri]
	c := slot.Load()
	if c == nil {
		// Two requests may resolve the same child at once: they get the
		// same counter, so either store is right.
		c = &counterRef{requestsTotal.WithLabelValues(m.api, src, m.result(o.reason), string(o.reason))}
		slot.Store(c)
	}
	c.Inc()
}

// verified records how long establishing a verdict took since start, and
// whether the cache answered.
func (m *routeStats) verified(hit bool, start time.Time) {
	if m == nil {
		return
	}
	d := time.Since(start).Seconds()
	if hit {
		m.hits.Add(1)
		verifyHit.Observe(d)
		return
	}
	m.misses.Add(1)
	verifyMiss.Observe(d)
}
