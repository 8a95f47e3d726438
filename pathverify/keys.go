package pathverify

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// Key limits for presented certificates. Where the load balancer forwards
// a chain it did not verify, the client picks every certificate, and so
// the size of every key a check might run with; a key that costs a lot, or
// that could never verify anything, is refused before any signature work.
const (
	// MaxRSABits is the largest RSA modulus accepted: the limit Go's
	// crypto/tls applies to the certificates of TLS peers. One signature
	// check with a 16384-bit key costs about 60 times one with a 2048-bit
	// key.
	MaxRSABits = 8192
	// MinRSABits is the smallest RSA modulus accepted: Go's crypto/rsa
	// refuses to verify with smaller keys.
	MinRSABits = 1024
)

// KeyError says which presented certificate carries a key the plugin
// never accepts, and why.
type KeyError struct {
	// Index is the certificate's position, 0 for the leaf.
	Index int
	// Problem names the key and the limit it breaks.
	Problem string
}

func (e *KeyError) Error() string {
	what := "the leaf certificate"
	if e.Index > 0 {
		what = fmt.Sprintf("chain certificate %d", e.Index+1)
	}
	return what + ": " + e.Problem
}

// CheckKeys refuses, before any signature is checked, a chain (leaf first)
// holding a certificate whose public key the plugin never accepts:
//
//   - RSA with a modulus over MaxRSABits or under MinRSABits;
//   - DSA (Go verifies no DSA signature);
//   - a key of an algorithm Go does not parse.
//
// ECDSA (the curves crypto/x509 parses) and Ed25519 keys pass. The error
// is a *KeyError.
func CheckKeys(certs []*x509.Certificate) error {
	for i, c := range certs {
		if p := keyProblem(c); p != "" {
			return &KeyError{Index: i, Problem: p}
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
