package mtlsauth

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
)

// The identity handed on to upstreams, in the forms they read (for
// `reverse_proxy { header_up ... }`): RFC 9440 Client-Cert and
// Client-Cert-Chain, one Envoy x-forwarded-client-cert element, the RFC
// 8705 certificate thumbprint (x5t#S256, for certificate-bound tokens) and
// the SPIFFE ID. They are made from the verified result only, on first use
// (most routes read none of them), and kept with the identity, which the
// verification cache shares between requests presenting the same
// certificate.

// upstreamForms are the forwarded forms of one identity.
type upstreamForms struct {
	rfc9440Cert  string
	rfc9440Chain string
	xfcc         string
	x5tS256      string
	spiffeID     string
}

// upstream makes the forwarded forms, once.
func (id *identity) upstream() *upstreamForms {
	id.upOnce.Do(func() {
		leaf := id.leaf
		f := &id.up
		f.rfc9440Cert = rfc9440Item(leaf.Raw)
		// The intermediates of the verified chain: neither the leaf nor the
		// root (RFC 9440 §2.3 leaves the trust anchor out).
		if n := len(id.poolChain); n > 2 {
			items := make([]string, 0, n-2)
			for _, c := range id.poolChain[1 : n-1] {
				items = append(items, rfc9440Item(c.Raw))
			}
			f.rfc9440Chain = strings.Join(items, ", ")
		}
		f.xfcc, _ = decoder.EncodeXFCC(leaf)
		sum := sha256.Sum256(leaf.Raw)
		f.x5tS256 = base64.RawURLEncoding.EncodeToString(sum[:])
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
	})
	return &id.up
}

// rfc9440Item is an RFC 8941 byte sequence: ':' base64 ':'.
func rfc9440Item(der []byte) string {
	return ":" + base64.StdEncoding.EncodeToString(der) + ":"
}
