package revocation

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// clock is a settable clock shared by a Checker and the test servers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logRecorder records the Checker's log events.
type logRecorder struct {
	mu     sync.Mutex
	events []logEvent
}

type logEvent struct {
	msg, source string
	err         error
}

func (r *logRecorder) log(msg, source string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, logEvent{msg, source, err})
}

func (r *logRecorder) all() []logEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logEvent(nil), r.events...)
}

// crlOpts describes a CRL to make.
type crlOpts struct {
	revoked    []*big.Int
	thisUpdate time.Time
	nextUpdate time.Time // zero: thisUpdate + 24h
	number     int64
	extra      []pkix.Extension
}

// makeCRL makes a DER CRL signed by issuer.
func makeCRL(t testing.TB, issuer *testpki.Cert, o crlOpts) []byte {
	t.Helper()
	if o.thisUpdate.IsZero() {
		o.thisUpdate = time.Now().Add(-time.Hour)
	}
	if o.nextUpdate.IsZero() {
		o.nextUpdate = o.thisUpdate.Add(24 * time.Hour)
	}
	if o.number == 0 {
		o.number = 1
	}
	tmpl := &x509.RevocationList{
		Number:          big.NewInt(o.number),
		ThisUpdate:      o.thisUpdate,
		NextUpdate:      o.nextUpdate,
		ExtraExtensions: o.extra,
	}
	for _, s := range o.revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   s,
			RevocationTime: o.thisUpdate.Add(-time.Minute),
			ReasonCode:     1, // keyCompromise
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer.Cert, issuer.Key)
	require.NoError(t, err)
	return der
}

func serials(certs ...*testpki.Cert) []*big.Int {
	var out []*big.Int
	for _, c := range certs {
		out = append(out, c.Cert.SerialNumber)
	}
	return out
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// rewriteFile replaces a file's content and moves its mtime forward, so
// that a change is seen even on a coarse-mtime file system.
func rewriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	next := st.ModTime().Add(2 * time.Second)
	require.NoError(t, os.Chtimes(path, next, next))
}

// chainOf is the chain of c up to and including its root.
func chainOf(c *testpki.Cert) []*x509.Certificate {
	var out []*x509.Certificate
	for p := c; p != nil; p = p.Issuer {
		out = append(out, p.Cert)
	}
	return out
}

// newChecker makes a Checker without a refresh loop, closed at cleanup.
func newChecker(t testing.TB, cfg Config) *Checker {
	t.Helper()
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = -1
	}
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fileServer serves fixed bodies by path and counts requests per path.
type fileServer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
	gate  chan struct{} // when non-nil, requests wait for it to close
	seen  chan struct{} // when non-nil, gets a value per request
}

func newFileServer(t testing.TB) *fileServer {
	fs := &fileServer{files: map[string][]byte{}, hits: map[string]int{}}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.hits[r.URL.Path]++
	body, ok := fs.files[r.URL.Path]
	gate, seen := fs.gate, fs.seen
	fs.mu.Unlock()
	if seen != nil {
		seen <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(body)
}

func (fs *fileServer) set(path string, body []byte) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files[path] = body
	return fs.srv.URL + path
}

func (fs *fileServer) count(path string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[path]
}

// responder is a test OCSP responder.
type responder struct {
	srv  *httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	now    func() time.Time
	issuer *testpki.Cert
	signer *testpki.Cert        // signs the responses; default issuer
	certID *testpki.Cert        // the issuer named in the CertID; default issuer
	status map[string]int       // by decimal serial; default ocsp.Good
	tweak  func(*ocsp.Response) // changes the template
	raw    []byte               // answer these bytes instead
	code   int                  // answer this HTTP status instead
	delay  time.Duration        // sleep before answering (until the client goes)
	gate   chan struct{}        // when non-nil, wait for it to close
	seen   chan struct{}        // when non-nil, gets a value per request
}

func newResponder(t testing.TB, issuer *testpki.Cert, now func() time.Time) *responder {
	r := &responder{now: now, issuer: issuer, status: map[string]int{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *responder) URL() string { return r.srv.URL + "/ocsp" }

func (r *responder) set(c *testpki.Cert, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[c.Cert.SerialNumber.String()] = status
}

func (r *responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.hits.Add(1)
	// Read the body first: only then does the server notice a client that
	// goes away, and cancel req.Context().
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	delay, gate, seen, code, raw := r.delay, r.gate, r.seen, r.code, r.raw
	r.mu.Unlock()
	if seen != nil {
		seen <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	if code != 0 {
		w.WriteHeader(code)
		return
	}
	if raw != nil {
		_, _ = w.Write(raw)
		return
	}
	oreq, err := ocsp.ParseRequest(body)
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	r.mu.Lock()
	st, ok := r.status[oreq.SerialNumber.String()]
	if !ok {
		st = ocsp.Good
	}
	signer, certID, tweak := r.signer, r.certID, r.tweak
	now := r.now()
	r.mu.Unlock()
	if signer == nil {
		signer = r.issuer
	}
	if certID == nil {
		certID = r.issuer
	}
	tmpl := ocsp.Response{
		Status:       st,
		SerialNumber: oreq.SerialNumber,
		ThisUpdate:   now.Add(-time.Minute),
		NextUpdate:   now.Add(time.Hour),
	}
	if st == ocsp.Revoked {
		tmpl.RevokedAt = now.Add(-2 * time.Hour)
		tmpl.RevocationReason = ocsp.KeyCompromise
	}
	if signer != r.issuer {
		tmpl.Certificate = signer.Cert
	}
	if tweak != nil {
		tweak(&tmpl)
	}
	der, err := ocsp.CreateResponse(certID.Cert, signer.Cert, tmpl, signer.Key)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// refusedURL is an http URL on 127.0.0.1 where nothing listens.
func refusedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/"
}
