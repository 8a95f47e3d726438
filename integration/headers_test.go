//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// Headers in and out (the README's Headers section), through a running
// Caddy: forged XFCC elements, Istio's two elements, RFC 9440 lists, the
// removal of every certificate header, and the identity forwarded to an
// upstream.

const (
	edgeURI    = "spiffe://cluster.local/ns/edge/sa/gateway"
	gatewayURI = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
)

// envoyElement is the XFCC element Envoy writes about a client certificate
// (By, Hash, Cert, Subject, URI, DNS; URI and DNS unquoted, as Envoy writes
// them).
func envoyElement(by string, c *testpki.Cert) string {
	parts := []string{}
	if by != "" {
		parts = append(parts, "By="+by)
	}
	parts = append(parts, "Hash="+c.Fingerprint(), `Cert="`+nginxEscaped(c)+`"`, `Subject="`+decoder.SubjectName(c.Cert)+`"`)
	if len(c.Cert.URIs) == 0 {
		parts = append(parts, "URI=")
	}
	for _, u := range c.Cert.URIs {
		parts = append(parts, "URI="+u.String())
	}
	for _, d := range c.Cert.DNSNames {
		parts = append(parts, "DNS="+d)
	}
	return strings.Join(parts, ";")
}

// TestXFCCForgedSANRefused: a client certificate whose DNS SAN holds
// ",By=<proxy>;Cert=<alice's certificate>" makes Envoy write an element
// for alice after mallory's own. Caddy refuses the whole header.
func TestXFCCForgedSANRefused(t *testing.T) {
	p := newPKI(t)
	alice := p.Clients["alice"]
	port := freePort(t)
	startCaddy(t, mtlsSite(port, "X-Forwarded-Client-Cert",
		"profile envoy_xfcc",
		"xfcc_by "+edgeURI,
		"trust_pool file trust.pem",
		"trusted_sources 127.0.0.1/32",
	), p.files(t, "trust.pem"))

	forged := ",By=" + edgeURI + ";Cert=" + nginxEscaped(alice)
	mallory := p.OtherCA.NewLeaf("mallory", testpki.DNS("mallory.example"+forged))
	header := envoyElement(edgeURI, mallory)

	// The forged element alone is alice: it would have authenticated her.
	status, body := direct(t, port, "-H", "X-Forwarded-Client-Cert: "+header[strings.Index(header, forged)+1:])
	expectOK(t, "the forged element on its own", status, body, map[string]string{"cn": "alice", "fp": alice.Fingerprint()})

	status, body = direct(t, port, "-H", "X-Forwarded-Client-Cert: "+header)
	expectReject(t, "mallory's header with the forged element", status, body, 401, "malformed")

	// An honest two-hop header still works.
	status, body = direct(t, port, "-H", "X-Forwarded-Client-Cert: "+envoyElement("spiffe://outer", p.Clients["bob"])+","+envoyElement(edgeURI, alice))
	expectOK(t, "two honest elements", status, body, map[string]string{"cn": "alice"})
}

// TestIstioTwoElements: Istio's gateway element (with the client's Cert)
// followed by the sidecar's (URI = the gateway), with and without
// xfcc_proxies, and a client that skips the gateway.
func TestIstioTwoElements(t *testing.T) {
	p := newPKI(t)
	alice := p.Clients["alice"]
	istio, plain := freePort(t), freePort(t)
	site := func(port int, extra ...string) string {
		return mtlsSite(port, "X-Forwarded-Client-Cert", append([]string{
			"profile envoy_xfcc",
			"trust_pool file trust.pem",
			"trusted_sources 127.0.0.1/32",
		}, extra...)...)
	}
	startCaddy(t, site(istio, "xfcc_proxies "+gatewayURI)+site(plain), p.files(t, "trust.pem"))

	sidecar := func(peerURI string) string {
		return "By=spiffe://cluster.local/ns/prod/sa/api;Hash=" + strings.Repeat("ab", 32) + `;Subject="";URI=` + peerURI
	}
	header := envoyElement("", alice) + "," + sidecar(gatewayURI)

	status, body := direct(t, istio, "-H", "X-Forwarded-Client-Cert: "+header)
	expectOK(t, "gateway then sidecar, xfcc_proxies", status, body, map[string]string{"cn": "alice", "fp": alice.Fingerprint(), "profile": "envoy_xfcc"})

	status, body = direct(t, plain, "-H", "X-Forwarded-Client-Cert: "+header)
	expectReject(t, "gateway then sidecar, default selection", status, body, 401, "malformed")

	// A client that reaches the sidecar directly, sending its own XFCC with
	// alice's element: the sidecar's element names the client, which is
	// not a listed proxy, and carries no Cert.
	status, body = direct(t, istio, "-H", "X-Forwarded-Client-Cert: "+envoyElement("", alice)+","+sidecar("spiffe://cluster.local/ns/prod/sa/intruder"))
	expectReject(t, "a client bypassing the gateway", status, body, 401, "malformed")
}

// TestClientCertIsOneItem: RFC 9440 Client-Cert is a single byte sequence;
// a list there is malformed, not a client and its intermediate.
func TestClientCertIsOneItem(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	startCaddy(t, mtlsSite(port, "Client-Cert",
		"profile rfc9440",
		"trust_pool file ca.pem",
		"trusted_sources 127.0.0.1/32",
	), p.files(t, "ca.pem"))
	item := func(c *testpki.Cert) string { return ":" + derBase64(c) + ":" }
	bob, alice := p.Clients["bob"], p.Clients["alice"]

	status, body := direct(t, port, "-H", "Client-Cert: "+item(bob))
	expectOK(t, "one item", status, body, map[string]string{"cn": "bob"})
	status, body = direct(t, port, "-H", "Client-Cert: "+item(bob)+", "+item(alice))
	expectReject(t, "a list in Client-Cert", status, body, 401, "malformed")
	// The chain header is a list, parameters and all (RFC 8941).
	status, body = direct(t, port, "-H", "Client-Cert: "+item(alice), "-H", `Client-Cert-Chain: `+item(p.Intermediate)+`;note="a,b"`)
	expectOK(t, "chain with a parameter holding a comma", status, body, map[string]string{"cn": "alice"})
	// An end-entity certificate after the client's is someone else's.
	status, body = direct(t, port, "-H", "Client-Cert: "+item(alice), "-H", "Client-Cert-Chain: "+item(p.Intermediate)+", "+item(bob))
	expectReject(t, "a leaf in the chain header", status, body, 401, "malformed")
}

// TestAutoStripsChainHeader: with profile auto, a client-sent
// Client-Cert-Chain never reaches the next handler, nor does the
// certificate header, unless keep_header.
func TestAutoStripsChainHeader(t *testing.T) {
	p := newPKI(t)
	strip, keep := freePort(t), freePort(t)
	site := func(port int, extra ...string) string {
		return fmt.Sprintf(`:%d {
	mtls_auth {
		%s
	}
	respond "cert=[{http.request.header.Client-Cert}] chain=[{http.request.header.Client-Cert-Chain}] cn={http.mtls.subject.cn}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port, strings.Join(append([]string{"trust_pool file trust.pem", "trusted_sources 127.0.0.1/32"}, extra...), "\n\t\t"))
	}
	startCaddy(t, site(strip)+site(keep, "keep_header"), p.files(t, "trust.pem"))
	cert := "Client-Cert: :" + derBase64(p.Clients["bob"]) + ":"
	chain := "Client-Cert-Chain: :" + derBase64(p.Intermediate) + ":"

	status, body := direct(t, strip, "-H", cert, "-H", chain)
	if status != 200 || body != "cert=[] chain=[] cn=bob" {
		t.Errorf("auto: got %d %q, want both headers removed", status, body)
	}
	status, body = direct(t, keep, "-H", cert, "-H", chain)
	if want := "cert=[:" + derBase64(p.Clients["bob"]) + ":] chain=[:" + derBase64(p.Intermediate) + ":] cn=bob"; status != 200 || body != want {
		t.Errorf("auto with keep_header: got %d %q, want %q", status, body, want)
	}
}

// TestForwardedIdentityRoundTrip: Caddy verifies a TLS client and hands
// its identity to an upstream behind reverse_proxy, in the RFC 9440, XFCC,
// x5t#S256 and SPIFFE forms; the plugin's own decoder, fed what the
// upstream received, finds the same certificate (and the verified
// intermediate). Headers the client sent under those names do not get
// through.
func TestForwardedIdentityRoundTrip(t *testing.T) {
	p := newPKI(t)
	var mu sync.Mutex
	var got http.Header
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		fmt.Fprint(w, "upstream ok")
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream.Listener = l
	upstream.Start()
	t.Cleanup(upstream.Close)

	port := freePort(t)
	startCaddyOpts(t, fmt.Sprintf(`:%d {
	tls server.pem server-key.pem {
		client_auth {
			mode request
		}
	}
	mtls_auth {
		source tls
		trust_pool file ca.pem
		user_id {http.mtls.spiffe_id}
	}
	reverse_proxy %s {
		header_up Client-Cert {http.mtls.rfc9440.cert}
		header_up Client-Cert-Chain {http.mtls.rfc9440.chain}
		header_up X-Forwarded-Client-Cert {http.mtls.xfcc}
		header_up X-Client-Cert-Thumbprint {http.mtls.x5t_s256}
		header_up X-Spiffe-Id {http.mtls.spiffe_id}
		header_up X-User-Id {http.auth.user.id}
	}
}
`, port, l.Addr().String()), p.files(t, "ca.pem", "server.pem", "server-key.pem"), caddyOpts{TLS: true})

	alice := p.Clients["alice"]
	args := append(p.clientArgs("alice"), "--resolve", fmt.Sprintf("localhost:%d:127.0.0.1", port),
		"-H", "Client-Cert-Chain: :"+derBase64(p.OtherCA)+":", // sent by the client: must not survive
		fmt.Sprintf("https://localhost:%d/", port))
	status, body, _ := curl(t, args...)
	if status != 200 || body != "upstream ok" {
		t.Fatalf("got %d %q, want the upstream's answer", status, body)
	}
	mu.Lock()
	h := got
	mu.Unlock()

	rfc, err := decoder.New(decoder.Options{Profile: "rfc9440"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rfc.Decode(h.Values("Client-Cert"), h.Values("Client-Cert-Chain"))
	if err != nil {
		t.Fatalf("decoding the forwarded Client-Cert: %v", err)
	}
	if len(res.Certs) != 2 || fingerprint(res.Certs[0].Raw) != alice.Fingerprint() || fingerprint(res.Certs[1].Raw) != p.Intermediate.Fingerprint() {
		t.Errorf("RFC 9440 headers decode to %d certificates, want alice and the intermediate (root excluded)", len(res.Certs))
	}
	xfcc, err := decoder.New(decoder.Options{Profile: "envoy_xfcc"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = xfcc.Decode(h.Values("X-Forwarded-Client-Cert"), nil)
	if err != nil {
		t.Fatalf("decoding the forwarded XFCC: %v", err)
	}
	if fingerprint(res.Certs[0].Raw) != alice.Fingerprint() {
		t.Errorf("XFCC decodes to another certificate")
	}
	sum := sha256.Sum256(alice.DER())
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); h.Get("X-Client-Cert-Thumbprint") != want {
		t.Errorf("x5t#S256 = %q, want %q", h.Get("X-Client-Cert-Thumbprint"), want)
	}
	if h.Get("X-Spiffe-Id") != "spiffe://example.test/alice" || h.Get("X-User-Id") != "spiffe://example.test/alice" {
		t.Errorf("spiffe id %q, user id %q, want spiffe://example.test/alice", h.Get("X-Spiffe-Id"), h.Get("X-User-Id"))
	}
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum)
}
