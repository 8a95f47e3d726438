package decoder

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeXFCC(t *testing.T) {
	t.Parallel()
	p := pki(t)
	inj := ",By=" + edgeURI + ";Cert=" + envoyPercentEncode(p.leaf.PEM())
	certs := map[string]*x509.Certificate{
		"RSA leaf with SANs": p.leaf.Cert,
		"ECDSA leaf":         p.leafEC.Cert,
		"no SANs":            p.other.Cert,
		"specials in subject and SANs": issue(t, &x509.Certificate{
			Subject:         pkix.Name{CommonName: `a "b", \c; d=e`, ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidEmail, Value: "x@example.com"}}},
			ExtraExtensions: []pkix.Extension{rawSAN([]string{"a b", `q"uote`, `back\slash`, "x=y"}, []string{"urn:a;b,c", "spiffe://td/x y"})},
		}, p.inter, nil),
		"a SAN that would forge an element": issue(t, &x509.Certificate{
			Subject:         pkix.Name{CommonName: "mallory"},
			ExtraExtensions: []pkix.Extension{rawSAN([]string{"m.example" + inj}, []string{"spiffe://m/x" + inj})},
		}, p.inter, nil),
	}
	for name, c := range certs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			el, ok := EncodeXFCC(c)
			require.True(t, ok)
			assert.NotContains(t, el, "\n")
			els, err := ParseXFCC(el)
			require.NoError(t, err)
			require.Len(t, els, 1, "one element, whatever the SANs hold")
			assert.Equal(t, SubjectName(c), els[0].Subject, "the lexer reads back the subject as printed")
			for _, opts := range []Options{{Profile: "envoy_xfcc"}, {Header: XFCCHeader}, {}} {
				res, err := mustNew(t, opts).Decode([]string{el}, nil)
				require.NoError(t, err, "%+v", opts)
				requireCerts(t, []*testpki.Cert{{Cert: c}}, res)
				assert.Equal(t, ProfileEnvoyXFCC, res.Profile)
			}
		})
	}
	// A SAN with a control character cannot be written into a header.
	bad := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "x"},
		ExtraExtensions: []pkix.Extension{rawSAN([]string{"a\nb"}, nil)}}, p.inter, nil)
	el, ok := EncodeXFCC(bad)
	assert.False(t, ok)
	assert.Empty(t, el)
	// Envoy's layout: Hash, Cert, Subject, URI, DNS.
	el, _ = EncodeXFCC(p.leaf.Cert)
	assert.True(t, strings.HasPrefix(el, "Hash="+p.leaf.Fingerprint()+`;Cert="-----BEGIN%20CERTIFICATE-----%0A`), el[:100])
	assert.True(t, strings.HasSuffix(el, `";Subject="CN=client1.example";URI=spiffe://cluster.local/ns/prod/sa/frontend;DNS=client1.example;DNS=alt.client1.example`))
}
