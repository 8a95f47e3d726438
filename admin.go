package mtlsauth

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
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

// Body limits: one record or deny entry, and a bulk array of records
// (about 10,000 certificates).
const (
	maxAdminBody = 1 << 20
	maxBulkBody  = 16 << 20
)

// adminAPI serves the runtime certificate routes under /mtls_auth/ on
// Caddy's admin endpoint:
//
//	GET    /mtls_auth/apis                       APIs with runtime stores
//	GET    /mtls_auth/apis/<api>/certs           the API's certificates
//	POST   /mtls_auth/apis/<api>/certs           add {"alias","pem","tier","meta","ca"} -> 201
//	POST   /mtls_auth/apis/<api>/certs           add [{...}, ...], all or nothing -> 201
//	GET    /mtls_auth/apis/<api>/certs/<alias>   one certificate, with its PEM
//	PATCH  /mtls_auth/apis/<api>/certs/<alias>   change {"tier","meta"} -> 200
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
	Alias       string    `json:"alias"`
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// CA is true for a record that admits every certificate it issued
	// (uploaded with "ca": true); other records pin exactly themselves.
	CA      bool              `json:"ca,omitempty"`
	Tier    string            `json:"tier,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	AddedAt time.Time         `json:"added_at,omitzero"`
	// PEM is the certificate itself, in the answer for one certificate.
	PEM string `json:"pem,omitempty"`
	// Warning is set on an upload that was stored but that no route uses.
	Warning string `json:"warning,omitempty"`
}

func certView(e *store.Entry) certJSON {
	return certJSON{
		Alias: e.Alias, Fingerprint: e.Fingerprint.String(), Subject: e.Cert.Subject.String(),
		Issuer: e.Cert.Issuer.String(), NotBefore: e.Cert.NotBefore.UTC(), NotAfter: e.Cert.NotAfter.UTC(),
		CA: e.IsCA(), Tier: e.Tier, Meta: e.Meta, AddedAt: e.AddedAt,
	}
}

// certPatch is the body of PATCH /mtls_auth/apis/<api>/certs/<alias>: what
// is given replaces what is stored, what is left out stays.
type certPatch struct {
	// Tier becomes the certificate's tier; "" removes it.
	Tier *string `json:"tier"`
	// Meta replaces the certificate's meta as a whole; {} removes it.
	Meta *map[string]string `json:"meta"`
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
	return a.route(w, r, app)
}

// route serves a request against app.
func (a adminAPI) route(w http.ResponseWriter, r *http.Request, app *App) error {
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
		return a.cert(w, r, app, parts[1], parts[3])
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
	body, err := readBody(r, maxBulkBody)
	if err != nil {
		return err
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
		return a.addBulk(w, r, app, api, body)
	}
	if len(body) > maxAdminBody {
		return caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: errors.New("body over 1 MiB (send many certificates as an array)")}
	}
	var rec store.Record
	if err := decodeStrict(body, &rec); err != nil {
		return err
	}
	rec.AddedAt = time.Time{} // set by the store
	if err := checkTier(app, rec.Tier); err != nil {
		return apiError(err)
	}
	e, err := app.runtime.AddCert(r.Context(), api, rec)
	if err != nil {
		return apiError(err)
	}
	app.logger.Info("runtime certificate added", zapAPI(api), zapAlias(e.Alias), zapFingerprint(e.Fingerprint.String()))
	v := certView(e)
	v.Warning = uploadWarning(app, api)
	return writeJSON(w, http.StatusCreated, v)
}

// addBulk adds an array of records to api, all or nothing: 201 with the
// created records, or the first bad element's error, naming its index.
func (a adminAPI) addBulk(w http.ResponseWriter, r *http.Request, app *App, api string, body []byte) error {
	var recs []store.Record
	if err := decodeStrict(body, &recs); err != nil {
		return err
	}
	for i := range recs {
		recs[i].AddedAt = time.Time{}
		if err := checkTier(app, recs[i].Tier); err != nil {
			return apiError(&store.ItemError{Index: i, Err: err})
		}
	}
	entries, err := app.runtime.AddCerts(r.Context(), api, recs)
	if err != nil {
		return apiError(err)
	}
	app.logger.Info("runtime certificates added", zapAPI(api), zap.Int("count", len(entries)))
	warning := uploadWarning(app, api)
	out := make([]certJSON, len(entries))
	for i, e := range entries {
		out[i] = certView(e)
		out[i].Warning = warning
	}
	return writeJSON(w, http.StatusCreated, out)
}

// cert serves GET, PATCH and DELETE /mtls_auth/apis/<api>/certs/<alias>.
func (a adminAPI) cert(w http.ResponseWriter, r *http.Request, app *App, api, alias string) error {
	if err := onlyMethods(r, http.MethodGet, http.MethodPatch, http.MethodDelete); err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
		for _, v := range [][2]string{{"api", api}, {"alias", alias}} {
			if err := store.ValidName(v[0], v[1]); err != nil {
				return apiError(err)
			}
		}
		e := app.runtime.Snapshot().APIs[api].Alias(alias)
		if e == nil {
			return apiError(fmt.Errorf("%w: no alias '%s' in API '%s'", store.ErrNotFound, alias, api))
		}
		v := certView(e)
		v.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Cert.Raw}))
		return writeJSON(w, http.StatusOK, v)
	case http.MethodPatch:
		body, err := readBody(r, maxAdminBody)
		if err != nil {
			return err
		}
		var p certPatch
		if err := decodeStrict(body, &p); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("%v (PATCH changes tier and meta only)", err)}
		}
		if p.Tier == nil && p.Meta == nil {
			return apiError(fmt.Errorf("%w: nothing to change: give tier, meta or both", store.ErrInvalid))
		}
		if p.Tier != nil {
			if err := checkTier(app, *p.Tier); err != nil {
				return apiError(err)
			}
		}
		e, err := app.runtime.UpdateCert(r.Context(), api, alias, func(rec *store.Record) error {
			if p.Tier != nil {
				rec.Tier = *p.Tier
			}
			if p.Meta != nil {
				rec.Meta = *p.Meta
				if len(rec.Meta) == 0 {
					rec.Meta = nil
				}
			}
			return nil
		})
		if err != nil {
			return apiError(err)
		}
		app.logger.Info("runtime certificate updated", zapAPI(api), zapAlias(alias), zap.String("tier", e.Tier))
		return writeJSON(w, http.StatusOK, certView(e))
	}
	if err := app.runtime.RemoveCert(r.Context(), api, alias); err != nil {
		return apiError(err)
	}
	app.logger.Info("runtime certificate removed", zapAPI(api), zapAlias(alias))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkTier refuses a tier no tier block defines ("" is no tier).
func checkTier(app *App, tier string) error {
	if tier == "" {
		return nil
	}
	if _, ok := app.tier(tier); !ok {
		return fmt.Errorf("%w: %v", store.ErrInvalid, unknownTier(tier))
	}
	return nil
}

// uploadWarning says when api is not named by any route of the running
// configuration: the upload is kept, but authenticates nothing yet (often
// a typo in the API name).
func uploadWarning(app *App, api string) string {
	if app.apiConfigured(api) {
		return ""
	}
	app.logger.Warn("runtime certificates uploaded to an API no route names", zapAPI(api))
	return fmt.Sprintf("no route in the running configuration has `api %s`: the certificate is stored, but no request is checked against it until a route names this API", api)
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
	body, err := readBody(r, maxAdminBody)
	if err != nil {
		return err
	}
	var rec store.DenyRecord
	if err := decodeStrict(body, &rec); err != nil {
		return err
	}
	rec.When = time.Time{}
	rec, err = app.runtime.Deny(r.Context(), rec)
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

// readBody reads a request body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the body: %v", err)}
	}
	if int64(len(body)) > limit {
		return nil, caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: fmt.Errorf("body over %d MiB", limit>>20)}
	}
	return body, nil
}

// decodeStrict reads one JSON value strictly: unknown fields and trailing
// data are errors.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid JSON body: %v", err)}
	}
	if dec.More() {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("invalid JSON body: trailing data after the value")}
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
