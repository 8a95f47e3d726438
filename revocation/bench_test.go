package revocation

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// BenchmarkCheckCRLHit checks a good leaf and its intermediate against
// configured CRLs (the intermediate's with 10,000 entries): the
// per-request cost once the CRL signatures have been verified.
func BenchmarkCheckCRLHit(b *testing.B) {
	h := newHierarchy(nil)
	var revoked []*big.Int
	for i := range 10000 {
		revoked = append(revoked, big.NewInt(int64(1e6+i)))
	}
	dir := b.TempDir()
	inter := writeFile(b, dir, "inter.crl", makeCRL(b, h.inter, crlOpts{revoked: revoked}))
	root := writeFile(b, dir, "root.crl", makeCRL(b, h.root, crlOpts{}))
	c := newChecker(b, Config{CRLs: []string{inter, root}})
	chain := chainOf(h.leaf)
	ctx := context.Background()
	if r := c.Check(ctx, chain); r.Status != Good {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if c.Check(ctx, chain).Status != Good {
			b.Fatal("not good")
		}
	}
}

// BenchmarkCheckOCSPHit checks a leaf whose OCSP answer is cached.
func BenchmarkCheckOCSPHit(b *testing.B) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Intermediate")
	resp := newResponder(b, inter, time.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
	c := newChecker(b, Config{OCSP: true})
	chain := chainOf(leaf)[:2]
	ctx := context.Background()
	if r := c.Check(ctx, chain); r.Status != Good {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if c.Check(ctx, chain).Status != Good {
			b.Fatal("not good")
		}
	}
	if resp.hits.Load() != 1 {
		b.Fatalf("responder asked %d times", resp.hits.Load())
	}
}

// BenchmarkCheckOCSPHitParallel is BenchmarkCheckOCSPHit from every core.
func BenchmarkCheckOCSPHitParallel(b *testing.B) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Intermediate")
	resp := newResponder(b, inter, time.Now)
	leaf := inter.NewLeaf("client", testpki.OCSPServers(resp.URL()))
	c := newChecker(b, Config{OCSP: true})
	chain := chainOf(leaf)[:2]
	ctx := context.Background()
	c.Check(ctx, chain)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.Check(ctx, chain).Status != Good {
				b.Error("not good")
				return
			}
		}
	})
}
