package mtlsauth

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// errorNote is a failure and when it happened.
type errorNote struct {
	at  time.Time
	err error
}

// trustNote is the outcome of the latest loads of a route's certificate
// files: when they last loaded, and the failure of the latest attempt if
// it failed (the last good set then stays in use).
type trustNote struct {
	loaded time.Time
	failed *errorNote
}

// trustLoaded records a successful load of the route's files.
func (m *routeStats) trustLoaded(at time.Time) {
	if m != nil {
		m.trust.Store(&trustNote{loaded: at})
	}
}

// trustFailed records a load that failed; the last good set stays.
func (m *routeStats) trustFailed(at time.Time, err error) {
	if m == nil {
		return
	}
	n := trustNote{failed: &errorNote{at: at, err: err}}
	if prev := m.trust.Load(); prev != nil {
		n.loaded = prev.loaded
	}
	m.trust.Store(&n)
}

// appStats is what the app remembers for the metrics and the status page.
type appStats struct {
	// throttleCounters are throttle_total's children per tier:
	// allowed, throttled, error.
	throttleCounters map[string]*[3]prometheus.Counter
	throttleFailed   atomic.Pointer[errorNote]
	throttleErrors   atomic.Uint64 // backend failures, for the logs and the status page
	syncOK           atomic.Pointer[time.Time]
	syncFailed       atomic.Pointer[errorNote]
	// lastExpiryWarning is touched by Start and then the sync loop only.
	lastExpiryWarning time.Time
}

func newAppStats(tiers []Tier) *appStats {
	s := &appStats{throttleCounters: make(map[string]*[3]prometheus.Counter, len(tiers))}
	for _, t := range tiers {
		s.throttleCounters[t.Name] = &[3]prometheus.Counter{
			throttleTotal.WithLabelValues(t.Name, throttleAllowed),
			throttleTotal.WithLabelValues(t.Name, throttleThrottled),
			throttleTotal.WithLabelValues(t.Name, throttleError),
		}
	}
	return s
}

// throttled counts a decision of the throttle backend for tier: err when
// it could not answer, else whether the request was allowed.
func (a *App) throttled(tier string, allowed bool, err error) {
	i := 0
	switch {
	case err != nil:
		i = 2
		a.ops.throttleFailed.Store(&errorNote{at: time.Now(), err: err})
	case !allowed:
		i = 1
	}
	// tier comes from a.tiers, built from the same a.Tiers as the counters.
	if c := a.ops.throttleCounters[tier]; c != nil {
		c[i].Inc()
	}
}

// synced records a re-read of storage.
func (a *App) synced(err error) {
	countStorageSync(err)
	now := time.Now()
	if err != nil {
		a.ops.syncFailed.Store(&errorNote{at: now, err: err})
		return
	}
	a.ops.syncOK.Store(&now)
}

// addRoute registers a provisioned handler, for the metrics, the status
// page and the expiry reports; removeRoute forgets it at its cleanup.
func (a *App) addRoute(h *Handler) {
	a.reg.mu.Lock()
	a.reg.routes[h] = struct{}{}
	a.reg.mu.Unlock()
}

func (a *App) removeRoute(h *Handler) {
	a.reg.mu.Lock()
	delete(a.reg.routes, h)
	a.reg.mu.Unlock()
}

// routes lists the provisioned handlers in a stable order.
func (a *App) routes() []*Handler {
	a.reg.mu.Lock()
	out := make([]*Handler, 0, len(a.reg.routes))
	for h := range a.reg.routes {
		out = append(out, h)
	}
	a.reg.mu.Unlock()
	ids := make(map[*Handler]string, len(out))
	for _, h := range out {
		ids[h] = h.API + "\x00" + h.id()
	}
	sort.Slice(out, func(i, j int) bool { return ids[out[i]] < ids[out[j]] })
	return out
}

// id is the route's routeID, computed once at provision.
func (h *Handler) id() string { return h.stats.id }

// statusJSON is GET /mtls_auth/status.
type statusJSON struct {
	Routes   []routeStatusJSON  `json:"routes"`
	Throttle throttleStatusJSON `json:"throttle"`
	Storage  storageStatusJSON  `json:"storage"`
}

type routeStatusJSON struct {
	API        string                `json:"api,omitempty"`
	Route      string                `json:"route"`
	Source     string                `json:"source"`
	Mode       string                `json:"mode"`
	Trust      trustStatusJSON       `json:"trust"`
	Revocation *revocationStatusJSON `json:"revocation,omitempty"`
	Cache      *cacheStatusJSON      `json:"cache,omitempty"`
}

type trustStatusJSON struct {
	PoolSize       int       `json:"pool_size"`
	AllowEntries   int       `json:"allow_entries"`
	RuntimeEntries int       `json:"runtime_entries"`
	LastReload     time.Time `json:"last_reload,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
}

type revocationStatusJSON struct {
	CRLs             []crlStatusJSON `json:"crls"`
	OCSPCacheEntries int             `json:"ocsp_cache_entries"`
}

type crlStatusJSON struct {
	CRL         string    `json:"crl"`
	ThisUpdate  time.Time `json:"this_update,omitzero"`
	NextUpdate  time.Time `json:"next_update,omitzero"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

type cacheStatusJSON struct {
	Entries  int     `json:"entries"`
	Hits     uint64  `json:"hits"`
	Misses   uint64  `json:"misses"`
	HitRatio float64 `json:"hit_ratio"`
}

type throttleStatusJSON struct {
	Backend     string    `json:"backend"`
	Reachable   bool      `json:"reachable"`
	PingError   string    `json:"ping_error,omitempty"`
	Errors      uint64    `json:"errors"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

type storageStatusJSON struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// status reports every route, the throttle backend (asking it, within
// the time ctx allows) and the storage sync.
func (a *App) status(ctx context.Context) statusJSON {
	out := statusJSON{Routes: []routeStatusJSON{}}
	for _, h := range a.routes() {
		out.Routes = append(out.Routes, h.status())
	}
	out.Throttle = a.throttleStatus(ctx)
	if t := a.ops.syncOK.Load(); t != nil {
		out.Storage.LastSuccess = t.UTC()
	}
	if n := a.ops.syncFailed.Load(); n != nil {
		out.Storage.LastError, out.Storage.LastErrorAt = n.err.Error(), n.at.UTC()
	}
	return out
}

// pinger is a throttle backend that can be asked whether it answers.
type pinger interface{ Ping(context.Context) error }

func (a *App) throttleStatus(ctx context.Context) throttleStatusJSON {
	st := throttleStatusJSON{Backend: a.backend(), Reachable: true, Errors: a.ops.throttleErrors.Load()}
	if p, ok := a.limiter.(pinger); ok {
		if err := p.Ping(ctx); err != nil {
			st.Reachable, st.PingError = false, err.Error()
		}
	}
	if n := a.ops.throttleFailed.Load(); n != nil {
		st.LastError, st.LastErrorAt = n.err.Error(), n.at.UTC()
	}
	return st
}

// status reports one route.
func (h *Handler) status() routeStatusJSON {
	st := routeStatusJSON{API: h.API, Route: h.id(), Source: h.sourceName(), Mode: h.mode.String()}
	if ts := h.verifier.static.Load(); ts != nil {
		if ts.pool != nil {
			st.Trust.PoolSize = ts.pool.Len()
		}
		st.Trust.AllowEntries = allowLen(ts)
	}
	if h.API != "" {
		if list := h.verifier.snapshot().APIs[h.API]; list != nil {
			st.Trust.RuntimeEntries = list.Len()
		}
	}
	if h.stats != nil {
		if n := h.stats.trust.Load(); n != nil {
			st.Trust.LastReload = n.loaded.UTC()
			if n.failed != nil {
				st.Trust.LastError, st.Trust.LastErrorAt = n.failed.err.Error(), n.failed.at.UTC()
			}
		}
	}
	if rc := h.verifier.revocation; rc != nil {
		rs := &revocationStatusJSON{CRLs: []crlStatusJSON{}, OCSPCacheEntries: rc.OCSPCacheLen()}
		for _, c := range rc.CRLs() {
			cs := crlStatusJSON{CRL: c.Name, ThisUpdate: c.ThisUpdate.UTC(), NextUpdate: c.NextUpdate.UTC(), LastRefresh: c.LastRefresh.UTC()}
			if c.LastError != nil {
				cs.LastError = c.LastError.Error()
			}
			rs.CRLs = append(rs.CRLs, cs)
		}
		st.Revocation = rs
	}
	if h.cache != nil {
		cs := &cacheStatusJSON{Entries: h.cache.len()}
		if h.stats != nil {
			cs.Hits, cs.Misses = h.stats.cacheCounts()
			if n := cs.Hits + cs.Misses; n > 0 {
				cs.HitRatio = float64(cs.Hits) / float64(n)
			}
		}
		st.Cache = cs
	}
	return st
}

// sourceName is the configured source, by its Caddyfile name.
func (h *Handler) sourceName() string {
	switch h.source {
	case sourceTLS:
		return "tls"
	case sourceAny:
		return "any"
	}
	return "header"
}
