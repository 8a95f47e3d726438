package mtlsauth

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// Kinds of configured certificates, as the expiry report and the
// certificate_not_after metric name them.
const (
	kindAllow     = "allow"
	kindAllowCA   = "allow_ca"
	kindAllowDir  = "allow_dir"
	kindRuntime   = "runtime"
	kindTrustPool = "trust_pool"
)

// configuredCert is a certificate the configuration names (an allow entry,
// a file of an allow_dir, a CA of the trust pool) or a runtime store holds:
// what an operator must renew in time. Clients admitted through a pool or a
// CA are not configured certificates.
type configuredCert struct {
	api, alias, kind string
	cert             *x509.Certificate
	fp               store.Fingerprint
}

// poolCA is a CA of a route's trust pool, named for reports by its file
// (with its position when the file holds several).
type poolCA struct {
	name string
	cert *x509.Certificate
	fp   store.Fingerprint
}

// poolCAsOf names the certificates read from one trust pool file.
func poolCAsOf(file string, certs []*x509.Certificate) []poolCA {
	out := make([]poolCA, len(certs))
	for i, c := range certs {
		name := filepath.Base(file)
		if len(certs) > 1 {
			name = fmt.Sprintf("%s#%d", name, i+1)
		}
		out[i] = poolCA{name: name, cert: c, fp: store.FingerprintOf(c)}
	}
	return out
}

// moduleCAs lists the CAs of a trust pool module whose certificates can be
// listed (the inline pool); a pool that only hands out an x509.CertPool
// (pki, storage, http, ...) cannot be, and its CAs are left out of the
// expiry reports.
func moduleCAs(m caddytls.CA) []poolCA {
	inline, ok := m.(*caddytls.InlineCAPool)
	if !ok {
		return nil
	}
	var certs []*x509.Certificate
	for _, b64 := range inline.TrustedCACerts {
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue // the module itself refused it at provision
		}
		if c, err := x509.ParseCertificate(der); err == nil {
			certs = append(certs, c)
		}
	}
	return poolCAsOf("inline", certs)
}

// configuredCerts lists the certificates this route's configuration names,
// as currently loaded (file reloads included).
func (h *Handler) configuredCerts() []configuredCert {
	if h.verifier == nil {
		return nil
	}
	ts := h.verifier.static.Load()
	if ts == nil {
		return nil
	}
	var out []configuredCert
	if ts.allow != nil {
		kinds := make(map[string]string, len(h.Allow)+len(h.AllowCA))
		for _, a := range h.Allow {
			kinds[a.Alias] = kindAllow
		}
		for _, a := range h.AllowCA {
			kinds[a.Alias] = kindAllowCA
		}
		for _, e := range ts.allow.Entries() {
			kind := kinds[e.Alias]
			if kind == "" {
				kind = kindAllowDir
			}
			out = append(out, configuredCert{api: h.API, alias: e.Alias, kind: kind, cert: e.Cert, fp: e.Fingerprint})
		}
	}
	for _, ca := range ts.poolCAs {
		out = append(out, configuredCert{api: h.API, alias: ca.name, kind: kindTrustPool, cert: ca.cert, fp: ca.fp})
	}
	return out
}

// configuredCerts lists every configured certificate of every route and
// every runtime store, each once, soonest to expire first.
func (a *App) configuredCerts() []configuredCert {
	type key struct {
		api, alias, kind string
		fp               store.Fingerprint
	}
	seen := map[key]bool{}
	var out []configuredCert
	add := func(c configuredCert) {
		k := key{c.api, c.alias, c.kind, c.fp}
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	for _, h := range a.routes() {
		for _, c := range h.configuredCerts() {
			add(c)
		}
	}
	if a.runtime != nil {
		for api, list := range a.runtime.Snapshot().APIs {
			for _, e := range list.Entries() {
				add(configuredCert{api: api, alias: e.Alias, kind: kindRuntime, cert: e.Cert, fp: e.Fingerprint})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if !x.cert.NotAfter.Equal(y.cert.NotAfter) {
			return x.cert.NotAfter.Before(y.cert.NotAfter)
		}
		if x.api != y.api {
			return x.api < y.api
		}
		if x.alias != y.alias {
			return x.alias < y.alias
		}
		return x.kind < y.kind
	})
	return out
}
