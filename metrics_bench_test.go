package mtlsauth

import (
	"context"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// benchPair is the same cached certificate served by two identical routes,
// one without metrics (stats nil: nothing counted, nothing timed).
func benchPair(b *testing.B) (on, off *Handler, value string) {
	b.Helper()
	on, _, leaf := benchHandler(b, 0, testpki.ECDSAP256)
	off = &Handler{Profile: on.Profile, Header: on.Header, TrustedSources: on.TrustedSources, TrustPoolRaw: on.TrustPoolRaw}
	require.NoError(b, off.provision(benchContext(b), on.app))
	off.stats = nil
	value = base64.StdEncoding.EncodeToString(leaf.DER())
	for _, h := range []*Handler{on, off} {
		r, w := benchRequest(value)
		require.NoError(b, h.ServeHTTP(w, r, okNext)) // cache it
	}
	return on, off, value
}

// BenchmarkMetricsOverhead is what the metrics cost on the cached path.
// Short blocks of requests alternate between a route with metrics and the
// same route without, so that each pair of blocks sees the same machine
// load; it reports the median time per request of each, and the median of
// the pairs' differences relative to the route without (overhead-%), which
// a shared, busy machine moves far less than either time.
func BenchmarkMetricsOverhead(b *testing.B) {
	on, off, value := benchPair(b)
	const block = 200
	run := func(h *Handler, n int) float64 {
		r, w := benchRequest(value)
		start := time.Now()
		for i := 0; i < n; i++ {
			r.Header.Set("X-Client-Cert", value) // the handler strips it
			if err := h.ServeHTTP(w, r, okNext); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	var offs, ons, overheads []float64
	b.ReportAllocs()
	b.ResetTimer()
	for done, round := 0, 0; done < b.N; round++ {
		n := max(1, min(block, (b.N-done)/2))
		var tOff, tOn float64
		// Alternate which goes first, so neither always runs warm.
		if round%2 == 0 {
			tOff, tOn = run(off, n), run(on, n)
		} else {
			tOn, tOff = run(on, n), run(off, n)
		}
		offs, ons, overheads = append(offs, tOff), append(ons, tOn), append(overheads, 100*(tOn-tOff)/tOff)
		done += 2 * n
	}
	b.ReportMetric(median(offs), "off-ns/req")
	b.ReportMetric(median(ons), "on-ns/req")
	b.ReportMetric(median(overheads), "overhead-%")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchContext(b *testing.B) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	return ctx
}
