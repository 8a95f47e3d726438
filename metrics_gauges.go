package mtlsauth

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The gauges describe the running configuration, so they are read from
// its app when Prometheus scrapes rather than kept up to date on every
// change.
var (
	cacheEntriesDesc = prometheus.NewDesc("caddy_mtls_auth_cache_entries",
		"Verification results held by the caches of every mtls_auth route.", nil, nil)
	notAfterDesc = prometheus.NewDesc("caddy_mtls_auth_certificate_not_after_timestamp_seconds",
		"End of validity (Unix time) of each configured certificate: allow entries, allow_dir files, trust pool CAs and runtime store records, by API, alias and kind.",
		[]string{"api", "alias", "kind"}, nil)
	crlNextUpdateDesc = prometheus.NewDesc("caddy_mtls_auth_crl_next_update_timestamp_seconds",
		"nextUpdate (Unix time) of each configured CRL in use, by its file or URL.",
		[]string{"crl"}, nil)
)

// gaugeCollector reports one app's gauges.
type gaugeCollector struct{ app *App }

// Describe sends the gauges' descriptors.
func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheEntriesDesc
	ch <- notAfterDesc
	ch <- crlNextUpdateDesc
}

// Collect reads the gauges. A label set seen twice (two routes of one API
// pinning the same alias, two routes reading one CRL) is reported once,
// with the earliest time: the one to act on.
func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	routes := g.app.routes()
	entries := 0
	for _, h := range routes {
		if h.cache != nil {
			entries += h.cache.len()
		}
	}
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(entries))

	type certLabels struct{ api, alias, kind string }
	seen := map[certLabels]bool{}
	for _, c := range g.app.configuredCerts() { // soonest first
		k := certLabels{c.api, c.alias, c.kind}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, float64(c.cert.NotAfter.Unix()), c.api, c.alias, c.kind)
	}

	next := map[string]int64{}
	for _, h := range routes {
		if h.verifier == nil || h.verifier.revocation == nil {
			continue
		}
		for _, c := range h.verifier.revocation.CRLs() {
			if c.NextUpdate.IsZero() {
				continue
			}
			if t, ok := next[c.Name]; !ok || c.NextUpdate.Unix() < t {
				next[c.Name] = c.NextUpdate.Unix()
			}
		}
	}
	for name, t := range next {
		ch <- prometheus.MustNewConstMetric(crlNextUpdateDesc, prometheus.GaugeValue, float64(t), name)
	}
}

// Interface guards
var _ prometheus.Collector = (*gaugeCollector)(nil)
