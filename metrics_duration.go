package mtlsauth

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// hitSample is how many verification cache hits one timed hit stands for.
// Timing a hit means reading the clock, which costs about as much as the
// hit itself; timing a random one in 64, weighted 64, keeps the metrics'
// cost on the cached path within a few percent and still gives the
// distribution, and the count of hits is right on average (the status
// page's hit ratio counts every hit).
const hitSample = 64

// durationBounds are the histogram's upper bounds: from a cache hit (well
// under a microsecond) to an OCSP responder's timeout (seconds), by
// factors of 4.
var durationBounds = func() (b [13]time.Duration) {
	d := 250 * time.Nanosecond
	for i := range b {
		b[i] = d
		d *= 4
	}
	return b
}()

// durationHistogram is a histogram whose observations carry a weight, so
// that a sampled observation counts for the ones it stands for. The
// prometheus client's histogram cannot weigh, and costs several atomic
// operations per observation where this one costs two.
type durationHistogram struct {
	buckets [len(durationBounds) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumNs   atomic.Int64
}

func (h *durationHistogram) observe(d time.Duration, weight uint64) {
	i := 0
	for i < len(durationBounds) && d > durationBounds[i] {
		i++
	}
	h.buckets[i].Add(weight)
	h.sumNs.Add(int64(d) * int64(weight))
}

// metric is the histogram as a constant metric with the label value cache.
func (h *durationHistogram) metric(desc *prometheus.Desc, cache string) prometheus.Metric {
	cumulative := make(map[float64]uint64, len(durationBounds))
	var count uint64
	for i := range h.buckets {
		count += h.buckets[i].Load()
		if i < len(durationBounds) {
			cumulative[durationBounds[i].Seconds()] = count
		}
	}
	return prometheus.MustNewConstHistogram(desc, count, time.Duration(h.sumNs.Load()).Seconds(), cumulative, cache)
}

// durationCollector is caddy_mtls_auth_verify_duration_seconds{cache}.
type durationCollector struct {
	desc      *prometheus.Desc
	hit, miss durationHistogram
}

// verifyDuration is process-wide, like the counters.
var verifyDuration = &durationCollector{desc: prometheus.NewDesc("caddy_mtls_auth_verify_duration_seconds",
	"Time to establish a certificate's verdict: a verification cache hit (a random one hit in 64 is timed, and counts for 64), or decoding and verifying (miss).",
	[]string{"cache"}, nil)}

// Describe sends the histogram's descriptor.
func (c *durationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sends the hit and miss histograms.
func (c *durationCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.hit.metric(c.desc, "hit")
	ch <- c.miss.metric(c.desc, "miss")
}

// Interface guards
var _ prometheus.Collector = (*durationCollector)(nil)
