//go:build integration

package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
)

// The trust edges (the README's Trust section): the deny list reaches the
// whole verified chain, a verdict never depends on what other clients
// sent, and a chain the client chose costs a bounded amount.

// chainSite is a site on :port reading the leaf from X-Client-Cert and
// intermediates from X-Client-Chain (bare base64 DER, comma list), sent
// straight from 127.0.0.1, with the given mtls_auth directives.
func chainSite(port int, directives ...string) string {
	return fmt.Sprintf(`:%d {
	mtls_auth {
		profile der_base64
		header X-Client-Cert
		chain_header X-Client-Chain
		trusted_sources 127.0.0.1/32
		%s
	}
	respond "ok cn={http.mtls.subject.cn} alias={http.mtls.alias}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
`, port, strings.Join(directives, "\n\t\t"))
}

// send presents leaf with chain to 127.0.0.1:port.
func send(t *testing.T, port int, leaf *testpki.Cert, chain ...*testpki.Cert) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	req.Header.Set("X-Client-Cert", derBase64(leaf))
	if len(chain) > 0 {
		var vals []string
		for _, c := range chain {
			vals = append(vals, derBase64(c))
		}
		req.Header.Set("X-Client-Chain", strings.Join(vals, ","))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET :%d: %v", port, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDenyReachesUnsentCertificates: denying an intermediate or a root of
// the trust pool, or the CA of a CA allow entry, refuses a leaf under it
// that the client sends alone.
func TestDenyReachesUnsentCertificates(t *testing.T) {
	p := newPKI(t)
	poolPort, caPort := freePort(t), freePort(t)
	cfg := chainSite(poolPort, "trust_pool file trust.pem") + // root + intermediate
		chainSite(caPort, "allow_ca inter-ca intermediate.pem")
	c := startCaddy(t, cfg, p.files(t, "trust.pem", "intermediate.pem"))
	alice := p.Clients["alice"] // issued by the intermediate

	if s, b := send(t, poolPort, alice); s != 200 {
		t.Fatalf("alice alone on the pool route: %d %q", s, b)
	}
	if s, b := send(t, caPort, alice); s != 200 || !strings.Contains(b, "alias=inter-ca") {
		t.Fatalf("alice alone on the CA entry route: %d %q", s, b)
	}
	deny := func(c2 *testpki.Cert) {
		if s, b := admin(t, c, "POST", "/mtls_auth/deny", fmt.Sprintf(`{"fingerprint":%q,"reason":"compromised"}`, c2.Fingerprint())); s != 201 {
			t.Fatalf("POST deny: %d %s", s, b)
		}
	}
	undeny := func(c2 *testpki.Cert) {
		if s, _ := admin(t, c, "DELETE", "/mtls_auth/deny/"+c2.Fingerprint(), ""); s != 204 {
			t.Fatalf("DELETE deny: %d", s)
		}
	}

	deny(p.Intermediate)
	for _, port := range []int{poolPort, caPort} {
		s, b := send(t, port, alice)
		expectReject(t, fmt.Sprintf("intermediate denied, :%d", port), s, b, 403, "denied")
	}
	undeny(p.Intermediate)
	if s, b := send(t, poolPort, alice); s != 200 {
		t.Fatalf("undenied: %d %q", s, b)
	}

	deny(p.Root)
	s, b := send(t, poolPort, alice)
	expectReject(t, "root denied, intermediate in the pool", s, b, 403, "denied")
	s, b = send(t, poolPort, p.Clients["bob"]) // issued by the root directly
	expectReject(t, "root denied, leaf under the root", s, b, 403, "denied")
	undeny(p.Root)
}

// TestVerdictIndependentOfOtherClients: root -> I2 -> I1 -> leaf with a
// pool holding only the root. Once a client has presented I1 and I2, a
// different leaf presenting only I1 is refused, as a cold Caddy refuses it.
func TestVerdictIndependentOfOtherClients(t *testing.T) {
	root := testpki.NewRoot("indep root")
	i2 := root.NewIntermediate("indep I2")
	i1 := i2.NewIntermediate("indep I1")
	files := map[string][]byte{"root.pem": root.PEM()}
	port := freePort(t)
	cfg := chainSite(port, "trust_pool file root.pem")
	startCaddy(t, cfg, files)

	for _, name := range []string{"warm 1", "warm 2"} {
		if s, b := send(t, port, i1.NewLeaf(name), i1, i2); s != 200 {
			t.Fatalf("%s with I1 and I2: %d %q", name, s, b)
		}
	}
	other := i1.NewLeaf("other")
	s, b := send(t, port, other, i1)
	expectReject(t, "warm Caddy, I1 only", s, b, 401, "untrusted")

	coldPort := freePort(t)
	startCaddy(t, chainSite(coldPort, "trust_pool file root.pem"), files)
	s, b = send(t, coldPort, other, i1)
	expectReject(t, "cold Caddy, I1 only", s, b, 401, "untrusted")

	if s, b := send(t, port, other, i1, i2); s != 200 {
		t.Errorf("the same leaf with I2: %d %q", s, b)
	}
}

// TestChainCostLimits: each limit on what a chain the client chose may
// cost, through a running Caddy; chains that were accepted before still
// are.
func TestChainCostLimits(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	other := testpki.NewRoot("cost other root")
	files := p.files(t, "ca.pem")
	files["pools.pem"] = append(p.Root.PEM(), other.PEM()...)
	startCaddy(t, chainSite(port, "trust_pool file pools.pem"), files)
	alice := p.Clients["alice"]
	limits := pathverify.Limits{MaxChain: 8}

	// Accepted: the leaf with its chain, a Traefik list with the root, a
	// cross-signed intermediate (alone, or beside the original).
	crossed := p.Intermediate.CrossSigned(other)
	for name, chain := range map[string][]*testpki.Cert{
		"chain":                   {p.Intermediate},
		"Traefik list with root":  {p.Intermediate, p.Root},
		"cross-signed":            {crossed},
		"cross-signed and direct": {crossed, p.Intermediate},
	} {
		if s, b := send(t, port, alice, chain...); s != 200 {
			t.Errorf("%s: %d %q", name, s, b)
		}
	}

	// A key over the limit, leaf or chain: malformed.
	huge := p.Root.NewLeaf("huge", testpki.PublicKey(testpki.MadeUpRSAKey(decoder.MaxRSABits+8)))
	s, b := send(t, port, huge)
	expectReject(t, "leaf key over the limit", s, b, 401, "malformed")
	hugeInter := p.Root.Forge(p.Intermediate.Cert.Subject.CommonName, testpki.PublicKey(testpki.MadeUpRSAKey(15360)))
	s, b = send(t, port, alice, hugeInter, p.Intermediate)
	expectReject(t, "a 15360-bit forged intermediate", s, b, 401, "malformed")

	// The worst chain within the limits: refused, untrusted.
	worst := testpki.ForgedChain(p.Intermediate, limits.MaxFailedChecks(), limits.MaxChain-2-limits.MaxFailedChecks(), testpki.PublicKey(testpki.MadeUpRSAKey(decoder.MaxRSABits)))
	s, b = send(t, port, worst[0], worst[1:]...)
	expectReject(t, "the worst chain within the limits", s, b, 401, "untrusted")

	// One forged intermediate more than a request may fail checks on:
	// untrusted, even with the real intermediate and a genuine leaf.
	var forged []*testpki.Cert
	for range limits.MaxFailedChecks() {
		forged = append(forged, p.Root.Forge(p.Intermediate.Cert.Subject.CommonName))
	}
	s, b = send(t, port, p.Intermediate.NewLeaf("dave"), append(forged, p.Intermediate)...)
	expectReject(t, "forged intermediates over the check budget", s, b, 401, "untrusted")
	if s, b := send(t, port, p.Intermediate.NewLeaf("erin"), append(forged[1:], p.Intermediate)...); s != 200 {
		t.Errorf("forged intermediates within the budget, with the real one: %d %q", s, b)
	}

	// More certificates than max_chain: too_large.
	var long []*testpki.Cert
	for range limits.MaxChain {
		long = append(long, p.Intermediate)
	}
	s, b = send(t, port, alice, long...)
	expectReject(t, "over max_chain", s, b, 401, "too_large")
}
