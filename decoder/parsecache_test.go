package decoder

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestChainCertificatesParsedOnce(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	d, err := New(Options{Profile: ProfileDERBase64, Header: "X-Client-Cert", ChainHeader: "X-Client-Chain"})
	require.NoError(t, err)
	chain := []string{base64.StdEncoding.EncodeToString(inter.DER())}
	var first *Result
	for i := 0; i < 3; i++ {
		leaf := inter.NewLeaf("client")
		res, err := d.Decode([]string{base64.StdEncoding.EncodeToString(leaf.DER())}, chain)
		require.NoError(t, err)
		require.Len(t, res.Certs, 2)
		assert.Equal(t, leaf.DER(), res.Certs[0].Raw, "leaves are always parsed afresh")
		assert.Equal(t, inter.DER(), res.Certs[1].Raw)
		if first == nil {
			first = &res
			continue
		}
		assert.Same(t, first.Certs[1], res.Certs[1], "the intermediate is parsed once")
	}
	// Bounded.
	for i := 0; i < maxParsedChain+50; i++ {
		_, err := d.chainCache.parse(root.NewIntermediate("i").DER())
		require.NoError(t, err)
	}
	assert.Equal(t, maxParsedChain, d.chainCache.m.Len())
}
