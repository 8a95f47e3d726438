package mtlsauth

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// The configuration checks below run when the mtls_auth app starts, over
// the http app's provisioned servers and routes. They look at the modules
// as Caddy built them, whatever wrote the configuration (a Caddyfile, JSON,
// another adapter, the admin API), so they see what will really run: the
// handler's actual type and its settings (a file_server with pass_thru, a
// reverse_proxy with handle_response routes) and every nested subroute.
// Reading the JSON instead would mean decoding every handler again and
// guessing its defaults.
//
// Caddy starts its apps in no fixed order, and does not start them for
// `caddy validate`: a refused configuration is refused when it is run or
// loaded (Caddy then stops whatever it had started and keeps the running
// configuration, if any), not by `caddy validate`.

// checkRoutes refuses an http app in which an mtls_auth handler can never
// run, and warns about handlers whose certificates can never arrive. nil
// when there is no http app.
func checkRoutes(httpApp *caddyhttp.App, logger *zap.Logger) error {
	if httpApp == nil {
		return nil
	}
	names := make([]string, 0, len(httpApp.Servers))
	for name := range httpApp.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		srv := httpApp.Servers[name]
		c := &serverCheck{name: name, srv: srv, logger: logger}
		c.list(srv.Routes, "routes", nil)
		if srv.Errors != nil {
			c.list(srv.Errors.Routes, "errors/routes", nil)
		}
		named := make([]string, 0, len(srv.NamedRoutes))
		for n := range srv.NamedRoutes {
			named = append(named, n)
		}
		sort.Strings(named)
		for _, n := range named {
			if r := srv.NamedRoutes[n]; r != nil {
				c.list(caddyhttp.RouteList{*r}, "named_routes/"+n, nil)
			}
		}
		errs = append(errs, c.errs...)
	}
	return errors.Join(errs...)
}

// serverCheck walks the routes of one server.
type serverCheck struct {
	name   string
	srv    *caddyhttp.Server
	logger *zap.Logger
	errs   []error
}

// blocker is why a place in a route list is never reached: what answers
// every request before it.
type blocker struct {
	route   string // the route's path in the server's config
	handler string // the handler's module name; "" when the route itself is the cause
	at      string // the handler's path
	why     string // how it stops the requests
}

// list walks one route list at path (as in the server's JSON, e.g.
// "routes/0/handle/0/routes"). blocked, when not nil, says why nothing in
// the list can run at all. It reports whether the list answers every
// request it is given (so that what comes after it never runs).
func (c *serverCheck) list(routes caddyhttp.RouteList, path string, blocked *blocker) bool {
	groups := map[string]string{} // group -> the first route of it without a matcher
	for i, r := range routes {
		rpath := fmt.Sprintf("%s/%d", path, i)
		here := blocked
		if here == nil && r.Group != "" && groups[r.Group] != "" {
			here = &blocker{route: groups[r.Group], why: fmt.Sprintf("has no matcher and comes first in the route group %q, so the later routes of the group never run", r.Group)}
		}
		answered := c.route(r, rpath, here)
		if here != nil || len(r.MatcherSets) > 0 {
			continue
		}
		if r.Group != "" && groups[r.Group] == "" {
			groups[r.Group] = rpath
		}
		switch {
		case answered != nil:
			answered.why = "has no matcher, and " + answered.handler + " in it answers every request"
			blocked = answered
		case r.Terminal:
			blocked = &blocker{route: rpath, why: "has no matcher and is terminal, so no route after it runs"}
		}
	}
	return blocked != nil
}

// route walks the handlers of one route. It returns the first handler
// that answers every request reaching it (nothing after it in the route,
// or after the route, runs), or nil.
func (c *serverCheck) route(r caddyhttp.Route, rpath string, blocked *blocker) *blocker {
	var answered *blocker
	for j, h := range r.Handlers {
		hpath := fmt.Sprintf("%s/handle/%d", rpath, j)
		stop := blocked
		if stop == nil {
			stop = answered
		}
		name, answers := alwaysAnswers(h)
		switch m := h.(type) {
		case *Handler:
			if stop != nil {
				c.errs = append(c.errs, c.unreachable(hpath, stop))
			} else {
				c.warnings(m, hpath)
			}
		case *caddyhttp.Subroute:
			name, answers = "subroute", c.list(m.Routes, hpath+"/routes", stop)
			if m.Errors != nil {
				c.list(m.Errors.Routes, hpath+"/errors/routes", stop)
			}
		}
		if answers && answered == nil {
			answered = &blocker{route: rpath, handler: name, at: hpath,
				why: "runs " + name + " before it, which answers every request"}
		}
	}
	return answered
}

// alwaysAnswers reports whether a handler never calls the next one, and
// its module name. Unknown handlers are assumed to call it.
func alwaysAnswers(h caddyhttp.MiddlewareHandler) (string, bool) {
	switch m := h.(type) {
	case *caddyhttp.StaticResponse:
		return "static_response", true
	case *caddyhttp.StaticError:
		return "error", true
	case *fileserver.FileServer:
		return "file_server", !m.PassThru
	case *reverseproxy.Handler:
		// handle_response routes are compiled over the next handler.
		return "reverse_proxy", len(m.HandleResponse) == 0
	}
	return "", false
}

// unreachable is the error for an mtls_auth handler at path that never
// runs because of b.
func (c *serverCheck) unreachable(path string, b *blocker) error {
	msg := fmt.Sprintf("server %s%s: mtls_auth at %s can never run: the route at %s%s %s",
		c.name, c.where(), path, b.route, c.hosts(b.route), b.why)
	if b.handler == "" {
		return errors.New(msg + "; move mtls_auth into that route, or before it")
	}
	msg += fmt.Sprintf(" (%s at %s), so requests are answered without authentication; put mtls_auth before it", b.handler, b.at)
	if directive := directiveOf[b.handler]; directive != "" {
		msg += fmt.Sprintf(" (first in the route block, or `order mtls_auth before %s`)", directive)
	}
	return errors.New(msg + ", or give that route a matcher")
}

// directiveOf is the Caddyfile directive of each handler alwaysAnswers
// knows.
var directiveOf = map[string]string{
	"static_response": "respond",
	"error":           "error",
	"file_server":     "file_server",
	"reverse_proxy":   "reverse_proxy",
}

// where names the server's listeners, for Caddyfile users whose servers
// are named srv0, srv1, ...
func (c *serverCheck) where() string {
	if len(c.srv.Listen) == 0 {
		return ""
	}
	return " (listen " + strings.Join(c.srv.Listen, " ") + ")"
}

// hosts names the hosts of the top-level route that holds path, when it
// matches by host (a Caddyfile site block).
func (c *serverCheck) hosts(path string) string {
	var i int
	if _, err := fmt.Sscanf(path, "routes/%d", &i); err != nil || i >= len(c.srv.Routes) {
		return ""
	}
	var hosts []string
	for _, set := range c.srv.Routes[i].MatcherSets {
		for _, m := range set {
			switch h := m.(type) {
			case caddyhttp.MatchHost:
				hosts = append(hosts, h...)
			case *caddyhttp.MatchHost:
				hosts = append(hosts, *h...)
			}
		}
	}
	if len(hosts) == 0 {
		return ""
	}
	return " (host " + strings.Join(hosts, " ") + ")"
}

// warnings logs what makes a reachable mtls_auth handler useless on this
// server: a header it will always refuse, or a connection that never
// carries a certificate.
func (c *serverCheck) warnings(h *Handler, path string) {
	fields := []zap.Field{zap.String("server", c.name), zap.Strings("listen", c.srv.Listen), zap.String("handler", path)}
	if h.source != sourceTLS && h.gate.server && !serverTrustsProxies(c.srv) {
		c.logger.Warn("trusted_sources is 'server' (the default) but the server has no trusted_proxies: every certificate header will be refused as untrusted_source. "+
			"Set the load balancers' addresses in the server's trusted_proxies (global option: servers { trusted_proxies static <cidr...> }) or in trusted_sources",
			fields...)
	}
	if h.source == sourceTLS {
		switch {
		case len(c.srv.TLSConnPolicies) == 0:
			c.logger.Warn("source is 'tls' but the server does not serve TLS: no request will carry a certificate. "+
				"Serve the site over HTTPS with tls { client_auth { mode request } }, or read the load balancer's header with source header",
				fields...)
		case !serverRequestsClientCerts(c.srv):
			c.logger.Warn("source is 'tls' but the server's TLS does not ask clients for certificates: no request will carry one. "+
				"Add tls { client_auth { mode request } } (or a stricter mode) to the site",
				fields...)
		}
	}
}

// serverTrustsProxies reports whether the server has trusted_proxies (or
// trusts Unix socket peers). Caddy keeps the provisioned source in an
// unexported field (the JSON field is cleared once loaded); a test pins
// this against Caddy, so a rename fails the test instead of silencing the
// warning. When the field cannot be found, it says true: no warning.
func serverTrustsProxies(srv *caddyhttp.Server) bool {
	if srv.TrustedProxiesUnix || srv.TrustedProxiesRaw != nil {
		return true
	}
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	if !f.IsValid() || f.Kind() != reflect.Interface {
		return true
	}
	return !f.IsNil()
}

// serverRequestsClientCerts reports whether a TLS connection policy of
// the server asks for client certificates.
func serverRequestsClientCerts(srv *caddyhttp.Server) bool {
	for _, p := range srv.TLSConnPolicies {
		if p != nil && p.ClientAuthentication != nil && p.ClientAuthentication.Active() {
			return true
		}
	}
	return false
}

// checkConfig runs checkRoutes over the configuration's http app.
func (a *App) checkConfig() error {
	if a.ctx.Context == nil {
		return nil
	}
	v, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil // no http app: no mtls_auth handler runs
	}
	httpApp, _ := v.(*caddyhttp.App)
	return checkRoutes(httpApp, a.logger)
}
