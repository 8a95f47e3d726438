package mtlsauth

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestCRLReplacedDropsCachedResults checks that a replaced CRL file takes
// effect at the refresh that reads it: a good result the verification cache
// holds for the certificate is not reused once the new CRL lists it.
func TestCRLReplacedDropsCachedResults(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	crlFile := p.write(t, "root.crl", crl(t, p.root))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile),
		Revocation: &Revocation{CRL: []string{crlFile}}, app: app}
	require.NoError(t, provision(t, h))
	t.Cleanup(func() { _ = h.Cleanup() })
	alice := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, h, alice).status)
	require.Equal(t, 1, h.cache.len(), "the good result is cached")

	writeLater(t, crlFile, crl(t, p.root, p.alice))
	require.NoError(t, h.verifier.revocation.Refresh(context.Background()), "what the refresh loop does every sync_interval")
	resp := serve(t, h, alice)
	assert.Equal(t, 401, resp.status, "revoked at once, not when the cached result expires")
	assert.Equal(t, "revoked", resp.ph("http.mtls.error"))
	assert.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.bob))}).status, "the rest of the trust is unchanged")
}

// TestCRLRefreshFollowsSyncInterval checks that the configured CRLs are
// re-read as often as the other watched files.
func TestCRLRefreshFollowsSyncInterval(t *testing.T) {
	app := newTestApp(t)
	h := &Handler{app: app}
	assert.Equal(t, defaultSyncInterval, h.crlRefreshInterval(), "default 10s")
	app.SyncInterval = caddy.Duration(250 * time.Millisecond)
	assert.Equal(t, 250*time.Millisecond, h.crlRefreshInterval())
}

// TestBrokenFileLoggedOncePerChange checks that an allow file that no
// longer loads is logged when it changes, not on every sync tick.
func TestBrokenFileLoggedOncePerChange(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	allowFile := p.write(t, "client.pem", p.alice.PEM())
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "client", File: allowFile}}, app: app}
	require.NoError(t, provision(t, h))
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	errorsLogged := func() int { return logs.FilterMessageSnippet("do not load").Len() }

	writeLater(t, allowFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	for range 3 {
		app.syncOnce(context.Background())
	}
	assert.Equal(t, 1, errorsLogged(), "one broken version, one error")

	writeLater(t, allowFile, []byte("-----BEGIN CERTIFICATE-----\nother garbage\n-----END CERTIFICATE-----\n"))
	app.syncOnce(context.Background())
	app.syncOnce(context.Background())
	assert.Equal(t, 2, errorsLogged(), "changed and still broken: logged again, once")

	writeLater(t, allowFile, p.bob.PEM())
	app.syncOnce(context.Background())
	assert.Equal(t, 1, logs.FilterMessage("reloaded certificate files").Len(), "mended: reloaded")
	assert.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.bob))}).status)
}
