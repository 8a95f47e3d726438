package mtlsauth

import (
	"encoding/base64"
	"strings"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
)

// The identity handed on to upstreams, in the forms they read (for
// `reverse_proxy { header_up ... }`): RFC 9440 Client-Cert and
// Client-Cert-Chain, one Envoy x-forwarded-client-cert element, the RFC
// 8705 certificate thumbprint (x5t#S256, for certificate-bound tokens) and
// the SPIFFE ID. They are made from the verified result only, on first use
// (most routes read none of them), once per request: the identity the
// verification cache shares keeps none of them.

// upstreamForms are the forwarded forms of one identity.
type upstreamForms struct {
	rfc9440Cert  string
	rfc9440Chain string
	xfcc         string
	x5tS256      string
	spiffeID     string
}

// upstream makes the forwarded forms, once per request: they are made from
// the leaf's DER (the request's own, or for a cached identity this request's
// input, checked against the fingerprint) and the verified intermediates the
// identity keeps. All empty when the leaf cannot be had.
func (o *outcome) upstream() *upstreamForms {
	if o.up != nil {
		return o.up
	}
	f := &upstreamForms{}
	o.up = f
	der := o.leafDER()
	if der == nil {
		return f
	}
	f.rfc9440Cert = rfc9440Item(der)
	// The intermediates of the verified chain: neither the leaf nor the
	// root (RFC 9440 §2.3 leaves the trust anchor out).
	if len(o.id.inters) > 0 {
		items := make([]string, 0, len(o.id.inters))
		for _, c := range o.id.inters {
			items = append(items, rfc9440Item(c))
		}
		f.rfc9440Chain = strings.Join(items, ", ")
	}
	// x5t#S256 is the SHA-256 of the DER: the fingerprint, which the DER
	// was checked against.
	f.x5tS256 = base64.RawURLEncoding.EncodeToString(o.id.fp[:])
	leaf := o.leaf()
	if leaf == nil {
		return f
	}
	f.xfcc, _ = decoder.EncodeXFCC(leaf)
	for _, u := range leaf.URIs {
		if !strings.EqualFold(u.Scheme, "spiffe") {
			continue
		}
		if f.spiffeID != "" { // more than one: not an X509-SVID
			f.spiffeID = ""
			break
		}
		f.spiffeID = u.String()
	}
	return f
}

// rfc9440Item is an RFC 8941 byte sequence: ':' base64 ':'.
func rfc9440Item(der []byte) string {
	return ":" + base64.StdEncoding.EncodeToString(der) + ":"
}
