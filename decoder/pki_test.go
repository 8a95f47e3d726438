package decoder

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/require"
)

// testPKI is one hierarchy shared by the tests of this package.
type testPKI struct {
	root, inter, leaf, leafEC, other *testpki.Cert
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

// hasSpecials reports whether c's base64 contains '+' and '/' and ends in
// padding, so that every escaping rule is exercised.
func hasSpecials(c *testpki.Cert) bool {
	s := base64.StdEncoding.EncodeToString(c.DER())
	return strings.Contains(s, "+") && strings.Contains(s, "/") && strings.HasSuffix(s, "=")
}

func pki(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		root := testpki.NewRoot("Test Root CA", testpki.Organization("mtlsauth tests"))
		inter := root.NewIntermediate("Test Intermediate CA")
		var leaf *testpki.Cert
		for i := 0; i < 50; i++ {
			leaf = inter.NewLeaf("client1.example", testpki.Key(testpki.RSA2048),
				testpki.DNS("client1.example", "alt.client1.example"),
				testpki.URIs("spiffe://cluster.local/ns/prod/sa/frontend"),
				testpki.Emails("ops@client1.example"), testpki.IPs("192.0.2.10"))
			if hasSpecials(leaf) {
				break
			}
		}
		var leafEC *testpki.Cert
		for i := 0; i < 50; i++ {
			leafEC = inter.NewLeaf("ec-client.example", testpki.DNS("ec-client.example"))
			if hasSpecials(leafEC) {
				break
			}
		}
		other := testpki.NewSelfSigned("someone-else.example")
		pkiVal = &testPKI{root: root, inter: inter, leaf: leaf, leafEC: leafEC, other: other}
	})
	require.True(t, hasSpecials(pkiVal.leaf), "test leaf must contain + / and padding in its base64")
	return pkiVal
}

// requireCerts checks that got holds exactly want, in order.
func requireCerts(t *testing.T, want []*testpki.Cert, res Result) {
	t.Helper()
	require.Len(t, res.Certs, len(want), "number of certificates")
	for i := range want {
		require.True(t, bytes.Equal(want[i].DER(), res.Certs[i].Raw), "certificate %d differs", i+1)
	}
}

func mustNew(t testing.TB, o Options) *Decoder {
	t.Helper()
	d, err := New(o)
	require.NoError(t, err)
	return d
}
