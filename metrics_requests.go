package mtlsauth

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request results.
const (
	resultAccepted = "accepted"
	resultRejected = "rejected"
	resultPassed   = "passed" // let through unauthenticated by optional or fallback
)

// knownReasons index a route's counters; a reason missing here is still
// counted, in a map beside them.
var knownReasons = [...]reason{
	"", reasonMissing, reasonUntrustedSource, reasonMalformed, reasonTooLarge,
	reasonDuplicateHeader, reasonUntrusted, reasonExpired, reasonNotYetValid,
	reasonWrongUsage, reasonRevoked, reasonNotAllowed, reasonDenied, reasonThrottled,
}

// sources are the source label's values, by index.
var sources = [...]string{"header", "tls", "none"}

// routeStats is what one handler counts, for the metrics and the status
// page. A request costs one atomic add on a counter of its own route (no
// label lookup, no counter shared with other routes); requests_total sums
// the routes when Prometheus scrapes.
type routeStats struct {
	api  string
	mode mode
	id   string // the route's routeID

	// requests[source][reason]: the result follows from the reason and
	// the mode, both fixed for a (route, reason) pair.
	requests [len(sources)][len(knownReasons)]atomic.Uint64
	otherMu  sync.Mutex
	other    map[requestLabels]uint64 // reasons not in knownReasons

	// misses are verifications the cache did not answer, and unverified
	// the requests that had nothing to verify (no certificate, untrusted
	// source): every other request was a cache hit.
	misses, unverified atomic.Uint64
	// trust is the outcome of the last load of the certificate files.
	trust atomic.Pointer[trustNote]
}

// requestLabels are the labels of one requests_total series.
type requestLabels struct{ api, source, result, reason string }

// liveRoutes are the routes of every running configuration (two at once
// during a reload); retired holds the counts of routes cleaned up since, so
// that the totals never go back.
var liveRoutes = struct {
	sync.Mutex
	routes  map[*routeStats]struct{}
	retired map[requestLabels]uint64
}{routes: map[*routeStats]struct{}{}, retired: map[requestLabels]uint64{}}

func newRouteStats(api string, m mode) *routeStats {
	s := &routeStats{api: api, mode: m}
	liveRoutes.Lock()
	liveRoutes.routes[s] = struct{}{}
	liveRoutes.Unlock()
	return s
}

// retire moves the route's counts into the retired totals, at its cleanup.
func (m *routeStats) retire() {
	if m == nil {
		return
	}
	liveRoutes.Lock()
	defer liveRoutes.Unlock()
	if _, ok := liveRoutes.routes[m]; !ok {
		return
	}
	m.addTo(liveRoutes.retired)
	delete(liveRoutes.routes, m)
}

// addTo adds the route's counts to totals.
func (m *routeStats) addTo(totals map[requestLabels]uint64) {
	for si := range m.requests {
		for ri := range m.requests[si] {
			if n := m.requests[si][ri].Load(); n > 0 {
				r := knownReasons[ri]
				totals[requestLabels{m.api, sources[si], m.result(r), string(r)}] += n
			}
		}
	}
	m.otherMu.Lock()
	for k, n := range m.other {
		totals[k] += n
	}
	m.otherMu.Unlock()
}

// total is the number of requests the route has seen.
func (m *routeStats) total() uint64 {
	var n uint64
	for si := range m.requests {
		for ri := range m.requests[si] {
			n += m.requests[si][ri].Load()
		}
	}
	m.otherMu.Lock()
	for _, c := range m.other {
		n += c
	}
	m.otherMu.Unlock()
	return n
}

// cacheCounts are the route's cache hits and misses.
func (m *routeStats) cacheCounts() (hits, misses uint64) {
	misses = m.misses.Load()
	unverified := m.unverified.Load()
	total := m.total()
	if total < misses+unverified { // counted while reading
		return 0, misses
	}
	return total - misses - unverified, misses
}

func sourceIndex(s string) int {
	switch s {
	case "header":
		return 0
	case "tls":
		return 1
	}
	return 2 // no certificate found
}

func reasonIndex(r reason) int {
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
	si := sourceIndex(o.source)
	if o.reason == "" {
		m.requests[si][0].Add(1)
		return
	}
	ri := reasonIndex(o.reason)
	if ri < 0 {
		m.otherMu.Lock()
		if m.other == nil {
			m.other = map[requestLabels]uint64{}
		}
		m.other[requestLabels{m.api, sources[si], m.result(o.reason), string(o.reason)}]++
		m.otherMu.Unlock()
		return
	}
	m.requests[si][ri].Add(1)
}

// verified records how long establishing a verdict took since start, and
// whether the cache answered. A hit costs about as much as reading the
// clock, so a random one in hitSample is timed and counts for hitSample.
func (m *routeStats) verified(hit bool, start time.Time) {
	if m == nil {
		return
	}
	if hit {
		if rand.Uint32()%hitSample == 0 {
			verifyDuration.hit.observe(time.Since(start), hitSample)
		}
		return
	}
	m.misses.Add(1)
	verifyDuration.miss.observe(time.Since(start), 1)
}

// unverifiedRequest records a request with nothing to verify.
func (m *routeStats) unverifiedRequest() {
	if m != nil {
		m.unverified.Add(1)
	}
}

// requestsCollector is caddy_mtls_auth_requests_total.
type requestsCollector struct{ desc *prometheus.Desc }

var requestsTotal = &requestsCollector{desc: prometheus.NewDesc("caddy_mtls_auth_requests_total",
	"Requests seen by mtls_auth handlers, by API, certificate source (header, tls, none), result (accepted, rejected, passed) and reason code.",
	[]string{"api", "source", "result", "reason"}, nil)}

// Describe sends the counter's descriptor.
func (c *requestsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sums the live routes and the retired ones.
func (c *requestsCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range requestTotals() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), k.api, k.source, k.result, k.reason)
	}
}

// requestTotals are the requests_total series.
func requestTotals() map[requestLabels]uint64 {
	liveRoutes.Lock()
	defer liveRoutes.Unlock()
	totals := make(map[requestLabels]uint64, len(liveRoutes.retired))
	for k, n := range liveRoutes.retired {
		totals[k] = n
	}
	for m := range liveRoutes.routes {
		m.addTo(totals)
	}
	return totals
}

// Interface guards
var _ prometheus.Collector = (*requestsCollector)(nil)
