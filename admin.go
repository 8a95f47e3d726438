package mtlsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// maxAdminBody caps an admin request body.
const maxAdminBody = 1 << 20

// adminAPI serves the runtime certificate routes under /mtls_auth/ on
// Caddy's admin endpoint:
//
//	GET    /mtls_auth/apis                       APIs with runtime stores
//	GET    /mtls_auth/apis/<api>/certs           the API's certificates
//	POST   /mtls_auth/apis/<api>/certs           add {"alias","pem","tier","meta"} -> 201
//	DELETE /mtls_auth/apis/<api>/certs/<alias>   -> 204
//	GET    /mtls_auth/deny                       the deny list
//	POST   /mtls_auth/deny                       {"fingerprint","reason"} -> 201
//	DELETE /mtls_auth/deny/<fingerprint>         -> 204
//	GET    /mtls_auth/expiring?within=30d        (admin_status.go)
//	GET    /mtls_auth/status                     (admin_status.go)
//
// It holds no state of its own: each request finds the running
// configuration's mtls_auth app, so it never breaks a configuration that
// does not use the plugin (it answers 404 there).
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mtls_auth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/mtls_auth/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// certJSON is a certificate as the admin API shows it.
type certJSON struct {
	Alias       string            `json:"alias"`
	Fingerprint string            `json:"fingerprint"`
	Subject     string            `json:"subject"`
	Issuer      string            `json:"issuer"`
	NotAfter    time.Time         `json:"not_after"`
	IsCA        bool              `json:"is_ca,omitempty"`
	Tier        string            `json:"tier,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	AddedAt     time.Time         `json:"added_at,omitzero"`
}

func certView(e *store.Entry) certJSON {
	return certJSON{
		Alias: e.Alias, Fingerprint: e.Fingerprint.String(), Subject: e.Cert.Subject.String(),
		Issuer: e.Cert.Issuer.String(), NotAfter: e.Cert.NotAfter.UTC(), IsCA: e.IsCA(),
		Tier: e.Tier, Meta: e.Meta, AddedAt: e.AddedAt,
	}
}

// apiJSON is one API in the listing.
type apiJSON struct {
	API        string `json:"api"`
	Certs      int    `json:"certs"`
	Configured bool   `json:"configured"`
}

func (a adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/mtls_auth/"), "/"), "/")
	if handled, err := a.serveOps(w, r, app, parts); handled {
		return err
	}
	switch {
	case len(parts) == 1 && parts[0] == "apis":
		if err := onlyMethods(r, http.MethodGet); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, app.listAPIs())
	case len(parts) == 3 && parts[0] == "apis" && parts[2] == "certs":
		return a.certs(w, r, app, parts[1])
	case len(parts) == 4 && parts[0] == "apis" && parts[2] == "certs":
		if err := onlyMethods(r, http.MethodDelete); err != nil {
			return err
		}
		if err := app.runtime.RemoveCert(r.Context(), parts[1], parts[3]); err != nil {
			return apiError(err)
		}
		app.logger.Info("runtime certificate removed", zapAPI(parts[1]), zapAlias(parts[3]))
		w.WriteHeader(http.StatusNoContent)
		return nil
	case len(parts) == 1 && parts[0] == "deny":
		return a.deny(w, r, app)
	case len(parts) == 2 && parts[0] == "deny":
		if err := onlyMethods(r, http.MethodDelete); err != nil {
			return err
		}
		if err := app.runtime.Undeny(r.Context(), parts[1]); err != nil {
			return apiError(err)
		}
		app.logger.Info("fingerprint removed from deny list", zapFingerprint(parts[1]))
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such mtls_auth route: %s", r.URL.Path)}
}

// certs serves GET and POST /mtls_auth/apis/<api>/certs.
func (a adminAPI) certs(w http.ResponseWriter, r *http.Request, app *App, api string) error {
	if err := onlyMethods(r, http.MethodGet, http.MethodPost); err != nil {
		return err
	}
	if err := store.ValidName("api", api); err != nil {
		return apiError(err)
	}
	if r.Method == http.MethodGet {
		out := []certJSON{}
		if list := app.runtime.Snapshot().APIs[api]; list != nil {
			for _, e := range list.Entries() {
				out = append(out, certView(e))
			}
		}
		return writeJSON(w, http.StatusOK, out)
	}
	var rec store.Record
	if err := decodeBody(r, &rec); err != nil {
		return err
	}
	rec.AddedAt = time.Time{} // set by the store
	if rec.Tier != "" {
		if _, ok := app.tier(rec.Tier); !ok {
			return apiError(fmt.Errorf("%w: unknown tier '%s'", store.ErrInvalid, rec.Tier))
		}
	}
	e, err := app.runtime.AddCert(r.Context(), api, rec)
	if err != nil {
		return apiError(err)
	}
	app.logger.Info("runtime certificate added", zapAPI(api), zapAlias(e.Alias), zapFingerprint(e.Fingerprint.String()))
	return writeJSON(w, http.StatusCreated, certView(e))
}

// deny serves GET and POST /mtls_auth/deny.
func (a adminAPI) deny(w http.ResponseWriter, r *http.Request, app *App) error {
	if err := onlyMethods(r, http.MethodGet, http.MethodPost); err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		out := []store.DenyRecord{}
		for _, d := range app.runtime.Snapshot().Deny {
			out = append(out, d)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Fingerprint < out[j].Fingerprint })
		return writeJSON(w, http.StatusOK, out)
	}
	var rec store.DenyRecord
	if err := decodeBody(r, &rec); err != nil {
		return err
	}
	rec.When = time.Time{}
	rec, err := app.runtime.Deny(r.Context(), rec)
	if err != nil {
		return apiError(err)
	}
	app.logger.Warn("fingerprint denied on every route", zapFingerprint(rec.Fingerprint))
	return writeJSON(w, http.StatusCreated, rec)
}

// Log fields of the admin routes.
func zapAPI(api string) zap.Field        { return zap.String("api", api) }
func zapAlias(alias string) zap.Field    { return zap.String("alias", alias) }
func zapFingerprint(fp string) zap.Field { return zap.String("fingerprint", fp) }

// runningApp finds the running configuration's mtls_auth app.
func runningApp() (*App, error) {
	val, err := caddy.ActiveContext().AppIfConfigured("mtls_auth")
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("mtls_auth is not in use in the running configuration: add an mtls_auth handler or the mtls_auth global option")}
	}
	return val.(*App), nil
}

func onlyMethods(r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m {
			return nil
		}
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed: %s", r.Method)}
}

// decodeBody reads a JSON object strictly: unknown fields, trailing data
// and bodies over 1 MiB are errors.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid JSON body: %v", err)}
	}
	if dec.More() {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("invalid JSON body: trailing data after the object")}
	}
	if r.ContentLength > maxAdminBody {
		return caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: errors.New("body over 1 MiB")}
	}
	return nil
}

// apiError maps a store error to its HTTP status.
func apiError(err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		status = http.StatusConflict
	}
	return caddy.APIError{HTTPStatus: status, Err: err}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
