package mtlsauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// mkCert signs tmpl with parent (self-signed when parent is nil).
func mkCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, key
}

func caTmpl(cn string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, MaxPathLen: -1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
}

func leafTmpl(cn string, dns ...string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
}

// TestIntermediateFastPathMatchesFullVerification builds chains that full
// verification accepts or rejects and checks that the verifier (which
// takes the remembered-intermediate path where it applies) agrees, on the
// first request and on a second one with a new leaf.
func TestIntermediateFastPathMatchesFullVerification(t *testing.T) {
	type chain struct {
		root   *x509.Certificate
		inter  *x509.Certificate
		leaves [2]*x509.Certificate
	}
	build := func(rootT, interT *x509.Certificate, leafT func(i int) *x509.Certificate) chain {
		root, rootKey := mkCert(t, rootT, nil, nil)
		inter, interKey := mkCert(t, interT, root, rootKey)
		var ch chain
		ch.root, ch.inter = root, inter
		for i := range ch.leaves {
			ch.leaves[i], _ = mkCert(t, leafT(i), inter, interKey)
		}
		return ch
	}
	plainLeaf := func(i int) *x509.Certificate { return leafTmpl("leaf", "a.good.example") }

	pathLenZeroRoot := caTmpl("root pathlen 0")
	pathLenZeroRoot.MaxPathLen, pathLenZeroRoot.MaxPathLenZero = 0, true
	constrainedRoot := caTmpl("constrained root")
	constrainedRoot.PermittedDNSDomains = []string{"good.example"}
	notCA := leafTmpl("not a CA")
	notCA.KeyUsage |= x509.KeyUsageCertSign
	expiredInter := caTmpl("expired inter")
	expiredInter.NotBefore, expiredInter.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	noCertSign := caTmpl("inter without certSign")
	noCertSign.KeyUsage = x509.KeyUsageDigitalSignature
	serverOnlyInter := caTmpl("serverAuth-only inter")
	serverOnlyInter.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	tests := []struct {
		name string
		ch   chain
	}{
		{"ordinary chain", build(caTmpl("root"), caTmpl("inter"), plainLeaf)},
		{"root allows no intermediate", build(pathLenZeroRoot, caTmpl("inter"), plainLeaf)},
		{"root name constraints, leaf outside", build(constrainedRoot, caTmpl("inter"), func(i int) *x509.Certificate { return leafTmpl("leaf", "evil.example") })},
		{"root name constraints, leaf inside", build(constrainedRoot, caTmpl("inter"), plainLeaf)},
		{"issuer is not a CA", build(caTmpl("root"), notCA, plainLeaf)},
		{"intermediate expired", build(caTmpl("root"), expiredInter, plainLeaf)},
		{"intermediate without certSign usage", build(caTmpl("root"), noCertSign, plainLeaf)},
		{"intermediate restricted to serverAuth", build(caTmpl("root"), serverOnlyInter, plainLeaf)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := x509.NewCertPool()
			pool.AddCert(tt.ch.root)
			v := &verifier{limits: pathverify.Limits{MaxChain: 8}}
			v.static.Store(&trustSet{pool: pathverify.NewAnchors(pool, true)})
			for i, leaf := range tt.ch.leaves {
				inters := x509.NewCertPool()
				inters.AddCert(tt.ch.inter)
				_, fullErr := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
				vd := v.verify(t.Context(), []*x509.Certificate{leaf, tt.ch.inter}, store.FingerprintOf(leaf), time.Now())
				assert.Equal(t, fullErr == nil, vd.reason == "", "leaf %d: full verification says %v, verifier says %q", i, fullErr, vd.reason)
				if fullErr == nil {
					require.Len(t, vd.chain, 3, "the chain for revocation runs leaf, intermediate, root")
					assert.Same(t, tt.ch.root, vd.chain[2])
				}
			}
		})
	}
}

func TestIntermediateRemembered(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), CacheSize: -1}
	require.NoError(t, provision(t, h))
	for _, name := range []string{"dave", "erin", "frank"} {
		leaf := p.inter.NewLeaf(name)
		resp := serve(t, h, request{headers: withChain(rfc9440(leaf), rfc9440(p.inter))})
		require.Equal(t, 200, resp.status, name)
	}
	r, err := pathverify.NewRequest(p.inter.NewLeaf("gina").Cert, []*x509.Certificate{p.inter.Cert}, time.Now(), h.verifier.limits, nil)
	require.NoError(t, err)
	_, err = h.verifier.static.Load().pool.Verify(r)
	require.NoError(t, err)
	_, _, performed := r.Checks()
	require.Zero(t, performed, "the intermediate was verified once, and remembered")
	// A leaf from another CA that merely presents the known intermediate
	// is still refused.
	assert.Equal(t, 401, serve(t, h, request{headers: withChain(rfc9440(p.mallory), rfc9440(p.inter))}).status)
	// A forged intermediate with the same name is not the remembered one.
	forged := testpki.NewRoot("Test Intermediate CA")
	assert.Equal(t, 401, serve(t, h, request{headers: withChain(rfc9440(forged.NewLeaf("x")), rfc9440(forged))}).status)
}

// The deny list reaches what the client does not send: an intermediate
// or root of the trust pool, and the CA entry that admits the leaf.
func TestDenyReachesTheVerifiedChain(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t)
	bundle := p.write(t, "bundle.pem", append(p.root.PEM(), p.inter.PEM()...))
	pool := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(bundle), app: app}
	require.NoError(t, provision(t, pool))
	caEntry := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, AllowCA: []AllowEntry{{Alias: "inter-ca", File: p.interFile}}, app: app}
	require.NoError(t, provision(t, caEntry))
	ctx := context.Background()
	carol := request{headers: header(rfc9440(p.carol))} // the leaf alone
	require.Equal(t, 200, serve(t, pool, carol).status)
	resp := serve(t, caEntry, carol)
	require.Equal(t, 200, resp.status)
	require.Equal(t, "inter-ca", resp.ph("http.mtls.alias"))

	for _, denied := range []*testpki.Cert{p.inter, p.root} {
		_, err := app.runtime.Deny(ctx, store.DenyRecord{Fingerprint: denied.Fingerprint(), Reason: "compromised"})
		require.NoError(t, err)
		for name, h := range map[string]*Handler{"pool": pool, "CA entry": caEntry} {
			if h == caEntry && denied == p.root {
				continue // the root is no CA entry: the entry vouches alone
			}
			resp := serve(t, h, carol)
			assert.Equal(t, 403, resp.status, "%s, %s denied", name, denied.Cert.Subject.CommonName)
			assert.Equal(t, "denied", resp.ph("http.mtls.error"))
			assert.ErrorContains(t, resp.err, "a certificate in the verified chain is on the deny list: compromised")
		}
		require.NoError(t, app.runtime.Undeny(ctx, denied.Fingerprint()))
		require.Equal(t, 200, serve(t, pool, carol).status, "undenied")
	}
}

// Issue 15's limits, through the handler.
func TestChainCostLimits(t *testing.T) {
	p := newPKI(t)
	h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), CacheSize: -1}
	require.NoError(t, provision(t, h))
	tlsH := &Handler{Source: "tls", TrustPoolRaw: trustPool(p.rootFile), CacheSize: -1}
	require.NoError(t, provision(t, tlsH))

	// A key over the limit, leaf or chain: refused before any signature
	// work.
	hugeLeaf := p.root.NewLeaf("huge", testpki.PublicKey(testpki.MadeUpRSAKey(8200)))
	resp := serve(t, h, request{headers: header(rfc9440(hugeLeaf))})
	assert.Equal(t, "malformed", resp.ph("http.mtls.error"))
	assert.ErrorContains(t, resp.err, "RSA key of 8200 bits, over the limit of 8192 bits")
	hugeInter := p.root.Forge("Test Intermediate CA", testpki.PublicKey(testpki.MadeUpRSAKey(15360)))
	resp = serve(t, h, request{headers: withChain(rfc9440(p.carol), rfc9440(hugeInter), rfc9440(p.inter))})
	assert.Equal(t, "malformed", resp.ph("http.mtls.error"))
	assert.ErrorContains(t, resp.err, "RSA key of 15360 bits, over the limit of 8192 bits")

	// As many forged "intermediates" as a request may fail checks on,
	// sent before the real intermediate: checking that one too is over
	// the budget (a check that may fail), so untrusted.
	var chain []string
	for range h.verifier.limits.MaxFailedChecks() {
		chain = append(chain, rfc9440(p.root.Forge("Test Intermediate CA")))
	}
	chain = append(chain, rfc9440(p.inter))
	resp = serve(t, h, request{headers: withChain(rfc9440(p.carol), chain...)})
	assert.Equal(t, "untrusted", resp.ph("http.mtls.error"))
	assert.ErrorContains(t, resp.err, "too many signature checks")
	// One fewer fits; the real intermediate verifies the leaf.
	resp = serve(t, h, request{headers: withChain(rfc9440(p.inter.NewLeaf("dave")), chain[1:]...)})
	assert.Equal(t, 200, resp.status, "%v", resp.err)

	// max_chain applies to the connection's chain too.
	long := []*x509.Certificate{p.carol.Cert}
	for range 8 {
		long = append(long, p.inter.Cert)
	}
	resp = serve(t, tlsH, request{tlsPeerCerts: long})
	assert.Equal(t, "too_large", resp.ph("http.mtls.error"))
	assert.Equal(t, 200, serve(t, tlsH, request{tlsPeerCerts: long[:8]}).status, "8 certificates, duplicates dropped")
}
