package decoder

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// rsaOfBits is an RSA public key with a modulus of exactly bits bits. It
// is not a real key (nobody holds its private half); certificates only
// carry it.
func rsaOfBits(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func TestCheckKeys(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leafOf := func(pub any) *x509.Certificate {
		return issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "k"}}, p.inter, pub)
	}
	caOf := func(pub any) *x509.Certificate {
		return issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true}, p.root, pub)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	// DSA and an algorithm Go does not know, by hand.
	var params cryptobyte.Builder
	params.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, v := range []int64{23, 11, 4} { // p, q, g
			b.AddASN1Int64(v)
		}
	})
	var y cryptobyte.Builder
	y.AddASN1Int64(8)
	dsaDER := withSPKI(t, leafOf(nil).Raw, spkiOf(asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, params.BytesOrPanic(), y.BytesOrPanic()))
	dsaCert, err := x509.ParseCertificate(dsaDER)
	require.NoError(t, err)
	require.Equal(t, x509.DSA, dsaCert.PublicKeyAlgorithm)
	ed448DER := withSPKI(t, leafOf(nil).Raw, spkiOf(asn1.ObjectIdentifier{1, 3, 101, 113}, nil, make([]byte, 57)))
	ed448Cert, err := x509.ParseCertificate(ed448DER)
	require.NoError(t, err)
	require.Nil(t, ed448Cert.PublicKey)

	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  string
	}{
		{"ECDSA", []*x509.Certificate{p.leafEC.Cert}, ""},
		{"RSA 2048", []*x509.Certificate{p.leaf.Cert, p.inter.Cert}, ""},
		{"Ed25519", []*x509.Certificate{leafOf(ed)}, ""},
		{"RSA at the limits", []*x509.Certificate{leafOf(rsaOfBits(MinRSABits)), caOf(rsaOfBits(MaxRSABits))}, ""},
		{"RSA over the limit, leaf", []*x509.Certificate{leafOf(rsaOfBits(MaxRSABits + 1))}, "certificate: RSA key of 8193 bits, over the limit of 8192 bits"},
		{"RSA 15360 intermediate", []*x509.Certificate{p.leafEC.Cert, caOf(rsaOfBits(15360))}, "certificate 2 of 2: RSA key of 15360 bits, over the limit of 8192 bits"},
		{"RSA under the minimum", []*x509.Certificate{leafOf(rsaOfBits(512))}, "RSA key of 512 bits, under the minimum of 1024 bits"},
		{"DSA", []*x509.Certificate{dsaCert}, "DSA key: DSA certificates are not accepted"},
		{"unknown algorithm", []*x509.Certificate{p.leaf.Cert, ed448Cert}, "certificate 2 of 2: public key of an unsupported algorithm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckKeys(tc.chain)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, KindMalformed, KindOf(err))
			assert.Contains(t, err.Error(), tc.want)

			// Decode refuses the same chain, in any header.
			var certs []*testpki.Cert
			for _, c := range tc.chain {
				certs = append(certs, &testpki.Cert{Cert: c})
			}
			if len(certs) > 1 && !certs[1].Cert.IsCA {
				return // Decode stops earlier, at the end-entity rule
			}
			_, err = mustNew(t, Options{Profile: "traefik"}).Decode([]string{traefikCert(certs...)}, nil)
			require.Error(t, err)
			assert.Equal(t, KindMalformed, KindOf(err))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
