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

// TestAllowListWithWithout: deriving lists leaves the old ones as they
// were, keeps one alias per certificate, and keeps the CA pool in step.
func TestAllowListWithWithout(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	leaf := inter.NewLeaf("leaf")
	entry := func(alias string, c *testpki.Cert) *Entry {
		return &Entry{Alias: alias, Cert: c.Cert, Fingerprint: FingerprintOf(c.Cert)}
	}
	now := time.Now()
	fpLeaf := FingerprintOf(leaf.Cert)

	var empty *AllowList
	assert.Zero(t, empty.Len())
	assert.Nil(t, empty.Lookup(fpLeaf))
	assert.Nil(t, empty.without("x"))

	one, ok := empty.with(entry("b-leaf", leaf))
	require.True(t, ok)
	two, ok := one.with(entry("a-ca", inter))
	require.True(t, ok)
	assert.Equal(t, 1, one.Len(), "the older list is unchanged")
	assert.Nil(t, one.Match(inter.NewLeaf("other").Cert, FingerprintOf(inter.NewLeaf("other").Cert), nil, now), "no CA in the older list")
	other := inter.NewLeaf("other")
	require.NotNil(t, two.Match(other.Cert, FingerprintOf(other.Cert), nil, now))
	assert.Equal(t, "a-ca", two.Match(other.Cert, FingerprintOf(other.Cert), nil, now).Alias)
	assert.Equal(t, []string{"a-ca", "b-leaf"}, []string{two.Entries()[0].Alias, two.Entries()[1].Alias}, "a derived list lists by alias")

	same, ok := two.with(entry("c-again", leaf))
	assert.False(t, ok, "a certificate has one alias")
	assert.Same(t, two, same)

	// Replacing an alias's entry (a tier change) keeps one entry.
	gold := entry("b-leaf", leaf)
	gold.Tier = "gold"
	three, ok := two.with(gold)
	require.True(t, ok)
	assert.Equal(t, 2, three.Len())
	assert.Equal(t, "gold", three.Lookup(fpLeaf).Tier)
	assert.Empty(t, two.Lookup(fpLeaf).Tier)

	noCA := three.without("a-ca")
	assert.Nil(t, noCA.Match(other.Cert, FingerprintOf(other.Cert), nil, now), "the CA is gone from the pool")
	assert.NotNil(t, three.Match(other.Cert, FingerprintOf(other.Cert), nil, now))
	assert.Same(t, noCA, noCA.without("missing"))
	assert.Nil(t, noCA.without("b-leaf"), "the last entry leaves no list")
	assert.Nil(t, noCA.Alias("a-ca"))
	assert.Equal(t, gold, noCA.Alias("b-leaf"))
}
