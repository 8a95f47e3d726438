package mtlsauth

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func TestHandlerRuntimeAPIStore(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	h := &Handler{API: "payments", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, app: app}
	require.NoError(t, provision(t, h), "an api alone is enough trust: its store starts empty")
	other := &Handler{API: "billing", Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, app: app}
	require.NoError(t, provision(t, other))

	req := request{headers: header(rfc9440(p.bob))}
	assert.Equal(t, 403, serve(t, h, req).status, "empty store: not allowed")

	ctx := context.Background()
	_, err := app.runtime.AddCert(ctx, "payments", store.Record{Alias: "bob", PEM: string(p.bob.PEM()), Meta: map[string]string{"plan": "pro"}})
	require.NoError(t, err)
	resp := serve(t, h, req)
	assert.Equal(t, 200, resp.status, "added at runtime: allowed at once")
	assert.Equal(t, "bob", resp.ph("http.mtls.alias"))
	assert.Equal(t, "pro", resp.ph("http.mtls.meta.plan"))
	assert.Equal(t, 403, serve(t, other, req).status, "another API's store does not allow it")

	require.NoError(t, app.runtime.RemoveCert(ctx, "payments", "bob"))
	assert.Equal(t, 403, serve(t, h, req).status, "removed: refused at once")
}

func TestHandlerDenyListWins(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	pool := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), app: app}
	require.NoError(t, provision(t, pool))
	pinned := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}, app: app}
	require.NoError(t, provision(t, pinned))
	ctx := context.Background()

	alice := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, pool, alice).status)
	require.Equal(t, 200, serve(t, pinned, alice).status)

	_, err := app.runtime.Deny(ctx, store.DenyRecord{Fingerprint: p.alice.Fingerprint(), Reason: "laptop stolen"})
	require.NoError(t, err)
	for _, h := range []*Handler{pool, pinned} {
		resp := serve(t, h, alice)
		assert.Equal(t, 403, resp.status, "denied on every route")
		assert.Equal(t, "denied", resp.ph("http.mtls.error"))
	}
	expired := serve(t, pool, request{headers: header(rfc9440(p.expired))})
	assert.Equal(t, "expired", expired.ph("http.mtls.error"))
	_, err = app.runtime.Deny(ctx, store.DenyRecord{Fingerprint: p.expired.Fingerprint()})
	require.NoError(t, err)
	assert.Equal(t, "denied", serve(t, pool, request{headers: header(rfc9440(p.expired))}).ph("http.mtls.error"), "deny wins over every other reason")

	// Denying an intermediate refuses everything presented through it.
	carol := request{headers: withChain(rfc9440(p.carol), rfc9440(p.inter))}
	require.Equal(t, 200, serve(t, pool, carol).status)
	_, err = app.runtime.Deny(ctx, store.DenyRecord{Fingerprint: p.inter.Fingerprint()})
	require.NoError(t, err)
	assert.Equal(t, 403, serve(t, pool, carol).status)

	require.NoError(t, app.runtime.Undeny(ctx, p.alice.Fingerprint()))
	assert.Equal(t, 200, serve(t, pool, alice).status, "undenied")
}

func TestFileReloadKeepsLastGood(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	allowFile := p.write(t, "client.pem", p.alice.PEM())
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "client", File: allowFile}}, app: app}
	require.NoError(t, provision(t, h))
	alice := request{headers: header(rfc9440(p.alice))}
	bob := request{headers: header(rfc9440(p.bob))}
	require.Equal(t, 200, serve(t, h, alice).status)
	require.Equal(t, 403, serve(t, h, bob).status)

	// Replace the file: after the next sync, bob is in and alice is out.
	writeLater(t, allowFile, p.bob.PEM())
	app.syncOnce(context.Background())
	assert.Equal(t, 200, serve(t, h, bob).status)
	assert.Equal(t, 403, serve(t, h, alice).status)

	// A file that no longer parses keeps the last good set.
	writeLater(t, allowFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	app.syncOnce(context.Background())
	assert.Equal(t, 200, serve(t, h, bob).status, "last good set kept")

	// Mended: picked up on the next sync.
	writeLater(t, allowFile, p.alice.PEM())
	app.syncOnce(context.Background())
	assert.Equal(t, 200, serve(t, h, alice).status)
	assert.Equal(t, 403, serve(t, h, bob).status)
}

func TestTrustPoolFileReload(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	caFile := p.write(t, "ca.pem", p.root.PEM())
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(caFile), app: app}
	require.NoError(t, provision(t, h))
	mallory := request{headers: header(rfc9440(p.mallory))}
	require.Equal(t, 401, serve(t, h, mallory).status)

	writeLater(t, caFile, append(p.root.PEM(), p.mallory.Issuer.PEM()...))
	app.syncOnce(context.Background())
	assert.Equal(t, 200, serve(t, h, mallory).status, "a CA added to the pool file is trusted after the sync")
}

func TestCleanupStopsWatching(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "a", File: p.aliceFile}}, app: app}
	require.NoError(t, provision(t, h))
	assert.Contains(t, app.reg.watchers, h)
	require.NoError(t, h.Cleanup())
	assert.NotContains(t, app.reg.watchers, h)
}

func TestAppValidate(t *testing.T) {
	tests := []struct {
		name string
		app  App
		want string
	}{
		{name: "tier without name", app: App{Tiers: []Tier{{Requests: 1}}}, want: "needs a name"},
		{name: "negative requests", app: App{Tiers: []Tier{{Name: "x", Requests: -1}}}, want: "must not be negative"},
		{name: "limited tier without window", app: App{Tiers: []Tier{{Name: "x", Requests: 5}}}, want: "window"},
		{name: "sync too fast", app: App{SyncInterval: 1}, want: "sync_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorContains(t, tt.app.Validate(), tt.want)
		})
	}
}

// writeLater rewrites a file so that its modification time visibly changes.
func writeLater(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o600))
	later := time.Now().Add(time.Duration(len(data)%7+1) * time.Second)
	require.NoError(t, os.Chtimes(path, later, later))
}
