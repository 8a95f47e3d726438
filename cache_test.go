package mtlsauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestCacheReusesUntilNotAfter(t *testing.T) {
	p := newPKI(t)
	soon := p.root.NewLeaf("short-lived", testpki.Validity(time.Now().Add(-time.Hour), time.Now().Add(time.Minute)))
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	clock := time.Now()
	h.now = func() time.Time { return clock }
	req := request{headers: header(rfc9440(soon))}

	require.Equal(t, 200, serve(t, h, req).status)
	assert.Equal(t, 1, h.cache.len(), "the success is remembered")
	require.Equal(t, 200, serve(t, h, req).status)

	clock = clock.Add(2 * time.Minute) // past NotAfter
	resp := serve(t, h, req)
	assert.Equal(t, 401, resp.status, "a cached success never outlives the certificate")
	assert.Equal(t, "expired", resp.ph("http.mtls.error"))
}

func TestCacheFailuresAreBrief(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	clock := time.Now()
	h.now = func() time.Time { return clock }
	serve(t, h, request{headers: header(":junk:")})
	k := cacheKey{cert: ":junk:"}
	static, gen := h.verifier.static.Load(), h.verifier.snapshot().Generation
	require.NotNil(t, h.cache.get(k, clock.UnixNano(), static, gen))
	assert.Nil(t, h.cache.get(k, clock.Add(failureTTL+time.Millisecond).UnixNano(), static, gen), "failures expire after failureTTL")
}

func TestCacheNeverConfusesInputs(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}}
	require.NoError(t, provision(t, h))
	for i := 0; i < 3; i++ {
		assert.Equal(t, "alice", serve(t, h, request{headers: header(rfc9440(p.alice))}).ph("http.mtls.alias"))
		assert.Equal(t, 403, serve(t, h, request{headers: header(rfc9440(p.bob))}).status)
		// The same leaf with a chain header is another input.
		assert.Equal(t, 200, serve(t, h, request{headers: withChain(rfc9440(p.alice), rfc9440(p.root))}).status)
	}
	// A header split over two lines is not the joined value.
	resp := serve(t, h, request{headers: header(rfc9440(p.alice), rfc9440(p.alice))})
	assert.Equal(t, "duplicate_header", resp.ph("http.mtls.error"))
}

func TestCacheBounds(t *testing.T) {
	c := newVerifyCache(160)
	static := &trustSet{}
	now := time.Now().UnixNano()
	for i := 0; i < 5000; i++ {
		c.put(&cacheEntry{key: cacheKey{cert: fmt.Sprintf("junk-%d", i)}, expires: now + int64(time.Second), static: static})
	}
	assert.LessOrEqual(t, c.len(), 160, "entries are bounded")

	big := newVerifyCache(100000)
	val := strings.Repeat("A", 60<<10)
	for i := 0; i < 2000; i++ {
		big.put(&cacheEntry{key: cacheKey{cert: fmt.Sprint(i) + val}, expires: now + int64(time.Second), static: static})
	}
	total := 0
	for i := range big.shards {
		total += big.shards[i].bytes
	}
	assert.LessOrEqual(t, total, cacheMaxBytes, "bytes are bounded whatever the count")
	assert.Nil(t, newVerifyCache(-1), "cache_size off")
}

func TestCacheTLSSource(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	for i := 0; i < 2; i++ {
		resp := serve(t, h, request{tlsPeerCerts: certs(p.carol, p.inter)})
		require.Equal(t, 200, resp.status)
		assert.Equal(t, "carol", resp.ph("http.mtls.subject.cn"))
	}
	assert.Equal(t, 1, h.cache.len())
	assert.Equal(t, 401, serve(t, h, request{tlsPeerCerts: certs(p.mallory)}).status)
}

// benchHandler is a provisioned handler with a trust pool and a request
// carrying leaf in the header, prepared as Caddy's server would.
func benchHandler(b *testing.B, cacheSize int, key testpki.KeyType) (*Handler, *testpki.Cert, *testpki.Cert) {
	b.Helper()
	root := testpki.NewRoot("bench root", testpki.Key(key))
	dir := b.TempDir()
	rootFile, err := testpki.WriteFile(dir, "root.pem", root.PEM())
	require.NoError(b, err)
	app := &App{}
	require.NoError(b, app.setup(nopLogger(), storeFor(b)))
	b.Cleanup(func() { _ = app.Cleanup() })
	h := &Handler{Profile: "der_base64", Header: "X-Client-Cert", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(rootFile), CacheSize: cacheSize}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	require.NoError(b, h.provision(ctx, app))
	return h, root, root.NewLeaf("bench client", testpki.Key(key))
}

func benchRequest(value string) (*http.Request, http.ResponseWriter) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = lbAddr
	r.Header.Set("X-Client-Cert", value)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: false})
	return r.WithContext(ctx), httptest.NewRecorder()
}

var okNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// BenchmarkServeHTTPCached is the steady state: a certificate seen before.
func BenchmarkServeHTTPCached(b *testing.B) {
	h, _, leaf := benchHandler(b, 0, testpki.ECDSAP256)
	value := base64.StdEncoding.EncodeToString(leaf.DER())
	r, w := benchRequest(value)
	require.NoError(b, h.ServeHTTP(w, r, okNext))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header.Set("X-Client-Cert", value) // the handler strips it
		if err := h.ServeHTTP(w, r, okNext); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheGet is the lookup alone.
func BenchmarkCacheGet(b *testing.B) {
	h, _, leaf := benchHandler(b, 0, testpki.ECDSAP256)
	value := base64.StdEncoding.EncodeToString(leaf.DER())
	r, w := benchRequest(value)
	require.NoError(b, h.ServeHTTP(w, r, okNext))
	key := cacheKey{cert: value}
	static, gen := h.verifier.static.Load(), h.verifier.snapshot().Generation
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if h.cache.get(key, now, static, gen) == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkNewCertificate is a certificate never seen before on every
// request (decode, verify, identity), against its floor: decoding and
// parsing the certificate and checking its one signature. In the chain
// case the leaf comes with its intermediate, which is verified once and
// remembered.
func BenchmarkNewCertificate(b *testing.B) {
	for _, kt := range []struct {
		name string
		key  testpki.KeyType
	}{{"ecdsa_p256", testpki.ECDSAP256}, {"rsa2048", testpki.RSA2048}} {
		for _, withChain := range []bool{false, true} {
			h, root, _ := benchHandler(b, -1, kt.key) // no cache: every request computes
			issuer := root
			name := kt.name + "/direct"
			if withChain {
				issuer = root.NewIntermediate("bench intermediate", testpki.Key(kt.key))
				h.ChainHeader = "X-Client-Chain"
				h.decoder = mustDecoder(b, "der_base64", "X-Client-Cert", "X-Client-Chain")
				name = kt.name + "/chain"
			}
			const n = 256
			values := make([]string, n)
			for i := range values {
				values[i] = base64.StdEncoding.EncodeToString(issuer.NewLeaf(fmt.Sprintf("client %d", i)).DER())
			}
			chain := base64.StdEncoding.EncodeToString(issuer.DER())
			b.Run(name+"/handler", func(b *testing.B) {
				r, w := benchRequest(values[0])
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					r.Header.Set("X-Client-Cert", values[i%n]) // the handler strips it
					if withChain {
						r.Header.Set("X-Client-Chain", chain)
					}
					if err := h.ServeHTTP(w, r, okNext); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/floor", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					der, err := base64.StdEncoding.DecodeString(values[i%n])
					if err != nil {
						b.Fatal(err)
					}
					c, err := x509.ParseCertificate(der)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.CheckSignatureFrom(issuer.Cert); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
