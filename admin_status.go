package mtlsauth

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// statusPingTimeout bounds how long GET /mtls_auth/status waits for the
// throttle backend to answer.
const statusPingTimeout = 500 * time.Millisecond

// serveOps serves the operations routes of the admin API:
//
//	GET /mtls_auth/expiring?within=30d   configured certificates expiring within the window
//	GET /mtls_auth/status                trust, revocation, throttle backend, storage sync, cache
//
// It reports whether parts named one of them.
func (a adminAPI) serveOps(w http.ResponseWriter, r *http.Request, app *App, parts []string) (bool, error) {
	if len(parts) != 1 || (parts[0] != "expiring" && parts[0] != "status") {
		return false, nil
	}
	if err := onlyMethods(r, http.MethodGet); err != nil {
		return true, err
	}
	if parts[0] == "status" {
		ctx, cancel := context.WithTimeout(r.Context(), statusPingTimeout)
		defer cancel()
		return true, writeJSON(w, http.StatusOK, app.status(ctx))
	}
	within := time.Duration(app.ExpiryWarning)
	if v := r.URL.Query().Get("within"); v != "" {
		d, err := caddy.ParseDuration(v)
		if err != nil || d < 0 {
			return true, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("within: '%s' is not a duration such as 30d, 72h or 0s", v)}
		}
		within = d
	}
	return true, writeJSON(w, http.StatusOK, app.expiring(time.Now(), within))
}
