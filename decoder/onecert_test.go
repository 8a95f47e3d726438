package decoder

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOneCertificateProducers: a producer that sends exactly one
// certificate gets exactly one, or the header is malformed. Two values
// merged into one (by a proxy that appended its own to a client-sent one)
// must not read as "the first client plus an intermediate".
func TestOneCertificateProducers(t *testing.T) {
	t.Parallel()
	p := pki(t)
	bob, alice := p.leaf, p.leafEC
	cases := []struct {
		profile string
		value   string
		want    string
	}{
		{"nginx", nginxEscapedCert(bob) + nginxEscapedCert(alice), "2 certificates, but profile nginx sends exactly one certificate (the client's) in Ssl-Client-Cert"},
		{"nginx", nginxSslClientCert(bob) + "\n\t" + nginxSslClientCert(alice), "2 certificates, but profile nginx sends exactly one"},
		{"haproxy", haproxyDER(bob) + "," + haproxyDER(alice), "2 certificates, but profile haproxy sends exactly one"},
		{"haproxy", haproxyChainDER(bob, alice), "more than one certificate, but profile haproxy sends exactly one"},
		{"cloudflare", b64(bob) + ", " + b64(alice), "2 certificates, but profile cloudflare sends exactly one"},
		{"cloudflare", rfc9440List(", ", true, bob, alice), "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"azure", b64(bob) + "," + b64(alice), "profile azure sends exactly one"},
		{"azure", apacheCert(bob) + apacheCert(alice), "profile azure sends exactly one"},
		{"apache", apacheCert(bob) + apacheCert(alice), "profile apache sends exactly one"},
		{"wso2", wso2Cert(bob) + wso2Cert(alice), "profile wso2 sends exactly one"},
		{"gcp", rfc9440List(",", true, bob, alice), "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"rfc9440", rfc9440List(", ", false, bob, alice), "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"auto", rfc9440List(", ", true, bob, alice), "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"envoy_xfcc", `Cert="` + envoyPercentEncode(chainPEM(bob, alice)) + `"`, "element 1 of 1: Cert: 2 certificates, but Envoy's Cert is the client's certificate alone"},
	}
	for _, tc := range cases {
		t.Run(tc.profile, func(t *testing.T) {
			t.Parallel()
			_, err := mustNew(t, Options{Profile: tc.profile}).Decode([]string{tc.value}, nil)
			require.Error(t, err)
			assert.Equal(t, KindMalformed, KindOf(err), err.Error())
			assert.Contains(t, err.Error(), tc.want)
			assertNoEcho(t, err.Error(), tc.value)
		})
	}
	// Their chain headers still carry several.
	res, err := mustNew(t, Options{Profile: "haproxy"}).Decode([]string{haproxyDER(bob)}, []string{haproxyChainDER(p.inter, p.root)})
	require.NoError(t, err)
	requireCerts(t, []*testpki.Cert{bob, p.inter, p.root}, res)
}

// TestEndEntityAfterTheLeaf: in every header, the certificates after the
// first are intermediates (or a root); an end-entity certificate there is
// someone else's.
func TestEndEntityAfterTheLeaf(t *testing.T) {
	t.Parallel()
	p := pki(t)
	bob, alice := p.leaf, p.leafEC
	v1root := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "no basic constraints"}}, nil, nil)
	caFalse := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "CA:FALSE"}, BasicConstraintsValid: true}, p.inter, nil)
	cases := []struct {
		name   string
		opts   Options
		values []string
		chain  []string
		pos    string
	}{
		{"traefik: a second client", Options{Profile: "traefik"}, []string{traefikCert(bob, alice)}, nil, "position 2 of 2"},
		{"traefik: leaf, intermediate, another leaf", Options{Profile: "traefik"}, []string{traefikCert(bob, p.inter, alice)}, nil, "position 3 of 3"},
		{"alb chain", Options{Profile: "aws_alb"}, []string{albEncode(chainPEM(bob, alice))}, nil, "position 2 of 2"},
		{"der blob", Options{Profile: "der_base64"}, []string{haproxyChainDER(bob, alice)}, nil, "position 2 of 2"},
		{"rfc9440 chain header", Options{Profile: "rfc9440"}, []string{rfc9440(bob, true)}, []string{rfc9440List(",", true, p.inter, alice)}, "position 3 of 3"},
		{"haproxy chain header", Options{Profile: "haproxy"}, []string{haproxyDER(bob)}, []string{haproxyChainDER(alice)}, "position 2 of 2"},
		{"xfcc chain", Options{Profile: "envoy_xfcc"}, []string{`Chain="` + envoyPercentEncode(chainPEM(bob, alice)) + `"`}, nil, "position 2 of 2"},
		{"without basic constraints", Options{Profile: "traefik"}, []string{traefikCert(bob) + "," + b64c(v1root)}, nil, "position 2 of 2"},
		{"CA:FALSE", Options{Profile: "traefik"}, []string{traefikCert(bob) + "," + b64c(caFalse)}, nil, "position 2 of 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mustNew(t, tc.opts).Decode(tc.values, tc.chain)
			require.Error(t, err)
			assert.Equal(t, KindMalformed, KindOf(err), err.Error())
			assert.Contains(t, err.Error(), "end-entity certificate at "+tc.pos)
		})
	}
	// Traefik lists what the client sent, root included: a root is a CA.
	res, err := mustNew(t, Options{Profile: "traefik"}).Decode([]string{traefikCert(bob, p.inter, p.root)}, nil)
	require.NoError(t, err)
	requireCerts(t, []*testpki.Cert{bob, p.inter, p.root}, res)
}

func b64c(c *x509.Certificate) string { return b64(&testpki.Cert{Cert: c}) }

// TestRFC8941 checks the structured-field parsing of RFC 9440 headers.
func TestRFC8941(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leaf, inter, root := p.leaf, p.inter, p.root
	ok := []struct {
		name  string
		chain []string
		want  []*testpki.Cert
	}{
		{"a string parameter holding a comma", []string{rfc9440(inter, true) + ", " + rfc9440(root, true) + `;note="a,b"`}, []*testpki.Cert{leaf, inter, root}},
		{"parameters of every kind", []string{rfc9440(inter, false) + `;a=1;b=?0;c=tok:en/x;d="q\"uote";e=:AAAA:;f, ` + rfc9440(root, false) + ";g=:AA:"}, []*testpki.Cert{leaf, inter, root}},
		{"unpadded with parameters", []string{rfc9440(inter, false) + ";x=y," + rfc9440(root, false)}, []*testpki.Cert{leaf, inter, root}},
		{"tabs around commas", []string{rfc9440(inter, true) + "\t,\t" + rfc9440(root, true)}, []*testpki.Cert{leaf, inter, root}},
		{"over lines", []string{rfc9440(inter, true), " " + rfc9440(root, true)}, []*testpki.Cert{leaf, inter, root}},
	}
	d := mustNew(t, Options{Profile: "rfc9440"})
	for _, tc := range ok {
		res, err := d.Decode([]string{rfc9440(leaf, false) + ";from=proxy"}, tc.chain)
		require.NoError(t, err, tc.name)
		requireCerts(t, tc.want, res)
	}
	bad := []struct {
		name   string
		value  string
		chain  string
		kind   Kind
		wanted string
	}{
		{"inner list in the chain", rfc9440(leaf, true), "(" + rfc9440(inter, true) + ")", KindMalformed, "chain header: certificate is an inner list, not a byte sequence"},
		{"token member", rfc9440(leaf, true), rfc9440(inter, true) + ", abc", KindMalformed, "chain header: certificate 2 of 2 is not a byte sequence"},
		{"string member", rfc9440(leaf, true), rfc9440(inter, true) + `, "abc"`, KindMalformed, "chain header: certificate 2 of 2 is not a byte sequence"},
		{"trailing comma", rfc9440(leaf, true), rfc9440(inter, true) + ",", KindMalformed, "not an RFC 8941 list of byte sequences"},
		{"empty byte sequence member", rfc9440(leaf, true), rfc9440(inter, true) + ", ::", KindMalformed, "certificate 2 of 2 is empty"},
		{"whitespace inside a byte sequence", rfc9440(leaf, true), ":" + b64(inter)[:10] + " " + b64(inter)[10:] + ":", KindMalformed, "not an RFC 8941 list of byte sequences"},
		{"a base64 length no padding can repair", rfc9440(leaf, true), ":AAAAA:", KindMalformed, "not an RFC 8941 list"},
		{"too many members, before parsing", rfc9440(leaf, true), strings.Repeat(":AA:,", 20) + ":AA:", KindTooLarge, "21 certificates, over the limit of 8"},
		{"an item that is not a byte sequence", "abc", "", KindMalformed, ""},
		{"a string item", `"` + rfc9440(leaf, true) + `x"`, "", KindMalformed, ""},
	}
	for _, tc := range bad {
		var chain []string
		if tc.chain != "" {
			chain = []string{tc.chain}
		}
		_, err := d.Decode([]string{tc.value}, chain)
		require.Error(t, err, tc.name)
		assert.Equal(t, tc.kind, KindOf(err), "%s: %v", tc.name, err)
		assert.Contains(t, err.Error(), tc.wanted, tc.name)
	}
}

func TestSFVPad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, out string
		members int
	}{
		{":AAA:", ":AAA=:", 1},
		{":AA:", ":AA==:", 1},
		{":AAAA:", ":AAAA:", 1},
		{":A:", ":A:", 1}, // not repairable: left to the parser
		{":AA=:", ":AA=:", 1},
		{":AA:, :AAA:;p=:A:;q=\"x,:y:\", tok:a", ":AA==:, :AAA=:;p=:A:;q=\"x,:y:\", tok:a", 3},
		{"(:AA: :AA:), :AA:", "(:AA==: :AA==:), :AA==:", 2},
		{`"a\",b", :AA:`, `"a\",b", :AA==:`, 2},
		{":AA", ":AA", 1},
		{"", "", 1},
	}
	for _, tc := range cases {
		out, n := sfvPad(tc.in)
		assert.Equal(t, tc.out, out, tc.in)
		assert.Equal(t, tc.members, n, tc.in)
	}
}

// TestTraefikInfo: Traefik's metadata header is recognised and explained,
// in every profile that could be pointed at it.
func TestTraefikInfo(t *testing.T) {
	t.Parallel()
	record := `Subject="C=FR,ST=Some-State,O=Cheese";Issuer="DC=org,DC=cheese,C=FR,CN=Simple Signing CA 2";SerialNumber="481535886039632329873080491016862977516759989652";NB="1544094636";NA="1632568236";SAN="a.example"`
	values := map[string]string{
		"query-escaped, as sent": url.QueryEscape(record),
		"unescaped":              record,
		"issuer first":           strings.TrimPrefix(record, `Subject="C=FR,ST=Some-State,O=Cheese";`),
		"two records":            url.QueryEscape(record) + "," + url.QueryEscape(record),
	}
	for name, v := range values {
		for _, prof := range []string{"auto", "envoy_xfcc", "traefik", "der_base64"} {
			_, err := mustNew(t, Options{Profile: prof}).Decode([]string{v}, nil)
			require.Error(t, err, "%s / %s", name, prof)
			assert.Equal(t, KindMalformed, KindOf(err))
			assert.Contains(t, err.Error(), "the value is Traefik's X-Forwarded-Tls-Client-Cert-Info header, which carries no certificate: read X-Forwarded-Tls-Client-Cert (profile traefik)", "%s / %s", name, prof)
		}
	}
	// An XFCC element that starts with Subject is still XFCC.
	for _, v := range []string{`Subject="CN=x";URI=spiffe://a`, `Subject="CN=x"`} {
		assert.False(t, looksTraefikInfo(v), v)
	}
}

func TestCertFacts(t *testing.T) {
	t.Parallel()
	p := pki(t)
	many := issue(t, &x509.Certificate{
		Subject:        pkix.Name{CommonName: "many", Organization: []string{"O"}},
		DNSNames:       []string{"a.example", "b.example"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/x"}, {Scheme: "urn", Opaque: "uuid:1"}},
		EmailAddresses: []string{"x@example.com"},
	}, p.inter, nil)
	for _, c := range []*x509.Certificate{p.leaf.Cert, p.leafEC.Cert, p.inter.Cert, p.root.Cert, p.other.Cert, many} {
		f, ok := readCertFacts(c.Raw)
		require.True(t, ok, c.Subject.String())
		assert.Equal(t, c.RawSubject, f.subject)
		var dns, uris []string
		for _, d := range f.dns {
			dns = append(dns, string(d))
		}
		for _, u := range f.uris {
			uris = append(uris, string(u))
		}
		assert.Equal(t, c.DNSNames, dns)
		var want []string
		for _, u := range c.URIs {
			want = append(want, u.String())
		}
		assert.Equal(t, want, uris)
	}
	// Two SAN extensions (x509 refuses them too), and things that are not
	// certificates.
	two, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1),
		ExtraExtensions: []pkix.Extension{rawSAN([]string{"a"}, nil), rawSAN([]string{"b"}, nil)}}, p.inter.Cert, p.inter.Key.Public(), p.inter.Key)
	require.NoError(t, err)
	_, err = x509.ParseCertificate(two)
	require.Error(t, err)
	for name, der := range map[string][]byte{
		"two SAN extensions": two,
		"empty":              nil,
		"truncated":          p.leaf.DER()[:100],
		"trailing bytes":     append(append([]byte{}, p.leaf.DER()...), 0),
	} {
		_, ok := readCertFacts(der)
		assert.False(t, ok, name)
	}
}
