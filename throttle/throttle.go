package throttle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Tier is a named budget: at most Requests requests in any Window-long
// interval. Requests 0 means unlimited (Window is then ignored).
type Tier struct {
	// Name identifies the tier in configuration, logs and placeholders. The
	// limiters do not use it.
	Name string
	// Requests is the number of requests allowed per Window; 0 is unlimited.
	Requests int
	// Window is the length of the sliding window; it must be positive when
	// Requests is.
	Window time.Duration
}

// ErrInvalidTier is returned (wrapped) by Tier.Validate and by Allow for a tier
// with negative Requests, or positive Requests and a Window that is not
// positive.
var ErrInvalidTier = errors.New("throttle: invalid tier")

// Unlimited reports whether the tier puts no limit on requests.
func (t Tier) Unlimited() bool { return t.Requests == 0 }

// Validate reports whether the tier can be used by a Limiter: Requests must be
// zero or positive, and Window positive when Requests is positive.
func (t Tier) Validate() error {
	switch {
	case t.Requests < 0:
		return fmt.Errorf("%w %q: requests %d is negative", ErrInvalidTier, t.Name, t.Requests)
	case t.Requests > 0 && t.Window <= 0:
		return fmt.Errorf("%w %q: window %s must be positive", ErrInvalidTier, t.Name, t.Window)
	}
	return nil
}

// Decision is the outcome of one Allow call.
type Decision struct {
	// Allowed is true when the request fits in the tier's budget and was
	// counted.
	Allowed bool
	// Limit is the tier's Requests (0 for an unlimited tier).
	Limit int
	// Remaining is how many more requests the key may make right now, after
	// this one; 0 when refused.
	Remaining int
	// Reset is the time until the oldest request counted in the window
	// leaves it, that is until Remaining grows again (when refused: until the
	// window has room again, equal to RetryAfter). Zero for an unlimited tier.
	// The whole budget is back at most Window after the key's last allowed
	// request. Use ResetSeconds for the RateLimit-Reset header.
	Reset time.Duration
	// RetryAfter is, when refused, the time until the next request would be
	// allowed; zero when allowed. Use RetryAfterSeconds for Retry-After.
	RetryAfter time.Duration
}

// ResetSeconds is Reset in whole seconds, rounded up, for RateLimit-Reset.
func (d Decision) ResetSeconds() int64 { return CeilSeconds(d.Reset) }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, for the
// Retry-After header. It is at least 1 when the request was refused, so a
// client never retries at once.
func (d Decision) RetryAfterSeconds() int64 {
	s := CeilSeconds(d.RetryAfter)
	if !d.Allowed && s < 1 {
		s = 1
	}
	return s
}

// CeilSeconds is d in whole seconds, rounded up; 0 for d <= 0.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Limiter counts requests per key. The key is opaque to the limiter; the
// caller builds it, see Key. Implementations are safe for concurrent use.
type Limiter interface {
	// Allow counts one request for key under tier and reports whether it is
	// allowed. An unlimited tier is always allowed and not tracked. An error
	// means the limiter could not decide (Decision is then the zero value);
	// the caller applies its on_error policy.
	Allow(ctx context.Context, key string, tier Tier) (Decision, error)
	// Close releases the limiter's resources (goroutines, connections).
	Close() error
}

// KeySeparator separates the parts of a key built by Key.
const KeySeparator = "|"

// Key builds the conventional limiter key "scope|fingerprint", where scope is
// the API name (or a route identifier when the route has no API) and
// fingerprint the certificate's SHA-256 in lowercase hex. Certificates on
// different APIs are counted separately; one certificate on one API shares
// one budget across every route and instance using that scope.
func Key(scope, fingerprint string) string { return scope + KeySeparator + fingerprint }
