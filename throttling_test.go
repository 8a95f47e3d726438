package mtlsauth

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func tiers() []Tier {
	return []Tier{
		{Name: "bronze", Requests: 3, Window: caddy.Duration(time.Minute)},
		{Name: "free", Requests: 0, Window: caddy.Duration(time.Minute)},
	}
}

func TestThrottleTier(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, app: app,
		Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile, Tier: "bronze"}}}
	require.NoError(t, provision(t, h))
	alice := request{headers: header(rfc9440(p.alice))}
	for i := 1; i <= 3; i++ {
		resp := serve(t, h, alice)
		require.Equal(t, 200, resp.status, "request %d", i)
		assert.Equal(t, "3", resp.header.Get("RateLimit-Limit"))
		assert.Equal(t, strconv.Itoa(3-i), resp.header.Get("RateLimit-Remaining"))
		assert.Equal(t, "bronze", resp.ph("http.mtls.tier"))
	}
	resp := serve(t, h, alice)
	assert.Equal(t, 429, resp.status)
	assert.Equal(t, "throttled", resp.ph("http.mtls.error"))
	assert.False(t, resp.nextCalled)
	retry, err := strconv.Atoi(resp.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is whole seconds")
	assert.InDelta(t, 60, retry, 2)
	assert.Equal(t, "0", resp.header.Get("RateLimit-Remaining"))
	assert.NotEmpty(t, resp.header.Get("RateLimit-Reset"))
}

func TestThrottleKeysAreSeparate(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	mk := func(api string) *Handler {
		h := &Handler{API: api, Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), DefaultTier: "bronze", app: app}
		require.NoError(t, provision(t, h))
		return h
	}
	first, second := mk("first"), mk("second")
	for _, api := range []string{"first", "second"} {
		for alias, c := range map[string]*testpki.Cert{"alice": p.alice, "bob": p.bob} {
			_, err := app.runtime.AddCert(context.Background(), api, store.Record{Alias: alias, PEM: string(c.PEM())})
			require.NoError(t, err)
		}
	}
	alice, bob := request{headers: header(rfc9440(p.alice))}, request{headers: header(rfc9440(p.bob))}
	for i := 0; i < 3; i++ {
		require.Equal(t, 200, serve(t, first, alice).status)
	}
	assert.Equal(t, 429, serve(t, first, alice).status, "default_tier applies to entries without a tier")
	assert.Equal(t, 200, serve(t, first, bob).status, "another certificate has its own budget")
	assert.Equal(t, 200, serve(t, second, alice).status, "another API has its own budget")
}

func TestThrottleUnlimitedAndNoTier(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	free := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), DefaultTier: "free", app: app}
	require.NoError(t, provision(t, free))
	none := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), app: app}
	require.NoError(t, provision(t, none))
	for i := 0; i < 10; i++ {
		for _, h := range []*Handler{free, none} {
			resp := serve(t, h, request{headers: header(rfc9440(p.alice))})
			require.Equal(t, 200, resp.status)
			assert.Empty(t, resp.header.Get("RateLimit-Limit"), "no budget, no RateLimit headers")
		}
	}
}

func TestThrottleAppliesInFallbackMode(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	h := &Handler{Profile: "rfc9440", Mode: "fallback", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), DefaultTier: "bronze", app: app}
	require.NoError(t, provision(t, h))
	for i := 0; i < 3; i++ {
		require.Equal(t, 200, serve(t, h, request{headers: header(rfc9440(p.alice))}).status)
	}
	assert.Equal(t, 429, serve(t, h, request{headers: header(rfc9440(p.alice))}).status)
}

func TestThrottleCountersSurviveReload(t *testing.T) {
	p := newPKI(t)
	cfg := func(app *App) *Handler {
		return &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), DefaultTier: "bronze", app: app}
	}
	oldApp := newTestApp(t, tiers()...)
	old := cfg(oldApp)
	require.NoError(t, provision(t, old))
	alice := request{headers: header(rfc9440(p.alice))}
	for i := 0; i < 2; i++ {
		require.Equal(t, 200, serve(t, old, alice).status)
	}
	// A reload: the new config is provisioned while the old one still runs,
	// then the old one is cleaned up.
	newApp := newTestApp(t, tiers()...)
	reloaded := cfg(newApp)
	require.NoError(t, provision(t, reloaded))
	require.NoError(t, oldApp.Cleanup())
	assert.Equal(t, 200, serve(t, reloaded, alice).status)
	assert.Equal(t, 429, serve(t, reloaded, alice).status, "the budget used before the reload still counts")
}

func TestThrottleConfigErrors(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	tests := []struct {
		name string
		h    Handler
		want string
	}{
		{name: "unknown default tier", h: Handler{TrustPoolRaw: trustPool(p.rootFile), DefaultTier: "gold"}, want: "default_tier: unknown tier 'gold'"},
		{name: "unknown allow tier", h: Handler{Allow: []AllowEntry{{Alias: "a", File: p.aliceFile, Tier: "gold"}}}, want: "allow a: unknown tier 'gold'"},
		{name: "unknown allow_dir tier", h: Handler{AllowDir: []AllowDir{{Dir: p.dir, Tier: "gold"}}}, want: "unknown tier 'gold'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			h.app = app
			assert.ErrorContains(t, provision(t, &h), tt.want)
		})
	}
	bad := &App{OnError: "maybe"}
	assert.ErrorContains(t, bad.Validate(), "on_error")
	bad = &App{Throttle: &ThrottleConfig{Backend: "memcached"}}
	assert.ErrorContains(t, bad.Validate(), "memcached")

	backends := []struct {
		name string
		cfg  ThrottleConfig
		want string // "" when valid
	}{
		{"redis url", ThrottleConfig{Backend: "redis", URL: "redis://r:6379"}, ""},
		{"redis cluster", ThrottleConfig{Backend: "redis", Cluster: []string{"redis://a:7000"}}, ""},
		{"local", ThrottleConfig{Backend: "local"}, ""},
		{"redis without url", ThrottleConfig{Backend: "redis"}, "the redis backend needs url or cluster"},
		{"redis with both", ThrottleConfig{Backend: "redis", URL: "redis://r:6379", Cluster: []string{"redis://a:7000"}}, "url and cluster both set"},
		{"local with url", ThrottleConfig{URL: "redis://r:6379"}, "url and cluster apply to the redis backend only"},
		{"local with cluster", ThrottleConfig{Backend: "local", Cluster: []string{"redis://a:7000"}}, "apply to the redis backend only"},
	}
	for _, tt := range backends {
		t.Run(tt.name, func(t *testing.T) {
			a := &App{Throttle: &tt.cfg, SyncInterval: caddy.Duration(time.Second)}
			if tt.want == "" {
				assert.NoError(t, a.Validate())
			} else {
				assert.ErrorContains(t, a.Validate(), tt.want)
			}
		})
	}
}

// TestThrottleRedisClusterProvision: a cluster backend is built from the
// seeds (placeholders replaced) without connecting; nobody answers, so
// startup warns, and a request's failure reaches on_error, with go-redis'
// own lines in the app's log (at warn, under mtls_auth.redis).
func TestThrottleRedisClusterProvision(t *testing.T) {
	t.Setenv("MTLS_TEST_REDIS_SEED", "127.0.0.1:1")
	core, logs := observer.New(zap.DebugLevel)
	a := &App{
		Tiers:    tiers(),
		Throttle: &ThrottleConfig{Backend: "redis", Cluster: []string{"redis://{env.MTLS_TEST_REDIS_SEED}", "redis://127.0.0.1:2"}},
		OnError:  "deny",
	}
	require.NoError(t, a.setup(zap.New(core), &certmagic.FileStorage{Path: t.TempDir()}))
	t.Cleanup(func() { _ = a.Cleanup() })
	require.NoError(t, a.Validate())
	assert.NotEmpty(t, logs.FilterMessageSnippet("redis for throttling does not answer yet").All())

	_, err := a.countRequest(context.Background(), "api|fp", a.tiers["bronze"])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:", "the seed from the placeholder was dialled")
	_, _, deny := a.backendFailed()
	assert.True(t, deny)
	lines := logs.FilterMessage("redis client").All()
	require.NotEmpty(t, lines, "go-redis' own lines go to the app's log")
	assert.Equal(t, zap.WarnLevel, lines[0].Level)

	bad := &App{Throttle: &ThrottleConfig{Backend: "redis", Cluster: []string{"redis://:s3cret@a:1", "redis://:s3cret@b:1/3"}}}
	err = bad.setup(zap.NewNop(), &certmagic.FileStorage{Path: t.TempDir()})
	require.ErrorContains(t, err, "URL 2 of 2 selects database 3")
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestCaddyfileUnknownTierHasLine(t *testing.T) {
	input := "{\n\tmtls_auth {\n\t\ttier gold 10 1m\n\t}\n}\n:8080 {\n\tmtls_auth {\n\t\ttrust_pool file ca.pem\n\t\tdefault_tier platinum\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Caddyfile:9")
	assert.Contains(t, err.Error(), "unknown tier 'platinum'")

	input = "{\n\tmtls_auth {\n\t\ttier gold 10 1m\n\t}\n}\n:8080 {\n\tmtls_auth {\n\t\tallow a a.pem tier silver\n\t}\n}\n"
	_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Caddyfile:8")
}

func TestGlobalOptionErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{"tier gold 10", "wrong argument count"},
		{"tier gold ten 1m", "invalid tier requests"},
		{"tier gold 10 soon", "invalid tier window"},
		{"tier gold 10 1m\n\t\ttier gold 5 1m", "tier 'gold' already specified"},
		{"throttle memcached", "invalid throttle backend"},
		{"throttle redis", "wrong argument count"},
		{"throttle local redis://a:1", "wrong argument count"},
		{"throttle redis redis://:pw@a:1 redis://b:1 redis://:pw@a:1", "redis cluster node 3 is node 1 again"},
		{"throttle redis redis://a:1\n\t\tthrottle local", "throttle already specified"},
		{"on_error maybe", "invalid on_error"},
		{"sync_interval 1ms", "invalid sync_interval"},
		{"sync_interval 1s\n\t\tsync_interval 2s", "sync_interval already specified"},
		{"expiry_warning", "wrong argument count"},
		{"expiry_warning 30d 60d", "wrong argument count"},
		{"expiry_warning soon", "invalid expiry_warning 'soon'"},
		{"expiry_warning 0s", "invalid expiry_warning '0s'"},
		{"expiry_warning 30d\n\t\texpiry_warning 60d", "expiry_warning already specified"},
		{"bogus 1", "unrecognized mtls_auth option 'bogus'"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			input := "{\n\tmtls_auth {\n\t\t" + tt.body + "\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "Caddyfile:")
		})
	}
}
