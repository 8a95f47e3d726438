package revocation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// hierarchy is a root, an intermediate and leaves under it.
type hierarchy struct {
	root, inter, leaf, revokedLeaf *testpki.Cert
}

func newHierarchy(interOpts []testpki.Option, leafOpts ...testpki.Option) *hierarchy {
	root := testpki.NewRoot("Test Root")
	inter := root.NewIntermediate("Test Intermediate", interOpts...)
	return &hierarchy{
		root:        root,
		inter:       inter,
		leaf:        inter.NewLeaf("good client", leafOpts...),
		revokedLeaf: inter.NewLeaf("revoked client", leafOpts...),
	}
}

// idpExt builds an Issuing Distribution Point extension.
func idpExt(uris []string, userOnly, caOnly, indirect bool) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(uris) > 0 {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, u := range uris {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					}
				})
			})
		}
		// In tag order, as DER requires.
		for _, f := range []struct {
			tag uint8
			on  bool
		}{{1, userOnly}, {2, caOnly}, {4, indirect}} {
			if f.on {
				b.AddASN1(cbasn1.Tag(f.tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
			}
		}
	})
	return pkix.Extension{Id: oidIssuingDP, Critical: true, Value: b.BytesOrPanic()}
}

func TestCRLStatus(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	// An impostor CA with the same name as the intermediate.
	impostor := h.root.NewIntermediate("Test Intermediate")
	now := time.Now()
	fresh := crlOpts{thisUpdate: now.Add(-time.Hour), nextUpdate: now.Add(6 * time.Hour)}
	stale := crlOpts{thisUpdate: now.Add(-48 * time.Hour), nextUpdate: now.Add(-time.Hour)}
	with := func(o crlOpts, revoked ...*testpki.Cert) crlOpts { o.revoked = serials(revoked...); return o }
	tampered := func() []byte {
		der := makeCRL(t, h.inter, with(fresh, h.revokedLeaf))
		der[len(der)-3] ^= 0xff
		return der
	}

	tests := []struct {
		name       string
		crls       map[string][]byte // file name -> content
		chain      []*x509.Certificate
		status     Status
		which      int
		errIs      error
		validUntil time.Time
	}{
		{
			name:       "good leaf",
			crls:       map[string][]byte{"inter.crl": makeCRL(t, h.inter, with(fresh, h.revokedLeaf)), "root.crl": makeCRL(t, h.root, fresh)},
			chain:      chainOf(h.leaf),
			status:     Good,
			which:      -1,
			validUntil: now.Add(time.Minute), // capped by the refresh horizon
		},
		{
			name:   "revoked leaf",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, with(fresh, h.revokedLeaf)), "root.crl": makeCRL(t, h.root, fresh)},
			chain:  chainOf(h.revokedLeaf),
			status: Revoked,
			which:  0,
		},
		{
			name:   "revoked intermediate",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh), "root.crl": makeCRL(t, h.root, with(fresh, h.inter))},
			chain:  chainOf(h.leaf),
			status: Revoked,
			which:  1,
		},
		{
			name:   "PEM CRL",
			crls:   map[string][]byte{"inter.pem": pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: makeCRL(t, h.inter, with(fresh, h.revokedLeaf))})},
			chain:  chainOf(h.revokedLeaf)[:2], // the intermediate as anchor
			status: Revoked,
			which:  0,
		},
		{
			name:   "intermediate not covered",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh)},
			chain:  chainOf(h.leaf),
			status: Unknown,
			which:  1,
			errIs:  ErrNotCovered,
		},
		{
			name:  "intermediate is the anchor",
			crls:  map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh)},
			chain: chainOf(h.leaf)[:2], status: Good, which: -1,
			validUntil: now.Add(time.Minute),
		},
		{
			name:   "stale CRL",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, stale)},
			chain:  chainOf(h.leaf)[:2],
			status: Unknown, which: 0, errIs: ErrStale,
		},
		{
			name:   "stale CRL still revokes",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, with(stale, h.revokedLeaf))},
			chain:  chainOf(h.revokedLeaf)[:2],
			status: Revoked, which: 0,
		},
		{
			name:   "impostor CRL is not trusted to revoke",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, impostor, with(fresh, h.revokedLeaf))},
			chain:  chainOf(h.revokedLeaf)[:2],
			status: Unknown, which: 0, errIs: ErrBadSignature,
		},
		{
			name:   "impostor CRL is not trusted to clear",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, impostor, fresh)},
			chain:  chainOf(h.leaf)[:2],
			status: Unknown, which: 0, errIs: ErrBadSignature,
		},
		{
			name:   "tampered signature",
			crls:   map[string][]byte{"inter.crl": tampered()},
			chain:  chainOf(h.revokedLeaf)[:2],
			status: Unknown, which: 0, errIs: ErrBadSignature,
		},
		{
			name:   "user-only CRL does not cover the intermediate",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh), "root.crl": makeCRL(t, h.root, crlOpts{thisUpdate: fresh.thisUpdate, nextUpdate: fresh.nextUpdate, revoked: serials(h.inter), extra: []pkix.Extension{idpExt(nil, true, false, false)}})},
			chain:  chainOf(h.leaf),
			status: Unknown, which: 1, errIs: ErrNotCovered,
		},
		{
			name:   "CA-only CRL covers the intermediate",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh), "root.crl": makeCRL(t, h.root, crlOpts{thisUpdate: fresh.thisUpdate, nextUpdate: fresh.nextUpdate, revoked: serials(h.inter), extra: []pkix.Extension{idpExt(nil, false, true, false)}})},
			chain:  chainOf(h.leaf),
			status: Revoked, which: 1,
		},
		{
			name:   "partitioned CRL does not cover a certificate naming another distribution point",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, crlOpts{thisUpdate: fresh.thisUpdate, nextUpdate: fresh.nextUpdate, revoked: serials(h.revokedLeaf), extra: []pkix.Extension{idpExt([]string{"http://crl.example/shard1.crl"}, false, false, false)}})},
			chain:  chainOf(h.revokedLeaf)[:2],
			status: Unknown, which: 0, errIs: ErrNotCovered,
		},
		{
			name:   "chain out of order",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh), "root.crl": makeCRL(t, h.root, fresh)},
			chain:  []*x509.Certificate{h.leaf.Cert, h.root.Cert},
			status: Unknown, which: 0, errIs: ErrChainOrder,
		},
		{
			name:   "self-signed alone",
			chain:  []*x509.Certificate{h.root.Cert},
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh)},
			status: Good, which: -1, validUntil: h.root.Cert.NotAfter,
		},
		{
			name:   "leaf alone",
			chain:  []*x509.Certificate{h.leaf.Cert},
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh)},
			status: Unknown, which: 0, errIs: ErrNoIssuer,
		},
		{
			name:   "empty chain",
			crls:   map[string][]byte{"inter.crl": makeCRL(t, h.inter, fresh)},
			status: Unknown, which: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for name, data := range tt.crls {
				files = append(files, writeFile(t, dir, name, data))
			}
			c := newChecker(t, Config{CRLs: files, Now: func() time.Time { return now }})
			for range 2 { // the second time from the verification cache
				r := c.Check(ctx, tt.chain)
				assert.Equal(t, tt.status, r.Status, "status (err %v)", r.Err)
				assert.Equal(t, tt.which, r.Which, "which")
				if tt.errIs != nil {
					assert.ErrorIs(t, r.Err, tt.errIs)
				}
				if tt.status != Unknown {
					assert.NoError(t, r.Err)
				} else {
					assert.Error(t, r.Err)
					assert.True(t, r.ValidUntil.IsZero())
				}
				if !tt.validUntil.IsZero() {
					assert.WithinDuration(t, tt.validUntil, r.ValidUntil, 0)
				}
				if tt.status == Revoked {
					assert.Equal(t, 1, r.RevocationReason)
					assert.False(t, r.RevokedAt.IsZero())
					assert.True(t, strings.HasPrefix(r.Source, "crl "+dir), r.Source)
				}
			}
		})
	}
}

func TestCRLValidUntilIsNextUpdate(t *testing.T) {
	h := newHierarchy(nil)
	now := time.Now().Truncate(time.Second)
	next := now.Add(30 * time.Second)
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, h.inter, crlOpts{thisUpdate: now.Add(-time.Hour), nextUpdate: next}))
	c := newChecker(t, Config{CRLs: []string{f}, Now: func() time.Time { return now }})
	r := c.Check(context.Background(), chainOf(h.leaf)[:2])
	require.Equal(t, Good, r.Status, r.Err)
	assert.WithinDuration(t, next, r.ValidUntil, 0)
}

func TestCRLRejectedAtLoad(t *testing.T) {
	h := newHierarchy(nil)
	now := time.Now()
	base := crlOpts{thisUpdate: now.Add(-time.Hour)}
	ext := func(e pkix.Extension) crlOpts { o := base; o.extra = []pkix.Extension{e}; return o }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("not a CRL"), "CRL"},
		{"certificate PEM", h.leaf.PEM(), "want X509 CRL"},
		{"delta CRL", makeCRL(t, h.inter, ext(pkix.Extension{Id: oidDeltaCRL, Critical: true, Value: []byte{2, 1, 1}})), "delta"},
		{"indirect CRL", makeCRL(t, h.inter, ext(idpExt(nil, false, false, true))), "indirect"},
		{"unknown critical extension", makeCRL(t, h.inter, ext(pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}})), "unsupported critical"},
		{"not yet valid", makeCRL(t, h.inter, crlOpts{thisUpdate: now.Add(time.Hour)}), "thisUpdate"},
		{"too large", makeCRL(t, h.inter, crlOpts{revoked: serials(h.leaf, h.revokedLeaf, h.inter)}), "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, t.TempDir(), "x.crl", tt.data)
			cfg := Config{CRLs: []string{f}, RefreshInterval: -1}
			if tt.name == "too large" {
				cfg.MaxCRLBytes = int64(len(tt.data) - 1)
			}
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), f)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := New(Config{CRLs: []string{"/nonexistent/x.crl"}})
		require.Error(t, err)
	})
	t.Run("too large is ErrTooLarge", func(t *testing.T) {
		data := makeCRL(t, h.inter, base)
		f := writeFile(t, t.TempDir(), "x.crl", data)
		_, err := New(Config{CRLs: []string{f}, MaxCRLBytes: 10})
		assert.ErrorIs(t, err, ErrTooLarge)
		_, err = New(Config{CRLs: []string{f}, MaxCRLBytes: int64(len(data)), RefreshInterval: -1})
		assert.NoError(t, err)
	})
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "nothing to check"},
		{"responder without ocsp", Config{CRLFromCertificate: true, OCSPResponder: "http://x/"}, "OCSP is off"},
		{"responder not http", Config{OCSP: true, OCSPResponder: "ldap://x/"}, "http or https"},
		{"ldap CRL", Config{CRLs: []string{"ldap://x/crl"}}, "only files and http/https"},
		{"empty CRL", Config{CRLs: []string{""}}, "empty"},
		{"duplicate CRL", Config{CRLs: []string{"/a", "/a"}}, "twice"},
		{"negative timeout", Config{OCSP: true, OCSPTimeout: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestCRLFileRotation(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	other := testpki.NewRoot("Other Root").NewIntermediate("Test Intermediate")
	clk := newClock()
	logs := &logRecorder{}
	dir := t.TempDir()
	fresh := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(24 * time.Hour)}
	f := writeFile(t, dir, "inter.crl", makeCRL(t, h.inter, fresh))
	c := newChecker(t, Config{CRLs: []string{f}, Now: clk.Now, Logger: logs.log})
	chain := chainOf(h.revokedLeaf)[:2]

	require.Equal(t, Good, c.Check(ctx, chain).Status)

	// Unchanged: nothing happens.
	require.NoError(t, c.Refresh(ctx))
	assert.Empty(t, logs.all())

	// Rotated: the new CRL revokes the leaf.
	o := fresh
	o.revoked, o.number = serials(h.revokedLeaf), 2
	rewriteFile(t, f, makeCRL(t, h.inter, o))
	assert.Equal(t, Good, c.Check(ctx, chain).Status, "not before Refresh")
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)
	require.Len(t, logs.all(), 1)
	assert.Equal(t, "CRL reloaded", logs.all()[0].msg)
	assert.NoError(t, logs.all()[0].err)

	// A broken replacement: the last good CRL stays, and it is logged once.
	rewriteFile(t, f, []byte("-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n"))
	err := c.Refresh(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), f)
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)
	ev := logs.all()
	require.Len(t, ev, 2)
	assert.Contains(t, ev[1].msg, "keeping the last good one")
	assert.Equal(t, f, ev[1].source)
	assert.Error(t, ev[1].err)
	require.NoError(t, c.Refresh(ctx), "a broken file is not re-read until it changes")
	assert.Len(t, logs.all(), 2)

	// A replacement from another CA of the same name is refused too.
	rewriteFile(t, f, makeCRL(t, other, fresh))
	err = c.Refresh(ctx)
	assert.ErrorIs(t, err, ErrBadSignature)
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)

	// A file that disappears keeps the last good one.
	data := makeCRL(t, h.inter, o)
	require.NoError(t, os.Remove(f))
	assert.Error(t, c.Refresh(ctx))
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)
	writeFile(t, dir, "inter.crl", data)
	require.NoError(t, c.Refresh(ctx))

	// Past nextUpdate with no newer file: stale, logged once.
	clk.Advance(25 * time.Hour)
	good := chainOf(h.leaf)[:2]
	r := c.Check(ctx, good)
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrStale)
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status, "a listed serial stays revoked")
	n := len(logs.all())
	require.NoError(t, c.Refresh(ctx))
	require.NoError(t, c.Refresh(ctx))
	ev = logs.all()
	require.Len(t, ev, n+1)
	assert.ErrorIs(t, ev[n].err, ErrStale)

	// A fresh file makes it good again.
	o.thisUpdate, o.nextUpdate, o.number = clk.Now().Add(-time.Minute), clk.Now().Add(24*time.Hour), 3
	rewriteFile(t, f, makeCRL(t, h.inter, o))
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, Good, c.Check(ctx, good).Status)
}

func TestCRLRefreshLoop(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, h.inter, crlOpts{}))
	c := newChecker(t, Config{CRLs: []string{f}, RefreshInterval: 20 * time.Millisecond})
	chain := chainOf(h.revokedLeaf)[:2]
	require.Equal(t, Good, c.Check(ctx, chain).Status)
	rewriteFile(t, f, makeCRL(t, h.inter, crlOpts{revoked: serials(h.revokedLeaf), number: 2}))
	assert.Eventually(t, func() bool { return c.Check(ctx, chain).Status == Revoked }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice")
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status, "Check works after Close")
}

func TestCRLFromURL(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	clk := newClock()
	logs := &logRecorder{}
	srv := newFileServer(t)
	o := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(time.Hour)}
	u := srv.set("/inter.crl", makeCRL(t, h.inter, o))
	c := newChecker(t, Config{CRLs: []string{u}, Now: clk.Now, Logger: logs.log})
	chain := chainOf(h.revokedLeaf)[:2]
	require.Equal(t, Good, c.Check(ctx, chain).Status)
	assert.Equal(t, 1, srv.count("/inter.crl"))

	// Not due: not fetched.
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, 1, srv.count("/inter.crl"))

	// Within a refresh interval of nextUpdate: fetched again.
	o.revoked, o.number, o.nextUpdate = serials(h.revokedLeaf), 2, clk.Now().Add(3*time.Hour)
	srv.set("/inter.crl", makeCRL(t, h.inter, o))
	clk.Advance(time.Hour - 30*time.Second)
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, 2, srv.count("/inter.crl"))
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)

	// An older CRL served later (a replay) is refused.
	clk.Advance(2*time.Hour + time.Minute)
	old := o
	old.thisUpdate, old.revoked, old.nextUpdate = o.thisUpdate.Add(-time.Hour), nil, clk.Now().Add(time.Hour)
	srv.set("/inter.crl", makeCRL(t, h.inter, old))
	err := c.Refresh(ctx)
	assert.ErrorContains(t, err, "older")
	assert.Equal(t, Revoked, c.Check(ctx, chain).Status)

	// Server gone: kept, logged; once past nextUpdate a good cert is Unknown.
	srv.srv.Close()
	clk.Advance(time.Hour)
	assert.Error(t, c.Refresh(ctx))
	r := c.Check(ctx, chainOf(h.leaf)[:2])
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrStale)
	var kept, stale bool
	for _, e := range logs.all() {
		kept = kept || strings.Contains(e.msg, "keeping the last good one")
		stale = stale || errors.Is(e.err, ErrStale)
	}
	assert.True(t, kept)
	assert.True(t, stale)
}

func TestCRLURLAtStartup(t *testing.T) {
	h := newHierarchy(nil)
	t.Run("down", func(t *testing.T) {
		_, err := New(Config{CRLs: []string{refusedURL(t) + "x.crl"}, CRLTimeout: time.Second})
		require.Error(t, err)
	})
	t.Run("404", func(t *testing.T) {
		srv := newFileServer(t)
		_, err := New(Config{CRLs: []string{srv.srv.URL + "/missing.crl"}})
		assert.ErrorContains(t, err, "HTTP status 404")
	})
	t.Run("too large", func(t *testing.T) {
		srv := newFileServer(t)
		data := makeCRL(t, h.inter, crlOpts{})
		u := srv.set("/inter.crl", data)
		_, err := New(Config{CRLs: []string{u}, MaxCRLBytes: int64(len(data) - 1)})
		assert.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("hanging", func(t *testing.T) {
		srv := newFileServer(t)
		u := srv.set("/inter.crl", makeCRL(t, h.inter, crlOpts{}))
		srv.gate = make(chan struct{})
		defer close(srv.gate)
		start := time.Now()
		_, err := New(Config{CRLs: []string{u}, CRLTimeout: 200 * time.Millisecond})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 3*time.Second)
	})
}

func TestCRLFromCertificate(t *testing.T) {
	ctx := context.Background()
	srv := newFileServer(t)
	root := testpki.NewRoot("CDP Root")
	inter := root.NewIntermediate("CDP Intermediate", testpki.CRLDistributionPoints(srv.srv.URL+"/root.crl"))
	cdp := testpki.CRLDistributionPoints("ldap://ldap.example/cn=crl", srv.srv.URL+"/inter.crl")
	leaf := inter.NewLeaf("good", cdp)
	revoked := inter.NewLeaf("revoked", cdp)
	clk := newClock()
	o := crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(time.Hour), revoked: serials(revoked)}
	srv.set("/inter.crl", makeCRL(t, inter, o))
	srv.set("/root.crl", makeCRL(t, root, crlOpts{thisUpdate: o.thisUpdate, nextUpdate: clk.Now().Add(2 * time.Hour)}))
	c := newChecker(t, Config{CRLFromCertificate: true, Now: clk.Now})

	r := c.Check(ctx, chainOf(leaf))
	require.Equal(t, Good, r.Status, r.Err)
	assert.WithinDuration(t, o.nextUpdate, r.ValidUntil, 0)
	r = c.Check(ctx, chainOf(revoked))
	assert.Equal(t, Revoked, r.Status)
	assert.Equal(t, 0, r.Which)
	assert.Equal(t, "crl "+srv.srv.URL+"/inter.crl", r.Source)
	for range 50 {
		require.Equal(t, Good, c.Check(ctx, chainOf(leaf)).Status)
	}
	assert.Equal(t, 1, srv.count("/inter.crl"), "cached")
	assert.Equal(t, 1, srv.count("/root.crl"), "cached")

	// Past nextUpdate: fetched again on next use.
	o.thisUpdate, o.nextUpdate, o.number = clk.Now(), clk.Now().Add(3*time.Hour), 2
	o.revoked = serials(revoked, leaf)
	srv.set("/inter.crl", makeCRL(t, inter, o))
	clk.Advance(time.Hour)
	assert.Equal(t, Revoked, c.Check(ctx, chainOf(leaf)).Status)
	assert.Equal(t, 2, srv.count("/inter.crl"))

	// The server fails: the stale CRL still revokes, good ones are Unknown,
	// and failures are not retried for a few seconds.
	srv.mu.Lock()
	delete(srv.files, "/inter.crl")
	srv.mu.Unlock()
	clk.Advance(3 * time.Hour)
	good := inter.NewLeaf("another", cdp)
	r = c.Check(ctx, chainOf(good))
	assert.Equal(t, Unknown, r.Status)
	assert.ErrorIs(t, r.Err, ErrStale)
	assert.ErrorContains(t, r.Err, "HTTP status 404")
	assert.Equal(t, Revoked, c.Check(ctx, chainOf(leaf)).Status)
	n := srv.count("/inter.crl")
	c.Check(ctx, chainOf(good))
	assert.Equal(t, n, srv.count("/inter.crl"), "failure remembered")
	clk.Advance(failureTTL)
	c.Check(ctx, chainOf(good))
	assert.Equal(t, n+1, srv.count("/inter.crl"), "retried after failureTTL")
}

func TestCRLFromCertificateFailures(t *testing.T) {
	ctx := context.Background()
	root := testpki.NewRoot("CDP Root")
	inter := root.NewIntermediate("CDP Intermediate")
	impostor := root.NewIntermediate("CDP Intermediate")
	crl := makeCRL(t, inter, crlOpts{})
	tests := []struct {
		name  string
		setup func(t *testing.T, srv *fileServer) (url string, cfg Config)
		errIs error
		want  string
	}{
		{"too large", func(t *testing.T, srv *fileServer) (string, Config) {
			return srv.set("/c.crl", crl), Config{MaxCRLBytes: int64(len(crl) - 1)}
		}, ErrTooLarge, ""},
		{"not found", func(t *testing.T, srv *fileServer) (string, Config) {
			return srv.srv.URL + "/none.crl", Config{}
		}, nil, "HTTP status 404"},
		{"refused", func(t *testing.T, srv *fileServer) (string, Config) {
			return refusedURL(t) + "c.crl", Config{}
		}, nil, "refused"},
		{"hanging", func(t *testing.T, srv *fileServer) (string, Config) {
			srv.gate = make(chan struct{})
			t.Cleanup(func() { close(srv.gate) })
			return srv.set("/c.crl", crl), Config{CRLTimeout: 200 * time.Millisecond}
		}, context.DeadlineExceeded, ""},
		{"garbage", func(t *testing.T, srv *fileServer) (string, Config) {
			return srv.set("/c.crl", []byte("garbage")), Config{}
		}, nil, "crl"},
		{"signed by an impostor", func(t *testing.T, srv *fileServer) (string, Config) {
			return srv.set("/c.crl", makeCRL(t, impostor, crlOpts{})), Config{}
		}, ErrBadSignature, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t)
			u, cfg := tt.setup(t, srv)
			cfg.CRLFromCertificate = true
			c := newChecker(t, cfg)
			leaf := inter.NewLeaf("client", testpki.CRLDistributionPoints(u))
			start := time.Now()
			r := c.Check(ctx, chainOf(leaf)[:2])
			assert.Less(t, time.Since(start), 3*time.Second)
			assert.Equal(t, Unknown, r.Status)
			assert.Equal(t, 0, r.Which)
			if tt.errIs != nil {
				assert.ErrorIs(t, r.Err, tt.errIs)
			}
			assert.ErrorContains(t, r.Err, tt.want)
		})
	}
}

func TestCRLFromCertificateCoalesces(t *testing.T) {
	ctx := context.Background()
	srv := newFileServer(t)
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	u := srv.set("/c.crl", makeCRL(t, inter, crlOpts{}))
	leaf := inter.NewLeaf("client", testpki.CRLDistributionPoints(u))
	c := newChecker(t, Config{CRLFromCertificate: true})
	srv.gate, srv.seen = make(chan struct{}), make(chan struct{}, 100)

	const n = 20
	var started, done sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			results[i] = c.Check(ctx, chainOf(leaf)[:2])
		}()
	}
	started.Wait()
	<-srv.seen
	time.Sleep(100 * time.Millisecond) // let the others reach the fetch
	close(srv.gate)
	done.Wait()
	for _, r := range results {
		assert.Equal(t, Good, r.Status, r.Err)
	}
	assert.Equal(t, 1, srv.count("/c.crl"))
}

func TestCRLFromCertificateLRU(t *testing.T) {
	ctx := context.Background()
	srv := newFileServer(t)
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	var leaves []*testpki.Cert
	for _, p := range []string{"/a.crl", "/b.crl", "/c.crl"} {
		u := srv.set(p, makeCRL(t, inter, crlOpts{}))
		leaves = append(leaves, inter.NewLeaf("client", testpki.CRLDistributionPoints(u)))
	}
	c := newChecker(t, Config{CRLFromCertificate: true, MaxCachedCRLs: 2})
	for _, l := range leaves {
		require.Equal(t, Good, c.Check(ctx, chainOf(l)[:2]).Status)
	}
	assert.Equal(t, 2, c.cdp.lru.Len())
	require.Equal(t, Good, c.Check(ctx, chainOf(leaves[0])[:2]).Status)
	assert.Equal(t, 2, srv.count("/a.crl"), "evicted, fetched again")
	require.Equal(t, Good, c.Check(ctx, chainOf(leaves[2])[:2]).Status)
	assert.Equal(t, 1, srv.count("/c.crl"), "still cached")
}

func TestConfiguredURLNotFetchedAsDistributionPoint(t *testing.T) {
	ctx := context.Background()
	srv := newFileServer(t)
	inter := testpki.NewRoot("Root").NewIntermediate("Intermediate")
	u := srv.set("/c.crl", makeCRL(t, inter, crlOpts{}))
	leaf := inter.NewLeaf("client", testpki.CRLDistributionPoints(u))
	c := newChecker(t, Config{CRLs: []string{u}, CRLFromCertificate: true})
	for range 5 {
		require.Equal(t, Good, c.Check(ctx, chainOf(leaf)[:2]).Status)
	}
	assert.Equal(t, 1, srv.count("/c.crl"))
}

func TestAppendSerial(t *testing.T) {
	tests := []struct {
		n    *big.Int
		want []byte
	}{
		{big.NewInt(0), nil},
		{big.NewInt(1), []byte{1}},
		{big.NewInt(256), []byte{1, 0}},
		{big.NewInt(-5), []byte{'-', 5}},
		{new(big.Int).Lsh(big.NewInt(1), 159), append([]byte{0x80}, make([]byte, 19)...)},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, appendSerial(nil, tt.n), tt.n.String())
	}
}

func TestParseIDP(t *testing.T) {
	s, err := parseIDP(idpExt([]string{"http://a/x.crl", "http://b/x.crl"}, true, false, false).Value)
	require.NoError(t, err)
	assert.Equal(t, scope{userOnly: true, dps: []string{"http://a/x.crl", "http://b/x.crl"}}, s)
	s, err = parseIDP(idpExt(nil, false, true, false).Value)
	require.NoError(t, err)
	assert.Equal(t, scope{caOnly: true}, s)
	_, err = parseIDP(idpExt(nil, false, false, true).Value)
	assert.ErrorContains(t, err, "indirect")
	_, err = parseIDP(idpExt(nil, true, true, false).Value)
	assert.ErrorContains(t, err, "malformed")
	_, err = parseIDP([]byte{0x30, 0x03, 0x83, 0x01, 0x00})
	assert.ErrorContains(t, err, "some revocation reasons")
	_, err = parseIDP([]byte{0x30})
	assert.ErrorContains(t, err, "malformed")
}

func TestStatusString(t *testing.T) {
	assert.Equal(t, "good", Good.String())
	assert.Equal(t, "revoked", Revoked.String())
	assert.Equal(t, "unknown", Unknown.String())
	assert.Equal(t, "unknown", Status(0).String(), "the zero value fails safe")
}

func TestCheckSourceNames(t *testing.T) {
	for _, name := range []string{"/etc/mtls/root.crl", "root.crl", `C:\mtls\root.crl`, "http://pki.example/root.crl", "https://pki.example/root.crl"} {
		assert.NoError(t, CheckCRL(name), name)
	}
	for _, name := range []string{"", "ldap://x/crl", "ftp:root.crl", "http://", "HTTP://pki.example/root.crl"} {
		assert.Error(t, CheckCRL(name), name)
	}
	for _, u := range []string{"http://ocsp.example", "https://ocsp.example/path"} {
		assert.NoError(t, CheckResponder(u), u)
	}
	for _, u := range []string{"", "ocsp.example", "ftp://ocsp.example", "https://", "/etc/ocsp"} {
		assert.Error(t, CheckResponder(u), u)
	}
}
