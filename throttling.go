package mtlsauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtlsauth/caddy-mtls-auth/throttle"
)

// throttleScope is the part of the throttle key that says where a
// certificate's budget applies: its API, or this route. A route's scope is
// a hash of its handler configuration, so an unchanged route keeps its
// counters across reloads.
func (h *Handler) throttleScope(routeID string) string {
	if h.API != "" {
		return "api:" + h.API
	}
	return routeID
}

// routeID names a route by a hash of its handler configuration, stable
// across reloads while the route is unchanged.
func (h *Handler) routeID() string {
	cfg, _ := json.Marshal(h)
	sum := sha256.Sum256(cfg)
	return "route:" + hex.EncodeToString(sum[:8])
}

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
	dec, err := h.app.countRequest(r.Context(), throttle.Key(h.scope, id.fp.String()), tier)
	h.app.throttled(tier.Name, err == nil && dec.Allowed, err)
	if err != nil {
		n, onError, deny := h.app.backendFailed()
		if c := h.logger.Check(zapcore.WarnLevel, "throttle backend failed"); c != nil {
			c.Write(zap.Error(err), zap.String("on_error", onError), zap.Uint64("failures", n))
		}
		if deny {
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
