package pathverify

import (
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestIntermediatesRemembered(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Intermediate")
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	now := time.Now()
	in := NewIntermediates()

	for _, name := range []string{"dave", "erin", "frank"} {
		leaf := inter.NewLeaf(name)
		chain, ok := in.Verify(pool, leaf.Cert, []*x509.Certificate{inter.Cert}, now)
		require.True(t, ok, name)
		require.Len(t, chain, 3, "leaf, intermediate, root")
		assert.Same(t, leaf.Cert, chain[0])
		assert.Same(t, root.Cert, chain[2])
	}
	require.Equal(t, 1, in.Len(), "one intermediate, verified once")
	e, _ := in.m.Peek(sha256.Sum256(inter.Cert.Raw))
	require.NotNil(t, e)
	assert.NotNil(t, e.anchor, "the fast path applies to an ordinary chain")
	assert.Equal(t, NotAfter(e.chain), e.expires)

	// A leaf from another CA that merely presents the known intermediate.
	mallory := testpki.NewRoot("Evil").NewLeaf("mallory")
	_, ok := in.Verify(pool, mallory.Cert, []*x509.Certificate{inter.Cert}, now)
	assert.False(t, ok)
	// A forged intermediate with the same name is not the remembered one.
	forged := testpki.NewRoot("Intermediate")
	_, ok = in.Verify(pool, forged.NewLeaf("x").Cert, []*x509.Certificate{forged.Cert}, now)
	assert.False(t, ok)
	// No issuer presented: the fast path does not apply.
	_, ok = in.Verify(pool, inter.NewLeaf("g").Cert, nil, now)
	assert.False(t, ok)
}

func TestIntermediatesBounded(t *testing.T) {
	root := testpki.NewRoot("Root")
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	in := NewIntermediates()
	for i := 0; i < maxIntermediates+5; i++ {
		inter := root.NewIntermediate("Intermediate")
		_, ok := in.Verify(pool, inter.NewLeaf("leaf").Cert, []*x509.Certificate{inter.Cert}, time.Now())
		require.True(t, ok)
	}
	assert.Equal(t, maxIntermediates, in.Len())
}

func TestNotAfter(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	root := testpki.NewRoot("Root", testpki.Validity(now.Add(-time.Hour), now.Add(3*time.Hour)))
	inter := root.NewIntermediate("Intermediate", testpki.Validity(now.Add(-time.Hour), now.Add(time.Hour)))
	leaf := inter.NewLeaf("leaf", testpki.Validity(now.Add(-time.Hour), now.Add(2*time.Hour)))
	assert.Equal(t, now.Add(time.Hour).UTC(), NotAfter([]*x509.Certificate{leaf.Cert, inter.Cert, root.Cert}).UTC())
	assert.Equal(t, now.Add(2*time.Hour).UTC(), NotAfter([]*x509.Certificate{leaf.Cert}).UTC())
}
