package store

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestAllowListMatch(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	viaInter := inter.NewLeaf("via-inter")
	direct := root.NewLeaf("direct")
	pinned := inter.NewLeaf("pinned")
	impostorCA := testpki.NewRoot("inter") // same name as inter, other key
	impostor := impostorCA.NewLeaf("impostor")

	list, err := NewAllowList([]*Entry{
		{Alias: "pinned", Cert: pinned.Cert},
		{Alias: "inter-ca", Cert: inter.Cert},
		{Alias: "root-ca", Cert: root.Cert},
	})
	require.NoError(t, err)
	now := time.Now()
	tests := []struct {
		name  string
		leaf  *testpki.Cert
		chain []*x509.Certificate
		want  string
	}{
		{name: "pin wins over its CA", leaf: pinned, chain: []*x509.Certificate{inter.Cert}, want: "pinned"},
		{name: "closest CA wins", leaf: viaInter, chain: []*x509.Certificate{inter.Cert}, want: "inter-ca"},
		{name: "closest CA without the intermediate sent is still found (it is listed)", leaf: viaInter, want: "inter-ca"},
		{name: "root CA", leaf: direct, want: "root-ca"},
		{name: "same issuer name, other key", leaf: impostor, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := list.Match(tt.leaf.Cert, FingerprintOf(tt.leaf.Cert), tt.chain, now)
			if tt.want == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, tt.want, e.Alias)
		})
	}
}

func TestAllowListErrors(t *testing.T) {
	t.Parallel()
	c := testpki.NewRoot("r").NewLeaf("a")
	_, err := NewAllowList([]*Entry{{Alias: "a", Cert: c.Cert}, {Alias: "a", Cert: testpki.NewRoot("r").Cert}})
	assert.ErrorContains(t, err, "alias 'a' is used twice")
	_, err = NewAllowList([]*Entry{{Alias: "a", Cert: c.Cert}, {Alias: "b", Cert: c.Cert}})
	assert.ErrorContains(t, err, "already allowed as 'a'")
	_, err = NewAllowList([]*Entry{{Cert: c.Cert}})
	assert.ErrorContains(t, err, "no alias")
}
