package revocation

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCRLFailureLoggedOnce checks that a refresh every few seconds does not
// repeat a failure that has not changed: a missing file or a dead server is
// logged once, and again only after it was mended and broke anew.
func TestCRLFailureLoggedOnce(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	failures := func(logs *logRecorder) int {
		n := 0
		for _, e := range logs.all() {
			if e.err != nil {
				n++
			}
		}
		return n
	}

	t.Run("file", func(t *testing.T) {
		logs := &logRecorder{}
		dir := t.TempDir()
		data := makeCRL(t, h.inter, crlOpts{})
		f := writeFile(t, dir, "inter.crl", data)
		c := newChecker(t, Config{CRLs: []string{f}, Logger: logs.log})

		require.NoError(t, os.Remove(f))
		for range 3 {
			assert.Error(t, c.Refresh(ctx), "still failing, still returned")
		}
		assert.Equal(t, 1, failures(logs), "a missing file is logged once")

		writeFile(t, dir, "inter.crl", data)
		require.NoError(t, c.Refresh(ctx))
		require.NoError(t, os.Remove(f))
		assert.Error(t, c.Refresh(ctx))
		assert.Equal(t, 2, failures(logs), "missing again after it came back: logged again")

		broken := []byte("-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n")
		writeFile(t, dir, "inter.crl", broken)
		assert.Error(t, c.Refresh(ctx))
		assert.NoError(t, c.Refresh(ctx), "the same broken version is not read again")
		assert.Equal(t, 3, failures(logs))
		rewriteFile(t, f, append(broken, '\n'))
		assert.Error(t, c.Refresh(ctx))
		assert.Equal(t, 4, failures(logs), "a new broken version is logged")
	})

	t.Run("url", func(t *testing.T) {
		logs := &logRecorder{}
		clk := newClock()
		srv := newFileServer(t)
		u := srv.set("/inter.crl", makeCRL(t, h.inter, crlOpts{thisUpdate: clk.Now().Add(-time.Hour), nextUpdate: clk.Now().Add(time.Hour)}))
		c := newChecker(t, Config{CRLs: []string{u}, Now: clk.Now, Logger: logs.log})
		srv.srv.Close()
		clk.Advance(time.Hour - time.Second) // due: within a refresh of nextUpdate
		for range 3 {
			assert.Error(t, c.Refresh(ctx))
		}
		assert.Equal(t, 1, failures(logs), "a dead server is logged once, however often it is retried")
	})
}

// TestOnReload checks that OnReload is called for a CRL put in use by
// Refresh, and not at New, for an unchanged file or for a failed reload.
func TestOnReload(t *testing.T) {
	ctx := context.Background()
	h := newHierarchy(nil)
	f := writeFile(t, t.TempDir(), "inter.crl", makeCRL(t, h.inter, crlOpts{}))
	calls := 0
	c := newChecker(t, Config{CRLs: []string{f}, OnReload: func() { calls++ }})
	assert.Equal(t, 0, calls, "not at New")
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, 0, calls, "unchanged")
	rewriteFile(t, f, makeCRL(t, h.inter, crlOpts{revoked: serials(h.revokedLeaf), number: 2}))
	require.NoError(t, c.Refresh(ctx))
	assert.Equal(t, 1, calls, "replaced")
	rewriteFile(t, f, []byte("junk"))
	assert.Error(t, c.Refresh(ctx))
	assert.Equal(t, 1, calls, "a failed reload changes nothing")
}
