package mtlsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// pki is one hierarchy shared by the handler tests: a root, an
// intermediate, and leaves that each fail (or pass) one check.
type pki struct {
	dir        string
	root       *testpki.Cert
	inter      *testpki.Cert
	alice      *testpki.Cert // root -> alice, allowed as "alice"
	bob        *testpki.Cert // root -> bob, valid but not on the allow list
	carol      *testpki.Cert // root -> inter -> carol
	expired    *testpki.Cert
	notYet     *testpki.Cert
	serverOnly *testpki.Cert // EKU serverAuth only
	noEKU      *testpki.Cert // no EKU extension
	mallory    *testpki.Cert // another root's leaf
	rootFile   string
	aliceFile  string
	interFile  string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.root = testpki.NewRoot("Test Root CA")
	p.inter = p.root.NewIntermediate("Test Intermediate CA")
	p.alice = p.root.NewLeaf("alice", testpki.DNS("alice.example"), testpki.Emails("alice@example.com"), testpki.URIs("spiffe://example/alice"), testpki.IPs("10.1.2.3"))
	p.bob = p.root.NewLeaf("bob")
	p.carol = p.inter.NewLeaf("carol")
	p.expired = p.root.NewLeaf("expired", testpki.Expired())
	p.notYet = p.root.NewLeaf("not-yet", testpki.NotYetValid())
	p.serverOnly = p.root.NewLeaf("server-only", testpki.EKU(x509.ExtKeyUsageServerAuth))
	p.noEKU = p.root.NewLeaf("no-eku", testpki.NoEKU())
	p.mallory = testpki.NewRoot("Evil CA").NewLeaf("mallory")
	p.rootFile = p.write(t, "root.pem", p.root.PEM())
	p.aliceFile = p.write(t, "alice.pem", p.alice.PEM())
	p.interFile = p.write(t, "inter.pem", p.inter.PEM())
	return p
}

func (p *pki) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path, err := testpki.WriteFile(p.dir, name, data)
	require.NoError(t, err)
	return path
}

// rfc9440 encodes certificates as an RFC 9440 Client-Cert value.
func rfc9440(c *testpki.Cert) string {
	return ":" + base64.StdEncoding.EncodeToString(c.DER()) + ":"
}

// trustPool is the JSON of a file trust pool.
func trustPool(files ...string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"provider": "file", "pem_files": files})
	return b
}

// newTestApp is an mtls_auth app over a file storage in a temp dir, as
// Caddy would provision it (but not started: tests call syncOnce).
func newTestApp(t *testing.T, tiers ...Tier) *App {
	t.Helper()
	a := &App{Tiers: tiers}
	require.NoError(t, a.setup(zap.NewNop(), &certmagic.FileStorage{Path: t.TempDir()}))
	t.Cleanup(func() { _ = a.Cleanup() })
	require.NoError(t, a.Validate())
	return a
}

// provision provisions h in a fresh Caddy context and validates it. The
// handler is provisioned over the app its app field names (tests set it to
// share one app between handlers), else over a new test app.
func provision(t *testing.T, h *Handler) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	app := h.app
	if app == nil {
		app = newTestApp(t)
	}
	if err := h.provision(ctx, app); err != nil {
		return err
	}
	return h.Validate()
}

// request is a request as Caddy's server prepares it: a replacer in the
// context and the trusted-proxy verdict of the server.
type request struct {
	remote        string // default 10.0.0.1:5555
	headers       map[string][]string
	serverTrusted bool
	tlsPeerCerts  []*x509.Certificate
}

type response struct {
	err        error
	status     int // from the HandlerError, or 200 when next ran
	nextCalled bool
	nextHeader http.Header // the header next saw
	header     http.Header // the response header the handler set
	repl       *caddy.Replacer
}

func serve(t *testing.T, h *Handler, req request) response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	if req.remote != "" {
		r.RemoteAddr = req.remote
	}
	for k, vs := range req.headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	if req.tlsPeerCerts != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: req.tlsPeerCerts}
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: req.serverTrusted,
	})
	r = r.WithContext(ctx)

	resp := response{repl: repl, status: http.StatusOK}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		resp.nextCalled = true
		resp.nextHeader = r.Header.Clone()
		return nil
	})
	rec := httptest.NewRecorder()
	resp.err = h.ServeHTTP(rec, r, next)
	resp.header = rec.Header()
	if resp.err != nil {
		var he caddyhttp.HandlerError
		require.ErrorAs(t, resp.err, &he)
		resp.status = he.StatusCode
	}
	return resp
}

// ph reads a placeholder the way a later handler would.
func (r response) ph(key string) string {
	v, _ := r.repl.GetString(key)
	return v
}

// certs returns the parsed certificates of cs.
func certs(cs ...*testpki.Cert) []*x509.Certificate {
	out := make([]*x509.Certificate, len(cs))
	for i, c := range cs {
		out[i] = c.Cert
	}
	return out
}

func join(vals ...string) string { return strings.Join(vals, ", ") }

func nopLogger() *zap.Logger { return zap.NewNop() }

func storeFor(tb testing.TB) certmagic.Storage { return &certmagic.FileStorage{Path: tb.TempDir()} }

func mustDecoder(tb testing.TB, profile, hdr, chain string) *decoder.Decoder {
	tb.Helper()
	d, err := decoder.New(decoder.Options{Profile: profile, Header: hdr, ChainHeader: chain})
	require.NoError(tb, err)
	return d
}
