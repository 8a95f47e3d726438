package decoder

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// Key limits for presented certificates. A client that gets its chain
// verified without a proxy checking it first (ALB passthrough, Envoy
// without a validation context, Traefik's list of what the client sent)
// picks the keys every signature check runs with, so a key that costs a
// lot, or that could never verify anything, is refused before any
// signature work.
const (
	// MaxRSABits is the largest RSA modulus accepted: the limit Go's
	// crypto/tls applies to the certificates of TLS peers. One signature
	// check with a 16384-bit key costs about 60 times one with a
	// 2048-bit key.
	MaxRSABits = 8192
	// MinRSABits is the smallest RSA modulus accepted: Go's crypto/rsa
	// refuses smaller keys, and so does crypto/tls for TLS peers.
	MinRSABits = 1024
)

// CheckKeys refuses certificates whose public key the plugin never
// accepts, before any signature is checked:
//
//   - RSA with a modulus over MaxRSABits or under MinRSABits;
//   - DSA (Go verifies no DSA signature, crypto/tls offers none);
//   - a key Go could not parse (an algorithm it does not know).
//
// ECDSA keys (on P-224, P-256, P-384 or P-521, the curves x509 parses) and
// Ed25519 keys pass. certs is the presented chain, leaf first; the
// error is an *Error of KindMalformed naming the position and the limit.
// Decode applies it to every header it decodes; the handler applies it to
// the certificates of a TLS connection.
func CheckKeys(certs []*x509.Certificate) error {
	n := len(certs)
	for i, c := range certs {
		if msg := keyProblem(c); msg != "" {
			return &Error{Kind: KindMalformed, Msg: fmt.Sprintf("%s: %s", certN(i, n), msg)}
		}
	}
	return nil
}

// keyProblem says what is wrong with c's public key, or "".
func keyProblem(c *x509.Certificate) string {
	if c.PublicKeyAlgorithm == x509.DSA {
		return "DSA key: DSA certificates are not accepted"
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N == nil {
			return "RSA key without a modulus"
		}
		switch bits := k.N.BitLen(); {
		case bits > MaxRSABits:
			return fmt.Sprintf("RSA key of %d bits, over the limit of %d bits", bits, MaxRSABits)
		case bits < MinRSABits:
			return fmt.Sprintf("RSA key of %d bits, under the minimum of %d bits", bits, MinRSABits)
		}
	case nil:
		return "public key of an unsupported algorithm (accepted: RSA, ECDSA, Ed25519)"
	}
	return ""
}
