package mtlsauth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
)

// BenchmarkForgedChain measures the worst chain a client holding no key of
// the PKI can send within the limits (max_chain 8), against a normal new
// certificate (a new leaf under a known intermediate), through the whole
// handler with the result cache off. The worst chain (testpki.ForgedChain)
// is a forged leaf naming the real intermediate, the real intermediate,
// as many forged "intermediates" under the root as a request may fail
// signature checks on, and certificates no path reaches; every made-up key
// is an 8192-bit RSA key (the largest accepted). Each request's forged
// certificates are new (4,200 rotating requests outrun every cache), so
// none of its checks is remembered. Run with
//
//	go test -run '^$' -bench ForgedChain -count 5 .
//
// and compare worst with normal: the target is at most 5x. worst_64k is
// the same chain with every made-up certificate padded so that the two
// headers together near max_header_bytes; normal_64k is a new certificate
// padded as much, for what decoding that much costs whatever it holds.
func BenchmarkForgedChain(b *testing.B) {
	limits := pathverify.Limits{MaxChain: 8}
	forged := limits.MaxFailedChecks()
	for _, kt := range []struct {
		name string
		key  testpki.KeyType
	}{{"ecdsa_p256", testpki.ECDSAP256}, {"rsa2048", testpki.RSA2048}} {
		h, root, _ := benchHandler(b, -1, kt.key)
		inter := root.NewIntermediate("bench intermediate", testpki.Key(kt.key))
		h.ChainHeader = "X-Client-Chain"
		h.decoder = mustDecoder(b, "der_base64", "X-Client-Cert", "X-Client-Chain")
		h.logger = nopLogger() // rejections log at debug, which production leaves off
		chainValue := base64.StdEncoding.EncodeToString(inter.DER())

		// Each worst request leaves MaxFailedChecks remembered facts; 4,200
		// of them rotating outrun the 4,096 remembered, so none is hit.
		const normalN, worstN = 256, 4200
		normal := make([][2]string, normalN)
		normal64k := make([][2]string, normalN) // a new certificate as large as worst_64k's headers
		for i := range normal {
			normal[i] = [2]string{base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("client %d", i)).DER()), chainValue}
			normal64k[i] = [2]string{base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("client %d", i), testpki.Padding(46000)).DER()), chainValue}
		}
		bigKey := testpki.MadeUpRSAKey(decoder.MaxRSABits)
		forgeWith := func(opts ...testpki.Option) func() [2]string {
			return func() [2]string {
				certs := testpki.ForgedChain(inter, forged, limits.MaxChain-2-forged, append(opts, testpki.PublicKey(bigKey))...)
				var chain []string
				for _, c := range certs[1:] {
					chain = append(chain, base64.StdEncoding.EncodeToString(c.DER()))
				}
				return [2]string{base64.StdEncoding.EncodeToString(certs[0].DER()), strings.Join(chain, ",")}
			}
		}
		// forge makes the worst chain; forge64k pads every made-up
		// certificate so that the headers near max_header_bytes
		// (64 KiB): the cost of decoding and parsing at the header limit.
		forge, forge64k := forgeWith(), forgeWith(testpki.Padding(5300))
		worst := [][2]string{forge()} // grown to what a run needs (making them takes long)
		var worst64k [][2]string
		serveOne := func(v [2]string) error {
			r, w := benchRequest(v[0])
			r.Header.Set("X-Client-Chain", v[1])
			return h.ServeHTTP(w, r, okNext)
		}
		require.NoError(b, serveOne(normal[0]), "the intermediate is remembered")
		require.ErrorContains(b, serveOne(worst[0]), "untrusted")
		big := forge64k()
		require.Less(b, len(big[0])+len(big[1]), 64<<10, "the headers fit max_header_bytes")
		require.ErrorContains(b, serveOne(big), "untrusted")
		require.InDelta(b, len(big[0])+len(big[1]), len(normal64k[0][0])+len(normal64k[0][1]), 4096, "alike in size")
		require.NoError(b, serveOne(normal64k[0]))

		for _, c := range []struct {
			name   string
			values *[][2]string
			grow   func() [2]string
		}{{"normal", &normal, nil}, {"worst", &worst, forge}, {"normal_64k", &normal64k, nil}, {"worst_64k", &worst64k, forge64k}} {
			b.Run(kt.name+"/"+c.name, func(b *testing.B) {
				for c.grow != nil && len(*c.values) < min(b.N, worstN) {
					*c.values = append(*c.values, c.grow())
				}
				values := *c.values
				r, w := benchRequest("")
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					v := values[i%len(values)]
					r.Header.Set("X-Client-Cert", v[0]) // the handler strips them
					r.Header.Set("X-Client-Chain", v[1])
					_ = h.ServeHTTP(w, r, okNext)
				}
			})
		}
	}
}
