package mtlsauth

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mtls_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("mtls_auth", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterGlobalOption("mtls_auth", parseGlobalOption)
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	// The global option is parsed first: knowing its tiers lets an unknown
	// tier name be reported with its line.
	m.knownTiers = map[string]bool{}
	if opt, ok := h.Option("mtls_auth").(httpcaddyfile.App); ok {
		var app App
		if err := json.Unmarshal(opt.Value, &app); err == nil {
			for _, t := range app.Tiers {
				m.knownTiers[t.Name] = true
			}
		}
	}
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mtls_auth [<matcher>] {
//		api                <name>
//		source             header|tls|any
//		header             <field>
//		chain_header       <field>
//		profile            <name>
//		trusted_sources    <cidr|private_ranges...>|server|any
//		trust_pool         <module> [...]
//		allow              <alias> <pem-file> [tier <name>] [meta <key> <value>]...
//		allow_ca           <alias> <ca-pem-file> [tier <name>] [meta <key> <value>]...
//		allow_dir          <dir> [tier <name>]
//		user_id            <template>
//		default_tier       <name>
//		mode               mandatory|optional|fallback
//		keep_header
//		revocation {
//			crl                  <file-or-url>...
//			crl_from_certificate
//			ocsp                 [<responder-url>]
//			soft_fail
//		}
//		xfcc_element       first|last|<n>
//		xfcc_by            <uri>
//		xfcc_proxies       <uri>...
//		max_header_bytes   <size>
//		max_chain          <n>
//		max_xfcc_elements  <n>
//		cache_size         <n>|off
//	}
//
// `allow`, `allow_ca` and `allow_dir` may be repeated; every other
// subdirective may be given once. In trusted_sources, `private_ranges`
// stands for the private and loopback ranges, as in Caddy's
// `trusted_proxies static`.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if sub != "allow" && sub != "allow_ca" && sub != "allow_dir" {
			if seen[sub] {
				return d.Errf("%s already specified", sub)
			}
			seen[sub] = true
		}
		var err error
		switch sub {
		case "api":
			h.API, err = singleArg(d)
		case "source":
			h.Source, err = oneOf(d, "header", "tls", "any")
		case "header":
			h.Header, err = singleArg(d)
		case "chain_header":
			h.ChainHeader, err = singleArg(d)
		case "profile":
			h.Profile, err = singleArg(d)
		case "trusted_sources":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			// private_ranges is expanded here, as Caddy's trusted_proxies
			// does, so the JSON shows what is trusted.
			for _, a := range args {
				if a == sourcesPrivateRanges {
					h.TrustedSources = append(h.TrustedSources, caddyhttp.PrivateRangesCIDR()...)
				} else {
					h.TrustedSources = append(h.TrustedSources, a)
				}
			}
			_, err = newSourceGate(h.TrustedSources)
			if err != nil {
				return d.Err(err.Error())
			}
		case "trust_pool":
			err = h.unmarshalTrustPool(d)
		case "allow", "allow_ca":
			err = h.unmarshalAllow(d, sub == "allow_ca")
		case "allow_dir":
			err = h.unmarshalAllowDir(d)
		case "default_tier":
			if h.DefaultTier, err = singleArg(d); err == nil {
				err = h.checkTierName(d, h.DefaultTier)
			}
		case "mode":
			h.Mode, err = oneOf(d, "mandatory", "optional", "fallback")
		case "revocation":
			err = h.unmarshalRevocation(d)
		case "keep_header":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.KeepHeader = true
		case "xfcc_element":
			err = h.unmarshalXFCCElement(d)
		case "xfcc_by":
			h.XFCCBy, err = singleArg(d)
		case "xfcc_proxies":
			h.XFCCProxies = d.RemainingArgs()
			if len(h.XFCCProxies) == 0 {
				return d.ArgErr()
			}
			for i, p := range h.XFCCProxies {
				if slices.Contains(h.XFCCProxies[:i], p) {
					return d.Errf("xfcc_proxies: '%s' listed twice", p)
				}
			}
		case "max_xfcc_elements":
			h.MaxXFCCElements, err = positiveInt(d)
		case "user_id":
			if h.UserID, err = singleArg(d); err == nil {
				if cerr := checkUserID(h.UserID); cerr != nil {
					return d.Err(cerr.Error())
				}
			}
		case "max_header_bytes":
			var v string
			if v, err = singleArg(d); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n == 0 || n > 1<<30 {
					return d.Errf("invalid max_header_bytes '%s': want a size such as 64KiB", v)
				}
				h.MaxHeaderBytes = int(n)
			}
		case "max_chain":
			h.MaxChain, err = positiveInt(d)
		case "cache_size":
			var v string
			if v, err = singleArg(d); err == nil {
				if v == "off" {
					h.CacheSize = -1
				} else if n, cerr := strconv.Atoi(v); cerr != nil || n < 1 {
					return d.Errf("invalid cache_size '%s': want a positive number of entries, or off", v)
				} else {
					h.CacheSize = n
				}
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseGlobalOption parses the global `mtls_auth` option into the app.
// Syntax:
//
//	mtls_auth {
//		tier           <name> <requests> <window>
//		throttle       local|redis <url> [<url>...]
//		on_error       allow|deny
//		sync_interval  <duration>
//		log_rejections debug|info|warn
//		expiry_warning <duration>
//	}
//
// `tier` may be repeated, once per name. `throttle redis` with several URLs
// names the seed nodes of a Redis Cluster.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("mtls_auth global option already specified")
	}
	app := new(App)
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if sub != "tier" {
			if seen[sub] {
				return nil, d.Errf("%s already specified", sub)
			}
			seen[sub] = true
		}
		switch sub {
		case "tier":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return nil, d.Errf("invalid tier requests '%s': want a whole number, 0 for unlimited", args[1])
			}
			w, err := caddy.ParseDuration(args[2])
			if err != nil {
				return nil, d.Errf("invalid tier window '%s': want a positive duration such as 1m", args[2])
			}
			t := Tier{Name: args[0], Requests: n, Window: caddy.Duration(w)}
			if err := validateTier(t, app.Tiers); err != nil {
				return nil, d.Err(err.Error())
			}
			app.Tiers = append(app.Tiers, t)
		case "throttle":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "local":
				app.Throttle = &ThrottleConfig{Backend: "local"}
			case len(args) == 2 && args[0] == "redis":
				app.Throttle = &ThrottleConfig{Backend: "redis", URL: args[1]}
			case len(args) > 2 && args[0] == "redis":
				// Several URLs: the seed nodes of a Redis Cluster.
				// Errors name nodes by position: a URL may hold a password.
				for i, u := range args[1:] {
					if j := slices.Index(args[1:i+1], u); j >= 0 {
						return nil, d.Errf("redis cluster node %d is node %d again", i+1, j+1)
					}
				}
				app.Throttle = &ThrottleConfig{Backend: "redis", Cluster: args[1:]}
			case len(args) > 0 && args[0] != "local" && args[0] != "redis":
				return nil, d.Errf("invalid throttle backend '%s': want local or redis <url> [<url>...]", args[0])
			default:
				return nil, d.ArgErr()
			}
		case "on_error":
			v, err := oneOf(d, onErrorModes...)
			if err != nil {
				return nil, err
			}
			app.OnError = v
		case "log_rejections":
			v, err := oneOf(d, "debug", "info", "warn")
			if err != nil {
				return nil, err
			}
			app.LogRejections = v
		case "sync_interval":
			v, err := singleArg(d)
			if err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 100*time.Millisecond {
				return nil, d.Errf("invalid sync_interval '%s': want a duration of at least 100ms", v)
			}
			app.SyncInterval = caddy.Duration(dur)
		case "expiry_warning":
			v, err := singleArg(d)
			if err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("invalid expiry_warning '%s': want a positive duration such as 30d", v)
			}
			app.ExpiryWarning = caddy.Duration(dur)
		default:
			return nil, d.Errf("unrecognized mtls_auth option '%s'", sub)
		}
	}
	return httpcaddyfile.App{Name: "mtls_auth", Value: caddyconfig.JSON(app, nil)}, nil
}

// unmarshalTrustPool reads `trust_pool <module> [...]`, delegating the
// module's own arguments and block to the tls.ca_pool.source module.
func (h *Handler) unmarshalTrustPool(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, "tls.ca_pool.source."+name)
	if err != nil {
		return d.WrapErr(err)
	}
	ca, ok := mod.(caddytls.CA)
	if !ok {
		return d.Errf("trust_pool module '%s' is not a certificate pool provider", name)
	}
	h.TrustPoolRaw = caddyconfig.JSONModuleObject(ca, "provider", name, nil)
	return nil
}

// unmarshalAllow reads `allow <alias> <file> [tier <name>] [meta <key>
// <value>]...` (ca false) or the same after `allow_ca` (ca true). When the
// file can be read at adapt time, it is loaded as Provision will load it,
// so that a bad file (no certificate, a private key, a bundle, or for
// allow_ca a certificate that is not a CA) is reported at its line; a file
// that is not there yet is left to Provision.
func (h *Handler) unmarshalAllow(d *caddyfile.Dispenser, ca bool) error {
	sub := d.Val()
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.ArgErr()
	}
	e := AllowEntry{Alias: args[0], File: args[1]}
	for rest := args[2:]; len(rest) > 0; {
		switch rest[0] {
		case "tier":
			if len(rest) < 2 {
				return d.Errf("%s %s: tier needs a name", sub, e.Alias)
			}
			if e.Tier != "" {
				return d.Errf("%s %s: tier given twice", sub, e.Alias)
			}
			if err := h.checkTierName(d, rest[1]); err != nil {
				return err
			}
			e.Tier = rest[1]
			rest = rest[2:]
		case "meta":
			if len(rest) < 3 {
				return d.Errf("%s %s: meta needs a key and a value", sub, e.Alias)
			}
			if e.Meta == nil {
				e.Meta = map[string]string{}
			}
			if _, dup := e.Meta[rest[1]]; dup {
				return d.Errf("%s %s: meta key '%s' given twice", sub, e.Alias, rest[1])
			}
			e.Meta[rest[1]] = rest[2]
			rest = rest[3:]
		default:
			return d.Errf("%s %s: unexpected '%s' (want tier <name> or meta <key> <value>)", sub, e.Alias, rest[0])
		}
	}
	for _, prev := range append(h.Allow[:len(h.Allow):len(h.Allow)], h.AllowCA...) {
		if prev.Alias == e.Alias {
			return d.Errf("%s: alias '%s' already specified", sub, e.Alias)
		}
	}
	if _, err := h.loadAllowEntry(e, ca); err != nil && !errors.As(err, new(*fs.PathError)) {
		return d.Err(err.Error())
	}
	if ca {
		h.AllowCA = append(h.AllowCA, e)
	} else {
		h.Allow = append(h.Allow, e)
	}
	return nil
}

// unmarshalAllowDir reads `allow_dir <dir> [tier <name>]`.
func (h *Handler) unmarshalAllowDir(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1:
		h.AllowDir = append(h.AllowDir, AllowDir{Dir: args[0]})
	case len(args) == 3 && args[1] == "tier":
		if err := h.checkTierName(d, args[2]); err != nil {
			return err
		}
		h.AllowDir = append(h.AllowDir, AllowDir{Dir: args[0], Tier: args[2]})
	default:
		return d.ArgErr()
	}
	return nil
}

// checkTierName reports an unknown tier at its line, when the global
// option's tiers are known (always, when adapting a whole Caddyfile).
func (h *Handler) checkTierName(d *caddyfile.Dispenser, name string) error {
	if h.knownTiers != nil && !h.knownTiers[name] {
		return d.Err(unknownTier(name).Error())
	}
	return nil
}

// unmarshalXFCCElement reads `xfcc_element first|last|<n>`.
func (h *Handler) unmarshalXFCCElement(d *caddyfile.Dispenser) error {
	v, err := singleArg(d)
	if err != nil {
		return err
	}
	n, ok := parseXFCCElement(v)
	if !ok {
		return d.Errf("invalid xfcc_element '%s': %s", v, xfccElementWant)
	}
	h.XFCCElement = n
	return nil
}

// xfccElementWant says what parseXFCCElement accepts, for error messages.
const xfccElementWant = "want first, last, a position from 1, or a negative position from the end"

// parseXFCCElement reads an XFCC element choice, as xfcc_element and
// `caddy mtls-auth decode --xfcc-element` take it: first (1), last (-1),
// or a non-zero position (negative from the end).
func parseXFCCElement(s string) (int, bool) {
	switch s {
	case "first":
		return 1, true
	case "last":
		return -1, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n != 0
}

// singleArg reads exactly one argument on the current line.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// oneOf reads exactly one argument that must be one of allowed.
func oneOf(d *caddyfile.Dispenser, allowed ...string) (string, error) {
	sub := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return "", err
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", d.Errf("invalid %s '%s': want one of %v", sub, v, allowed)
}

// positiveInt reads exactly one argument that must be a positive integer.
func positiveInt(d *caddyfile.Dispenser) (int, error) {
	sub := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, d.Errf("invalid %s '%s': want a positive integer", sub, v)
	}
	return n, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
