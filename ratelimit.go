package mtlsauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtlsauth/caddy-mtls-auth/throttle"
)

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

// throttleScope is the part of the throttle key that says where a
// certificate's budget applies: its API, or this route. A route's scope is
// a hash of its handler configuration, so an unchanged route keeps its
// counters across reloads.
func (h *Handler) throttleScope() string {
	if h.API != "" {
		return "api:" + h.API
	}
	cfg, _ := json.Marshal(h)
	sum := sha256.Sum256(cfg)
	return "route:" + hex.EncodeToString(sum[:8])
}

// throttleStats counts backend failures, for the logs.
type throttleStats struct{ backendErrors atomic.Uint64 }

// applyThrottle counts the request against the identity's tier, sets the
// RateLimit headers, and reports whether it must be refused (and why).
func (h *Handler) applyThrottle(w http.ResponseWriter, r *http.Request, id *identity) (reason, string) {
	name := id.tier
	if name == "" {
		name = h.DefaultTier
	}
	if name == "" {
		return "", ""
	}
	tier, ok := h.app.tier(name)
	if !ok {
		// A runtime record may name a tier the configuration no longer has.
		tier, ok = h.app.tier(h.DefaultTier)
		if !ok {
			return "", ""
		}
	}
	if tier.Requests == 0 {
		return "", ""
	}
	dec, err := h.app.limiter.Allow(r.Context(), throttle.Key(h.scope, id.fingerprint),
		throttle.Tier{Name: tier.Name, Requests: tier.Requests, Window: time.Duration(tier.Window)})
	if err != nil {
		n := h.app.stats.backendErrors.Add(1)
		if c := h.logger.Check(zapcore.WarnLevel, "throttle backend failed"); c != nil {
			c.Write(zap.Error(err), zap.String("on_error", h.app.onErrorMode()), zap.Uint64("failures", n))
		}
		if h.app.OnError == "deny" {
			w.Header().Set("Retry-After", "1")
			return reasonThrottled, "throttle backend unavailable"
		}
		return "", ""
	}
	hdr := w.Header()
	hdr.Set("RateLimit-Limit", strconv.Itoa(dec.Limit))
	hdr.Set("RateLimit-Remaining", strconv.Itoa(dec.Remaining))
	hdr.Set("RateLimit-Reset", strconv.FormatInt(dec.ResetSeconds(), 10))
	if !dec.Allowed {
		hdr.Set("Retry-After", strconv.FormatInt(dec.RetryAfterSeconds(), 10))
		return reasonThrottled, "tier " + tier.Name + " exhausted"
	}
	return "", ""
}
