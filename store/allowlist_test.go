package store

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
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
		{Alias: "inter-ca", Cert: inter.Cert, CA: true},
		{Alias: "root-ca", Cert: root.Cert, CA: true},
	})
	require.NoError(t, err)
	now := time.Now()
	tests := []struct {
		name  string
		leaf  *testpki.Cert
		chain []*x509.Certificate
		want  string
		path  []*x509.Certificate // the chain the admission rests on
	}{
		{name: "pin wins over its CA", leaf: pinned, chain: []*x509.Certificate{inter.Cert}, want: "pinned", path: []*x509.Certificate{pinned.Cert}},
		{name: "closest CA wins", leaf: viaInter, chain: []*x509.Certificate{inter.Cert}, want: "inter-ca", path: []*x509.Certificate{viaInter.Cert, inter.Cert}},
		{name: "closest CA without the intermediate sent is still found (it is listed)", leaf: viaInter, want: "inter-ca", path: []*x509.Certificate{viaInter.Cert, inter.Cert}},
		{name: "root CA", leaf: direct, want: "root-ca", path: []*x509.Certificate{direct.Cert, root.Cert}},
		{name: "same issuer name, other key", leaf: impostor, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, path := matchOf(t, list, tt.leaf.Cert, tt.chain, now)
			if tt.want == "" {
				assert.Nil(t, e)
				assert.Nil(t, path)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, tt.want, e.Alias)
			assert.Equal(t, tt.path, path)
		})
	}
}

// TestAllowListPinnedCAAdmitsOnlyItself: a pinned certificate that says
// CA:TRUE (as `openssl req -x509` makes them) admits nothing it signed;
// only an entry made a CA explicitly does.
func TestAllowListPinnedCAAdmitsOnlyItself(t *testing.T) {
	t.Parallel()
	selfSigned := testpki.NewRoot("partner client") // CA:TRUE, keyCertSign
	minted := selfSigned.NewLeaf("identity of the key holder's choosing")
	now := time.Now()

	pinned, err := NewAllowList([]*Entry{{Alias: "partner", Cert: selfSigned.Cert}})
	require.NoError(t, err)
	e, _ := matchOf(t, pinned, selfSigned.Cert, nil, now)
	require.NotNil(t, e, "the pinned certificate itself")
	assert.Equal(t, "partner", e.Alias)
	e, _ = matchOf(t, pinned, minted.Cert, []*x509.Certificate{selfSigned.Cert}, now)
	assert.Nil(t, e, "a leaf signed by a pinned certificate is not admitted")

	ca, err := NewEntry("partner", selfSigned.Cert, true, "test")
	require.NoError(t, err)
	asCA, err := NewAllowList([]*Entry{ca})
	require.NoError(t, err)
	e, _ = matchOf(t, asCA, minted.Cert, nil, now)
	require.NotNil(t, e, "the same certificate as a CA entry admits what it issued")
	assert.Equal(t, "partner", e.Alias)
}

func TestNewEntryCA(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	leaf := root.NewLeaf("leaf")
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
		want string // "" when it may be a CA entry
	}{
		{name: "CA with keyCertSign", cert: root.Cert},
		{name: "CA without key usage", cert: mkCA(t, true, 0)},
		{name: "leaf", cert: leaf.Cert, want: "CA:TRUE"},
		{name: "self-signed without basic constraints", cert: testpki.NewSelfSigned("me").Cert, want: "CA:TRUE"},
		{name: "CA:TRUE without keyCertSign", cert: mkCA(t, true, x509.KeyUsageDigitalSignature), want: "keyCertSign"},
		{name: "CA:FALSE with keyCertSign", cert: mkCA(t, false, x509.KeyUsageCertSign), want: "CA:TRUE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEntry("a", tt.cert, true, "test")
			if tt.want == "" {
				require.NoError(t, err)
				assert.True(t, e.IsCA())
				assert.Equal(t, FingerprintOf(tt.cert), e.Fingerprint)
				return
			}
			require.ErrorIs(t, err, ErrNotCA)
			assert.ErrorContains(t, err, tt.want)
			// Pinned, any certificate is fine and never a CA entry.
			e, err = NewEntry("a", tt.cert, false, "test")
			require.NoError(t, err)
			assert.False(t, e.IsCA())
		})
	}
}

// mkCA makes a self-signed certificate with the given CA flag and key
// usage (0: no key usage extension).
func mkCA(t *testing.T, isCA bool, ku x509.KeyUsage) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: isCA, KeyUsage: ku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// matchOf is l.Match for leaf presented with chain at now, with the
// default limits and nothing denied; a Match error fails the test.
func matchOf(t testing.TB, l *AllowList, leaf *x509.Certificate, chain []*x509.Certificate, now time.Time) (*Entry, []*x509.Certificate) {
	t.Helper()
	r, err := pathverify.NewRequest(leaf, chain, now, pathverify.Limits{MaxChain: 8}, nil)
	require.NoError(t, err)
	e, path, err := l.Match(r, FingerprintOf(leaf))
	require.NoError(t, err)
	return e, path
}

// The deny list reaches the CA entry that would admit a leaf, and the CA
// entries above it: a chain through a denied certificate admits nothing.
func TestAllowListMatchDenied(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	leaf := inter.NewLeaf("leaf")
	list, err := NewAllowList([]*Entry{{Alias: "inter-ca", Cert: inter.Cert, CA: true}, {Alias: "root-ca", Cert: root.Cert, CA: true}})
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
	require.ErrorAs(t, err, &de, "inter-ca is under root-ca: denying the root reaches it")
	assert.Same(t, root.Cert, de.Cert)
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
	now := time.Now()
	entry := func(alias string, c *testpki.Cert) *Entry {
		return &Entry{Alias: alias, Cert: c.Cert, Fingerprint: FingerprintOf(c.Cert), CA: strings.HasSuffix(alias, "-ca")}
	}
	match := func(l *AllowList, leaf *testpki.Cert) *Entry {
		e, _ := matchOf(t, l, leaf.Cert, nil, now)
		return e
	}
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
	other := inter.NewLeaf("other")
	assert.Nil(t, match(one, other), "no CA in the older list")
	require.NotNil(t, match(two, other))
	assert.Equal(t, "a-ca", match(two, other).Alias)
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
	assert.Nil(t, match(noCA, other), "the CA is gone from the pool")
	assert.NotNil(t, match(three, other))
	assert.Same(t, noCA, noCA.without("missing"))
	assert.Nil(t, noCA.without("b-leaf"), "the last entry leaves no list")
	assert.Nil(t, noCA.Alias("a-ca"))
	assert.Equal(t, gold, noCA.Alias("b-leaf"))
}
