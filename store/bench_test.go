package store

import (
	"fmt"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// BenchmarkAllowListWith: adding one certificate to a runtime list of n,
// in memory (the old list stays usable). It grows with log n, not n.
func BenchmarkAllowListWith(b *testing.B) {
	root := testpki.NewRoot("root")
	leaf := root.NewLeaf("extra")
	extra := &Entry{Alias: "extra", Cert: leaf.Cert, Fingerprint: FingerprintOf(leaf.Cert)}
	base := root.NewLeaf("base")
	for _, n := range []int{1000, 10000, 100000} {
		var list *AllowList
		for i := 0; i < n; i++ {
			// Distinct fingerprints without n certificates: the index only
			// needs them distinct.
			e := &Entry{Alias: fmt.Sprint("a", i), Cert: base.Cert}
			e.Fingerprint[0], e.Fingerprint[1], e.Fingerprint[2] = byte(i), byte(i>>8), byte(i>>16)
			list, _ = list.with(e)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = list.with(extra)
			}
		})
	}
}

// BenchmarkAllowListLookup: the request path's lookup in a runtime list of
// 10,000.
func BenchmarkAllowListLookup(b *testing.B) {
	base := testpki.NewRoot("root").NewLeaf("base")
	var list *AllowList
	var fps []Fingerprint
	for i := 0; i < 10000; i++ {
		e := &Entry{Alias: fmt.Sprint("a", i), Cert: base.Cert}
		e.Fingerprint[0], e.Fingerprint[1], e.Fingerprint[7] = byte(i), byte(i>>8), 0x5a
		list, _ = list.with(e)
		fps = append(fps, e.Fingerprint)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if list.Lookup(fps[i%len(fps)]) == nil {
			b.Fatal("missing")
		}
		i++
	}
}
