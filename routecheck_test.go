package mtlsauth

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// route is a provisioned route with the given handlers and, when match is
// set, one (path) matcher.
func route(match bool, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
	r := caddyhttp.Route{Handlers: handlers}
	if match {
		r.MatcherSets = caddyhttp.MatcherSets{{caddyhttp.MatchPath{"/x"}}}
	}
	return r
}

func subroute(routes ...caddyhttp.Route) *caddyhttp.Subroute {
	return &caddyhttp.Subroute{Routes: routes}
}

// headerAuth is an mtls_auth handler as provisioned with trusted_sources
// given as CIDRs (so no trusted_proxies warning applies).
func headerAuth() *Handler {
	return &Handler{source: sourceHeader, gate: sourceGate{prefixes: nil}}
}

func server(routes ...caddyhttp.Route) *caddyhttp.App {
	return &caddyhttp.App{Servers: map[string]*caddyhttp.Server{
		"srv0": {Listen: []string{":8080"}, Routes: routes, TrustedProxiesUnix: true},
	}}
}

func TestCheckRoutesRefusesUnreachable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		app  *caddyhttp.App
		want []string // in the error; empty: no error
	}{
		{name: "mtls_auth first", app: server(route(false, headerAuth(), &reverseproxy.Handler{}))},
		{name: "after a matched reverse_proxy", app: server(route(true, &reverseproxy.Handler{}), route(false, headerAuth()))},
		{name: "after reverse_proxy in the same route list",
			app:  server(route(false, subroute(route(false, &reverseproxy.Handler{}), route(false, headerAuth())))),
			want: []string{"server srv0 (listen :8080)", "mtls_auth at routes/0/handle/0/routes/1/handle/0", "the route at routes/0/handle/0/routes/0 has no matcher", "reverse_proxy at routes/0/handle/0/routes/0/handle/0", "order mtls_auth before reverse_proxy"}},
		{name: "after reverse_proxy in the same route",
			app:  server(route(false, &reverseproxy.Handler{}, headerAuth())),
			want: []string{"mtls_auth at routes/0/handle/1", "runs reverse_proxy before it", "reverse_proxy at routes/0/handle/0"}},
		{name: "a matcher on mtls_auth's own route does not help",
			app:  server(route(false, &reverseproxy.Handler{}), route(true, headerAuth())),
			want: []string{"mtls_auth at routes/1/handle/0"}},
		{name: "reverse_proxy with handle_response may call next",
			app: server(route(false, &reverseproxy.Handler{HandleResponse: []caddyhttp.ResponseHandler{{}}}), route(false, headerAuth()))},
		{name: "after static_response", app: server(route(false, &caddyhttp.StaticResponse{}), route(false, headerAuth())),
			want: []string{"static_response", "order mtls_auth before respond"}},
		{name: "after error", app: server(route(false, &caddyhttp.StaticError{}), route(false, headerAuth())),
			want: []string{"error at routes/0/handle/0"}},
		{name: "after file_server", app: server(route(false, &fileserver.FileServer{}), route(false, headerAuth())),
			want: []string{"file_server"}},
		{name: "after file_server with pass_thru", app: server(route(false, &fileserver.FileServer{PassThru: true}), route(false, headerAuth()))},
		{name: "after a subroute that always answers",
			app:  server(route(false, subroute(route(true, &caddyhttp.StaticResponse{}), route(false, &reverseproxy.Handler{}))), route(false, headerAuth())),
			want: []string{"mtls_auth at routes/1/handle/0", "subroute at routes/0/handle/0"}},
		{name: "after a subroute that may not answer",
			app: server(route(false, subroute(route(true, &reverseproxy.Handler{}))), route(false, headerAuth()))},
		{name: "inside a subroute that never runs",
			app:  server(route(false, &caddyhttp.StaticResponse{}), route(false, subroute(route(false, headerAuth())))),
			want: []string{"mtls_auth at routes/1/handle/0/routes/0/handle/0", "static_response at routes/0/handle/0"}},
		{name: "after a terminal route",
			app: func() *caddyhttp.App {
				r := route(false, &caddyhttp.StaticResponse{Close: true})
				r.Handlers = nil
				r.Terminal = true
				return server(r, route(false, headerAuth()))
			}(),
			want: []string{"is terminal"}},
		{name: "shadowed in its route group",
			app: func() *caddyhttp.App {
				a, b := route(false), route(false, headerAuth())
				a.Group, b.Group = "g", "g"
				return server(a, b)
			}(),
			want: []string{"route group \"g\""}},
		{name: "in the server's error routes",
			app: func() *caddyhttp.App {
				a := server()
				a.Servers["srv0"].Errors = &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(false, &caddyhttp.StaticResponse{}), route(false, headerAuth())}}
				return a
			}(),
			want: []string{"mtls_auth at errors/routes/1/handle/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkRoutes(tt.app, zap.NewNop())
			if len(tt.want) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, err.Error(), "can never run")
		})
	}
}

func TestCheckRoutesWarnings(t *testing.T) {
	t.Parallel()
	tlsPolicy := func(clientAuth bool) caddytls.ConnectionPolicies {
		p := &caddytls.ConnectionPolicy{}
		if clientAuth {
			p.ClientAuthentication = &caddytls.ClientAuthentication{Mode: "request"}
		}
		return caddytls.ConnectionPolicies{p}
	}
	tests := []struct {
		name    string
		handler *Handler
		srv     *caddyhttp.Server
		want    string // a snippet of the one warning; "" for none
	}{
		{"server sources without trusted_proxies", &Handler{source: sourceHeader, gate: sourceGate{server: true}}, &caddyhttp.Server{}, "has no trusted_proxies"},
		{"source any reads the header too", &Handler{source: sourceAny, gate: sourceGate{server: true}}, &caddyhttp.Server{}, "has no trusted_proxies"},
		{"server sources over unix sockets", &Handler{source: sourceHeader, gate: sourceGate{server: true}}, &caddyhttp.Server{TrustedProxiesUnix: true}, ""},
		{"CIDR sources", &Handler{source: sourceHeader, gate: sourceGate{}}, &caddyhttp.Server{}, ""},
		{"source tls never reads the header", &Handler{source: sourceTLS, gate: sourceGate{server: true}}, &caddyhttp.Server{TLSConnPolicies: tlsPolicy(true)}, ""},
		{"source tls without TLS", &Handler{source: sourceTLS}, &caddyhttp.Server{}, "does not serve TLS"},
		{"source tls without client_auth", &Handler{source: sourceTLS}, &caddyhttp.Server{TLSConnPolicies: tlsPolicy(false)}, "does not ask clients for certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.WarnLevel)
			tt.srv.Routes = caddyhttp.RouteList{route(false, tt.handler)}
			require.NoError(t, checkRoutes(&caddyhttp.App{Servers: map[string]*caddyhttp.Server{"edge": tt.srv}}, zap.New(core)))
			if tt.want == "" {
				assert.Zero(t, logs.Len(), "%v", logs.All())
				return
			}
			require.Equal(t, 1, logs.Len())
			e := logs.All()[0]
			assert.Contains(t, e.Message, tt.want)
			assert.Equal(t, "edge", e.ContextMap()["server"])
			assert.Equal(t, "routes/0/handle/0", e.ContextMap()["handler"])
		})
	}
}

// loadCaddyfile adapts a Caddyfile (globals: lines for the global block;
// PORT in body: a free port) and runs it in this process, as
// `caddy run` would (apps provisioned, then started); it is stopped at
// cleanup. It returns Caddy's refusal, if any.
func loadCaddyfile(t *testing.T, globals, body string) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	caddyfileText := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n\tdefault_bind 127.0.0.1\n\tstorage file_system %s\n%s}\n", t.TempDir(), globals) +
		strings.ReplaceAll(body, "PORT", strconv.Itoa(port))
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
	require.NoError(t, err)
	require.Empty(t, warnings)
	t.Cleanup(func() { _ = caddy.Stop() })
	return caddy.Load(cfgJSON, true)
}

// runningHTTP is the http app of the configuration running in this process.
func runningHTTP(t *testing.T) *caddyhttp.App {
	t.Helper()
	v, err := caddy.ActiveContext().App("http")
	require.NoError(t, err)
	return v.(*caddyhttp.App)
}

// TestCheckRoutesProvisioned runs Caddy in this process on Caddyfiles: the
// route block that lets reverse_proxy run first is refused at start with
// the names an operator needs; the default order starts; and the
// trusted_proxies warning follows the server's option (which Caddy keeps
// in an unexported field: this pins that it is found). Not parallel: it
// runs Caddy's process-wide configuration.
func TestCheckRoutesProvisioned(t *testing.T) {
	err := loadCaddyfile(t, "", `:PORT {
	route {
		reverse_proxy 127.0.0.1:9
		mtls_auth {
			trusted_sources 10.0.0.0/8
			api payments
		}
	}
}
`)
	require.Error(t, err, "refused at start")
	assert.Contains(t, err.Error(), "mtls_auth app module: start:")
	assert.Regexp(t, `server srv0 \(listen 127\.0\.0\.1:\d+\): mtls_auth at routes/0/handle/0/routes/0/handle/1 can never run`, err.Error())
	assert.Contains(t, err.Error(), "reverse_proxy at routes/0/handle/0/routes/0/handle/0")

	require.NoError(t, loadCaddyfile(t, "", `:PORT {
	mtls_auth {
		api payments
	}
	reverse_proxy 127.0.0.1:9
}
`), "the default order puts mtls_auth first")
	core, logs := observer.New(zapcore.WarnLevel)
	require.NoError(t, checkRoutes(runningHTTP(t), zap.New(core)))
	assert.Equal(t, 1, logs.FilterMessageSnippet("has no trusted_proxies").Len(), "default trusted_sources server, no trusted_proxies")

	require.NoError(t, loadCaddyfile(t, "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}\n", `:PORT {
	mtls_auth {
		api payments
	}
	respond ok
}
`))
	core, logs = observer.New(zapcore.WarnLevel)
	require.NoError(t, checkRoutes(runningHTTP(t), zap.New(core)))
	assert.Zero(t, logs.Len(), "trusted_proxies set: %v", logs.All())
}
