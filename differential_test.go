package mtlsauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// The differential test of the verification path: a request's verdict is
// the one crypto/x509 gives on fresh state, whatever other clients sent
// before. Each case builds a hierarchy (root -> I2 -> I1 -> leaves, with
// the property under test on one of them), warms a handler's every cache
// (verification results, remembered intermediates and signature facts,
// parsed certificates) with benign leaves under the same issuers, then
// sends the case's requests to that warm handler and to a freshly
// provisioned one, and compares both, request by request, with
// x509.Verify over every presented certificate on fresh state (and the
// deny list: a chain verifies only if it holds no denied certificate).

// hierarchy is one case's PKI: a root in the pool and two intermediates.
type hierarchy struct {
	root, i2, i1 *testpki.Cert
	// pool is what the trust pool holds (default: the root).
	pool []*testpki.Cert
}

// opts of each level; nil for none.
type levelOpts struct{ root, i2, i1 []testpki.Option }

func newHierarchy(o levelOpts) *hierarchy {
	h := &hierarchy{root: testpki.NewRoot("Diff Root", o.root...)}
	h.i2 = h.root.NewIntermediate("Diff I2", o.i2...)
	h.i1 = h.i2.NewIntermediate("Diff I1", o.i1...)
	h.pool = []*testpki.Cert{h.root}
	return h
}

// sent is one request: a leaf and the intermediates sent with it.
type sent struct {
	leaf   *testpki.Cert
	inters []*testpki.Cert
}

func (p sent) headers() map[string][]string {
	var chain []string
	for _, c := range p.inters {
		chain = append(chain, rfc9440(c))
	}
	if len(chain) == 0 {
		return header(rfc9440(p.leaf))
	}
	return withChain(rfc9440(p.leaf), chain...)
}

// diffCase is one property under test.
type diffCase struct {
	name string
	h    *hierarchy
	// warm are benign requests under the same issuers, sent first to the
	// warm handler (they may themselves be refused: the same issuers).
	warm []sent
	// test are the requests compared.
	test []sent
	// denied are put on the deny list before the test requests.
	denied []*testpki.Cert
	// want, when set, is the expected reason instead of the oracle's (for
	// the deny list above an anchor, which crypto/x509 does not see).
	want *string
}

// benign is a plain leaf under issuer, sent with inters.
func benign(issuer *testpki.Cert, inters ...*testpki.Cert) sent {
	return sent{leaf: issuer.NewLeaf(fmt.Sprintf("benign %d", time.Now().UnixNano()), testpki.DNS("a.good.example")), inters: inters}
}

// everyWarmup is benign leaves under each issuer of h, each sent with the
// chain above it.
func everyWarmup(h *hierarchy) []sent {
	return []sent{
		benign(h.i1, h.i1, h.i2), benign(h.i1, h.i1, h.i2),
		benign(h.i2, h.i2), benign(h.i2, h.i2),
		benign(h.root), benign(h.root),
	}
}

func diffCases() []diffCase {
	var cases []diffCase
	add := func(name string, h *hierarchy, test ...sent) {
		cases = append(cases, diffCase{name: name, h: h, warm: everyWarmup(h), test: test})
	}
	under := func(h *hierarchy, opts ...testpki.Option) []sent {
		return []sent{
			{leaf: h.i1.NewLeaf("under i1", opts...), inters: []*testpki.Cert{h.i1, h.i2}},
			{leaf: h.i2.NewLeaf("under i2", opts...), inters: []*testpki.Cert{h.i2}},
			{leaf: h.i1.NewLeaf("under i1, chain reversed", opts...), inters: []*testpki.Cert{h.i2, h.i1}},
		}
	}
	modify := func(f func(*x509.Certificate)) []testpki.Option { return []testpki.Option{testpki.Modify(f)} }
	pathLen := func(n int) []testpki.Option {
		return modify(func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = n, n == 0 })
	}
	permit := func(domain string) []testpki.Option {
		return modify(func(c *x509.Certificate) { c.PermittedDNSDomains = []string{domain} })
	}
	exclude := func(domain string) []testpki.Option {
		return modify(func(c *x509.Certificate) { c.ExcludedDNSDomains = []string{domain} })
	}
	const policy, otherPolicy = "1.3.6.1.4.1.99999.1", "1.3.6.1.4.1.99999.2"

	add("ordinary chain", newHierarchy(levelOpts{}), under(newHierarchy(levelOpts{}))...)

	h := newHierarchy(levelOpts{root: pathLen(0)})
	add("path length: the root allows no intermediate", h, under(h)...)
	h = newHierarchy(levelOpts{root: pathLen(1)})
	add("path length: the root allows one intermediate", h, under(h)...)
	h = newHierarchy(levelOpts{i2: pathLen(0)})
	add("path length: I2 allows no intermediate below it", h, under(h)...)

	h = newHierarchy(levelOpts{root: permit("good.example")})
	add("name constraints on the root", h, append(under(h, testpki.DNS("x.good.example")), under(h, testpki.DNS("x.evil.example"))...)...)
	h = newHierarchy(levelOpts{i2: permit("good.example")})
	add("name constraints on I2, above the leaf's issuer", h, append(under(h, testpki.DNS("x.good.example")), under(h, testpki.DNS("x.evil.example"))...)...)
	h = newHierarchy(levelOpts{i1: exclude("evil.example")})
	add("name constraints on I1, the leaf's issuer", h, append(under(h, testpki.DNS("x.good.example")), under(h, testpki.DNS("x.evil.example"))...)...)

	h = newHierarchy(levelOpts{root: []testpki.Option{testpki.RequireExplicitPolicy(0)}})
	add("policy constraints on the root, no policies below", h, under(h)...)
	h = newHierarchy(levelOpts{root: []testpki.Option{testpki.RequireExplicitPolicy(0)}, i2: []testpki.Option{testpki.Policies(policy)}, i1: []testpki.Option{testpki.Policies(policy)}})
	add("policy constraints on the root, policies below", h, append(under(h, testpki.Policies(policy)), under(h, testpki.Policies(otherPolicy))...)...)
	h = newHierarchy(levelOpts{i2: []testpki.Option{testpki.RequireExplicitPolicy(0), testpki.Policies(policy)}, i1: []testpki.Option{testpki.Policies(otherPolicy)}})
	add("policy constraints on I2, another policy on I1", h, under(h, testpki.Policies(policy))...)
	h = newHierarchy(levelOpts{i2: []testpki.Option{testpki.Policies(policy)}, i1: []testpki.Option{testpki.Policies(policy)}})
	add("policy constraints on the leaf", h, append(
		under(h, testpki.Policies(otherPolicy), testpki.RequireExplicitPolicy(0)),
		under(h, testpki.Policies(policy), testpki.RequireExplicitPolicy(0))...)...)

	h = newHierarchy(levelOpts{i2: []testpki.Option{testpki.EKU(x509.ExtKeyUsageServerAuth)}})
	add("EKU nesting: I2 for serverAuth only", h, under(h)...)
	h = newHierarchy(levelOpts{i1: []testpki.Option{testpki.EKU(x509.ExtKeyUsageClientAuth)}, i2: []testpki.Option{testpki.EKU(x509.ExtKeyUsageAny)}})
	add("EKU nesting: I1 for clientAuth, I2 for any", h, under(h)...)

	h = newHierarchy(levelOpts{i1: modify(func(c *x509.Certificate) { c.IsCA = false })})
	add("a non-CA issuer", h, under(h)...)
	h = newHierarchy(levelOpts{i1: modify(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })})
	add("key usage without certSign", h, under(h)...)
	h = newHierarchy(levelOpts{i2: []testpki.Option{testpki.Expired()}})
	add("an expired intermediate", h, under(h)...)
	h = newHierarchy(levelOpts{i1: []testpki.Option{testpki.NotYetValid()}})
	add("a not-yet-valid intermediate", h, under(h)...)

	h = newHierarchy(levelOpts{})
	add("a missing middle intermediate", h,
		sent{leaf: h.i1.NewLeaf("without I2"), inters: []*testpki.Cert{h.i1}},
		sent{leaf: h.i1.NewLeaf("with I2"), inters: []*testpki.Cert{h.i1, h.i2}})

	h = newHierarchy(levelOpts{})
	add("a Traefik list with the root", h, sent{leaf: h.i1.NewLeaf("traefik"), inters: []*testpki.Cert{h.i1, h.i2, h.root}})

	// Cross-signed: I1 re-issued under a second root, both in the pool.
	h = newHierarchy(levelOpts{})
	other := testpki.NewRoot("Diff Other Root")
	i1x := h.i1.CrossSigned(other)
	h.pool = append(h.pool, other)
	add("cross-signed intermediate", h,
		sent{leaf: h.i1.NewLeaf("via both"), inters: []*testpki.Cert{h.i1, h.i2, i1x}},
		sent{leaf: h.i1.NewLeaf("via other"), inters: []*testpki.Cert{i1x}})

	denied := func(name string, h *hierarchy, deny []*testpki.Cert, want string, test ...sent) {
		c := diffCase{name: name, h: h, warm: everyWarmup(h), test: test, denied: deny}
		if want != "" {
			c.want = &want
		}
		cases = append(cases, c)
	}
	h = newHierarchy(levelOpts{})
	denied("a denied middle intermediate, presented", h, []*testpki.Cert{h.i2}, "", under(h)...)
	h = newHierarchy(levelOpts{})
	denied("a denied root", h, []*testpki.Cert{h.root}, "", under(h)...)
	h = newHierarchy(levelOpts{})
	h.pool = []*testpki.Cert{h.root, h.i2}
	denied("a denied middle intermediate in the pool, not presented", h, []*testpki.Cert{h.i2}, "",
		sent{leaf: h.i1.NewLeaf("i1 only"), inters: []*testpki.Cert{h.i1}})
	h = newHierarchy(levelOpts{})
	h.pool = []*testpki.Cert{h.root, h.i2}
	denied("a denied root above an intermediate of the pool", h, []*testpki.Cert{h.root}, "denied",
		sent{leaf: h.i1.NewLeaf("i1 only"), inters: []*testpki.Cert{h.i1}})
	h = newHierarchy(levelOpts{})
	other = testpki.NewRoot("Diff Other Root")
	i1x = h.i1.CrossSigned(other)
	h.pool = append(h.pool, other)
	denied("a denied root with a cross-signed way around it", h, []*testpki.Cert{h.root}, "",
		sent{leaf: h.i1.NewLeaf("via both"), inters: []*testpki.Cert{h.i1, h.i2, i1x}})
	return cases
}

// oracle is the reason crypto/x509 gives on fresh state: "" when a chain
// free of denied certificates verifies. A header goes through the decoder
// first, which refuses a non-CA certificate after the leaf; a TLS
// connection's chain does not.
func oracle(c diffCase, req sent, viaHeader bool) string {
	isDenied := func(x *x509.Certificate) bool {
		for _, d := range c.denied {
			if d.Cert.Equal(x) {
				return true
			}
		}
		return false
	}
	for _, i := range req.inters {
		if viaHeader && (!i.Cert.BasicConstraintsValid || !i.Cert.IsCA) {
			return "malformed" // the decoder's rule: only CA certificates follow the leaf
		}
	}
	for _, x := range append([]*testpki.Cert{req.leaf}, req.inters...) {
		if isDenied(x.Cert) {
			return "denied"
		}
	}
	pool := x509.NewCertPool()
	for _, r := range c.h.pool {
		pool.AddCert(r.Cert)
	}
	inters := x509.NewCertPool()
	for _, i := range req.inters {
		inters.AddCert(i.Cert)
	}
	chains, err := req.leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) {
			switch inv.Reason {
			case x509.Expired:
				return "expired"
			case x509.IncompatibleUsage:
				return "wrong_usage"
			}
		}
		return "untrusted"
	}
chains:
	for _, ch := range chains {
		for _, x := range ch {
			if isDenied(x) {
				continue chains
			}
		}
		return ""
	}
	return "denied"
}

func TestDifferentialAgainstX509(t *testing.T) {
	for _, c := range diffCases() {
		t.Run(c.name, func(t *testing.T) { runDiffCase(t, c) })
	}
}

// runDiffCase warms a handler with c's warm-up requests, denies c's
// denied certificates, then compares the warm handler's verdict and a
// fresh one's with the oracle's, request by request: for the chain in
// headers, and on the TLS connection.
func runDiffCase(t *testing.T, c diffCase) {
	t.Helper()
	var poolPEM []byte
	for _, r := range c.h.pool {
		poolPEM = append(poolPEM, r.PEM()...)
	}
	poolFile, err := testpki.WriteFile(t.TempDir(), "pool.pem", poolPEM)
	require.NoError(t, err)
	app := newTestApp(t)
	handler := func(source string) *Handler {
		h := &Handler{Source: source, Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(poolFile), app: app}
		require.NoError(t, provision(t, h))
		return h
	}
	send := func(h *Handler, p sent) response {
		if h.Source == "tls" {
			return serve(t, h, request{tlsPeerCerts: append([]*x509.Certificate{p.leaf.Cert}, certs(p.inters...)...)})
		}
		return serve(t, h, request{headers: p.headers()})
	}
	warm := map[string]*Handler{}
	for _, source := range []string{"header", "tls"} {
		h := handler(source)
		for _, w := range c.warm {
			send(h, w)
			send(h, w) // and from the result cache
		}
		warm[source] = h
	}
	for _, d := range c.denied {
		_, err := app.runtime.Deny(context.Background(), store.DenyRecord{Fingerprint: d.Fingerprint()})
		require.NoError(t, err)
	}
	for _, source := range []string{"header", "tls"} {
		for i, req := range c.test {
			want := oracle(c, req, source == "header")
			if c.want != nil {
				want = *c.want
			}
			cold := send(handler(source), req)
			hot := send(warm[source], req)
			name := fmt.Sprintf("%s, request %d (%s)", source, i, req.leaf.Cert.Subject.CommonName)
			assert.Equal(t, want, cold.ph("http.mtls.error"), "%s: cold: %v", name, cold.err)
			assert.Equal(t, want, hot.ph("http.mtls.error"), "%s: warm: %v", name, hot.err)
		}
	}
}

// TestDifferentialRandomHierarchies compares, as above, on hierarchies
// built at random (fixed seeds): CAs under one of two roots or under
// another CA, some cross-signed under a second parent, leaves under any
// CA, each sent with a random subset of the CAs in a random order
// (sometimes a root too), after benign warm-up requests. No chain
// crypto/x509 accepts may be refused, and none it refuses accepted.
func TestDifferentialRandomHierarchies(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 15))
			roots := []*testpki.Cert{testpki.NewRoot("Rand Root A"), testpki.NewRoot("Rand Root B")}
			cas := append([]*testpki.Cert(nil), roots...)
			var all []*testpki.Cert // every CA certificate, cross-signed ones too
			for i := range 5 {
				parent := cas[rng.IntN(len(cas))]
				ca := parent.NewIntermediate(fmt.Sprintf("Rand CA %d", i))
				cas = append(cas, ca)
				all = append(all, ca)
				if rng.IntN(3) == 0 {
					other := cas[rng.IntN(len(cas)-1)]
					if other != parent {
						all = append(all, ca.CrossSigned(other))
					}
				}
			}
			h := &hierarchy{pool: roots[:1+rng.IntN(2)]}
			c := diffCase{name: "random", h: h}
			pick := func() sent {
				issuer := cas[rng.IntN(len(cas))]
				var inters []*testpki.Cert
				for _, ca := range all {
					if rng.IntN(3) > 0 {
						inters = append(inters, ca)
					}
				}
				if rng.IntN(4) == 0 {
					inters = append(inters, roots[rng.IntN(2)])
				}
				rng.Shuffle(len(inters), func(i, j int) { inters[i], inters[j] = inters[j], inters[i] })
				if len(inters) > 7 {
					inters = inters[:7]
				}
				return sent{leaf: issuer.NewLeaf("rand leaf"), inters: inters}
			}
			for range 8 {
				c.warm = append(c.warm, pick())
			}
			for range 16 {
				c.test = append(c.test, pick())
			}
			runDiffCase(t, c)
		})
	}
}
