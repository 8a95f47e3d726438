// Package decoder turns the certificate header that a TLS-terminating load
// balancer forwards into X.509 certificates, leaf first.
//
// Every producer encodes the certificate differently (see
// shared/reference/header-formats.md): URL-encoded PEM with '+', '/' and '='
// escaped or literal, bare base64 DER, RFC 9440 byte sequences, PEM whose line
// breaks became spaces or tabs, base64 of a whole PEM inside PEM armor, Envoy's
// structured x-forwarded-client-cert, and several certificates in one value.
// A Profile knows one producer's header names and payload family; the "auto"
// profile recognises the family by its shape.
//
// The package has no Caddy imports and no init(); the handler builds a
// Decoder once at provision time and calls Decode per request.
package decoder

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// Defaults for Options.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxChain       = 8
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
	opts    Options
	profile *profile
}

// Header is the certificate header this decoder reads.
func (d *Decoder) Header() string { return d.opts.Header }

// ChainHeader is the header holding intermediates, or "".
func (d *Decoder) ChainHeader() string { return d.opts.ChainHeader }

// Profile is the configured profile name.
func (d *Decoder) Profile() string { return d.opts.Profile }

// Options returns the effective options, defaults filled in.
func (d *Decoder) Options() Options { return d.opts }
