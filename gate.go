package mtlsauth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Keywords accepted by trusted_sources besides CIDRs and addresses.
const (
	sourcesServer = "server"
	sourcesAny    = "any"
	// sourcesPrivateRanges is the private and loopback ranges (Caddy's
	// caddyhttp.PrivateRangesCIDR), as Caddy's trusted_proxies static
	// accepts it; the Caddyfile expands it, the JSON may carry it as is.
	sourcesPrivateRanges = "private_ranges"
)

// sourceGate decides whether the TCP peer of a request may speak for a
// client certificate in a header. It looks at the connection's peer address
// (r.RemoteAddr), never at X-Forwarded-For or other client-controlled data.
type sourceGate struct {
	// server defers to the HTTP server's trusted_proxies.
	server bool
	// any trusts every peer (warned about at provision time).
	any      bool
	prefixes []netip.Prefix
}

// newSourceGate compiles trusted_sources. An empty list means "server".
func newSourceGate(sources []string) (sourceGate, error) {
	if len(sources) == 0 {
		return sourceGate{server: true}, nil
	}
	var g sourceGate
	for _, s := range sources {
		switch s {
		case sourcesServer, sourcesAny:
			if len(sources) > 1 {
				return g, fmt.Errorf("trusted_sources: '%s' cannot be combined with other sources", s)
			}
			return sourceGate{server: s == sourcesServer, any: s == sourcesAny}, nil
		}
		cidrs := []string{s}
		if s == sourcesPrivateRanges {
			cidrs = caddyhttp.PrivateRangesCIDR()
		}
		for _, c := range cidrs {
			p, err := parsePrefix(c)
			if err != nil {
				return g, fmt.Errorf("trusted_sources: %v", err)
			}
			g.prefixes = append(g.prefixes, p)
		}
	}
	return g, nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("invalid CIDR '%s': %v", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address '%s': %v", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// trusted reports whether r's peer may send the certificate header.
func (g sourceGate) trusted(r *http.Request) bool {
	switch {
	case g.any:
		return true
	case g.server:
		trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
		return trusted
	}
	addr, ok := peerAddr(r)
	if !ok {
		return false
	}
	for _, p := range g.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// peerAddr is the IP of the connection's peer.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	host, _, _ = strings.Cut(host, "%")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
