package mtlsauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mtlsauth/caddy-mtls-auth/revocation"
)

// The counters and the histogram live for the whole process, not for one
// configuration: Caddy gives every configuration a fresh registry, and each
// new mtls_auth app registers these same collectors into it, so a config
// reload neither fails on a duplicate registration nor sets the counters
// back to zero. Labels never carry a fingerprint, subject or other
// per-client value: only names from the configuration and fixed codes.
// The request path's counters (requests_total and verify_duration_seconds)
// are in metrics_requests.go and metrics_duration.go.
var (
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
	storageSyncOK      = storageSyncTotal.WithLabelValues("ok")
	storageSyncError   = storageSyncTotal.WithLabelValues("error")
	revocationCounters = func() (m [2][3]prometheus.Counter) {
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

// countStorageSync counts one re-read of storage.
func countStorageSync(err error) {
	if err != nil {
		storageSyncError.Inc()
		return
	}
	storageSyncOK.Inc()
}
