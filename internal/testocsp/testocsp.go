// Package testocsp runs openssl's OCSP responder for tests, on 127.0.0.1.
//
// `openssl ocsp -port` listens on every interface and cannot be told to
// bind to 127.0.0.1 (OpenSSL 3.0 takes a bare port number), so the HTTP
// side is an httptest server on 127.0.0.1 that runs the same responder code
// once per request in its file mode (-reqin/-respout): same index, same
// signing, same answer bytes. It needs the openssl binary (Debian package
// openssl).
package testocsp

import (
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

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// Responder is a running openssl OCSP responder.
type Responder struct {
	srv *httptest.Server
	// Hits counts the requests answered (or refused).
	Hits atomic.Int64

	mu   sync.Mutex
	dir  string
	bin  string
	args []string
}

// Start runs a responder for certificates issued by ca, signing its answers
// with signer (ca itself, or a delegated responder certificate ca issued),
// with an empty index; it is closed at the test's cleanup.
func Start(t testing.TB, ca, signer *testpki.Cert) *Responder {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the openssl binary is required (Debian package openssl): %v", err)
	}
	r := &Responder{dir: t.TempDir(), bin: bin, args: []string{
		"ocsp", "-index", "index.txt", "-CA", "ca.pem",
		"-rsigner", "rsigner.pem", "-rkey", "rkey.pem", "-nmin", "5",
		"-reqin", "req.der", "-respout", "resp.der",
	}}
	for name, data := range map[string][]byte{
		"index.txt": nil, "index.txt.attr": []byte("unique_subject = no\n"),
		"ca.pem": ca.PEM(), "rsigner.pem": signer.PEM(), "rkey.pem": signer.KeyPEM(),
	} {
		r.write(t, name, data)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Hits.Add(1)
		body, err := io.ReadAll(req.Body)
		if err != nil || req.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		resp, err := r.answer(req, body)
		if err != nil {
			t.Errorf("openssl ocsp: %v", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// answer runs openssl once on a DER request.
func (r *Responder) answer(req *http.Request, body []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = os.Remove(filepath.Join(r.dir, "resp.der"))
	if err := os.WriteFile(filepath.Join(r.dir, "req.der"), body, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(req.Context(), r.bin, r.args...)
	cmd.Dir = r.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v\n%s", err, out)
	}
	return os.ReadFile(filepath.Join(r.dir, "resp.der"))
}

func (r *Responder) write(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// SetIndex replaces the responder's database (lines from IndexLine).
func (r *Responder) SetIndex(t testing.TB, index string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(t, "index.txt", []byte(index))
}

// URL is where the responder answers.
func (r *Responder) URL() string { return r.srv.URL + "/ocsp" }

// Close stops the responder: requests to URL are refused from then on.
func (r *Responder) Close() { r.srv.Close() }

// IndexLine is c's line in an `openssl ca` database: valid, or revoked at
// revokedAt (not zero) for reason (an openssl reason name, or "").
func IndexLine(c *testpki.Cert, revokedAt time.Time, reason string) string {
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
