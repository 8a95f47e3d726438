// Package decoder turns the certificate header that a TLS-terminating load
// balancer forwards into X.509 certificates, leaf first.
//
// Every producer encodes the certificate differently (the captured values
// in testdata/headers show each one): URL-encoded PEM with '+', '/' and '='
// escaped or literal, bare base64 DER, RFC 9440 byte sequences, PEM whose line
// breaks became spaces or tabs, base64 of a whole PEM inside PEM armor, Envoy's
// structured x-forwarded-client-cert, and several certificates in one value.
// A Profile knows one producer's header names and payload family; the "auto"
// profile recognises the family by its shape.
//
// # Profiles
//
//	profile     default header(s)                                    families accepted
//	auto        Client-Cert                                          all, by shape (below)
//	aws_alb     X-Amzn-Mtls-Clientcert                               U2/U1 URL-encoded PEM (chain), P
//	nginx       Ssl-Client-Cert                                      U1 ($ssl_client_escaped_cert), P ($ssl_client_cert)
//	envoy_xfcc  X-Forwarded-Client-Cert (a list header)              S, with U1 Cert/Chain inside
//	traefik     X-Forwarded-Tls-Client-Cert                          B comma list (escaped pieces of <= 2.9.3 too)
//	haproxy     X-Ssl-Client-Cert, chain X-Ssl-Client-Cert-Chain     B, quoted or not; chain one DER blob
//	cloudflare  Cf-Client-Cert-Der-Base64                            B, R (transform rules)
//	gcp         X-Client-Cert-Leaf, chain X-Client-Cert-Chain        R
//	azure       X-Arr-Clientcert                                     B (App Service), P and U (Application Gateway)
//	apache      Ssl-Client-Cert                                      P (CR/LF as spaces), U (escape expr)
//	wso2        X-Wso2-Client-Certificate                            D, P, U, B
//	rfc9440     Client-Cert, chain Client-Cert-Chain                 R
//	pem         Client-Cert                                          P
//	der_base64  Client-Cert                                          B
//
// U1/U2 URL-encoded PEM with '+' '/' '=' escaped/literal, P mangled or plain
// PEM, B base64 DER, R RFC 9440 structured fields (parsed by
// github.com/dunglas/httpsfv), S Envoy XFCC, D base64 of a PEM text. Every
// profile removes one extra level of base64-of-PEM. A value of a family the
// profile does not accept fails with a message naming the profile that
// would decode it.
//
// # One certificate means one
//
// Several certificates are accepted in one value only where the producer
// sends a chain (aws_alb, traefik, the generic auto, pem and der_base64,
// chain headers, XFCC Chain). The others (nginx, haproxy, cloudflare, gcp,
// azure, apache, wso2, rfc9440, XFCC Cert) send exactly one certificate in
// the certificate header, so a second one there is malformed; an RFC 9440
// value in a certificate header is an Item, never a List. In every value
// each certificate after the first must be a CA certificate ("end-entity
// certificate at position N"): a proxy that merged a client-sent value with
// its own never makes another client's certificate an intermediate. Keys
// are checked by CheckKeys (RSA 1024 to 8192 bits, no DSA).
//
// # x-forwarded-client-cert
//
// The element is chosen by position (Options.XFCCElement, default the last)
// or by the proxies after the client's hop (Options.XFCCProxies, for
// Istio's gateway and sidecar); at most Options.MaxXFCCElements are read.
// Every element that carries a certificate must match it (Hash, Subject,
// URI, DNS), else the header is malformed: Envoy writes SANs unquoted, and a
// SAN could otherwise forge an element (xfccdecode.go).
//
// # The auto profile
//
// auto tells the families apart by shape and reports in Result.Profile the
// profile that stands for the family it found:
//
//	XFCC keys (By=, Hash=, Cert=, Chain=, Subject=, URI=, DNS=) at the start  envoy_xfcc
//	":...:" or "(...)" (RFC 9440 byte sequence, or list in a chain)         rfc9440
//	'%' and armor after unescaping, '+' '/' '=' all escaped (U1)            nginx
//	'%' and armor after unescaping, a literal '+' '/' or '=' (U2)           aws_alb
//	"-----BEGIN" (plain or mangled PEM)                                     pem
//	anything else: base64 DER, quoted, comma list, DER blob, escaped pieces der_base64
//	base64 that decodes to "-----BEGIN" (double encoding)                   wso2
//
// The certificate header of auto is a singleton unless Options.Header is
// X-Forwarded-Client-Cert, which is a list header.
//
// # Tolerances
//
// '+' is never a space. '=' may be literal or %3D; padding is optional. One
// pair of enclosing double quotes is removed (HAProxy %{+Q}). Whitespace
// inside base64 is ignored, as are literal \r, \n and [\r], [\n] (base64
// never contains a backslash or '['), and anything after the last END
// marker; RFC 9440 values are parsed by the spec, missing padding being the
// one leniency. A chain header that starts with the leaf again does not
// repeat it. Sentinels meaning "no certificate": empty, `""`, "(null)",
// "NONE", "::". Traefik's X-Forwarded-Tls-Client-Cert-Info, which holds no
// certificate, is recognised and named in the error.
//
// # Errors
//
// Every failure is an *Error whose message names what was wrong and where
// ("certificate 2 of 3: base64 at offset 120: illegal character"), never the
// header text or certificate bytes; x509 parse errors are cut at their first
// quote for the same reason.
//
// The package has no Caddy imports and no init(); the handler builds a
// Decoder once at provision time and calls Decode per request.
package decoder

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// Defaults for Options.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxChain       = 8
	// DefaultMaxXFCCElements caps the elements of an x-forwarded-client-cert
	// value (one per proxy hop); real ones have one to three.
	DefaultMaxXFCCElements = 16
	// DefaultHeader is the header read when neither the configuration nor
	// the profile names one (RFC 9440).
	DefaultHeader = "Client-Cert"
)

// ErrAbsent means the request carries no certificate: the header is absent,
// empty, or holds a producer's "no certificate" sentinel such as "(null)".
// It is not a decoding failure.
var ErrAbsent = errors.New("no client certificate")

// Kind classifies a decoding failure; the handler maps it to a reason code.
type Kind int

const (
	// KindMalformed: the value could not be decoded into certificates.
	KindMalformed Kind = iota + 1
	// KindTooLarge: the value is over MaxHeaderBytes, or the chain over MaxChain.
	KindTooLarge
	// KindDuplicate: a singleton certificate header appeared more than once.
	KindDuplicate
	// KindUntrustedHop: the selected XFCC element was not written by the
	// proxy named in XFCCBy.
	KindUntrustedHop
)

func (k Kind) String() string {
	switch k {
	case KindMalformed:
		return "malformed"
	case KindTooLarge:
		return "too_large"
	case KindDuplicate:
		return "duplicate_header"
	case KindUntrustedHop:
		return "untrusted_hop"
	}
	return "unknown"
}

// Error is a decoding failure. Its message says what was wrong and where
// (offsets, lengths, which certificate), never the certificate material.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Kind.String() + ": " + e.Msg }

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err, or 0 when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Options configure a Decoder. Zero values mean the defaults.
type Options struct {
	// Profile names the producer: auto (default), aws_alb, nginx,
	// envoy_xfcc, traefik, haproxy, cloudflare, gcp, azure, apache, wso2,
	// rfc9440, pem, der_base64.
	Profile string
	// Header overrides the profile's certificate header.
	Header string
	// ChainHeader overrides the profile's chain header (intermediates).
	ChainHeader string
	// MaxHeaderBytes caps the total size of the certificate and chain
	// header values. Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxChain caps the number of certificates, leaf included.
	// Default DefaultMaxChain.
	MaxChain int
	// XFCCElement picks the x-forwarded-client-cert element: 1 is the first,
	// 2 the second...; -1 is the last (the default: the hop nearest to us),
	// -2 the one before it. 0 means the default.
	XFCCElement int
	// XFCCBy, when set, requires the selected XFCC element to carry a By
	// key equal to it (the identity of the proxy we trust).
	XFCCBy string
	// XFCCProxies selects the XFCC element by the proxies after the
	// client's hop, instead of by position: starting from the last
	// element, step back while every URI of the element is one of these
	// (the URI of an element is the identity of the peer of the hop that
	// wrote it: in Istio the sidecar's element has the gateway's SPIFFE
	// ID). The element reached is the client's and must carry a Cert. An
	// element with any other URI is never stepped over. Excludes
	// XFCCElement.
	XFCCProxies []string
	// MaxXFCCElements caps the number of XFCC elements; more is
	// KindTooLarge. Default DefaultMaxXFCCElements.
	MaxXFCCElements int
}

// Result is what a successful Decode found.
type Result struct {
	// Certs holds the leaf first, then any intermediates in the order they
	// were sent. Never empty when err is nil.
	Certs []*x509.Certificate
	// Profile is the profile that decoded the value; for "auto" it is the
	// family that was detected (e.g. "aws_alb", "der_base64", "rfc9440").
	Profile string
}

// Decoder decodes one configured profile. It is immutable and safe for
// concurrent use.
type Decoder struct {
	opts       Options
	profile    *profile
	chainCache *parsedCache
	// oneWhy, for a profile whose producer sends one certificate, says so
	// in error messages (made once here, not per request).
	oneWhy string
}

// Header is the certificate header this decoder reads.
func (d *Decoder) Header() string { return d.opts.Header }

// ChainHeader is the header holding intermediates, or "".
func (d *Decoder) ChainHeader() string { return d.opts.ChainHeader }

// Profile is the configured profile name.
func (d *Decoder) Profile() string { return d.opts.Profile }

// Options returns the effective options, defaults filled in.
func (d *Decoder) Options() Options {
	o := d.opts
	o.XFCCProxies = slices.Clone(o.XFCCProxies)
	return o
}
