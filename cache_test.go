package mtlsauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
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

// TestCacheExpiresWithAllowCAEntry: with a trust pool and an allow_ca
// entry, the admission rests on the CA entry too. Here the entry is a
// shorter-lived copy of the presented intermediate (same name and key): once
// it has expired a fresh handler answers not_allowed, and so must one that
// cached the success while it was valid.
func TestCacheExpiresWithAllowCAEntry(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	inter := p.root.NewIntermediate("Partner CA", testpki.Validity(now.Add(-time.Hour), now.Add(5*24*time.Hour)))
	short := p.root.NewIntermediate("Partner CA", testpki.UseKey(inter.Key), testpki.Validity(now.Add(-time.Hour), now.Add(2*time.Hour)))
	leaf := inter.NewLeaf("dave", testpki.Validity(now.Add(-time.Hour), now.Add(4*24*time.Hour)))
	shortFile := p.write(t, "short.pem", short.PEM())
	newHandler := func() *Handler {
		h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"},
			TrustPoolRaw: trustPool(p.rootFile),
			AllowCA:      []AllowEntry{{Alias: "partners", File: shortFile}}}
		require.NoError(t, provision(t, h))
		return h
	}
	req := request{headers: withChain(rfc9440(leaf), rfc9440(inter))}
	warm := newHandler()
	resp := serve(t, warm, req)
	require.Equal(t, 200, resp.status, resp.ph("http.mtls.error"))
	require.Equal(t, "partners", resp.ph("http.mtls.alias"))

	later := now.Add(3 * time.Hour)
	cold := newHandler()
	cold.now = func() time.Time { return later }
	want := serve(t, cold, req)
	require.Equal(t, 403, want.status, "the premise: a cold handler refuses once the CA entry expired")
	warm.now = func() time.Time { return later }
	got := serve(t, warm, req)
	assert.Equal(t, want.status, got.status, "the cached success does not outlive the CA entry")
	assert.Equal(t, want.ph("http.mtls.error"), got.ph("http.mtls.error"))
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

// failed is a failure's outcome.
func failed() *outcome {
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
	putN(c, 5000, func(int) *outcome { return failed() })
	assert.LessOrEqual(t, c.len(), 160, "entries are bounded")
	assert.Greater(t, c.len(), 100, "and the cache fills")
	accounting(t, c)

	// Large certificates lower the count instead of growing memory.
	big := newVerifyCache(1000)
	putN(big, 3000, func(int) *outcome {
		return &outcome{source: "header", id: &identity{leaf: &x509.Certificate{Raw: make([]byte, 8<<10)}}}
	})
	assert.LessOrEqual(t, big.size(), int64(1000*entryBudget), "bytes are bounded whatever the count")
	assert.Less(t, big.len(), 300)
	accounting(t, big)

	// An entry larger than a shard's budget is not kept at all.
	tiny := newVerifyCache(16)
	putN(tiny, 1, func(int) *outcome { return &outcome{id: &identity{leaf: &x509.Certificate{Raw: make([]byte, 60<<10)}}} })
	assert.Equal(t, 0, tiny.len())

	// Replacing an entry keeps the counts true.
	again := newVerifyCache(100)
	putN(again, 50, func(int) *outcome { return failed() })
	putN(again, 50, func(int) *outcome { return failed() })
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
	require.NotNil(t, e.id)
	return e.id
}

func TestCacheKeepsNoCertificate(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile, Meta: map[string]string{"team": "a"}}}}
	require.NoError(t, provision(t, h))
	keys := []string{"fingerprint", "subject", "subject.cn", "issuer", "serial", "not_after", "alias", "meta.team",
		"san.dns_names", "san.uris", "san.emails", "san.ips", "san.ips.0", "san.uris.0", "certificate_der_base64"}
	req := request{headers: header(rfc9440(p.alice))}
	first := serve(t, h, req) // verified: placeholders from the parsed leaf
	require.Equal(t, 200, first.status)
	id := cachedIdentity(t, h, req)
	assert.Nil(t, id.leaf, "no parsed certificate in the cache")
	assert.Nil(t, id.der.Load(), "nor its DER, until a placeholder needs it")
	assert.Nil(t, id.built.Load(), "nor its names")

	// Cached: each placeholder from this request's input, decoded again.
	second := serve(t, h, req)
	assert.Equal(t, "alice", second.ph("http.mtls.subject.cn"))
	assert.NotNil(t, id.built.Load(), "names are kept once built")
	assert.Nil(t, id.der.Load(), "names alone do not keep the DER")
	for _, k := range keys {
		assert.Equal(t, first.ph("http.mtls."+k), second.ph("http.mtls."+k), k)
		assert.NotEmpty(t, second.ph("http.mtls."+k), k)
	}
	assert.Equal(t, p.alice.Fingerprint(), second.ph("http.mtls.fingerprint"))
	der := id.der.Load()
	require.NotNil(t, der, "the DER is kept once asked for")
	assert.Equal(t, p.alice.DER(), *der)
	assert.Equal(t, len(*der), cap(*der), "in a buffer of its own")
	assert.Equal(t, "alice", serve(t, h, req).ph("http.auth.user.id"))
}

func TestCacheIdentityOnlyFromItsOwnCertificate(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), KeepHeader: true}
	require.NoError(t, provision(t, h))
	req := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, h, req).status)
	k := headerKey(req.headers["Client-Cert"], nil)
	e := h.cache.get(&k, time.Now().UnixNano(), h.verifier.static.Load(), h.verifier.snapshot().Generation)
	require.NotNil(t, e)

	// The input was rewritten in place after the lookup: bob's
	// certificate is never taken for alice's.
	o := e.outcome("header", presented{dec: h.decoder, values: []string{rfc9440(p.bob)}})
	assert.Equal(t, "", o.placeholder("subject.cn"))
	assert.Equal(t, "", o.placeholder("certificate_der_base64"))
	assert.Nil(t, e.id.built.Load(), "nothing kept from another certificate")
	assert.Nil(t, e.id.der.Load())

	o = e.outcome("header", presented{dec: h.decoder, values: req.headers["Client-Cert"]})
	assert.Equal(t, "alice", o.placeholder("subject.cn"))
	assert.Equal(t, p.alice.Fingerprint(), o.placeholder("fingerprint"))
}

func TestCacheIdentitySharedByConcurrentRequests(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	req := request{headers: header(rfc9440(p.alice))}
	require.Equal(t, 200, serve(t, h, req).status)
	k := headerKey(req.headers["Client-Cert"], nil)
	e := h.cache.get(&k, time.Now().UnixNano(), h.verifier.static.Load(), h.verifier.snapshot().Generation)
	require.NotNil(t, e)
	want := base64.StdEncoding.EncodeToString(p.alice.DER())
	var wg sync.WaitGroup
	results := make(chan [2]string, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				o := e.outcome("header", presented{dec: h.decoder, values: req.headers["Client-Cert"]})
				results <- [2]string{o.placeholder("subject.cn"), o.placeholder("certificate_der_base64")}
			}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		assert.Equal(t, [2]string{"alice", want}, r)
	}
}

func TestCacheTLSIdentityFromConnection(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile)}
	require.NoError(t, provision(t, h))
	req := request{tlsPeerCerts: certs(p.carol, p.inter)}
	require.Equal(t, 200, serve(t, h, req).status)
	resp := serve(t, h, req)
	assert.Equal(t, "carol", resp.ph("http.auth.user.id"))
	assert.Equal(t, base64.StdEncoding.EncodeToString(p.carol.DER()), resp.ph("http.mtls.certificate_der_base64"))
	assert.Equal(t, p.carol.DER(), *cachedIdentity(t, h, req).der.Load())
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

// What placeholders read from each cached identity in cacheMemory.
const (
	readNothing = iota
	readNames   // {http.mtls.subject}: the names are kept
	readAll     // and {http.mtls.certificate_der_base64}: the DER too
)

// fleet is n distinct client certificates under one intermediate, as
// bench/load.sh sends them: the leaf's base64 DER in X-Client-Cert, the
// intermediate's in X-Client-Chain.
type fleet struct {
	root   *testpki.Cert
	chain  string
	leaves []string
}

func newFleet(n int, key testpki.KeyType) *fleet {
	f := &fleet{root: testpki.NewRoot("fleet root", testpki.Key(key))}
	inter := f.root.NewIntermediate("fleet intermediate", testpki.Key(key))
	f.chain = base64.StdEncoding.EncodeToString(inter.DER())
	leafKey := testpki.NewSelfSigned("key", testpki.Key(key)).Key // a signature per leaf, not a key generation
	f.leaves = make([]string, n)
	for i := range f.leaves {
		f.leaves[i] = base64.StdEncoding.EncodeToString(inter.NewLeaf(fmt.Sprintf("device %d", i), testpki.UseKey(leafKey)).DER())
	}
	return f
}

// cacheMemory fills a cache through the handler with the fleet (but its
// last leaf, sent first so that the decoder and the intermediates are
// remembered before measuring) and returns the heap each entry costs,
// measured, and as the cache accounts for it. read says what placeholders
// read from each cached identity (serving it once more).
func cacheMemory(tb testing.TB, f *fleet, read int) (measured, accounted float64) {
	dir := tb.TempDir()
	rootFile, err := testpki.WriteFile(dir, "root.pem", f.root.PEM())
	require.NoError(tb, err)
	n := len(f.leaves) - 1
	h := &Handler{Profile: "der_base64", Header: "X-Client-Cert", ChainHeader: "X-Client-Chain",
		// Room to spare, also for tiny n (a benchmark's first run has
		// b.N 1): the 16 shards fill unevenly.
		TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(rootFile), CacheSize: max(2*n, 1024)}
	app := &App{}
	require.NoError(tb, app.setup(nopLogger(), storeFor(tb)))
	tb.Cleanup(func() { _ = app.Cleanup() })
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	require.NoError(tb, h.provision(ctx, app))
	serve := func(value string) *caddy.Replacer {
		r, w := benchRequest(value) // a fresh replacer each time: Map adds to it
		r.Header.Set("X-Client-Chain", f.chain)
		require.NoError(tb, h.ServeHTTP(w, r, okNext))
		return r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	}
	serve(f.leaves[n])
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, v := range f.leaves[:n] {
		serve(v)
		if read == readNothing {
			continue
		}
		repl := serve(v)
		s, _ := repl.GetString("http.mtls.subject")
		require.NotEmpty(tb, s)
		if read == readAll {
			s, _ = repl.GetString("http.mtls.certificate_der_base64")
			require.NotEmpty(tb, s)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(tb, n+1, h.cache.len())
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), float64(h.cache.size()) / float64(n+1)
}

// TestCacheEntryMemory checks the cache's accounting against the heap its
// entries really take: never less (the bound holds, whatever placeholders
// make an identity keep), and near it once everything is kept.
func TestCacheEntryMemory(t *testing.T) {
	for key, f := range map[string]*fleet{"ECDSA P-256": newFleet(2001, testpki.ECDSAP256), "RSA-2048": newFleet(501, testpki.RSA2048)} {
		for read, name := range []string{"nothing", "names", "names and DER"} {
			measured, accounted := cacheMemory(t, f, read)
			t.Logf("%s, placeholders read %s: measured %.0f B/entry, accounted %.0f B/entry", key, name, measured, accounted)
			assert.LessOrEqual(t, measured, accounted, "the accounting bounds what an entry costs")
			if read == readAll {
				assert.LessOrEqual(t, accounted, 1.3*measured, "and stays near it")
			}
		}
	}
}

// BenchmarkCacheMemory reports the heap a cache entry costs, measured and
// as the cache accounts for it, with no placeholder read, with the names
// read, and with the names and the DER read. An operation is an entry: the
// cache is filled with b.N clients, so -benchtime sets the scale:
//
//	go test -run '^$' -bench 'CacheMemory/ecdsa' -benchtime 100000x .
//	go test -run '^$' -bench 'CacheMemory/rsa' -benchtime 10000x .
func BenchmarkCacheMemory(b *testing.B) {
	fleets := map[string]*fleet{} // by key and size: the three reads share one
	for _, c := range []struct {
		name string
		key  testpki.KeyType
	}{{"ecdsa", testpki.ECDSAP256}, {"rsa2048", testpki.RSA2048}} {
		for read, name := range []string{"read_nothing", "read_names", "read_all"} {
			b.Run(c.name+"/"+name, func(b *testing.B) {
				id := fmt.Sprint(c.name, b.N)
				if fleets[id] == nil {
					fleets[id] = newFleet(b.N+1, c.key)
				}
				b.ResetTimer()
				measured, accounted := cacheMemory(b, fleets[id], read)
				b.ReportMetric(measured, "B/entry")
				b.ReportMetric(accounted, "accounted-B/entry")
			})
		}
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
