package mtlsauth

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
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
	// on another instance) and certificate files named in the configuration
	// are re-read. Default: 10s.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	runtime *store.Runtime
	tiers   map[string]Tier

	reg    *registry
	cancel context.CancelFunc

	limiter        throttle.Limiter
	releaseLimiter func()
	stats          *throttleStats
	done           chan struct{}
}

// registry is what the handlers of one configuration tell their app.
type registry struct {
	mu       sync.Mutex
	watchers map[*Handler]struct{} // handlers with files to re-read
	apis     map[string]struct{}   // API names configured on routes
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
	return a.setup(ctx.Logger(), ctx.Storage())
}

// setup builds the app's state over storage.
func (a *App) setup(logger *zap.Logger, storage certmagic.Storage) error {
	a.logger = logger
	if a.SyncInterval == 0 {
		a.SyncInterval = caddy.Duration(defaultSyncInterval)
	}
	a.tiers = make(map[string]Tier, len(a.Tiers))
	for _, t := range a.Tiers {
		if _, dup := a.tiers[t.Name]; dup {
			return fmt.Errorf("tier '%s' is defined twice", t.Name)
		}
		a.tiers[t.Name] = t
	}
	a.stats = &throttleStats{}
	if err := a.provisionLimiter(); err != nil {
		return err
	}
	a.reg = &registry{watchers: map[*Handler]struct{}{}, apis: map[string]struct{}{}}
	a.runtime = store.NewRuntime(storage, storagePrefix)
	if err := a.runtime.Sync(context.Background()); err != nil {
		if store.IsStorageError(err) {
			return fmt.Errorf("reading runtime certificates from storage: %v", err)
		}
		a.logger.Error("skipped unreadable runtime certificate records", zap.Error(err))
	}
	return nil
}

// Validate checks the tiers; it only reads.
func (a *App) Validate() error {
	for _, t := range a.Tiers {
		if t.Name == "" {
			return fmt.Errorf("tier: a tier needs a name")
		}
		if t.Requests < 0 {
			return fmt.Errorf("tier %s: requests must not be negative", t.Name)
		}
		if t.Requests > 0 && t.Window <= 0 {
			return fmt.Errorf("tier %s: window must be positive", t.Name)
		}
	}
	if a.SyncInterval < caddy.Duration(100*time.Millisecond) {
		return fmt.Errorf("sync_interval: must be at least 100ms")
	}
	return nil
}

// Start runs the sync loop.
func (a *App) Start() error {
	ctx, cancel := context.WithCancel(a.ctx)
	a.cancel = cancel
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
	if err := a.runtime.Sync(ctx); err != nil {
		a.logger.Error("syncing runtime certificates", zap.Error(err))
	}
	a.reg.mu.Lock()
	handlers := make([]*Handler, 0, len(a.reg.watchers))
	for h := range a.reg.watchers {
		handlers = append(handlers, h)
	}
	a.reg.mu.Unlock()
	for _, h := range handlers {
		h.reloadFiles()
	}
}

// tier looks a tier up by name.
func (a *App) tier(name string) (Tier, bool) {
	t, ok := a.tiers[name]
	return t, ok
}

// watch registers a handler whose certificate files the sync loop re-reads.
func (a *App) watch(h *Handler) {
	a.reg.mu.Lock()
	a.reg.watchers[h] = struct{}{}
	a.reg.mu.Unlock()
}

// registerAPI records that a route serves api, for the admin listing.
func (a *App) registerAPI(api string) {
	a.reg.mu.Lock()
	a.reg.apis[api] = struct{}{}
	a.reg.mu.Unlock()
}

// unwatch removes a handler, at its cleanup.
func (a *App) unwatch(h *Handler) {
	a.reg.mu.Lock()
	delete(a.reg.watchers, h)
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
	// reloads; each instance counts alone. `redis`: in a Redis server shared
	// by every instance, so limits are exact across a cluster.
	Backend string `json:"backend,omitempty"`
	// The Redis server, as `redis://[user:password@]host:port/db` (or
	// `rediss://` for TLS). Accepts placeholders such as `{env.REDIS_URL}`.
	URL string `json:"url,omitempty"`
	// How long to wait for Redis before applying `on_error`. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// provisionLimiter sets up the throttle backend.
func (a *App) provisionLimiter() error {
	for _, t := range a.Tiers {
		if err := (throttle.Tier{Name: t.Name, Requests: t.Requests, Window: time.Duration(t.Window)}).Validate(); err != nil {
			return fmt.Errorf("tier %s: %v", t.Name, err)
		}
	}
	switch a.OnError {
	case "", "allow", "deny":
	default:
		return fmt.Errorf("on_error: '%s' is not one of allow, deny", a.OnError)
	}
	backend := "local"
	if a.Throttle != nil && a.Throttle.Backend != "" {
		backend = a.Throttle.Backend
	}
	switch backend {
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
		url := caddy.NewReplacer().ReplaceKnown(a.Throttle.URL, "")
		r, err := throttle.NewRedis(throttle.RedisOptions{URL: url, Timeout: time.Duration(a.Throttle.Timeout)})
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
	default:
		return fmt.Errorf("throttle: backend '%s' is not one of local, redis", backend)
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

// throttleStats counts backend failures, for the logs.
type throttleStats struct{ backendErrors atomic.Uint64 }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
