package store

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
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
			r, err := pathverify.NewRequest(tt.leaf.Cert, tt.chain, now, pathverify.Limits{MaxChain: 8}, nil)
			require.NoError(t, err)
			e, path, err := list.Match(r, FingerprintOf(tt.leaf.Cert))
			require.NoError(t, err)
			if tt.want == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, tt.want, e.Alias)
			assert.Same(t, tt.leaf.Cert, path[0])
			assert.Same(t, e.Cert, path[len(path)-1], "the chain ends at the entry that admits the leaf")
		})
	}
}

// The deny list reaches the CA entry that would admit a leaf: a chain
// through a denied certificate admits nothing, and a denied CA entry
// gives way to another that admits the leaf without it.
func TestAllowListMatchDenied(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	leaf := inter.NewLeaf("leaf")
	list, err := NewAllowList([]*Entry{{Alias: "inter-ca", Cert: inter.Cert}, {Alias: "root-ca", Cert: root.Cert}})
	require.NoError(t, err)
	match := func(denied ...*testpki.Cert) (*Entry, error) {
		r, err := pathverify.NewRequest(leaf.Cert, []*x509.Certificate{inter.Cert}, time.Now(), pathverify.Limits{MaxChain: 8}, func(c *x509.Certificate) bool {
			for _, d := range denied {
				if d.Cert.Equal(c) {
					return true
				}
			}
			return false
		})
		require.NoError(t, err)
		e, _, err := list.Match(r, FingerprintOf(leaf.Cert))
		return e, err
	}
	e, err := match()
	require.NoError(t, err)
	assert.Equal(t, "inter-ca", e.Alias)

	_, err = match(inter)
	var de *pathverify.DeniedError
	require.ErrorAs(t, err, &de, "every chain to a CA entry holds the denied intermediate")
	assert.Same(t, inter.Cert, de.Cert)

	_, err = match(root)
	require.ErrorAs(t, err, &de, "every chain holds the root: the one to inter-ca ends at inter, but inter-ca's is the closest")
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
