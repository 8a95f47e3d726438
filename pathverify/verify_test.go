package pathverify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

var limits = Limits{MaxChain: 8}

func poolOf(certs ...*testpki.Cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Cert)
	}
	return p
}

func certsOf(cs ...*testpki.Cert) []*x509.Certificate {
	out := make([]*x509.Certificate, len(cs))
	for i, c := range cs {
		out[i] = c.Cert
	}
	return out
}

// request prepares leaf presented with inters at now, nothing denied.
func request(t testing.TB, leaf *testpki.Cert, inters ...*testpki.Cert) *Request {
	t.Helper()
	r, err := NewRequest(leaf.Cert, certsOf(inters...), time.Now(), limits, nil)
	require.NoError(t, err)
	return r
}

// x509Verdict is crypto/x509's verdict on leaf with every presented
// certificate, on fresh state.
func x509Verdict(pool *x509.CertPool, leaf *testpki.Cert, inters ...*testpki.Cert) error {
	_, err := verifyClient(leaf.Cert, pool, certsOf(inters...), time.Now())
	return err
}

func TestNewRequestFilters(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter")
	leaf := inter.NewLeaf("leaf")
	stray := testpki.NewSelfSigned("client's own")
	unrelated := testpki.NewRoot("Elsewhere").NewIntermediate("Unrelated")

	r, err := NewRequest(leaf.Cert, certsOf(leaf, stray, inter, root, inter, unrelated), time.Now(), limits, nil)
	require.NoError(t, err)
	var kept []*x509.Certificate
	for _, c := range r.cands {
		kept = append(kept, c.cert)
	}
	assert.Equal(t, certsOf(inter, root), kept, "the leaf, a duplicate and what no chain from the leaf can reach are dropped")

	// Reachability is transitive, whatever the order presented.
	i2 := root.NewIntermediate("I2")
	i1 := i2.NewIntermediate("I1")
	r, err = NewRequest(i1.NewLeaf("x").Cert, certsOf(i2, i1), time.Now(), limits, nil)
	require.NoError(t, err)
	assert.Len(t, r.cands, 2)

	_, err = NewRequest(leaf.Cert, certsOf(inter, inter, inter, inter, inter, inter, inter, inter), time.Now(), limits, nil)
	assert.ErrorIs(t, err, ErrChainTooLong, "9 certificates, max_chain 8")
}

func TestVerifyChains(t *testing.T) {
	root, i2, i1 := hierarchy()
	leaf := i1.NewLeaf("leaf")
	a := NewAnchors(poolOf(root), true)

	chains, err := a.Verify(request(t, leaf, i1, i2))
	require.NoError(t, err)
	assert.Equal(t, certsOf(leaf, i1, i2, root), chains[0])

	_, err = a.Verify(request(t, leaf, i1))
	assert.Error(t, err, "the middle intermediate is missing")

	// A Traefik-style list with the root, and in another order.
	chains, err = a.Verify(request(t, leaf, root, i2, i1))
	require.NoError(t, err)
	assert.Equal(t, certsOf(leaf, i1, i2, root), chains[0])
}

// A verdict never depends on what other clients sent (issue 11 item 2):
// once a client presented I1 and I2, a different leaf presenting only I1
// is refused, as a freshly started verifier refuses it.
func TestVerdictIndependentOfOtherClients(t *testing.T) {
	root, i2, i1 := hierarchy()
	pool := poolOf(root)
	a := NewAnchors(pool, true)
	for _, name := range []string{"warm 1", "warm 2"} {
		_, err := a.Verify(request(t, i1.NewLeaf(name), i1, i2))
		require.NoError(t, err)
	}
	require.Equal(t, 1, a.issuers.Len(), "I1 is remembered")

	other := i1.NewLeaf("other")
	_, warmErr := a.Verify(request(t, other, i1))
	_, coldErr := NewAnchors(pool, true).Verify(request(t, other, i1))
	require.Error(t, coldErr)
	assert.Error(t, warmErr, "the remembered I2 must not complete this client's chain")
	assert.Error(t, x509Verdict(pool, other, i1))

	// And with I2 sent, the fast path serves it: one signature check.
	r := request(t, other, i1, i2)
	chains, err := a.Verify(r)
	require.NoError(t, err)
	assert.Equal(t, certsOf(other, i1, i2, root), chains[0])
	charged, _, performed := r.Checks()
	assert.Zero(t, charged+performed, "no check on intermediates: the fast path")
}

func TestForgedIntermediatesAreNeverVerifyingKeys(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter")
	pool := poolOf(root)
	a := NewAnchors(pool, true)

	// An attacker's own CA named like the real intermediate, with a huge
	// key, and a leaf it "issued". Its signature is checked under the
	// root's key only; the huge key verifies nothing.
	huge := root.Forge("Inter", testpki.PublicKey(testpki.MadeUpRSAKey(15360)))
	mallory := inter.Forge("mallory") // names Inter as issuer, signed by another key
	r := request(t, mallory, huge, inter)
	_, err := a.Verify(r)
	require.Error(t, err)
	charged, failed, performed := r.Checks()
	assert.Equal(t, 2, performed, "one check of each presented certificate, under the root's key")
	assert.Equal(t, 2, charged)
	assert.Equal(t, 1, failed, "the forged one")

	// A self-signed one named like the intermediate: no anchor has its
	// name; its signature is checked once, under the real intermediate's
	// key (which is remembered: no check).
	self := testpki.NewRoot("Inter", testpki.PublicKey(testpki.MadeUpRSAKey(9000)))
	r = request(t, inter.NewLeaf("x"), self, inter)
	_, err = a.Verify(r)
	require.NoError(t, err)
	charged, failed, performed = r.Checks()
	assert.Equal(t, 1, performed)
	assert.Equal(t, 2, charged, "the remembered one is charged as the check it saves")
	assert.Equal(t, 1, failed)
}

// hierarchy is root -> I2 -> I1.
func hierarchy() (root, i2, i1 *testpki.Cert) {
	root = testpki.NewRoot("Root")
	i2 = root.NewIntermediate("I2")
	return root, i2, i2.NewIntermediate("I1")
}

// denyOf is a deny list of the given certificates.
func denyOf(denied ...*testpki.Cert) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool {
		for _, d := range denied {
			if d.Cert.Equal(c) {
				return true
			}
		}
		return false
	}
}

func TestRememberedFailures(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter")
	pool := poolOf(root)
	a := NewAnchors(pool, true)
	forged := root.Forge("Inter")
	leaf := inter.NewLeaf("leaf")

	r := request(t, leaf, forged, inter)
	_, err := a.Verify(r)
	require.NoError(t, err, "the real intermediate verifies the leaf")
	charged, failed, performed := r.Checks()
	assert.Equal(t, 2, performed)
	assert.Equal(t, 2, charged)
	assert.Equal(t, 1, failed)

	// Sent again, the forged one costs a lookup, and so does the real one;
	// both are charged as before, so the limits hold alike.
	r = request(t, inter.NewLeaf("other"), forged, inter)
	_, err = a.Verify(r)
	require.NoError(t, err)
	charged, failed, performed = r.Checks()
	assert.Zero(t, performed)
	assert.Equal(t, 2, charged)
	assert.Equal(t, 1, failed)

	// A remembered failure never turns into a success: the forged one
	// alone still fails, and is never used.
	r = request(t, forged.NewLeaf("via forged"), forged)
	_, err = a.Verify(r)
	assert.Error(t, err)

	// A new trust set starts afresh.
	r = request(t, inter.NewLeaf("third"), forged, inter)
	_, err = NewAnchors(pool, true).Verify(r)
	require.NoError(t, err)
	_, _, performed = r.Checks()
	assert.Equal(t, 2, performed)
}

// A certificate refused alone is not remembered as refused once another
// client presents what it chains through (a failure to chain depends on
// the other certificates; a signature fact does not).
func TestFailureAloneIsNotRemembered(t *testing.T) {
	root, i2, i1 := hierarchy()
	a := NewAnchors(poolOf(root), true)
	_, err := a.Verify(request(t, i1.NewLeaf("a"), i1))
	require.Error(t, err)
	_, err = a.Verify(request(t, i1.NewLeaf("b"), i1, i2))
	assert.NoError(t, err)
}

func TestCheckCap(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter")
	a := NewAnchors(poolOf(root), true)

	// Seven forged certificates under the root: more failed checks than a
	// request may spend.
	var forged []*testpki.Cert
	for range 7 {
		forged = append(forged, root.Forge("Inter"))
	}
	r := request(t, inter.NewLeaf("x"), forged...)
	_, err := a.Verify(r)
	require.ErrorIs(t, err, ErrTooManyChecks)
	charged, failed, performed := r.Checks()
	assert.Equal(t, limits.MaxFailedChecks(), failed, "checks stop at the limit")
	assert.Equal(t, limits.MaxFailedChecks(), charged)
	assert.Equal(t, limits.MaxFailedChecks(), performed)
	// Sent again: refused alike (remembered answers are charged), for
	// lookups only.
	r = request(t, inter.NewLeaf("y"), forged...)
	_, err = a.Verify(r)
	require.ErrorIs(t, err, ErrTooManyChecks)
	_, _, performed = r.Checks()
	assert.Zero(t, performed)

	// A legitimate chain of max_chain-1 intermediates fits.
	c := root
	var chain []*testpki.Cert
	for i := range limits.MaxChain - 1 {
		c = c.NewIntermediate(fmt.Sprintf("I%d", i))
		chain = append([]*testpki.Cert{c}, chain...)
	}
	r = request(t, c.NewLeaf("deep"), chain...)
	_, err = NewAnchors(poolOf(root), true).Verify(r)
	require.NoError(t, err)
	charged, failed, _ = r.Checks()
	assert.Equal(t, limits.MaxChain-1, charged)
	assert.Zero(t, failed)
}

func TestDeniedChains(t *testing.T) {
	root, i2, i1 := hierarchy()
	leaf := i1.NewLeaf("leaf")
	a := NewAnchors(poolOf(root), true)
	deny := denyOf
	verify := func(d func(*x509.Certificate) bool) error {
		r, err := NewRequest(leaf.Cert, certsOf(i1, i2), time.Now(), limits, d)
		require.NoError(t, err)
		_, err = a.Verify(r)
		return err
	}
	require.NoError(t, verify(nil), "warms the fast path")
	for _, d := range []*testpki.Cert{root, i2, i1} {
		err := verify(deny(d))
		var de *DeniedError
		require.True(t, errors.As(err, &de), "%s denied: %v", d.Cert.Subject.CommonName, err)
		assert.Same(t, d.Cert, de.Cert)
	}

	// The pool holds the intermediates beside the root, and the client
	// sends the leaf alone: the verified chain ends at I1, an anchor, but
	// denying what is above it (I2, the root) still refuses the leaf.
	bundle := NewAnchors(poolOf(root, i2, i1), true)
	for _, d := range []*testpki.Cert{nil, root, i2, i1} {
		var deny func(*x509.Certificate) bool
		if d != nil {
			deny = denyOf(d)
		}
		r, err := NewRequest(leaf.Cert, nil, time.Now(), limits, deny)
		require.NoError(t, err)
		chains, err := bundle.Verify(r)
		if d == nil {
			require.NoError(t, err)
			assert.Equal(t, certsOf(leaf, i1), chains[0])
			continue
		}
		var de *DeniedError
		require.ErrorAs(t, err, &de, "%s denied", d.Cert.Subject.CommonName)
		assert.Same(t, d.Cert, de.Cert)
	}

	// Cross-signed: I1 also under another root. Denying one root leaves
	// the path through the other.
	other := testpki.NewRoot("Other")
	i1x := i1.CrossSigned(other)
	b := NewAnchors(poolOf(root, other), true)
	r, err := NewRequest(leaf.Cert, certsOf(i1, i2, i1x), time.Now(), limits, deny(root))
	require.NoError(t, err)
	chains, err := b.Verify(r)
	require.NoError(t, err)
	for _, ch := range chains {
		assert.NotContains(t, ch, root.Cert)
	}
}

// The fast path checks a new leaf against its remembered issuer alone; a
// leaf carrying its own requireExplicitPolicy makes the policies of the
// whole chain matter, so it is verified in full, as crypto/x509 does.
func TestFastPathLeafPolicy(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter", testpki.Policies("1.2.3.4"))
	pool := poolOf(root)
	a := NewAnchors(pool, true)
	_, err := a.Verify(request(t, inter.NewLeaf("benign"), inter))
	require.NoError(t, err)
	require.Equal(t, 1, a.issuers.Len())

	strict := inter.NewLeaf("strict", testpki.Policies("1.2.3.5"), testpki.RequireExplicitPolicy(0))
	require.Error(t, x509Verdict(pool, strict, inter), "no policy valid for the whole chain")
	_, err = a.Verify(request(t, strict, inter))
	assert.Error(t, err)

	fine := inter.NewLeaf("fine", testpki.Policies("1.2.3.4"), testpki.RequireExplicitPolicy(0))
	require.NoError(t, x509Verdict(pool, fine, inter))
	_, err = a.Verify(request(t, fine, inter))
	assert.NoError(t, err)
}

func TestIntermediatesBounded(t *testing.T) {
	root := testpki.NewRoot("Root")
	a := NewAnchors(poolOf(root), true)
	for range maxIntermediates + 5 {
		inter := root.NewIntermediate("Intermediate")
		_, err := a.Verify(request(t, inter.NewLeaf("leaf"), inter))
		require.NoError(t, err)
	}
	assert.Equal(t, maxIntermediates, a.issuers.Len())
}

func TestNotAfter(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	root := testpki.NewRoot("Root", testpki.Validity(now.Add(-time.Hour), now.Add(3*time.Hour)))
	inter := root.NewIntermediate("Intermediate", testpki.Validity(now.Add(-time.Hour), now.Add(time.Hour)))
	leaf := inter.NewLeaf("leaf", testpki.Validity(now.Add(-time.Hour), now.Add(2*time.Hour)))
	assert.Equal(t, now.Add(time.Hour).UTC(), NotAfter([]*x509.Certificate{leaf.Cert, inter.Cert, root.Cert}).UTC())
	assert.Equal(t, now.Add(2*time.Hour).UTC(), NotAfter([]*x509.Certificate{leaf.Cert}).UTC())
}

// Whether a request fits its limits never depends on what other requests
// left behind: the same request is refused by a warm Anchors (its real
// intermediate remembered, the fast path ready) as by a fresh one.
func TestLimitsIndependentOfMemory(t *testing.T) {
	root := testpki.NewRoot("Root")
	inter := root.NewIntermediate("Inter")
	pool := poolOf(root)
	warm := NewAnchors(pool, true)
	for _, name := range []string{"a", "b"} {
		_, err := warm.Verify(request(t, inter.NewLeaf(name), inter))
		require.NoError(t, err)
	}
	var chain []*testpki.Cert
	for range limits.MaxFailedChecks() {
		chain = append(chain, root.Forge("Inter"))
	}
	chain = append(chain, inter)
	leaf := inter.NewLeaf("c")
	_, coldErr := NewAnchors(pool, true).Verify(request(t, leaf, chain...))
	require.ErrorIs(t, coldErr, ErrTooManyChecks)
	_, warmErr := warm.Verify(request(t, leaf, chain...))
	assert.ErrorIs(t, warmErr, ErrTooManyChecks)
	// and again, every answer now remembered
	_, warmErr = warm.Verify(request(t, leaf, chain...))
	assert.ErrorIs(t, warmErr, ErrTooManyChecks)
}

// Anchors that share a name (a root re-keyed twice, all in the pool): an
// intermediate under one is checked under each, and that is one failed
// check at most, not one per anchor, so the chain verifies.
func TestSameNamedAnchors(t *testing.T) {
	roots := []*testpki.Cert{testpki.NewRoot("Root"), testpki.NewRoot("Root"), testpki.NewRoot("Root")}
	a := NewAnchors(poolOf(roots...), true)
	require.Equal(t, 3, a.subjects[string(roots[0].Cert.RawSubject)])
	inter := roots[2].NewIntermediate("Inter")
	old := roots[0].NewIntermediate("Inter") // an outdated one, under the oldest root
	r := request(t, inter.NewLeaf("leaf"), old, inter)
	_, err := a.Verify(r)
	require.NoError(t, err)
	charged, failed, _ := r.Checks()
	assert.Equal(t, 6, charged, "each intermediate checked under the three roots")
	assert.Zero(t, failed, "both are genuine")

	forged := roots[1].Forge("Inter")
	r = request(t, inter.NewLeaf("leaf 2"), forged, inter)
	_, err = a.Verify(r)
	require.NoError(t, err)
	_, failed, _ = r.Checks()
	assert.Equal(t, 1, failed, "the forged one, checked under three keys, is one failure")
}

// One Anchors serves every request of a route at once.
func TestAnchorsConcurrent(t *testing.T) {
	root, i2, i1 := hierarchy()
	a := NewAnchors(poolOf(root, i2), true)
	leaves := []*testpki.Cert{i1.NewLeaf("a"), i1.NewLeaf("b"), i2.NewLeaf("c")}
	forged := root.Forge("I2")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				leaf := leaves[(g+i)%len(leaves)]
				r, err := NewRequest(leaf.Cert, certsOf(i1, forged), time.Now(), limits, denyOf(forged))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := a.Verify(r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
