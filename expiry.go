package mtlsauth

import (
	"math"
	"time"

	"go.uber.org/zap"
)

// defaultExpiryWarning is the default expiry_warning window.
const defaultExpiryWarning = 30 * 24 * time.Hour

// expiryWarningEvery is how often the warnings are repeated while a
// configuration runs.
const expiryWarningEvery = 24 * time.Hour

// expiringJSON is one certificate of GET /mtls_auth/expiring.
type expiringJSON struct {
	API         string    `json:"api"`
	Alias       string    `json:"alias"`
	Kind        string    `json:"kind"`
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after"`
	// DaysLeft is whole days until not_after, rounded down: 0 on the last
	// day, negative once expired.
	DaysLeft int `json:"days_left"`
}

// expiring lists the configured certificates whose validity ends before
// now+within (those already expired included), soonest first.
func (a *App) expiring(now time.Time, within time.Duration) []expiringJSON {
	limit := now.Add(within)
	out := []expiringJSON{}
	for _, c := range a.configuredCerts() {
		if c.cert.NotAfter.After(limit) {
			break // sorted by NotAfter
		}
		out = append(out, expiringJSON{
			API: c.api, Alias: c.alias, Kind: c.kind, Fingerprint: c.fp.String(),
			Subject: c.cert.Subject.String(), NotAfter: c.cert.NotAfter.UTC(),
			DaysLeft: daysLeft(now, c.cert.NotAfter),
		})
	}
	return out
}

func daysLeft(now, notAfter time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

// warnExpiring logs one warning per configured certificate that expires
// within expiry_warning (or has expired).
func (a *App) warnExpiring(now time.Time) {
	a.ops.lastExpiryWarning = now
	for _, e := range a.expiring(now, time.Duration(a.ExpiryWarning)) {
		msg := "configured certificate expires soon"
		if e.DaysLeft < 0 {
			msg = "configured certificate has expired"
		}
		a.logger.Warn(msg,
			zap.String("api", e.API), zap.String("alias", e.Alias), zap.String("kind", e.Kind),
			zap.String("fingerprint", e.Fingerprint), zap.String("subject", e.Subject),
			zap.Time("not_after", e.NotAfter), zap.Int("days_left", e.DaysLeft))
	}
}

// warnExpiringDaily repeats the warnings once a day; the sync loop calls
// it on every tick.
func (a *App) warnExpiringDaily(now time.Time) {
	if now.Sub(a.ops.lastExpiryWarning) >= expiryWarningEvery {
		a.warnExpiring(now)
	}
}
