package revocation

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// opensslResponder answers OCSP requests with the real `openssl ocsp`
// responder. `openssl ocsp -port` listens on every interface and cannot be
// told to bind to 127.0.0.1 (OpenSSL 3.0 takes a bare port number), so the
// HTTP side is an httptest server on 127.0.0.1 that runs the same responder
// code once per request in its file mode (-reqin/-respout): same index,
// same signing, same answer bytes.
type opensslResponder struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	dir  string
	args []string
}

// indexLine is one line of an `openssl ca` database (index.txt).
func indexLine(c *testpki.Cert, revokedAt time.Time, reason string) string {
	const layout = "060102150405Z"
	serial := fmt.Sprintf("%X", c.Cert.SerialNumber)
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	status, rev := "V", ""
	if !revokedAt.IsZero() {
		status, rev = "R", revokedAt.UTC().Format(layout)
		if reason != "" {
			rev += "," + reason
		}
	}
	return strings.Join([]string{status, c.Cert.NotAfter.UTC().Format(layout), rev, serial, "unknown", "/CN=" + c.Cert.Subject.CommonName}, "\t") + "\n"
}

// newOpensslResponder starts the responder for ca, signing with signer;
// setIndex gives it its database.
func newOpensslResponder(t *testing.T, ca, signer *testpki.Cert) *opensslResponder {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	require.NoError(t, err, "the openssl binary is required for this test (Debian package openssl)")
	dir := t.TempDir()
	writeFile(t, dir, "index.txt", nil)
	writeFile(t, dir, "index.txt.attr", []byte("unique_subject = no\n"))
	writeFile(t, dir, "ca.pem", ca.PEM())
	writeFile(t, dir, "rsigner.pem", signer.PEM())
	writeFile(t, dir, "rkey.pem", signer.KeyPEM())
	o := &opensslResponder{dir: dir, args: []string{
		"ocsp", "-index", "index.txt", "-CA", "ca.pem",
		"-rsigner", "rsigner.pem", "-rkey", "rkey.pem", "-nmin", "5",
		"-reqin", "req.der", "-respout", "resp.der",
	}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		_ = os.Remove(filepath.Join(dir, "resp.der"))
		if err := os.WriteFile(filepath.Join(dir, "req.der"), body, 0o600); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		cmd := exec.CommandContext(r.Context(), bin, o.args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("openssl ocsp: %v\n%s", err, out)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		resp, err := os.ReadFile(filepath.Join(dir, "resp.der"))
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// setIndex writes the responder's index.txt.
func (o *opensslResponder) setIndex(t *testing.T, index string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	writeFile(t, o.dir, "index.txt", []byte(index))
}

func (o *opensslResponder) URL() string { return o.srv.URL + "/ocsp" }

func TestOpenSSLResponder(t *testing.T) {
	ctx := context.Background()
	root := testpki.NewRoot("OpenSSL Root")
	inter := root.NewIntermediate("OpenSSL Intermediate")
	delegate := inter.NewLeaf("OpenSSL OCSP responder", testpki.EKU(x509.ExtKeyUsageOCSPSigning))
	revokedAt := time.Now().Add(-3 * time.Hour).Truncate(time.Second)

	for _, signer := range []struct {
		name string
		cert *testpki.Cert
	}{{"signed by the CA", inter}, {"delegated responder", delegate}} {
		t.Run(signer.name, func(t *testing.T) {
			o := newOpensslResponder(t, inter, signer.cert)
			url := o.URL()
			good := inter.NewLeaf("good client", testpki.OCSPServers(url), testpki.Serial(0x1001))
			revoked := inter.NewLeaf("revoked client", testpki.OCSPServers(url), testpki.Serial(0x1002))
			unknown := inter.NewLeaf("unknown client", testpki.OCSPServers(url), testpki.Serial(0x1003))
			o.setIndex(t, indexLine(good, time.Time{}, "")+indexLine(revoked, revokedAt, "keyCompromise"))

			c := newChecker(t, Config{OCSP: true, OCSPTimeout: 5 * time.Second})
			r := c.Check(ctx, chainOf(good)[:2])
			require.Equal(t, Good, r.Status, "err: %v", r.Err)
			assert.WithinDuration(t, time.Now().Add(5*time.Minute), r.ValidUntil, time.Minute)

			r = c.Check(ctx, chainOf(revoked)[:2])
			require.Equal(t, Revoked, r.Status, "err: %v", r.Err)
			assert.Equal(t, 0, r.Which)
			assert.Equal(t, ocsp.KeyCompromise, r.RevocationReason)
			assert.WithinDuration(t, revokedAt, r.RevokedAt, 0)
			assert.Equal(t, "ocsp "+url, r.Source)

			r = c.Check(ctx, chainOf(unknown)[:2])
			assert.Equal(t, Unknown, r.Status)
			assert.ErrorIs(t, r.Err, ErrResponderUnknown)

			for range 10 {
				c.Check(ctx, chainOf(good)[:2])
				c.Check(ctx, chainOf(revoked)[:2])
			}
			assert.Equal(t, int64(3), o.hits.Load(), "answers are cached")
		})
	}
}
