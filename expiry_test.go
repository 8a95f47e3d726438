package mtlsauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

const day = 24 * time.Hour

// expiryFixture is a route of API "exp" whose configured certificates end
// at known times: a pinned one in 10 days, an allow_dir file in 20, a
// runtime record in 40, a pinned one in 100, one pinned that expired two
// days ago, and the trust pool's root in 400.
type expiryFixture struct {
	app  *App
	h    *Handler
	now  time.Time
	root *testpki.Cert
	soon *testpki.Cert
}

func newExpiryFixture(t *testing.T, logger *zap.Logger) *expiryFixture {
	t.Helper()
	now := time.Now()
	// An hour past whole days, so days_left does not depend on how long
	// the test takes.
	valid := func(days int) testpki.Option {
		return testpki.Validity(now.Add(-400*day), now.Add(time.Duration(days)*day+time.Hour))
	}
	root := testpki.NewRoot("Expiry Root", valid(400))
	dir, files := t.TempDir(), t.TempDir()
	write := func(d, name string, c *testpki.Cert) string {
		p, err := testpki.WriteFile(d, name, c.PEM())
		require.NoError(t, err)
		return p
	}
	soon := root.NewLeaf("soon client", valid(10))
	write(dir, "dirclient.pem", root.NewLeaf("dir client", valid(20)))

	app := &App{}
	require.NoError(t, app.setup(logger, storeFor(t)))
	t.Cleanup(func() { _ = app.Cleanup() })
	require.NoError(t, app.Validate())
	_, err := app.runtime.AddCert(context.Background(), "exp", store.Record{Alias: "rt", PEM: string(root.NewLeaf("runtime client", valid(40)).PEM())})
	require.NoError(t, err)

	late, old := root.NewLeaf("late client", valid(100)), root.NewLeaf("old client", valid(-2))
	mk := func() *Handler {
		h := &Handler{API: "exp", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, app: app,
			TrustPoolRaw: trustPool(write(files, "root.pem", root)),
			Allow: []AllowEntry{
				{Alias: "soon", File: write(files, "soon.pem", soon)},
				{Alias: "late", File: write(files, "late.pem", late)},
				{Alias: "old", File: write(files, "old.pem", old)},
			},
			AllowDir: []AllowDir{{Dir: dir}}}
		require.NoError(t, provision(t, h))
		return h
	}
	h := mk()
	mk() // a second route of the same API: its certificates are listed once
	return &expiryFixture{app: app, h: h, now: now, root: root, soon: soon}
}

func names(es []expiringJSON) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Kind + ":" + e.Alias
	}
	return out
}

func TestExpiring(t *testing.T) {
	f := newExpiryFixture(t, nopLogger())
	tests := []struct {
		within time.Duration
		want   []string
	}{
		{0, []string{"allow:old"}},
		{30 * day, []string{"allow:old", "allow:soon", "allow_dir:dirclient"}},
		{45 * day, []string{"allow:old", "allow:soon", "allow_dir:dirclient", "runtime:rt"}},
		{500 * day, []string{"allow:old", "allow:soon", "allow_dir:dirclient", "runtime:rt", "allow:late", "trust_pool:root.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.within.String(), func(t *testing.T) {
			assert.Equal(t, tt.want, names(f.app.expiring(f.now, tt.within)))
		})
	}

	all := f.app.expiring(f.now, 500*day)
	days := map[string]int{}
	for _, e := range all {
		days[e.Alias] = e.DaysLeft
		assert.Equal(t, "exp", e.API)
	}
	assert.Equal(t, map[string]int{"old": -2, "soon": 10, "dirclient": 20, "rt": 40, "late": 100, "root.pem": 400}, days)
	soon := all[1]
	assert.Equal(t, f.soon.Fingerprint(), soon.Fingerprint)
	assert.Equal(t, f.soon.Cert.Subject.String(), soon.Subject)
	assert.True(t, f.soon.Cert.NotAfter.Equal(soon.NotAfter))
}

func TestExpiringAdminRoute(t *testing.T) {
	f := newExpiryFixture(t, nopLogger())
	get := func(method, target string) (*httptest.ResponseRecorder, error) {
		r := httptest.NewRequest(method, target, nil)
		w := httptest.NewRecorder()
		parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/mtls_auth/"), "/"), "/")
		handled, err := adminAPI{}.serveOps(w, r, f.app, parts)
		require.True(t, handled)
		return w, err
	}
	var got []expiringJSON
	w, err := get(http.MethodGet, "/mtls_auth/expiring?within=45d")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, []string{"allow:old", "allow:soon", "allow_dir:dirclient", "runtime:rt"}, names(got))
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &raw))
	for _, k := range []string{"api", "alias", "kind", "fingerprint", "subject", "not_after", "days_left"} {
		assert.Contains(t, raw[0], k)
	}

	w, err = get(http.MethodGet, "/mtls_auth/expiring")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, []string{"allow:old", "allow:soon", "allow_dir:dirclient"}, names(got), "default: expiry_warning, 30d")

	for _, bad := range []string{"soon", "-1d", "30"} {
		_, err = get(http.MethodGet, "/mtls_auth/expiring?within="+bad)
		var apiErr caddy.APIError
		require.ErrorAs(t, err, &apiErr, bad)
		assert.Equal(t, http.StatusBadRequest, apiErr.HTTPStatus, bad)
	}
	_, err = get(http.MethodPost, "/mtls_auth/expiring")
	var apiErr caddy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusMethodNotAllowed, apiErr.HTTPStatus)

	handled, _ := adminAPI{}.serveOps(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/mtls_auth/apis", nil), f.app, []string{"apis"})
	assert.False(t, handled, "other routes are left to serve")
}

func TestExpiryWarnings(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	f := newExpiryFixture(t, zap.New(core))
	warned := func() []string {
		var out []string
		for _, e := range logs.TakeAll() {
			m := e.ContextMap()
			out = append(out, e.Message+" "+m["kind"].(string)+":"+m["alias"].(string))
			for _, k := range []string{"api", "fingerprint", "subject", "not_after", "days_left"} {
				assert.Contains(t, m, k)
			}
		}
		return out
	}
	want := []string{
		"configured certificate has expired allow:old",
		"configured certificate expires soon allow:soon",
		"configured certificate expires soon allow_dir:dirclient",
	}
	logs.TakeAll() // provisioning's own warnings

	f.app.warnExpiring(f.now)
	assert.Equal(t, want, warned(), "at startup")
	f.app.warnExpiringDaily(f.now.Add(time.Hour))
	assert.Empty(t, warned(), "not again the same day")
	f.app.warnExpiringDaily(f.now.Add(day))
	assert.Equal(t, want, warned(), "once a day")

	f.app.ExpiryWarning = caddy.Duration(45 * day)
	f.app.warnExpiring(f.now)
	assert.Equal(t, append(want, "configured certificate expires soon runtime:rt"), warned(), "the window is expiry_warning")
}

// TestExpiryWarningDefault: the Caddyfile errors are in TestGlobalOptionErrors.
func TestExpiryWarningDefault(t *testing.T) {
	app := App{SyncInterval: caddy.Duration(time.Second), ExpiryWarning: -1}
	assert.ErrorContains(t, app.Validate(), "expiry_warning")
	app = App{}
	require.NoError(t, app.setup(nopLogger(), storeFor(t)))
	t.Cleanup(func() { _ = app.Cleanup() })
	assert.Equal(t, caddy.Duration(30*day), app.ExpiryWarning, "default 30d")
}
