// Package mtlsauth is a Caddy HTTP handler that authenticates requests by an
// X.509 client certificate, taken from Caddy's own TLS connection or from a
// header set by a TLS-terminating load balancer, and hands the identity on
// as placeholders.
package mtlsauth

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler authenticates each request by a client certificate.
//
// The certificate comes from a header set by a trusted load balancer
// (`source header`, the default), from Caddy's own TLS connection
// (`source tls`, with `client_auth { mode request }` on the connection
// policy), or from either (`source any`: the connection first). A header sent
// by a peer outside `trusted_sources` is removed and never authenticates.
//
// The certificate must verify to the `trust_pool`, be admitted by the
// route's allow lists (pinned exactly by `allow` / `allow_dir`, or issued by
// a CA of `allow_ca`), or both when both are configured. Its validity window
// and its clientAuth extended key usage are always checked. A certificate on
// the deny list (admin API) is refused on every route, and so is a client
// whose every verified chain, up to the root, passes through one, whether or
// not it sends that certificate.
//
// Status codes: 401 when no valid certificate could be established, 403 when
// a valid certificate is not allowed on this route. The error message names
// the reason and never echoes certificate material; render it with
// `handle_errors`.
//
// Placeholders set on every request the handler sees:
//
// Placeholder | Description
// ------------|------------
// `{http.mtls.authenticated}` | `true` or `false`
// `{http.mtls.source}` | `header` or `tls`
// `{http.mtls.profile}` | the profile that decoded the header (`tls` for the connection)
// `{http.mtls.fingerprint}` | SHA-256 of the leaf's DER, lowercase hex
// `{http.mtls.subject}`, `{http.mtls.subject.cn}` | the leaf's subject, and its common name
// `{http.mtls.issuer}`, `{http.mtls.serial}` | the leaf's issuer, and its serial number (decimal)
// `{http.mtls.not_after}` | end of validity, RFC 3339
// `{http.mtls.san.dns_names}`, `.uris`, `.emails`, `.ips` | SANs, comma-separated; append `.N` for one
// `{http.mtls.alias}`, `{http.mtls.tier}` | the allow-list entry that admitted it
// `{http.mtls.meta.<key>}` | that entry's metadata
// `{http.mtls.certificate_der_base64}` | the leaf's DER, base64
// `{http.mtls.error}` | the reason code when not authenticated
// `{http.auth.user.id}` | `user_id`, else the alias, else the subject CN (authenticated requests only)
//
// For upstreams (`reverse_proxy { header_up ... }`), each empty unless
// authenticated:
//
// Placeholder | Description
// ------------|------------
// `{http.mtls.rfc9440.cert}` | RFC 9440 `Client-Cert`: `:` base64 of the leaf's DER `:`
// `{http.mtls.rfc9440.chain}` | RFC 9440 `Client-Cert-Chain`: the intermediates of the chain verified to the `trust_pool`, root excluded (empty without a trust pool)
// `{http.mtls.xfcc}` | one Envoy-style `x-forwarded-client-cert` element: Hash, Cert, Subject, URI, DNS
// `{http.mtls.x5t_s256}` | RFC 8705 thumbprint: base64url, unpadded, of the leaf's SHA-256
// `{http.mtls.spiffe_id}` | the leaf's `spiffe://` URI SAN (empty unless exactly one)
type Handler struct {
	// The API this route belongs to. It names the route's runtime
	// certificate store, managed through the admin API at
	// `/mtls_auth/apis/<api>/certs` and shared by every instance using the
	// same storage: certificates added there are allowed on this route.
	// Letters, digits, '.', '_' and '-'.
	API string `json:"api,omitempty"`

	// Where the certificate comes from: `header` (default), `tls` or `any`
	// (the TLS connection first, then the header).
	Source string `json:"source,omitempty"`

	// The header carrying the client certificate. Default: the profile's
	// header (e.g. `X-Amzn-Mtls-Clientcert` for `aws_alb`), else
	// `Client-Cert` (RFC 9440).
	Header string `json:"header,omitempty"`

	// An optional header carrying the intermediates (RFC 9440
	// `Client-Cert-Chain`, GCP, Cloudflare, HAProxy). Default: the
	// profile's chain header, if it has one.
	ChainHeader string `json:"chain_header,omitempty"`

	// How the load balancer encodes the certificate: `auto` (default:
	// recognised by its shape), `aws_alb`, `nginx`, `envoy_xfcc`, `traefik`,
	// `haproxy`, `cloudflare`, `gcp`, `azure`, `apache`, `wso2`, `rfc9440`,
	// `pem` or `der_base64`.
	Profile string `json:"profile,omitempty"`

	// Who may send the certificate header: CIDRs or addresses of the load
	// balancers (`private_ranges` stands for the private and loopback
	// ranges, as in Caddy's `trusted_proxies static`), or `server`
	// (default: the HTTP server's `trusted_proxies`),
	// or `any` (every peer: only for a listener nothing but the load balancer
	// can reach; warned about at startup). A header from any other peer is
	// removed and the request is treated as carrying no certificate, with
	// reason `untrusted_source`. The peer is the TCP connection's address,
	// never a forwarded-for header.
	TrustedSources []string `json:"trusted_sources,omitempty"`

	// The CA pool the chain must verify to: any `tls.ca_pool.source` module,
	// e.g. `{"provider": "file", "pem_files": ["/etc/mtls/ca.pem"]}`.
	// Intermediates are taken from the header (or chain header) or the
	// TLS connection.
	TrustPoolRaw json.RawMessage `json:"trust_pool,omitempty" caddy:"namespace=tls.ca_pool.source inline_key=provider"`

	// The throttling tier (defined in the global `mtls_auth` option) for
	// certificates whose allow-list entry names none, such as those trusted
	// through the trust pool alone. Default: none (not throttled).
	DefaultTier string `json:"default_tier,omitempty"`

	// Certificates pinned on this route, each under an alias: exactly that
	// certificate (by its SHA-256 fingerprint) is allowed, whatever its
	// extensions. A pinned CA certificate admits nothing it issued; use
	// `allow_ca` for that.
	Allow []AllowEntry `json:"allow,omitempty"`

	// CAs whose issued certificates are all allowed on this route, under
	// the CA entry's alias. Each file must hold a CA certificate (CA:TRUE,
	// and keyCertSign when it has a key usage extension). A leaf is admitted
	// when its chain, through the intermediates it presents, verifies to the
	// CA for client authentication (signatures, validity, clientAuth usage).
	AllowCA []AllowEntry `json:"allow_ca,omitempty"`

	// Directories whose `.pem`, `.crt` and `.cer` files are all pinned, each
	// under its file name without the extension as alias.
	AllowDir []AllowDir `json:"allow_dir,omitempty"`

	// Revocation checking by CRL and/or OCSP; off when absent.
	Revocation *Revocation `json:"revocation,omitempty"`

	// What happens without a valid certificate:
	//
	// Mode | no certificate | bad or disallowed certificate
	// -----|----------------|------------------------------
	// `mandatory` (default) | 401 | 401 or 403
	// `optional` | passes unauthenticated | 401 or 403
	// `fallback` | passes unauthenticated | passes unauthenticated
	//
	// `fallback` never rejects: `{http.mtls.authenticated}` and
	// `{http.mtls.error}` let a later handler (another auth method) decide.
	Mode string `json:"mode,omitempty"`

	// Pass the incoming certificate headers on to the next handler. By
	// default every header the route could read a certificate from is
	// removed (the certificate header, the chain header, and with profile
	// `auto` RFC 9440's Client-Cert-Chain), so that upstreams never see a
	// client-controlled certificate header. A certificate header from a
	// peer outside `trusted_sources` is always removed, whatever `source`
	// says, even when the request authenticated by its TLS connection.
	KeepHeader bool `json:"keep_header,omitempty"`

	// Which x-forwarded-client-cert element to read (profile `envoy_xfcc`):
	// 1 for the first, 2 for the second, ...; -1 for the last (default: the
	// hop nearest to Caddy), -2 for the one before it.
	XFCCElement int `json:"xfcc_element,omitempty"`

	// If set, the selected x-forwarded-client-cert element must carry this
	// `By` URI: the identity of the proxy that wrote it.
	XFCCBy string `json:"xfcc_by,omitempty"`

	// Selects the x-forwarded-client-cert element by the proxies after the
	// client's hop instead of by position (Istio: an ingress gateway, then
	// the workload's sidecar). Starting from the last element, step back
	// while every URI of the element (the identity of the peer of the hop
	// that wrote it) is one of these; the element reached is the client's
	// and must carry its Cert. An element with any other URI is never
	// stepped over, so a client that bypasses the proxies cannot choose its
	// element. List identities that only your proxies' certificates carry.
	// Not with `xfcc_element`.
	XFCCProxies []string `json:"xfcc_proxies,omitempty"`

	// The most x-forwarded-client-cert elements accepted (one per proxy
	// hop); more is `too_large`. Default: 16.
	MaxXFCCElements int `json:"max_xfcc_elements,omitempty"`

	// What `{http.auth.user.id}` (the user in Caddy's access logs) becomes
	// for an authenticated request: a template with placeholders, such as
	// `{http.mtls.spiffe_id}` or `{http.mtls.meta.team}/{http.mtls.subject.cn}`.
	// It is evaluated per request; it may not refer to {http.auth.user.id}
	// itself. Default: the allow-list alias, else the subject's common name.
	UserID string `json:"user_id,omitempty"`

	// The largest certificate header (and chain header) accepted, in bytes.
	// Default: 65536. A full chain from a load balancer can reach 16 KB; also
	// raise the server's `max_header_size` if you raise this.
	MaxHeaderBytes int `json:"max_header_bytes,omitempty"`

	// The most certificates accepted in one chain, leaf included, from the
	// header or the TLS connection. Default: 8. It also bounds the
	// signature checks one request may cost in finding which presented
	// intermediates chain to the trust pool (or an `allow_ca` CA): at most
	// 2 × max_chain checks, failed by at most max_chain / 4 presented
	// certificates (at least 2); over either, `untrusted`.
	MaxChain int `json:"max_chain,omitempty"`

	// How many verification results to remember, so that a certificate seen
	// before costs one lookup instead of decoding and verifying. A result is
	// never reused past the chain's expiry, a revocation answer's validity,
	// or a change to the trust pool files, allow lists or deny list; failures
	// are reused for one second only. An entry costs about 250 bytes, about
	// 500 once a placeholder has read the certificate's names and 900-1,400
	// once one has read its DER (ECDSA-RSA); the cache never holds more than
	// 2 KiB per entry on average, so large certificates lower the count.
	// Default: 50000 (12-70 MB, at most 100 MiB); -1 disables the cache.
	CacheSize int `json:"cache_size,omitempty"`

	logger   *zap.Logger
	mode     mode
	source   source
	gate     sourceGate
	decoder  *decoder.Decoder
	verifier *verifier
	// stripHeaders are the canonical header names removed before next.
	stripHeaders []string
	now          func() time.Time
	app          *App
	scope        string // throttle key scope
	// knownTiers is set while adapting a Caddyfile, to report unknown
	// tiers with their line.
	knownTiers map[string]bool
	cache      *verifyCache
	// stats counts requests and remembers file loads, for the metrics and
	// the status page (metrics.go, status.go).
	stats *routeStats

	// File reloading (see trust.go).
	poolModule caddytls.CA
	poolFiles  []string
	files      *fileWatch
}

// AllowEntry is one allowed certificate: pinned (`allow`) or a CA
// (`allow_ca`).
type AllowEntry struct {
	// The name this certificate is known by: {http.mtls.alias} and
	// {http.auth.user.id} (for `allow_ca`, of every certificate the CA
	// admits). Unique within the route.
	Alias string `json:"alias,omitempty"`
	// Path to a PEM (or DER) file holding exactly one certificate. A file
	// holding a private key is refused. Give `file` or `pem`.
	File string `json:"file,omitempty"`
	// The certificate itself, PEM-encoded, instead of a file (JSON only):
	// exactly one certificate, no private key.
	PEM string `json:"pem,omitempty"`
	// The throttling tier of this certificate.
	Tier string `json:"tier,omitempty"`
	// Free-form data handed on as {http.mtls.meta.<key>}.
	Meta map[string]string `json:"meta,omitempty"`
}

// AllowDir is a directory of allowed certificates.
type AllowDir struct {
	// Path to the directory.
	Dir string `json:"dir,omitempty"`
	// The throttling tier of its certificates.
	Tier string `json:"tier,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mtls_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds everything the request path needs: the decoder, the
// source gate, the trust pool and the allow list, over the configuration's
// mtls_auth app.
func (h *Handler) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("mtls_auth")
	if err != nil {
		return fmt.Errorf("loading mtls_auth app: %v", err)
	}
	return h.provision(ctx, appIface.(*App))
}

// provision is Provision over a given app (unit tests give their own).
func (h *Handler) provision(ctx caddy.Context, app *App) error {
	h.app = app
	h.logger = ctx.Logger()
	h.now = time.Now
	h.mode = parseMode(h.Mode)
	h.verifier = &verifier{}
	h.files = &fileWatch{}
	h.cache = newVerifyCache(h.CacheSize)
	h.source = parseSource(h.Source)
	h.stats = newRouteStats(h.API, h.mode)

	gate, err := newSourceGate(h.TrustedSources)
	if err != nil {
		return err
	}
	h.gate = gate
	if gate.any && h.source != sourceTLS {
		h.logger.Warn("trusted_sources is 'any': every client can send a certificate header; make sure only the load balancer can reach this listener")
	}

	dec, err := decoder.New(decoder.Options{
		Profile:         h.Profile,
		Header:          h.Header,
		ChainHeader:     h.ChainHeader,
		MaxHeaderBytes:  h.MaxHeaderBytes,
		MaxChain:        h.MaxChain,
		XFCCElement:     h.XFCCElement,
		XFCCBy:          h.XFCCBy,
		XFCCProxies:     h.XFCCProxies,
		MaxXFCCElements: h.MaxXFCCElements,
	})
	if err != nil {
		return err
	}
	h.decoder = dec
	h.stripHeaders = dec.CertificateHeaders()

	if err := h.provisionTrust(ctx); err != nil {
		return err
	}

	h.verifier.runtime = h.app.runtimeStore()
	h.verifier.api = h.API
	h.verifier.listed = len(h.Allow) > 0 || len(h.AllowCA) > 0 || len(h.AllowDir) > 0 || h.API != ""
	h.verifier.limits = pathverify.Limits{MaxChain: dec.Options().MaxChain}
	if h.watchesFiles() {
		h.app.watch(h)
	}
	if h.API != "" {
		h.app.registerAPI(h.API)
	}
	if err := h.provisionRevocation(); err != nil {
		return err
	}
	h.stats.id = h.routeID()
	h.scope = h.throttleScope(h.stats.id)
	h.app.addRoute(h)
	return nil
}

// Cleanup stops the app from re-reading this handler's files.
func (h *Handler) Cleanup() error {
	if h.app != nil {
		h.app.unwatch(h)
		h.app.removeRoute(h)
	}
	h.stats.retire()
	if h.verifier != nil && h.verifier.revocation != nil {
		return h.verifier.revocation.Close()
	}
	return nil
}

// checkTiers makes sure every tier the route names is defined.
func (h *Handler) checkTiers() error {
	check := func(what, name string) error {
		if name == "" {
			return nil
		}
		if _, ok := h.app.tier(name); !ok {
			return fmt.Errorf("%s: %w", what, unknownTier(name))
		}
		return nil
	}
	if err := check("default_tier", h.DefaultTier); err != nil {
		return err
	}
	for _, a := range h.Allow {
		if err := check("allow "+a.Alias, a.Tier); err != nil {
			return err
		}
	}
	for _, a := range h.AllowCA {
		if err := check("allow_ca "+a.Alias, a.Tier); err != nil {
			return err
		}
	}
	for _, d := range h.AllowDir {
		if err := check("allow_dir "+d.Dir, d.Tier); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the configuration; it only reads.
func (h *Handler) Validate() error {
	if h.mode == modeInvalid {
		return fmt.Errorf("mode: '%s' is not one of mandatory, optional, fallback", h.Mode)
	}
	if h.source == sourceInvalid {
		return fmt.Errorf("source: '%s' is not one of header, tls, any", h.Source)
	}
	// max_header_bytes, max_chain, profile and the XFCC options are
	// checked by decoder.New in Provision, trusted_sources by newSourceGate.
	if h.poolModule == nil && !h.verifier.listed {
		return errors.New("no trust configured: set trust_pool, allow, allow_ca, allow_dir or api, or every client could pick its own identity")
	}
	if h.API != "" {
		if err := store.ValidName("api", h.API); err != nil {
			return err
		}
	}
	if err := checkUserID(h.UserID); err != nil {
		return err
	}
	return h.checkTiers()
}

// ServeHTTP authenticates the request, sets the placeholders, and either
// rejects it or hands it on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	o := h.authenticate(r)
	if o.id != nil {
		if reason, detail := h.applyThrottle(w, r, o.id); reason != "" {
			o.reason, o.detail = reason, detail
		}
	}
	h.stats.request(o)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if h.UserID != "" && o.id != nil {
		repl.Map(userIDReplacer(repl, h.UserID, o))
	} else {
		repl.Map(o.replace)
	}

	// keep_header passes on only a header a trusted peer sent: with source
	// tls or any, a request authenticated by its connection never meets
	// the source gate, and its own certificate header must not reach the
	// upstream either.
	if !h.KeepHeader || o.reason == reasonUntrustedSource || !h.gate.trusted(r) {
		for _, name := range h.stripHeaders {
			delete(r.Header, name)
		}
	}
	if o.reason != "" {
		if h.mode.rejects(o.reason) {
			h.logReject(r, o)
			return caddyhttp.Error(o.reason.status(), fmt.Errorf("client certificate %s: %s", o.reason, o.detail))
		}
		if c := h.logger.Check(zapcore.DebugLevel, "unauthenticated request passed on"); c != nil {
			c.Write(zap.String("reason", string(o.reason)), zap.String("mode", h.mode.String()))
		}
	}
	return next.ServeHTTP(w, r)
}

// input is what a request presents: a certificate chain from the TLS
// connection, or the certificate header's values.
type input struct {
	source    string
	tlsCerts  []*x509.Certificate
	values    []string
	chain     []string
	key       cacheKey
	cacheable bool
}

// authenticate runs the request path: source gate, then the cached result
// for this exact input, else decode, verify and authorize.
func (h *Handler) authenticate(r *http.Request) *outcome {
	in, done := h.input(r)
	if done != nil {
		h.stats.unverifiedRequest()
		return done
	}
	now := h.now()
	var static *trustSet
	var gen uint64
	if in.cacheable {
		// Read the trust generation before computing, so that a result
		// computed across a change is stored as already stale.
		static, gen = h.verifier.static.Load(), h.verifier.snapshot().Generation
		if e := h.cache.get(&in.key, now.UnixNano(), static, gen); e != nil {
			h.stats.verified(true, now)
			return e.outcome(in.source, presented{dec: h.decoder, values: in.values, chain: in.chain, tls: in.tlsCerts})
		}
	}
	o, until := h.compute(r, in, now)
	h.stats.verified(false, now)
	if in.cacheable && until.After(now) {
		h.cache.put(&in.key, o, until.UnixNano(), static, gen)
	}
	return o
}

// input finds what the request presents according to source. It returns
// a finished outcome when there is nothing to verify (no certificate, or a
// header from an untrusted peer).
func (h *Handler) input(r *http.Request) (input, *outcome) {
	if h.source != sourceHeader && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		in := input{source: "tls", tlsCerts: r.TLS.PeerCertificates}
		if h.cache != nil {
			in.key, in.cacheable = tlsKey(in.tlsCerts), true
		}
		return in, nil
	}
	if h.source == sourceTLS {
		return input{}, &outcome{reason: reasonMissing, detail: "no certificate on the TLS connection"}
	}
	in := input{source: "header", values: r.Header[h.decoder.Header()]}
	if name := h.decoder.ChainHeader(); name != "" {
		in.chain = r.Header[name]
	}
	if len(in.values) == 0 && len(in.chain) == 0 {
		return in, &outcome{reason: reasonMissing, detail: "no certificate header"}
	}
	if !h.gate.trusted(r) {
		return in, &outcome{source: "header", reason: reasonUntrustedSource, detail: "certificate header from a peer outside trusted_sources"}
	}
	if h.cache != nil {
		in.key, in.cacheable = headerKey(in.values, in.chain), true
	}
	return in, nil
}

// compute decodes and verifies, and says until when the result may be
// reused.
func (h *Handler) compute(r *http.Request, in input, now time.Time) (*outcome, time.Time) {
	o := &outcome{source: in.source}
	certs := in.tlsCerts
	if in.source == "tls" {
		o.profile = "tls"
		// The header path checks keys in Decode; a TLS client's chain is
		// refused the same way before any signature work.
		if err := decoder.CheckKeys(certs); err != nil {
			o.reason, o.detail = reasonMalformed, err.Error()
			return o, now.Add(failureTTL)
		}
	} else {
		res, err := h.decoder.Decode(in.values, in.chain)
		if err != nil {
			o.reason, o.detail = decodeReason(err), err.Error()
			return o, now.Add(failureTTL)
		}
		o.profile, certs = res.Profile, res.Certs
	}
	fp := store.FingerprintOf(certs[0])
	v := h.verifier.verify(r.Context(), certs, fp, now)
	if v.reason != "" {
		o.reason, o.detail, o.rejectedFP = v.reason, v.detail, fp.String()
		o.rejectedCN = certs[0].Subject.CommonName
		if v.entry != nil {
			o.rejectedAlias = v.entry.Alias
		}
		return o, now.Add(failureTTL)
	}
	o.id = newIdentity(certs[0], fp, v.entry, v.poolChain)
	if v.noCache {
		return o, time.Time{}
	}
	return o, v.expiry()
}

// decodeReason maps a decoding error to its reason code.
func decodeReason(err error) reason {
	if errors.Is(err, decoder.ErrAbsent) {
		return reasonMissing
	}
	switch decoder.KindOf(err) {
	case decoder.KindTooLarge:
		return reasonTooLarge
	case decoder.KindDuplicate:
		return reasonDuplicateHeader
	case decoder.KindUntrustedHop:
		return reasonUntrustedSource
	}
	return reasonMalformed
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
