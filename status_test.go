package mtlsauth

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatus(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	crlFile := p.write(t, "root.crl", crl(t, p.root))
	allowFile := p.write(t, "client.pem", p.alice.PEM())
	pinned := &Handler{API: "status-api", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Allow: []AllowEntry{{Alias: "alice", File: allowFile}}, Revocation: &Revocation{CRL: []string{crlFile}}, app: app}
	require.NoError(t, provision(t, pinned))
	uncached := &Handler{Mode: "optional", Source: "any", TrustPoolRaw: trustPool(p.rootFile), CacheSize: -1, app: app}
	require.NoError(t, provision(t, uncached))

	alice := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, pinned, alice).status)
	require.Equal(t, 200, serve(t, pinned, alice).status)
	require.Equal(t, 200, serve(t, pinned, alice).status)
	require.Equal(t, 403, serve(t, pinned, request{headers: header(rfc9440(p.bob))}).status)

	st := app.status(context.Background())
	require.Len(t, st.Routes, 2)
	u, r := st.Routes[0], st.Routes[1] // by API: "" first
	assert.Equal(t, "status-api", r.API)
	assert.Regexp(t, `^route:[0-9a-f]{16}$`, r.Route)
	assert.Equal(t, "header", r.Source)
	assert.Equal(t, "mandatory", r.Mode)
	assert.Equal(t, 1, r.Trust.PoolSize)
	assert.Equal(t, 1, r.Trust.AllowEntries)
	assert.Equal(t, 0, r.Trust.RuntimeEntries)
	assert.WithinDuration(t, time.Now(), r.Trust.LastReload, time.Minute)
	assert.Empty(t, r.Trust.LastError)
	require.NotNil(t, r.Revocation)
	require.Len(t, r.Revocation.CRLs, 1)
	c := r.Revocation.CRLs[0]
	assert.Equal(t, crlFile, c.CRL)
	assert.WithinDuration(t, time.Now().Add(-time.Minute), c.ThisUpdate, 5*time.Second)
	assert.WithinDuration(t, time.Now().Add(time.Hour), c.NextUpdate, 5*time.Second)
	assert.WithinDuration(t, time.Now(), c.LastRefresh, time.Minute)
	assert.Empty(t, c.LastError)
	assert.Equal(t, 0, r.Revocation.OCSPCacheEntries)
	require.NotNil(t, r.Cache)
	assert.Equal(t, cacheStatusJSON{Entries: 2, Hits: 2, Misses: 2, HitRatio: 0.5}, *r.Cache)

	assert.Equal(t, "", u.API)
	assert.Equal(t, uncached.routeID(), u.Route)
	assert.Equal(t, "any", u.Source)
	assert.Equal(t, "optional", u.Mode)
	assert.Nil(t, u.Revocation)
	assert.Nil(t, u.Cache, "cache_size -1: no cache")

	assert.Equal(t, throttleStatusJSON{Backend: "local", Reachable: true}, st.Throttle)
	assert.WithinDuration(t, time.Now(), st.Storage.LastSuccess, time.Minute)
	assert.Empty(t, st.Storage.LastError)

	// A broken allow file: the last good set stays in use, the error shows.
	loaded := r.Trust.LastReload
	writeLater(t, allowFile, []byte("not a certificate"))
	pinned.reloadFiles()
	r = app.status(context.Background()).Routes[1]
	assert.Equal(t, loaded, r.Trust.LastReload)
	assert.Contains(t, r.Trust.LastError, "allow alice")
	assert.WithinDuration(t, time.Now(), r.Trust.LastErrorAt, time.Minute)
	// Fixed: a new load, no error.
	writeLater(t, allowFile, p.alice.PEM())
	pinned.reloadFiles()
	r = app.status(context.Background()).Routes[1]
	assert.True(t, r.Trust.LastReload.After(loaded))
	assert.Empty(t, r.Trust.LastError)

	// The JSON names.
	var doc map[string]any
	b, err := json.Marshal(app.status(context.Background()))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &doc))
	route := doc["routes"].([]any)[1].(map[string]any)
	for _, k := range []string{"pool_size", "allow_entries", "runtime_entries", "last_reload"} {
		assert.Contains(t, route["trust"], k)
	}
	for _, k := range []string{"crl", "this_update", "next_update", "last_refresh"} {
		assert.Contains(t, route["revocation"].(map[string]any)["crls"].([]any)[0], k)
	}
	assert.Contains(t, route["revocation"], "ocsp_cache_entries")
	for _, k := range []string{"entries", "hits", "misses", "hit_ratio"} {
		assert.Contains(t, route["cache"], k)
	}
	for _, k := range []string{"backend", "reachable", "errors"} {
		assert.Contains(t, doc["throttle"], k)
	}
	assert.Contains(t, doc["storage"], "last_success")

	// Through the admin route.
	w := httptest.NewRecorder()
	handled, err := adminAPI{}.serveOps(w, httptest.NewRequest(http.MethodGet, "/mtls_auth/status", nil), app, []string{"status"})
	require.True(t, handled)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `"route":"`+r.Route+`"`)
}

func TestStatusAfterCleanup(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	h := &Handler{TrustPoolRaw: trustPool(p.rootFile), app: app}
	require.NoError(t, provision(t, h))
	require.Len(t, app.status(context.Background()).Routes, 1)
	require.NoError(t, h.Cleanup())
	assert.Empty(t, app.status(context.Background()).Routes, "a cleaned-up route is forgotten")
}

func TestStatusThrottleBackendDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now

	p := newPKI(t)
	tier := Tier{Name: "status-tier", Requests: 10, Window: tiers()[0].Window}
	app := &App{Tiers: []Tier{tier}, Throttle: &ThrottleConfig{Backend: "redis", URL: "redis://127.0.0.1:" + strconv.Itoa(port)}}
	require.NoError(t, app.setup(nopLogger(), storeFor(t)))
	t.Cleanup(func() { _ = app.Cleanup() })
	h := &Handler{TrustedSources: []string{"10.0.0.0/8"}, Profile: "rfc9440", TrustPoolRaw: trustPool(p.rootFile), DefaultTier: tier.Name, app: app}
	require.NoError(t, provision(t, h))

	st := app.status(context.Background()).Throttle
	assert.Equal(t, "redis", st.Backend)
	assert.False(t, st.Reachable)
	assert.NotEmpty(t, st.PingError)
	assert.Zero(t, st.Errors)
	assert.Empty(t, st.LastError)

	require.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.alice))}).status, "on_error allow")
	st = app.status(context.Background()).Throttle
	assert.Equal(t, uint64(1), st.Errors)
	assert.NotEmpty(t, st.LastError)
	assert.WithinDuration(t, time.Now(), st.LastErrorAt, time.Minute)
}

func TestStatusStorageError(t *testing.T) {
	st := &flakyStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	app := &App{}
	require.NoError(t, app.setup(nopLogger(), st))
	t.Cleanup(func() { _ = app.Cleanup() })
	first := app.status(context.Background()).Storage
	require.False(t, first.LastSuccess.IsZero(), "the load at startup")

	st.broken = true
	app.syncOnce(context.Background())
	s := app.status(context.Background()).Storage
	assert.Equal(t, first.LastSuccess, s.LastSuccess)
	assert.Contains(t, s.LastError, "storage unreachable")
	assert.False(t, s.LastErrorAt.IsZero())

	st.broken = false
	app.syncOnce(context.Background())
	s = app.status(context.Background()).Storage
	assert.True(t, s.LastSuccess.After(first.LastSuccess))
	assert.Contains(t, s.LastError, "storage unreachable", "the last error stays visible, with its time")
}
