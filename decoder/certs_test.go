package decoder

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// issue makes a certificate from tmpl, signed by issuer (self-signed when
// nil). The subject key is pub, or a new P-256 key when pub is nil; the
// decoder never checks it, so pub may be any public key x509 can encode.
func issue(t testing.TB, tmpl *x509.Certificate, issuer *testpki.Cert, pub any) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	if pub == nil {
		pub = key.Public()
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(42)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	parent, signer := tmpl, any(key)
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// rawSAN is a subjectAltName extension holding exactly these DNS names and
// URIs, byte for byte (x509.CreateCertificate would parse and re-serialize
// URIs, and refuses nothing an attacker's CA would sign).
func rawSAN(dns, uris []string) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, d := range dns {
			b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
		}
		for _, u := range uris {
			b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
		}
	})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: b.BytesOrPanic()}
}

// withSPKI returns der with its subjectPublicKeyInfo replaced by spki (the
// signature no longer matches; the decoder does not check signatures).
func withSPKI(t testing.TB, der, spki []byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var cert, tbs, sigAlg, sig cryptobyte.String
	require.True(t, in.ReadASN1(&cert, cbasn1.SEQUENCE))
	require.True(t, cert.ReadASN1(&tbs, cbasn1.SEQUENCE))
	require.True(t, cert.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE))
	require.True(t, cert.ReadASN1Element(&sig, cbasn1.BIT_STRING))
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for i := 0; !tbs.Empty(); i++ {
				var el cryptobyte.String
				var tag cbasn1.Tag
				require.True(t, tbs.ReadAnyASN1Element(&el, &tag))
				// version, serial, signature, issuer, validity, subject, SPKI
				if i == 6 {
					b.AddBytes(spki)
					continue
				}
				b.AddBytes(el)
			}
		})
		b.AddBytes(sigAlg)
		b.AddBytes(sig)
	})
	return b.BytesOrPanic()
}

// spkiOf is a subjectPublicKeyInfo of algorithm oid with the given
// parameters (nil: none) and key bytes.
func spkiOf(oid asn1.ObjectIdentifier, params []byte, key []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if params != nil {
				b.AddBytes(params)
			}
		})
		b.AddASN1BitString(key)
	})
	return b.BytesOrPanic()
}
