package decoder

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	gatewayURI = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	edgeURI    = "spiffe://cluster.local/ns/edge/sa/gateway"
)

// TestXFCCForgedBySAN is the injection of issue 12: Envoy writes DNS and URI
// SANs unquoted, so a client certificate whose SAN holds
// ",By=<proxy>;Cert=<victim's URL-encoded PEM>" adds an element carrying
// the victim's (public) certificate, with the right By, after its own.
// Without a check the default selection (the last element) authenticates
// the victim.
func TestXFCCForgedBySAN(t *testing.T) {
	t.Parallel()
	p := pki(t)
	victim := p.leaf
	victimPEM := envoyPercentEncode(victim.PEM())
	injections := []struct{ name, text string }{
		{"minimal element, Cert unquoted", ",By=" + edgeURI + ";Cert=" + victimPEM},
		{"minimal element, Cert quoted", ",By=" + edgeURI + `;Cert="` + victimPEM + `"`},
		{"minimal element, old Envoy encoding", ",By=" + edgeURI + ";Cert=" + envoyOldEncode(victim.PEM())},
		// A forged element can be made perfectly consistent: it copies what
		// Envoy would have written for the victim.
		{"complete consistent element", "," + xfccElement([]string{edgeURI}, victim, true, false, envoyPercentEncode)},
		{"complete element with chain", "," + xfccElement([]string{edgeURI}, victim, true, true, envoyPercentEncode)},
		{"two forged elements", "," + xfccElement([]string{edgeURI}, victim, true, false, envoyPercentEncode) + ",By=" + edgeURI + ";URI=" + gatewayURI},
	}
	options := []struct {
		name string
		opts Options
	}{
		{"default (last element)", Options{Profile: "envoy_xfcc"}},
		{"xfcc_by names the proxy", Options{Profile: "envoy_xfcc", XFCCBy: edgeURI}},
		{"auto", Options{Header: "X-Forwarded-Client-Cert"}},
		{"xfcc_proxies", Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI}}},
	}
	for _, inj := range injections {
		for _, in := range []string{"DNS SAN", "URI SAN"} {
			t.Run(inj.name+"/"+in, func(t *testing.T) {
				t.Parallel()
				tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "mallory.example"}}
				if in == "DNS SAN" {
					tmpl.ExtraExtensions = []pkix.Extension{rawSAN([]string{"mallory.example" + inj.text}, nil)}
				} else {
					// No DNS SAN: Envoy would write it after the URI, into
					// the forged element.
					tmpl.ExtraExtensions = []pkix.Extension{rawSAN(nil, []string{"spiffe://mallory.example/x" + inj.text})}
				}
				mallory := issue(t, tmpl, p.inter, nil)
				// Exactly what Envoy writes for mallory's connection.
				header := envoyElement([]string{edgeURI}, mallory, true, nil, envoyPercentEncode)

				// The grammar is fooled: the element after mallory's carries
				// the victim's certificate, and decoded on its own it is the
				// victim.
				els, err := ParseXFCC(header)
				require.NoError(t, err)
				require.GreaterOrEqual(t, len(els), 2)
				forged := strings.Index(header, inj.text) + 1
				res, err := mustNew(t, Options{Profile: "envoy_xfcc", XFCCElement: 1}).Decode([]string{header[forged:]}, nil)
				require.NoError(t, err, "the forged element alone")
				requireCerts(t, victim.Chain()[:len(res.Certs)], res)

				// The decoder refuses the header, whatever the selection.
				for _, o := range options {
					_, err := mustNew(t, o.opts).Decode([]string{header}, nil)
					require.Error(t, err, o.name)
					assert.Equal(t, KindMalformed, KindOf(err), "%s: %v", o.name, err)
					assert.Contains(t, err.Error(), "element 1 is inconsistent", o.name)
					assertNoEcho(t, err.Error(), header)
				}
			})
		}
	}
}

// TestXFCCInjectionInsideTheElement covers a SAN that adds pairs rather
// than elements: with Envoy sending Cert the key repeats; without, the
// injected Cert contradicts the Hash Envoy always writes.
func TestXFCCInjectionInsideTheElement(t *testing.T) {
	t.Parallel()
	p := pki(t)
	inj := ";Cert=" + envoyPercentEncode(p.leaf.PEM())
	for _, in := range []string{"DNS SAN", "URI SAN"} {
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "mallory.example"}}
		if in == "DNS SAN" {
			tmpl.ExtraExtensions = []pkix.Extension{rawSAN([]string{"mallory.example" + inj}, nil)}
		} else {
			tmpl.ExtraExtensions = []pkix.Extension{rawSAN(nil, []string{"spiffe://mallory.example/x" + inj})}
		}
		mallory := issue(t, tmpl, p.inter, nil)
		d := mustNew(t, Options{Profile: "envoy_xfcc"})

		_, err := d.Decode([]string{envoyElement([]string{edgeURI}, mallory, true, nil, envoyPercentEncode)}, nil)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), "key Cert repeated", in)

		_, err = d.Decode([]string{envoyElement([]string{edgeURI}, mallory, false, nil, envoyPercentEncode)}, nil)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), "element 1 is inconsistent: its Hash is not the SHA-256 of its certificate", in)
	}
}

func TestXFCCConsistency(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leaf := p.leaf // DNS client1.example, alt.client1.example; URI spiffe://cluster.local/ns/prod/sa/frontend
	good := xfccElement(nil, leaf, true, false, envoyPercentEncode)
	noSAN := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "bare"}}, p.inter, nil)
	odd := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: `Ünïcode, "quoted" + <more>; #1 `, Organization: []string{"#hash"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{1, 2, 840, 113549, 1, 9, 1}, Value: "ops@example.com"}}},
		ExtraExtensions: []pkix.Extension{rawSAN([]string{"a.example", "b.example"}, []string{"spiffe://x/1", "urn:uuid:1;2"})},
	}, p.inter, nil)
	ev := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ev", ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: []int{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3}, Value: "US"}}}}, p.inter, nil)
	evBoring, err := formatName(ev.RawSubject, flavorBoringSSL)
	require.NoError(t, err)
	evOpenSSL, err := FormatName(ev.RawSubject)
	require.NoError(t, err)
	require.NotEqual(t, evBoring, evOpenSSL)
	cert := `Cert="` + envoyPercentEncode(leaf.PEM()) + `"`
	replace := func(old, new string) string {
		require.Contains(t, good, old)
		return strings.Replace(good, old, new, 1)
	}
	cases := []struct {
		name, value, inconsistency string
	}{
		{"as Envoy writes it", good, ""},
		{"with chain", xfccElement(nil, leaf, true, true, envoyOldEncode), ""},
		{"chain only", xfccElement(nil, leaf, false, true, envoyOldEncode), ""},
		{"only Cert", cert, ""},
		{"upper-case hash", "Hash=" + strings.ToUpper(leaf.Fingerprint()) + ";" + cert, ""},
		{"no SANs: URI= and no DNS", envoyElement(nil, noSAN, true, nil, envoyPercentEncode), ""},
		{"escapes, UTF-8, emailAddress, specials in SANs", envoyElement(nil, odd, true, nil, envoyPercentEncode), ""},
		{"subject unquoted as printed", cert + ";Subject=CN=client1.example", ""},
		{"subject as BoringSSL prints it", envoyElement(nil, ev, true, nil, envoyPercentEncode), ""},
		{"subject as OpenSSL prints it", strings.Replace(envoyElement(nil, ev, true, nil, envoyPercentEncode), evBoring, evOpenSSL, 1), ""},

		{"wrong hash", replace(leaf.Fingerprint(), p.inter.Fingerprint()), "its Hash is not the SHA-256 of its certificate"},
		{"short hash", replace("Hash="+leaf.Fingerprint(), "Hash=abcd"), "its Hash is not a SHA-256 in hex"},
		{"non-hex hash", replace(leaf.Fingerprint(), strings.Repeat("g", 64)), "its Hash is not a SHA-256 in hex"},
		{"empty hash", replace("Hash="+leaf.Fingerprint(), "Hash="), "its Hash is not a SHA-256 in hex"},
		{"other subject", replace(`Subject="CN=client1.example"`, `Subject="CN=client2.example"`), "its Subject is not its certificate's subject"},
		{"empty subject", replace(`Subject="CN=client1.example"`, `Subject=""`), "its Subject is not its certificate's subject"},
		{"Go's subject form", strings.Replace(envoyElement(nil, odd, true, nil, envoyPercentEncode), mustFormat(t, odd, flavorBoringSSL), odd.Subject.String(), 1),
			"its Subject is not its certificate's subject"},
		{"URI missing", replace(";URI=spiffe://cluster.local/ns/prod/sa/frontend", ";URI="), "its URI values are not its certificate's URI SANs"},
		{"URI cut short", replace("sa/frontend", "sa/front"), "its URI values are not its certificate's URI SANs"},
		{"URI extra", replace(";URI=spiffe://cluster.local/ns/prod/sa/frontend", ";URI=spiffe://cluster.local/ns/prod/sa/frontend;URI=spiffe://x"), "its URI values are not its certificate's URI SANs"},
		{"URI on a certificate without", envoyElement(nil, noSAN, true, nil, envoyPercentEncode) + ";URI=spiffe://x", "its URI values are not its certificate's URI SANs"},
		{"DNS dropped one", replace(";DNS=alt.client1.example", ""), "its DNS values are not its certificate's DNS SANs"},
		{"DNS reordered", replace("DNS=client1.example;DNS=alt.client1.example", "DNS=alt.client1.example;DNS=client1.example"), "its DNS values are not its certificate's DNS SANs"},
		{"DNS on a certificate without", envoyElement(nil, noSAN, true, nil, envoyPercentEncode) + ";DNS=bare", "its DNS values are not its certificate's DNS SANs"},
		{"DNS with trailing space", envoyElement(nil, odd, true, nil, envoyPercentEncode) + " ", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mustNew(t, Options{Profile: "envoy_xfcc"}).Decode([]string{tc.value}, nil)
			if tc.inconsistency == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, KindMalformed, KindOf(err))
			assert.Contains(t, err.Error(), "element 1 is inconsistent: "+tc.inconsistency)
			// An inconsistent element fails the header even when another
			// element is selected.
			_, err = mustNew(t, Options{Profile: "envoy_xfcc"}).Decode([]string{tc.value + "," + good}, nil)
			assert.Contains(t, err.Error(), "element 1 is inconsistent: "+tc.inconsistency)
		})
	}
}

func mustFormat(t *testing.T, c *x509.Certificate, flavor nameFlavor) string {
	t.Helper()
	s, err := formatName(c.RawSubject, flavor)
	require.NoError(t, err)
	return s
}

// istio builds the two elements of real Istio traffic: the ingress
// gateway's (the client's certificate; the gateway's external server
// certificate has no URI SAN, so no By) and the workload sidecar's (By =
// the workload, Hash of the gateway's mesh certificate, Subject="", URI =
// the gateway's SPIFFE ID).
func istio(client *testpki.Cert) (gateway, sidecar string) {
	gateway = xfccElement(nil, client, true, false, envoyPercentEncode)
	sidecar = "By=spiffe://cluster.local/ns/prod/sa/api;Hash=" + strings.Repeat("ab", 32) + `;Subject="";URI=` + gatewayURI
	return gateway, sidecar
}

func TestXFCCProxies(t *testing.T) {
	t.Parallel()
	p := pki(t)
	client := p.leaf
	gateway, sidecar := istio(client)
	inner := "By=" + gatewayURI + ";Hash=" + strings.Repeat("cd", 32) + `;Subject="";URI=spiffe://cluster.local/ns/edge/sa/second-gateway`
	istioOpts := Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI}}
	cases := []struct {
		name    string
		opts    Options
		value   string
		want    *testpki.Cert
		kind    Kind
		message string
	}{
		{name: "istio: gateway then sidecar", opts: istioOpts, value: gateway + "," + sidecar, want: client},
		{name: "istio: the two elements on two lines", opts: istioOpts, value: gateway + ", " + sidecar, want: client},
		{name: "auto with xfcc_proxies", opts: Options{Header: "X-Forwarded-Client-Cert", XFCCProxies: []string{gatewayURI}}, value: gateway + "," + sidecar, want: client},
		{name: "xfcc_by applies to the element reached", opts: Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI}, XFCCBy: "spiffe://nobody"},
			value: gateway + "," + sidecar, kind: KindUntrustedHop, message: "element 1 of 2: not written by the proxy named in xfcc_by"},
		{name: "two proxies", opts: Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI, "spiffe://cluster.local/ns/edge/sa/second-gateway"}},
			value: gateway + "," + inner + "," + sidecar, want: client},
		{name: "no proxy after the client's hop", opts: istioOpts, value: gateway, want: client},
		{name: "default selection explains xfcc_proxies", opts: Options{Profile: "envoy_xfcc"}, value: gateway + "," + sidecar,
			kind: KindMalformed, message: "element 2 of 2: no Cert or Chain key, but element 1 has one: when proxies that do not forward the certificate follow the client's hop (Istio: an ingress gateway, then the workload's sidecar), list the URIs they write (the gateway's SPIFFE ID) in xfcc_proxies"},
		{name: "a client that bypasses the gateway cannot choose its element", opts: istioOpts,
			value: gateway + ",By=spiffe://cluster.local/ns/prod/sa/api;Hash=" + client.Fingerprint() + `;Subject="CN=client1.example";URI=spiffe://cluster.local/ns/prod/sa/frontend`,
			kind:  KindMalformed, message: "element 2 of 2: no Cert or Chain key in the element reached by stepping back over the proxies listed in xfcc_proxies"},
		{name: "an element with an unlisted URI besides a listed one is not stepped over", opts: istioOpts,
			value: gateway + "," + sidecar + ";URI=spiffe://other", kind: KindMalformed, message: "element 2 of 2: no Cert or Chain key in the element reached"},
		{name: "an element without URI is not stepped over", opts: istioOpts,
			value: gateway + ",By=spiffe://x;Hash=" + strings.Repeat("ab", 32) + ";URI=", kind: KindMalformed, message: "element 2 of 2: no Cert or Chain key in the element reached"},
		{name: "every element a proxy", opts: istioOpts, value: sidecar + "," + sidecar,
			kind: KindMalformed, message: "the URI of every element (2) is a proxy listed in xfcc_proxies: no element describes the client"},
		{name: "a listed URI on the client's own element skips it", opts: Options{Profile: "envoy_xfcc", XFCCProxies: []string{"spiffe://cluster.local/ns/prod/sa/frontend"}},
			value: gateway, kind: KindMalformed, message: "the URI of every element (1) is a proxy listed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := mustNew(t, tc.opts).Decode([]string{tc.value}, nil)
			if tc.kind != 0 {
				require.Error(t, err)
				assert.Equal(t, tc.kind, KindOf(err), err.Error())
				assert.Contains(t, err.Error(), tc.message)
				return
			}
			require.NoError(t, err)
			requireCerts(t, []*testpki.Cert{tc.want}, res)
			assert.Equal(t, "envoy_xfcc", res.Profile)
		})
	}
}

func TestXFCCMaxElements(t *testing.T) {
	t.Parallel()
	p := pki(t)
	last := xfccElement(nil, p.leaf, true, false, envoyPercentEncode)
	elements := func(n int) string { return strings.Repeat("By=spiffe://a;Hash=00,", n-1) + last }

	res, err := mustNew(t, Options{Profile: "envoy_xfcc"}).Decode([]string{elements(16)}, nil)
	require.NoError(t, err, "16 elements is the default limit")
	requireCerts(t, []*testpki.Cert{p.leaf}, res)

	_, err = mustNew(t, Options{Profile: "envoy_xfcc"}).Decode([]string{elements(17)}, nil)
	require.Error(t, err)
	assert.Equal(t, KindTooLarge, KindOf(err))
	assert.Contains(t, err.Error(), "more than 16 elements (max_xfcc_elements)")

	d := mustNew(t, Options{Profile: "envoy_xfcc", MaxXFCCElements: 2})
	assert.Equal(t, 2, d.Options().MaxXFCCElements)
	_, err = d.Decode([]string{elements(2)}, nil)
	require.NoError(t, err)
	_, err = d.Decode(strings.Split(elements(3), ","), nil)
	assert.Equal(t, KindTooLarge, KindOf(err), "counted over joined lines")

	// Over the limit, nothing after the limit is even read: a broken tail
	// does not matter.
	_, err = d.Decode([]string{elements(3) + `,Cert="unterminated`}, nil)
	assert.Equal(t, KindTooLarge, KindOf(err))
}
