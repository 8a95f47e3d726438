package mtlsauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/mtlsauth/caddy-mtls-auth/store"
	"github.com/mtlsauth/caddy-mtls-auth/throttle"
)

func init() {
	caddy.RegisterModule(App{})
}

// storagePrefix is where the plugin keeps its state in Caddy's storage.
const storagePrefix = "mtls_auth"

// defaultSyncInterval is how often runtime certificates and watched files
// are re-read.
const defaultSyncInterval = 10 * time.Second

// App is the mtls_auth app: the state that every mtls_auth handler shares.
// It holds the throttling tiers, the runtime certificate stores of every API
// and the global deny list (kept in Caddy's configured storage under
// `mtls_auth/`, so they survive restarts and reach every instance that
// shares the storage), and the loop that re-reads them and the certificate
// files named in the configuration.
//
// A configuration that uses the mtls_auth handler without the global option
// gets this app with its defaults.
type App struct {
	// Throttling tiers that certificates can be bound to by name.
	Tiers []Tier `json:"tiers,omitempty"`

	// Where throttle counters live: in memory (default) or in Redis.
	Throttle *ThrottleConfig `json:"throttle,omitempty"`

	// What to do when the Redis backend cannot answer: `allow` (default; the
	// failure is logged and counted) or `deny` (429 with Retry-After: 1).
	OnError string `json:"on_error,omitempty"`

	// How often runtime certificates (added through the admin API, possibly
	// on another instance), certificate files and CRL files named in the
	// configuration are re-read. Default: 10s.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`

	// The level of the log line written for each rejected request:
	// `debug` (default), `info` or `warn`. A header from a peer outside
	// trusted_sources logs at info at least.
	LogRejections string `json:"log_rejections,omitempty"`
	// Configured certificates (allow entries, allow_dir files, trust pool
	// CAs, runtime stores) whose validity ends within this window are
	// logged at warn when the configuration loads, and then once a day.
	// Default: 30d.
	ExpiryWarning caddy.Duration `json:"expiry_warning,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	runtime *store.Runtime
	tiers   map[string]Tier

	reg    *registry
	cancel context.CancelFunc

	limiter        throttle.Limiter
	releaseLimiter func()
	done           chan struct{}

	// ops is what the metrics and the status page read (status.go).
	ops *appStats
}

// registry is what the handlers of one configuration tell their app.
type registry struct {
	mu       sync.Mutex
	watchers map[reloader]struct{} // handlers with files to re-read
	apis     map[string]struct{}   // API names configured on routes
	routes   map[*Handler]struct{} // every provisioned handler
}

// reloader is what the sync loop knows of a handler: something with
// certificate files to re-read.
type reloader interface {
	// reloadFiles re-reads the files if they changed; it logs its own
	// errors and keeps the last good state.
	reloadFiles()
}

// Tier is a named throttling budget.
type Tier struct {
	// The tier's name, used by `allow ... tier <name>`, `default_tier` and
	// the admin API's `tier` field.
	Name string `json:"name,omitempty"`
	// Requests allowed per window; 0 means unlimited.
	Requests int `json:"requests,omitempty"`
	// The length of the sliding window.
	Window caddy.Duration `json:"window,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mtls_auth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads the runtime certificates from storage. A storage that
// cannot be read fails the configuration rather than start without the
// deny list.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	if err := a.setup(ctx.Logger(), ctx.Storage()); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry(), a); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	return nil
}

// setup builds the app's state over storage.
func (a *App) setup(logger *zap.Logger, storage certmagic.Storage) error {
	a.logger = logger
	if a.SyncInterval == 0 {
		a.SyncInterval = caddy.Duration(defaultSyncInterval)
	}
	a.tiers = make(map[string]Tier, len(a.Tiers))
	for _, t := range a.Tiers {
		a.tiers[t.Name] = t // Validate refuses a name defined twice
	}
	if a.ExpiryWarning == 0 {
		a.ExpiryWarning = caddy.Duration(defaultExpiryWarning)
	}
	a.ops = newAppStats(a.Tiers)
	if err := a.provisionLimiter(); err != nil {
		return err
	}
	a.reg = &registry{watchers: map[reloader]struct{}{}, apis: map[string]struct{}{}, routes: map[*Handler]struct{}{}}
	a.runtime = store.NewRuntime(storage, storagePrefix)
	err := a.runtime.Sync(context.Background())
	a.synced(err)
	if err != nil {
		if store.IsStorageError(err) {
			return fmt.Errorf("reading runtime certificates from storage: %v", err)
		}
		a.logger.Error("skipped unreadable runtime certificate records", zap.Error(err))
	}
	return nil
}

// Validate checks the tiers, the throttle backend, on_error and
// sync_interval; it only reads.
func (a *App) Validate() error {
	for i, t := range a.Tiers {
		if err := validateTier(t, a.Tiers[:i]); err != nil {
			return err
		}
	}
	if !slices.Contains(onErrorModes, a.OnError) && a.OnError != "" {
		return fmt.Errorf("on_error: '%s' is not one of allow, deny", a.OnError)
	}
	if b := a.backend(); !slices.Contains(throttleBackends, b) {
		return fmt.Errorf("throttle: backend '%s' is not one of local, redis", b)
	}
	if err := a.Throttle.validate(); err != nil {
		return fmt.Errorf("throttle: %v", err)
	}
	if a.SyncInterval < caddy.Duration(100*time.Millisecond) {
		return fmt.Errorf("sync_interval: must be at least 100ms")
	}
	if _, ok := rejectionLevels[a.LogRejections]; !ok {
		return fmt.Errorf("log_rejections: '%s' is not one of debug, info, warn", a.LogRejections)
	}
	if a.ExpiryWarning < 0 {
		return fmt.Errorf("expiry_warning: must not be negative")
	}
	return nil
}

// Start refuses a configuration in which an mtls_auth handler can never
// run (routecheck.go), then runs the sync loop.
func (a *App) Start() error {
	if err := a.checkConfig(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.cancel = cancel
	a.warnExpiring(time.Now())
	a.done = make(chan struct{})
	go a.syncLoop(ctx, time.Duration(a.SyncInterval))
	return nil
}

// Stop ends the sync loop.
func (a *App) Stop() error {
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
	return nil
}

func (a *App) syncLoop(ctx context.Context, every time.Duration) {
	defer close(a.done)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			a.syncOnce(ctx)
		}
	}
}

// syncOnce re-reads storage and the handlers' watched files.
func (a *App) syncOnce(ctx context.Context) {
	err := a.runtime.Sync(ctx)
	a.synced(err)
	if err != nil {
		a.logger.Error("syncing runtime certificates", zap.Error(err))
	}
	a.reg.mu.Lock()
	watchers := make([]reloader, 0, len(a.reg.watchers))
	for w := range a.reg.watchers {
		watchers = append(watchers, w)
	}
	a.reg.mu.Unlock()
	for _, w := range watchers {
		w.reloadFiles()
	}
	a.warnExpiringDaily(time.Now())
}

// validateTier checks one tier against the tiers defined before it. It is
// the one place of the tier rules: Validate applies it to the JSON, and the
// Caddyfile parser to each `tier` line, for the line number.
func validateTier(t Tier, before []Tier) error {
	switch {
	case t.Name == "":
		return fmt.Errorf("tier: a tier needs a name")
	case t.Requests < 0:
		return fmt.Errorf("tier %s: requests must not be negative", t.Name)
	case t.Requests > 0 && t.Window <= 0:
		return fmt.Errorf("tier %s: window must be positive", t.Name)
	}
	for _, b := range before {
		if b.Name == t.Name {
			return fmt.Errorf("tier '%s' already specified", t.Name)
		}
	}
	return nil
}

// unknownTier is the error for a tier name no tier defines.
func unknownTier(name string) error {
	return fmt.Errorf("unknown tier '%s': define it with `tier %s <requests> <window>` in the global mtls_auth option", name, name)
}

// runtimeStore is the runtime certificate stores and the deny list.
func (a *App) runtimeStore() *store.Runtime { return a.runtime }

// tier looks a tier up by name.
func (a *App) tier(name string) (Tier, bool) {
	t, ok := a.tiers[name]
	return t, ok
}

// watch registers a handler whose certificate files the sync loop re-reads.
func (a *App) watch(r reloader) {
	a.reg.mu.Lock()
	a.reg.watchers[r] = struct{}{}
	a.reg.mu.Unlock()
}

// registerAPI records that a route serves api, for the admin listing.
func (a *App) registerAPI(api string) {
	a.reg.mu.Lock()
	a.reg.apis[api] = struct{}{}
	a.reg.mu.Unlock()
}

// apiConfigured reports whether a route of this configuration serves api.
func (a *App) apiConfigured(api string) bool {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	_, ok := a.reg.apis[api]
	return ok
}

// unwatch removes a handler, at its cleanup.
func (a *App) unwatch(r reloader) {
	a.reg.mu.Lock()
	delete(a.reg.watchers, r)
	a.reg.mu.Unlock()
}

// listAPIs lists the APIs configured on routes and those with stored
// certificates.
func (a *App) listAPIs() []apiJSON {
	snap := a.runtime.Snapshot()
	seen := map[string]*apiJSON{}
	for name, list := range snap.APIs {
		seen[name] = &apiJSON{API: name, Certs: list.Len()}
	}
	a.reg.mu.Lock()
	for name := range a.reg.apis {
		if seen[name] == nil {
			seen[name] = &apiJSON{API: name}
		}
		seen[name].Configured = true
	}
	a.reg.mu.Unlock()
	out := make([]apiJSON, 0, len(seen))
	for _, v := range seen {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].API < out[j].API })
	return out
}

// localLimiters holds the in-memory limiter across config reloads, so that
// a reload does not hand every certificate a fresh budget.
var localLimiters = caddy.NewUsagePool()

// localLimiterKey is the single local limiter's key in localLimiters.
const localLimiterKey = "mtls_auth/throttle/local"

// ThrottleConfig chooses where throttle counters live.
type ThrottleConfig struct {
	// `local` (default): in this instance's memory, kept across config
	// reloads; each instance counts alone. `redis`: in Redis (one server,
	// or a Redis Cluster) shared by every instance, so that they enforce
	// one limit together.
	Backend string `json:"backend,omitempty"`
	// The Redis server, as `redis://[user:password@]host:port/db` (or
	// `rediss://` for TLS). Accepts placeholders such as `{env.REDIS_URL}`.
	URL string `json:"url,omitempty"`
	// Instead of `url`: seed nodes of a Redis Cluster, as
	// `redis://[user:password@]host:port` URLs (or `rediss://`), all with
	// the same credentials. One is enough to find the others; list more so
	// that Caddy can start while one is down. Each identity's counters live
	// in one hash slot. Accepts placeholders.
	Cluster []string `json:"cluster,omitempty"`
	// How long to wait for Redis before applying `on_error`. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// Accepted values of on_error and of the throttle backend.
var (
	onErrorModes     = []string{"allow", "deny"}
	throttleBackends = []string{"local", "redis"}
)

// validate checks that the redis backend has exactly one of url and
// cluster, and that the local one has neither. A nil config is local.
func (c *ThrottleConfig) validate() error {
	if c == nil {
		return nil
	}
	redis := c.Backend == "redis"
	switch {
	case redis && c.URL == "" && len(c.Cluster) == 0:
		return errors.New("the redis backend needs url or cluster")
	case redis && c.URL != "" && len(c.Cluster) > 0:
		return errors.New("url and cluster both set; want one of them")
	case !redis && (c.URL != "" || len(c.Cluster) > 0):
		return errors.New("url and cluster apply to the redis backend only")
	}
	return nil
}

// backend is the configured throttle backend, local by default.
func (a *App) backend() string {
	if a.Throttle != nil && a.Throttle.Backend != "" {
		return a.Throttle.Backend
	}
	return "local"
}

// provisionLimiter sets up the throttle backend. An unknown backend gets
// none; Validate reports it.
func (a *App) provisionLimiter() error {
	switch a.backend() {
	case "local":
		val, _, err := localLimiters.LoadOrNew(localLimiterKey, func() (caddy.Destructor, error) {
			return throttle.NewLocal(throttle.LocalOptions{SweepInterval: time.Minute}), nil
		})
		if err != nil {
			return err
		}
		a.limiter = val.(*throttle.Local)
		a.releaseLimiter = func() { _, _ = localLimiters.Delete(localLimiterKey) }
	case "redis":
		repl := caddy.NewReplacer()
		redisLog := a.logger.Named("redis")
		opts := throttle.RedisOptions{
			URL:     repl.ReplaceKnown(a.Throttle.URL, ""),
			Timeout: time.Duration(a.Throttle.Timeout),
			// go-redis' own lines (a failed dial, a cluster node marked
			// failing) would otherwise go raw to stderr, outside Caddy's
			// logging; they come out as mtls_auth.redis lines instead.
			Log: func(msg string) { redisLog.Warn("redis client", zap.String("event", msg)) },
		}
		for _, u := range a.Throttle.Cluster {
			opts.Cluster = append(opts.Cluster, repl.ReplaceKnown(u, ""))
		}
		r, err := throttle.NewRedis(opts)
		if err != nil {
			return fmt.Errorf("throttle redis: %v", err)
		}
		a.limiter = r
		a.releaseLimiter = func() { _ = r.Close() }
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := r.Ping(ctx); err != nil {
			a.logger.Warn("redis for throttling does not answer yet; on_error applies until it does", zap.Error(err), zap.String("on_error", a.onErrorMode()))
		}
	}
	return nil
}

func (a *App) onErrorMode() string {
	if a.OnError == "" {
		return "allow"
	}
	return a.OnError
}

// Cleanup releases the throttle backend.
func (a *App) Cleanup() error {
	if a.releaseLimiter != nil {
		a.releaseLimiter()
	}
	return nil
}

// countRequest counts one request for key against tier t in the throttle
// backend.
func (a *App) countRequest(ctx context.Context, key string, t Tier) (throttle.Decision, error) {
	return a.limiter.Allow(ctx, key, throttle.Tier{Name: t.Name, Requests: t.Requests, Window: time.Duration(t.Window)})
}

// backendFailed records a failure of the throttle backend and says what
// on_error makes of it: the failures so far, the on_error mode, and whether
// the request is refused.
func (a *App) backendFailed() (failures uint64, onError string, deny bool) {
	return a.ops.throttleErrors.Add(1), a.onErrorMode(), a.OnError == "deny"
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
