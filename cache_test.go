package mtlsauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
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
	k := headerKey([]string{":junk:"}, nil)
	static, gen := h.verifier.static.Load(), h.verifier.snapshot().Generation
	require.NotNil(t, h.cache.get(&k, clock.UnixNano(), static, gen))
	assert.Nil(t, h.cache.get(&k, clock.Add(failureTTL+time.Millisecond).UnixNano(), static, gen), "failures expire after failureTTL")
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

func TestCacheKeyIsExactInput(t *testing.T) {
	a, b := testpki.NewSelfSigned("a"), testpki.NewSelfSigned("b")
	keys := map[cacheKey]string{}
	add := func(name string, k cacheKey) {
		t.Helper()
		prev, dup := keys[k]
		require.False(t, dup, "%s and %s share a key", name, prev)
		keys[k] = name
	}
	add("no lines", headerKey(nil, nil))
	add("one empty line", headerKey([]string{""}, nil))
	add("one empty chain line", headerKey(nil, []string{""}))
	add("ab", headerKey([]string{"ab"}, nil))
	add("a b", headerKey([]string{"a", "b"}, nil))
	add("a / b", headerKey([]string{"a"}, []string{"b"}))
	add("- / a b", headerKey(nil, []string{"a", "b"}))
	add("a\\x00b", headerKey([]string{"a\x00b"}, nil))
	add("tls a", tlsKey(certs(a)))
	add("tls a b", tlsKey(certs(a, b)))
	add("tls b a", tlsKey(certs(b, a)))
	add("header of a's DER", headerKey([]string{string(a.DER())}, nil))
	assert.Equal(t, headerKey([]string{"a", "b"}, nil), headerKey([]string{"a", "b"}, nil), "the same input, the same key")
	assert.Equal(t, tlsKey(certs(a, b)), tlsKey(certs(a, b)))
}

// failure is a cached failure's outcome.
func failure() *outcome {
	return &outcome{source: "header", reason: reasonMalformed, detail: "not a certificate"}
}

// putN stores n results, each under its own key, as the handler would.
func putN(c *verifyCache, n int, o func(i int) *outcome) {
	static, now := &trustSet{}, time.Now().UnixNano()
	for i := 0; i < n; i++ {
		k := headerKey([]string{fmt.Sprint(i)}, nil)
		c.put(&k, o(i), now+int64(time.Hour), static, 0)
	}
}

// accounting checks that the counters agree with the shards.
func accounting(t *testing.T, c *verifyCache) {
	t.Helper()
	var n int
	var bytes int64
	for i := range c.shards {
		sh := &c.shards[i]
		var shBytes int64
		for _, e := range sh.m {
			shBytes += e.size
		}
		assert.Equal(t, sh.bytes, shBytes, "shard %d counts its entries' sizes", i)
		assert.LessOrEqual(t, len(sh.m), c.maxEntries)
		assert.LessOrEqual(t, sh.bytes, c.maxBytes)
		n += len(sh.m)
		bytes += sh.bytes
	}
	assert.Equal(t, n, c.len())
	assert.Equal(t, bytes, c.size())
}

func TestCacheBounds(t *testing.T) {
	c := newVerifyCache(160)
	putN(c, 5000, func(int) *outcome { return failure() })
	assert.LessOrEqual(t, c.len(), 160, "entries are bounded")
	assert.Greater(t, c.len(), 100, "and the cache fills")
	accounting(t, c)

	// Large certificates lower the count instead of growing memory.
	big := newVerifyCache(1000)
	putN(big, 3000, func(int) *outcome {
		return &outcome{source: "header", id: &identity{der: make([]byte, 8<<10)}}
	})
	assert.LessOrEqual(t, big.size(), int64(1000*entryBudget), "bytes are bounded whatever the count")
	assert.Less(t, big.len(), 300)
	accounting(t, big)

	// An entry larger than a shard's budget is not kept at all.
	tiny := newVerifyCache(16)
	putN(tiny, 1, func(int) *outcome { return &outcome{id: &identity{der: make([]byte, 60<<10)}} })
	assert.Equal(t, 0, tiny.len())

	// Replacing an entry keeps the counts true.
	again := newVerifyCache(100)
	putN(again, 50, func(int) *outcome { return failure() })
	putN(again, 50, func(int) *outcome { return failure() })
	assert.Equal(t, 50, again.len())
	accounting(t, again)

	assert.Nil(t, newVerifyCache(-1), "cache_size off")
	assert.Equal(t, defaultCacheSize/cacheShards, newVerifyCache(0).maxEntries, "0 is the default")
}

// cachedIdentity is the identity the cache holds for the input of req.
func cachedIdentity(t *testing.T, h *Handler, req request) *identity {
	t.Helper()
	var k cacheKey
	if req.tlsPeerCerts != nil {
		k = tlsKey(req.tlsPeerCerts)
	} else {
		k = headerKey(req.headers["Client-Cert"], req.headers["Client-Cert-Chain"])
	}
	e := h.cache.get(&k, time.Now().UnixNano(), h.verifier.static.Load(), h.verifier.snapshot().Generation)
	require.NotNil(t, e, "cached")
	require.NotNil(t, e.result.id)
	return e.result.id
}

func TestCacheKeepsDERNotParsedCertificate(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile, Meta: map[string]string{"team": "a"}}}}
	require.NoError(t, provision(t, h))
	keys := []string{"fingerprint", "subject", "subject.cn", "issuer", "serial", "not_after", "alias", "meta.team",
		"certificate_der_base64", "san.dns_names", "san.uris", "san.emails", "san.ips", "san.ips.0", "san.uris.0"}
	req := request{headers: header(rfc9440(p.alice))}
	first := serve(t, h, req) // verified: placeholders from the parsed leaf
	require.Equal(t, 200, first.status)
	id := cachedIdentity(t, h, req)
	assert.Nil(t, id.leaf, "no parsed certificate in the cache")
	assert.Equal(t, p.alice.DER(), id.der)
	assert.Equal(t, len(id.der), cap(id.der), "the DER in a buffer of its own")
	assert.Nil(t, id.built.Load(), "names are built on first use")

	second := serve(t, h, req) // cached: names from the DER, on first use
	for _, k := range keys {
		assert.Equal(t, first.ph("http.mtls."+k), second.ph("http.mtls."+k), k)
		assert.NotEmpty(t, second.ph("http.mtls."+k), k)
	}
	assert.Equal(t, "alice", second.ph("http.mtls.subject.cn"))
	assert.Equal(t, p.alice.Fingerprint(), second.ph("http.mtls.fingerprint"))
	assert.NotNil(t, id.built.Load(), "built once, then shared")
}

func TestCacheInternsIntermediates(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	dave := p.inter.NewLeaf("dave")
	var ids []*identity
	for _, leaf := range []*testpki.Cert{p.carol, dave} {
		// Each connection parses its own copy of the intermediate.
		inter, err := x509.ParseCertificate(append([]byte(nil), p.inter.DER()...))
		require.NoError(t, err)
		req := request{tlsPeerCerts: []*x509.Certificate{leaf.Cert, inter}}
		require.Equal(t, 200, serve(t, h, req).status)
		ids = append(ids, cachedIdentity(t, h, req))
	}
	require.Len(t, ids[0].inters, 1, "the verified chain's intermediate, without leaf and root")
	assert.Equal(t, p.inter.DER(), ids[0].inters[0])
	assert.Same(t, &ids[0].inters[0][0], &ids[1].inters[0][0], "one copy for every client of the CA")
}

// benchHandler is a provisioned handler with a trust pool and a request
// carrying leaf in the header, prepared as Caddy's server would.
func benchHandler(b testing.TB, cacheSize int, key testpki.KeyType) (*Handler, *testpki.Cert, *testpki.Cert) {
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

// cacheMemory fills a cache through the handler with n distinct leaves
// under one intermediate (in the chain header, as bench/load.sh sends them)
// and returns the heap each entry costs, measured, and as the cache
// accounts for it. With names, a placeholder reads each cached identity's
// names (which builds them).
func cacheMemory(tb testing.TB, n int, key testpki.KeyType, names bool) (measured, accounted float64) {
	h, root, _ := benchHandler(tb, 2*n, key)
	inter := root.NewIntermediate("bench intermediate", testpki.Key(key))
	h.ChainHeader = "X-Client-Chain"
	h.decoder = mustDecoder(tb, "der_base64", "X-Client-Cert", "X-Client-Chain")
	chain := base64.StdEncoding.EncodeToString(inter.DER())
	leafKey := testpki.NewSelfSigned("key", testpki.Key(key)).Key
	values := make([]string, n+1)
	for i := range values {
		values[i] = base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("client %d", i), testpki.UseKey(leafKey)).DER())
	}
	serve := func(value string) *caddy.Replacer {
		r, w := benchRequest(value) // a fresh replacer each time: Map adds to it
		r.Header.Set("X-Client-Chain", chain)
		require.NoError(tb, h.ServeHTTP(w, r, okNext))
		return r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	}
	serve(values[n]) // the decoder and the intermediates are remembered first
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, v := range values[:n] {
		serve(v)
		if names {
			s, _ := serve(v).GetString("http.mtls.subject")
			require.NotEmpty(tb, s)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(tb, n+1, h.cache.len())
	runtime.KeepAlive(values)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), float64(h.cache.size()) / float64(n+1)
}

// TestCacheEntryMemory checks the cache's accounting against the heap its
// entries really take: never less (the bound holds), and not so much more
// that the bound would hold far fewer entries than it could.
func TestCacheEntryMemory(t *testing.T) {
	for _, names := range []bool{false, true} {
		measured, accounted := cacheMemory(t, 3000, testpki.ECDSAP256, names)
		t.Logf("names built %v: measured %.0f B/entry, accounted %.0f B/entry", names, measured, accounted)
		assert.LessOrEqual(t, measured, accounted, "the accounting bounds what an entry costs")
		assert.LessOrEqual(t, accounted, 1.6*measured, "and stays near it")
	}
}

// BenchmarkCacheMemory reports the heap an entry costs at scale (100,000
// ECDSA and 10,000 RSA-2048 entries) and what the cache accounts for it.
// Each iteration fills a new cache; run it with -benchtime 1x.
func BenchmarkCacheMemory(b *testing.B) {
	for _, c := range []struct {
		name  string
		n     int
		key   testpki.KeyType
		names bool
	}{
		{"ecdsa_100k", 100000, testpki.ECDSAP256, false},
		{"ecdsa_100k_names", 100000, testpki.ECDSAP256, true},
		{"rsa2048_10k", 10000, testpki.RSA2048, false},
		{"rsa2048_10k_names", 10000, testpki.RSA2048, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				measured, accounted := cacheMemory(b, c.n, c.key, c.names)
				b.ReportMetric(measured, "B/entry")
				b.ReportMetric(accounted, "accounted-B/entry")
			}
		})
	}
}

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

// BenchmarkCacheGet is the lookup alone: digesting the header and
// reading the map.
func BenchmarkCacheGet(b *testing.B) {
	h, _, leaf := benchHandler(b, 0, testpki.ECDSAP256)
	value := base64.StdEncoding.EncodeToString(leaf.DER())
	r, w := benchRequest(value)
	require.NoError(b, h.ServeHTTP(w, r, okNext))
	values := []string{value}
	static, gen := h.verifier.static.Load(), h.verifier.snapshot().Generation
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := headerKey(values, nil)
		if h.cache.get(&key, now, static, gen) == nil {
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
