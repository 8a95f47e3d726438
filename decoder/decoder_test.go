package decoder

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProfiles(t *testing.T) {
	t.Parallel()
	want := []string{"auto", "apache", "aws_alb", "azure", "cloudflare", "der_base64", "envoy_xfcc",
		"gcp", "haproxy", "nginx", "pem", "rfc9440", "traefik", "wso2"}
	assert.Equal(t, want, Profiles())
	// The result is a copy.
	Profiles()[0] = "x"
	assert.Equal(t, "auto", Profiles()[0])
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		profile, header, chain string
	}{
		{"", "Client-Cert", ""},
		{"auto", "Client-Cert", ""},
		{"aws_alb", "X-Amzn-Mtls-Clientcert", ""},
		{"nginx", "Ssl-Client-Cert", ""},
		{"envoy_xfcc", "X-Forwarded-Client-Cert", ""},
		{"traefik", "X-Forwarded-Tls-Client-Cert", ""},
		{"haproxy", "X-Ssl-Client-Cert", "X-Ssl-Client-Cert-Chain"},
		{"cloudflare", "Cf-Client-Cert-Der-Base64", ""},
		{"gcp", "X-Client-Cert-Leaf", "X-Client-Cert-Chain"},
		{"azure", "X-Arr-Clientcert", ""},
		{"apache", "Ssl-Client-Cert", ""},
		{"wso2", "X-Wso2-Client-Certificate", ""},
		{"rfc9440", "Client-Cert", "Client-Cert-Chain"},
		{"pem", "Client-Cert", ""},
		{"der_base64", "Client-Cert", ""},
		{"NGINX", "Ssl-Client-Cert", ""}, // profile names are case-insensitive
	}
	for _, tc := range cases {
		t.Run("profile="+tc.profile, func(t *testing.T) {
			t.Parallel()
			d := mustNew(t, Options{Profile: tc.profile})
			assert.Equal(t, tc.header, d.Header())
			assert.Equal(t, tc.chain, d.ChainHeader())
			want := strings.ToLower(tc.profile)
			if want == "" {
				want = "auto"
			}
			assert.Equal(t, want, d.Profile())
			o := d.Options()
			assert.Equal(t, DefaultMaxHeaderBytes, o.MaxHeaderBytes)
			assert.Equal(t, DefaultMaxChain, o.MaxChain)
			assert.Equal(t, -1, o.XFCCElement)
		})
	}
}

func TestNewOverrides(t *testing.T) {
	t.Parallel()
	d := mustNew(t, Options{Profile: "haproxy", Header: "x-client-cert", ChainHeader: "x-client-chain",
		MaxHeaderBytes: 1000, MaxChain: 3})
	assert.Equal(t, "X-Client-Cert", d.Header(), "stored in canonical form")
	assert.Equal(t, "X-Client-Chain", d.ChainHeader())
	assert.Equal(t, 1000, d.Options().MaxHeaderBytes)
	assert.Equal(t, 3, d.Options().MaxChain)

	d = mustNew(t, Options{Profile: "envoy_xfcc", XFCCElement: 2, XFCCBy: "spiffe://x"})
	assert.Equal(t, 2, d.Options().XFCCElement)
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"unknown profile", Options{Profile: "f5"}, `unknown profile "f5"; valid profiles: auto, apache, aws_alb`},
		{"negative bytes", Options{MaxHeaderBytes: -1}, "max_header_bytes"},
		{"negative chain", Options{MaxChain: -2}, "max_chain"},
		{"bad header", Options{Header: "X Client Cert"}, "not a valid header field name"},
		{"bad chain header", Options{ChainHeader: "a:b"}, "not a valid header field name"},
		{"chain is cert", Options{Header: "client-cert", ChainHeader: "Client-Cert"}, "is the certificate header itself"},
		{"xfcc option elsewhere", Options{Profile: "nginx", XFCCBy: "spiffe://x"}, "xfcc_element, xfcc_by and xfcc_proxies apply only"},
		{"xfcc proxies elsewhere", Options{Profile: "rfc9440", XFCCProxies: []string{"spiffe://gw"}}, "apply only to the envoy_xfcc and auto profiles"},
		{"xfcc proxies and element", Options{XFCCElement: 1, XFCCProxies: []string{"spiffe://gw"}}, "xfcc_element and xfcc_proxies are alternatives"},
		{"xfcc proxies empty entry", Options{XFCCProxies: []string{""}}, "xfcc_proxies entry 1 is empty"},
		{"xfcc proxies spaces", Options{XFCCProxies: []string{"spiffe://a", " spiffe://b"}}, "xfcc_proxies entry 2 is empty or has surrounding spaces"},
		{"xfcc proxies twice", Options{XFCCProxies: []string{"spiffe://a", "spiffe://a"}}, `xfcc_proxies lists "spiffe://a" twice`},
		{"negative xfcc elements", Options{MaxXFCCElements: -1}, "max_xfcc_elements must not be negative"},
		{"traefik info header", Options{Profile: "traefik", Header: "X-Forwarded-Tls-Client-Cert-Info"}, "Traefik's X-Forwarded-Tls-Client-Cert-Info header, which carries no certificate: read X-Forwarded-Tls-Client-Cert"},
		{"traefik info as chain header", Options{ChainHeader: "x-forwarded-tls-client-cert-info"}, "carries no certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// producerCase is a header value built the way a producer builds it.
type producerCase struct {
	name    string
	opts    Options
	values  []string
	chain   []string
	want    []*testpki.Cert
	auto    string          // expected Result.Profile under "auto" (values only); "" skips
	autoGot []*testpki.Cert // certificates auto finds in values; default want
}

func producerCases(t *testing.T) []producerCase {
	p := pki(t)
	leaf, inter, root := p.leaf, p.inter, p.root
	one := func(s string) []string { return []string{s} }
	full := []*testpki.Cert{leaf, inter, root}
	li := []*testpki.Cert{leaf, inter}
	l := []*testpki.Cert{leaf}
	return []producerCase{
		// AWS ALB: U2, '+' '/' '=' literal; passthrough sends the whole chain, leaf to root.
		{name: "aws_alb/passthrough chain", opts: Options{Profile: "aws_alb"}, values: one(albEncode(chainPEM(leaf, inter, root))), want: full, auto: "aws_alb"},
		{name: "aws_alb/verify leaf", opts: Options{Profile: "aws_alb", Header: "X-Amzn-Mtls-Clientcert-Leaf"}, values: one(albEncode(leaf.PEM())), want: l, auto: "aws_alb"},
		{name: "aws_alb/doc form with %3D", opts: Options{Profile: "aws_alb"}, values: one(albDocEncode(chainPEM(leaf, inter))), want: li, auto: "aws_alb"},
		{name: "aws_alb/ec leaf", opts: Options{Profile: "aws_alb"}, values: one(albEncode(p.leafEC.PEM())), want: []*testpki.Cert{p.leafEC}, auto: "aws_alb"},
		// nginx: $ssl_client_escaped_cert (U1) and the deprecated $ssl_client_cert (P).
		{name: "nginx/ssl_client_escaped_cert", opts: Options{Profile: "nginx"}, values: one(nginxEscapedCert(leaf)), want: l, auto: "nginx"},
		{name: "nginx/escaped old table", opts: Options{Profile: "nginx"}, values: one(ngxEscape(leaf.PEM(), ngxUriComponentOld)), want: l, auto: "nginx"},
		{name: "nginx/lowercase hex", opts: Options{Profile: "nginx"}, values: one(lowerHex(nginxEscapedCert(leaf))), want: l, auto: "nginx"},
		{name: "nginx/ssl_client_cert LF+TAB", opts: Options{Profile: "nginx"}, values: one(nginxSslClientCert(leaf)), want: l, auto: "pem"},
		{name: "nginx/ssl_client_cert unfolded", opts: Options{Profile: "nginx"}, values: one(unfold(nginxSslClientCert(leaf))), want: l, auto: "pem"},
		// Envoy XFCC.
		{name: "envoy/cert", opts: Options{Profile: "envoy_xfcc"},
			values: one(xfccElement([]string{"spiffe://cluster.local/ns/edge/sa/gw"}, leaf, true, false, envoyPercentEncode)), want: l, auto: "envoy_xfcc"},
		{name: "envoy/cert and chain", opts: Options{Profile: "envoy_xfcc"},
			values: one(xfccElement([]string{"spiffe://gw"}, leaf, true, true, envoyPercentEncode)), want: li, auto: "envoy_xfcc"},
		{name: "envoy/chain only, old encoding", opts: Options{Profile: "envoy_xfcc"},
			values: one(xfccElement(nil, leaf, false, true, envoyOldEncode)), want: li, auto: "envoy_xfcc"},
		{name: "envoy/two hops on two lines", opts: Options{Profile: "envoy_xfcc"},
			values: []string{xfccElement([]string{"spiffe://edge"}, p.other, true, false, envoyOldEncode),
				xfccElement([]string{"spiffe://inner"}, leaf, true, false, envoyPercentEncode)}, want: l},
		{name: "envoy/two hops on one line", opts: Options{Profile: "envoy_xfcc"},
			values: one(xfccElement([]string{"spiffe://edge"}, p.other, true, false, envoyOldEncode) + "," +
				xfccElement([]string{"spiffe://inner", "spiffe://inner-alt"}, leaf, true, false, envoyPercentEncode)), want: l, auto: "envoy_xfcc"},
		{name: "auto/xfcc header is a list", opts: Options{Header: "x-forwarded-client-cert"},
			values: []string{xfccElement(nil, p.other, true, false, envoyOldEncode), xfccElement(nil, leaf, true, false, envoyOldEncode)}, want: l},
		// Traefik.
		{name: "traefik/>=2.9.4 leaf and intermediate", opts: Options{Profile: "traefik"}, values: one(traefikCert(leaf, inter)), want: li, auto: "der_base64"},
		{name: "traefik/>=2.9.4 with root", opts: Options{Profile: "traefik"}, values: one(traefikCert(leaf, inter, root)), want: full, auto: "der_base64"},
		{name: "traefik/<=2.9.3 QueryEscape", opts: Options{Profile: "traefik"}, values: one(traefikCertOld(leaf, inter)), want: li, auto: "der_base64"},
		// HAProxy.
		{name: "haproxy/ssl_c_der,base64", opts: Options{Profile: "haproxy"}, values: one(haproxyDER(leaf)), want: l, auto: "der_base64"},
		{name: "haproxy/%{+Q} quoted", opts: Options{Profile: "haproxy"}, values: one(haproxyQuoted(leaf)), want: l, auto: "der_base64"},
		{name: "haproxy/with ssl_c_chain_der", opts: Options{Profile: "haproxy"}, values: one(haproxyQuoted(leaf)),
			chain: one(`"` + haproxyChainDER(inter, root) + `"`), want: full, auto: "der_base64", autoGot: l},
		{name: "der_base64/chain blob in the cert header", opts: Options{Profile: "der_base64"}, values: one(haproxyChainDER(leaf, inter)), want: li, auto: "der_base64"},
		// Cloudflare.
		{name: "cloudflare/Cf-Client-Cert-Der-Base64", opts: Options{Profile: "cloudflare"}, values: one(b64(leaf)), want: l, auto: "der_base64"},
		{name: "cloudflare/rules cert_rfc9440 + chain", opts: Options{Profile: "cloudflare", Header: "Client-Cert", ChainHeader: "Client-Cert-Chain"},
			values: one(rfc9440(leaf, true)), chain: one(rfc9440List(", ", true, inter, root)), want: full, auto: "rfc9440", autoGot: l},
		// GCP.
		{name: "gcp/leaf and chain", opts: Options{Profile: "gcp"}, values: one(rfc9440(leaf, true)), chain: one(rfc9440List(",", true, inter)), want: li, auto: "rfc9440", autoGot: l},
		{name: "gcp/empty chain", opts: Options{Profile: "gcp"}, values: one(rfc9440(leaf, true)), chain: one(""), want: l},
		// Azure.
		{name: "azure/App Service X-ARR-ClientCert", opts: Options{Profile: "azure"}, values: one(b64(leaf)), want: l, auto: "der_base64"},
		{name: "azure/Application Gateway PEM", opts: Options{Profile: "azure"}, values: one(apacheCert(leaf)), want: l, auto: "pem"},
		// Apache.
		{name: "apache/SSL_CLIENT_CERT", opts: Options{Profile: "apache"}, values: one(apacheCert(leaf)), want: l, auto: "pem"},
		{name: "apache/escape expr", opts: Options{Profile: "apache"}, values: one(albEncode(leaf.PEM())), want: l, auto: "aws_alb"},
		// WSO2.
		{name: "wso2/Choreo Connect base64 of PEM in armor", opts: Options{Profile: "wso2"}, values: one(wso2Cert(leaf)), want: l, auto: "wso2"},
		{name: "wso2/base64 of PEM, no armor", opts: Options{Profile: "wso2"}, values: one(base64.StdEncoding.EncodeToString(leaf.PEM())), want: l, auto: "wso2"},
		{name: "wso2/API-M url-encoded PEM", opts: Options{Profile: "wso2"}, values: one(nginxEscapedCert(leaf)), want: l, auto: "nginx"},
		{name: "wso2/trailing [\\r][\\n] junk", opts: Options{Profile: "wso2"}, values: one(apacheCert(leaf) + `[\r][\n]`), want: l, auto: "pem"},
		// RFC 9440.
		{name: "rfc9440/padded", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, true)), want: l, auto: "rfc9440"},
		{name: "rfc9440/unpadded", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, false)), want: l, auto: "rfc9440"},
		{name: "rfc9440/chain with spaces", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, false)),
			chain: one(rfc9440List(" ,  ", false, inter, root)), want: full},
		{name: "rfc9440/chain over two lines", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, true)),
			chain: []string{rfc9440(inter, true), rfc9440(root, false)}, want: full},
		{name: "rfc9440/chain starting with the leaf", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, true)),
			chain: one(rfc9440List(", ", true, leaf, inter)), want: li},
		{name: "rfc9440/parameters ignored", opts: Options{Profile: "rfc9440"}, values: one(rfc9440(leaf, true) + ";a=1"), want: l},
		// Plain and mangled PEM.
		{name: "pem/plain", opts: Options{Profile: "pem"}, values: one(strings.TrimSpace(string(leaf.PEM()))), want: l, auto: "pem"},
		{name: "pem/chain", opts: Options{Profile: "pem"}, values: one(strings.TrimSpace(string(chainPEM(leaf, inter)))), want: li, auto: "pem"},
		{name: "pem/one line", opts: Options{Profile: "pem"}, values: one(strings.ReplaceAll(string(leaf.PEM()), "\n", "")), want: l, auto: "pem"},
		{name: "pem/space and tab", opts: Options{Profile: "pem"}, values: one(strings.ReplaceAll(string(leaf.PEM()), "\n", " \t")), want: l, auto: "pem"},
		{name: "pem/tabs", opts: Options{Profile: "pem"}, values: one(strings.ReplaceAll(string(leaf.PEM()), "\n", "\t")), want: l, auto: "pem"},
		{name: "pem/CRLF", opts: Options{Profile: "pem"}, values: one(strings.ReplaceAll(string(leaf.PEM()), "\n", "\r\n")), want: l, auto: "pem"},
		{name: "pem/literal [\\r] junk between and after", opts: Options{Profile: "pem"},
			values: one(strings.ReplaceAll(string(chainPEM(leaf, inter)), "\n", `[\r][\n]`)), want: li, auto: "pem"},
		{name: "pem/JSON-escaped line breaks", opts: Options{Profile: "pem"}, values: one(strings.ReplaceAll(string(chainPEM(leaf, inter)), "\n", `\r\n`)), want: li, auto: "pem"},
		{name: "pem/trailing garbage after END", opts: Options{Profile: "pem"}, values: one(string(leaf.PEM()) + "\r\n garbage"), want: l, auto: "pem"},
		{name: "pem/quoted", opts: Options{Profile: "pem"}, values: one(`"` + apacheCert(leaf) + `"`), want: l, auto: "pem"},
		{name: "pem/form-encoded label", opts: Options{Profile: "aws_alb"}, values: one(strings.ReplaceAll(albEncode(leaf.PEM()), "%20", "+")), want: l, auto: "aws_alb"},
		// Bare base64 DER.
		{name: "der_base64/caddy certificate_der_base64", opts: Options{Profile: "der_base64"}, values: one(b64(leaf)), want: l, auto: "der_base64"},
		{name: "der_base64/unpadded", opts: Options{Profile: "der_base64"}, values: one(base64.RawStdEncoding.EncodeToString(leaf.DER())), want: l, auto: "der_base64"},
		{name: "der_base64/F5 wrapped at 64", opts: Options{Profile: "der_base64"}, values: one(wrap(b64(leaf), 64, "\r\n")), want: l, auto: "der_base64"},
		{name: "der_base64/surrounding spaces", opts: Options{Profile: "der_base64"}, values: one("  " + b64(leaf) + " \t"), want: l, auto: "der_base64"},
	}
}

func lowerHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b.WriteString(strings.ToLower(s[i : i+3]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func wrap(s string, n int, sep string) string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return strings.Join(append(parts, s), sep)
}

func TestProducers(t *testing.T) {
	t.Parallel()
	for _, tc := range producerCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := mustNew(t, tc.opts)
			res, err := d.Decode(tc.values, tc.chain)
			require.NoError(t, err)
			requireCerts(t, tc.want, res)
			if d.Profile() != "auto" {
				assert.Equal(t, d.Profile(), res.Profile)
			}
			if tc.auto == "" {
				return
			}
			res, err = mustNew(t, Options{}).Decode(tc.values, nil)
			require.NoError(t, err, "auto")
			want := tc.autoGot
			if want == nil {
				want = tc.want
			}
			requireCerts(t, want, res)
			assert.Equal(t, tc.auto, res.Profile, "auto detected profile")
		})
	}
}

// TestPlusIsNeverASpace is the ALB/WSO2 bug: a decoder with form semantics
// turns the literal '+' of an ALB value into a space and breaks the DER.
func TestPlusIsNeverASpace(t *testing.T) {
	t.Parallel()
	p := pki(t)
	v := albEncode(p.leaf.PEM())
	require.Contains(t, v, "+")
	for _, prof := range []string{"auto", "aws_alb", "nginx", "apache", "azure", "wso2"} {
		res, err := mustNew(t, Options{Profile: prof}).Decode([]string{v}, nil)
		require.NoError(t, err, prof)
		requireCerts(t, []*testpki.Cert{p.leaf}, res)
	}
	// A '+' that became a space on the way is an error, not another certificate.
	_, err := mustNew(t, Options{Profile: "aws_alb"}).Decode([]string{strings.ReplaceAll(v, "+", " ")}, nil)
	require.Error(t, err)
}

func TestAbsent(t *testing.T) {
	t.Parallel()
	sentinels := [][]string{nil, {}, {""}, {"   "}, {"\t"}, {`""`}, {"(null)"}, {"(NULL)"}, {"NONE"}, {"none"}, {"::"}, {" (null) "}}
	for _, prof := range Profiles() {
		d := mustNew(t, Options{Profile: prof})
		for _, v := range sentinels {
			_, err := d.Decode(v, []string{"ignored"})
			assert.ErrorIs(t, err, ErrAbsent, "profile %s, value %q", prof, v)
			assert.Zero(t, KindOf(err))
		}
	}
	// XFCC list: only empty lines.
	_, err := mustNew(t, Options{Profile: "envoy_xfcc"}).Decode([]string{"", " "}, nil)
	assert.ErrorIs(t, err, ErrAbsent)
}

func TestDuplicateHeader(t *testing.T) {
	t.Parallel()
	p := pki(t)
	for _, prof := range Profiles() {
		if prof == "envoy_xfcc" {
			continue
		}
		d := mustNew(t, Options{Profile: prof})
		// An appended attacker copy first, the real one second.
		_, err := d.Decode([]string{b64(p.other), b64(p.leaf)}, nil)
		require.Error(t, err, prof)
		assert.Equal(t, KindDuplicate, KindOf(err), prof)
		assert.Contains(t, err.Error(), "appears 2 times")
		// Even when one of them is empty.
		_, err = d.Decode([]string{"", b64(p.leaf)}, nil)
		assert.Equal(t, KindDuplicate, KindOf(err), prof)
	}
	// XFCC is a list header.
	d := mustNew(t, Options{Profile: "envoy_xfcc"})
	res, err := d.Decode([]string{
		xfccElement(nil, p.other, true, false, envoyOldEncode),
		xfccElement(nil, p.leaf, true, false, envoyOldEncode)}, nil)
	require.NoError(t, err)
	requireCerts(t, []*testpki.Cert{p.leaf}, res)
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leaf, inter, root := p.leaf, p.inter, p.root

	t.Run("bytes, checked before decoding", func(t *testing.T) {
		t.Parallel()
		d := mustNew(t, Options{MaxHeaderBytes: 100})
		_, err := d.Decode([]string{strings.Repeat("!", 101)}, nil)
		require.Equal(t, KindTooLarge, KindOf(err))
		assert.Contains(t, err.Error(), "101 bytes, over the limit of 100")
		// Garbage at the limit is decoded (and fails as malformed).
		_, err = d.Decode([]string{strings.Repeat("!", 100)}, nil)
		assert.Equal(t, KindMalformed, KindOf(err))
	})
	t.Run("bytes counted over both headers", func(t *testing.T) {
		t.Parallel()
		v := rfc9440(leaf, true)
		d := mustNew(t, Options{Profile: "rfc9440", MaxHeaderBytes: len(v) + 10})
		_, err := d.Decode([]string{v}, []string{rfc9440(inter, true)})
		assert.Equal(t, KindTooLarge, KindOf(err))
		_, err = d.Decode([]string{v}, nil)
		assert.NoError(t, err)
	})
	t.Run("bytes counted over all lines", func(t *testing.T) {
		t.Parallel()
		e := xfccElement(nil, leaf, true, false, envoyOldEncode)
		d := mustNew(t, Options{Profile: "envoy_xfcc", MaxHeaderBytes: 2*len(e) - 1})
		_, err := d.Decode([]string{e, e}, nil)
		assert.Equal(t, KindTooLarge, KindOf(err))
	})
	chains := []struct {
		name   string
		opts   Options
		values []string
		chain  []string
	}{
		{"pem blocks", Options{Profile: "aws_alb"}, []string{albEncode(chainPEM(leaf, inter, root))}, nil},
		{"comma list", Options{Profile: "traefik"}, []string{traefikCert(leaf, inter, root)}, nil},
		{"der blob", Options{Profile: "der_base64"}, []string{haproxyChainDER(leaf, inter, root)}, nil},
		{"der blob in chain header", Options{Profile: "haproxy"}, []string{b64(leaf)}, []string{haproxyChainDER(inter, root)}},
		{"rfc9440 chain header", Options{Profile: "rfc9440"}, []string{rfc9440(leaf, true)}, []string{rfc9440List(",", true, inter, root)}},
		{"xfcc chain", Options{Profile: "envoy_xfcc"}, []string{`Chain="` + envoyOldEncode(chainPEM(leaf, inter, root)) + `"`}, nil},
		{"double encoded", Options{Profile: "pem"}, []string{"-----BEGIN CERTIFICATE-----" + base64.StdEncoding.EncodeToString(chainPEM(leaf, inter, root)) + "-----END CERTIFICATE-----"}, nil},
		{"many empty items", Options{Profile: "traefik"}, []string{strings.Repeat(",", 50)}, nil},
	}
	for _, tc := range chains {
		t.Run("chain/"+tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.MaxChain = 2
			_, err := mustNew(t, tc.opts).Decode(tc.values, tc.chain)
			require.Error(t, err)
			assert.Equal(t, KindTooLarge, KindOf(err), err.Error())
			tc.opts.MaxChain = 3
			if tc.name != "many empty items" {
				res, err := mustNew(t, tc.opts).Decode(tc.values, tc.chain)
				require.NoError(t, err)
				assert.Len(t, res.Certs, 3)
			}
		})
	}
	t.Run("a chain repeating the leaf is not over the limit", func(t *testing.T) {
		t.Parallel()
		d := mustNew(t, Options{Profile: "rfc9440", MaxChain: 2})
		res, err := d.Decode([]string{rfc9440(leaf, true)}, []string{rfc9440List(",", true, leaf, inter)})
		require.NoError(t, err)
		requireCerts(t, []*testpki.Cert{leaf, inter}, res)
	})
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leaf, inter := p.leaf, p.inter
	body := traefikSanitize(leaf.PEM())
	pemOf := func(b string) string { return "-----BEGIN CERTIFICATE-----\n" + b + "\n-----END CERTIFICATE-----\n" }
	cases := []struct {
		name, profile, value, want string
	}{
		{"illegal base64 character", "pem", pemOf(body[:100] + "!" + body[100:]), "certificate: base64 at offset 128: illegal character"},
		{"second of three", "traefik", b64(leaf) + "," + b64(inter)[:10] + "*" + b64(inter)[10:] + "," + b64(leaf), "certificate 2 of 3: base64 at offset"},
		{"bad percent escape", "aws_alb", strings.Replace(albEncode(leaf.PEM()), "%20", "%G0", 1), "percent-encoding at offset 10: invalid escape"},
		{"truncated percent escape", "nginx", nginxEscapedCert(leaf)[:len(nginxEscapedCert(leaf))-2], "truncated escape"},
		{"empty list item", "traefik", b64(leaf) + ",," + b64(inter), "certificate 2 of 3 is empty"},
		{"rfc9440 no closing colon", "rfc9440", ":" + b64(leaf), "not an RFC 8941 byte sequence (invalid binary format: character"},
		{"rfc9440 text after", "rfc9440", rfc9440(leaf, true) + "x", "not an RFC 8941 byte sequence (unmarshal error: character"},
		{"rfc9440 list in the certificate header", "rfc9440", rfc9440(leaf, true) + ", " + rfc9440(inter, true), "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"rfc9440 list with a non-byte-sequence", "rfc9440", rfc9440(leaf, true) + ", abc", "a list of 2 members where RFC 9440 allows one byte sequence"},
		{"rfc9440 not a list either", "rfc9440", rfc9440(leaf, true) + ", =", "not an RFC 8941 byte sequence"},
		{"not DER", "der_base64", base64.StdEncoding.EncodeToString([]byte("hello world, this is not DER")), "not DER"},
		{"DER garbage", "der_base64", base64.StdEncoding.EncodeToString([]byte{0x30, 0x03, 0x02, 0x01, 0x01}), "not a valid X.509 certificate"},
		{"truncated DER", "der_base64", base64.StdEncoding.EncodeToString(leaf.DER()[:200]), "DER: bad length"},
		{"no END marker", "pem", "-----BEGIN CERTIFICATE-----" + body, "no -----END CERTIFICATE----- marker"},
		{"private key", "pem", "-----BEGIN PRIVATE KEY-----" + body + "-----END PRIVATE KEY-----", "is not a CERTIFICATE"},
		{"text before BEGIN", "pem", "hello " + pemOf(body), "unexpected text before the BEGIN marker"},
		{"text between blocks", "pem", pemOf(body) + "x" + pemOf(body), "unexpected text between certificates 1 and 2"},
		{"padding in the middle", "der_base64", b64(leaf)[:20] + "==" + b64(leaf)[20:], "base64 at offset 20: padding in the wrong place"},
		{"data after padding", "der_base64", b64(leaf)[:22] + "==" + b64(leaf)[22:], "base64 at offset 24: data after padding"},
		{"single trailing char", "der_base64", strings.TrimRight(b64(leaf), "=") + "A", ""},
		{"three levels", "wso2", "-----BEGIN CERTIFICATE-----" + base64.StdEncoding.EncodeToString([]byte(wso2Cert(leaf))) + "-----END CERTIFICATE-----", "encoded more than twice"},
		{"wrong family for profile", "gcp", b64(leaf), "looks like base64 DER, which this profile does not accept (it expects RFC 9440 byte sequence); try profile der_base64"},
		{"url pem for haproxy", "haproxy", albEncode(leaf.PEM()), "try profile aws_alb"},
		{"xfcc for nginx", "nginx", "By=spiffe://x;Hash=00", "looks like Envoy x-forwarded-client-cert"},
		{"xfcc without cert", "envoy_xfcc", "By=spiffe://a;Hash=abc;Subject=\"\";URI=spiffe://b", "no Cert or Chain key"},
		{"xfcc unterminated", "envoy_xfcc", `Cert="abc`, "unterminated quoted value"},
		{"plus became space", "aws_alb", strings.ReplaceAll(albEncode(leaf.PEM()), "+", " "), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mustNew(t, Options{Profile: tc.profile}).Decode([]string{tc.value}, nil)
			require.Error(t, err)
			var e *Error
			require.True(t, errors.As(err, &e), "an *Error")
			assert.Equal(t, KindMalformed, e.Kind)
			assert.Contains(t, err.Error(), tc.want)
			assertNoEcho(t, err.Error(), tc.value)
			// auto never panics and fails the same way, or decodes.
			_, _ = mustNew(t, Options{}).Decode([]string{tc.value}, nil)
		})
	}
}

// assertNoEcho fails when msg contains a run of 12 base64 characters of
// value (certificate material; the armor text may be named).
func assertNoEcho(t *testing.T, msg, value string) {
	t.Helper()
	const n = 12
	for i := 0; i+n <= len(value); i++ {
		w := value[i : i+n]
		if strings.Trim(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") != "" {
			continue
		}
		if strings.Contains(msg, w) {
			t.Fatalf("error message echoes the header value (%q)", w)
		}
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "x509: cannot parse URI (details withheld)", sanitize(errors.New(`x509: cannot parse URI "http://secret.example": bad`)))
	assert.Equal(t, "x509: malformed certificate", sanitize(errors.New("x509: malformed certificate")))
	long := sanitize(errors.New(strings.Repeat("x", 300)))
	assert.Len(t, long, 203)
}

func TestErrorStrings(t *testing.T) {
	t.Parallel()
	for k, s := range map[Kind]string{KindMalformed: "malformed", KindTooLarge: "too_large",
		KindDuplicate: "duplicate_header", KindUntrustedHop: "untrusted_hop", 0: "unknown"} {
		assert.Equal(t, s, k.String())
	}
	assert.Equal(t, "malformed: x", (&Error{Kind: KindMalformed, Msg: "x"}).Error())
	assert.Zero(t, KindOf(errors.New("x")))
	assert.Zero(t, KindOf(nil))
}

func TestChainHeader(t *testing.T) {
	t.Parallel()
	p := pki(t)
	d := mustNew(t, Options{Profile: "rfc9440"})
	// Chain header sentinels mean "no intermediates".
	for _, c := range [][]string{nil, {""}, {`""`}, {"(null)"}, {"", ""}} {
		res, err := d.Decode([]string{rfc9440(p.leaf, true)}, c)
		require.NoError(t, err)
		requireCerts(t, []*testpki.Cert{p.leaf}, res)
	}
	// A broken chain header is malformed, and says which header.
	_, err := d.Decode([]string{rfc9440(p.leaf, true)}, []string{":!!:"})
	require.Equal(t, KindMalformed, KindOf(err))
	assert.Contains(t, err.Error(), "chain header: ")
	// A chain header is ignored without a certificate.
	_, err = d.Decode(nil, []string{rfc9440(p.inter, true)})
	assert.ErrorIs(t, err, ErrAbsent)
	// A profile without a chain header ignores chain values.
	res, err := mustNew(t, Options{Profile: "nginx"}).Decode([]string{nginxEscapedCert(p.leaf)}, []string{rfc9440(p.inter, true)})
	require.NoError(t, err)
	requireCerts(t, []*testpki.Cert{p.leaf}, res)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	p := pki(t)
	d := mustNew(t, Options{})
	values := []string{albEncode(chainPEM(p.leaf, p.inter)), b64(p.leafEC), rfc9440(p.leaf, false), wso2Cert(p.leafEC)}
	want := []int{2, 1, 1, 1}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func(g int) {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				k := (g + i) % len(values)
				var res Result
				res, err = d.Decode([]string{values[k]}, nil)
				if err == nil && len(res.Certs) != want[k] {
					err = errors.New("wrong number of certificates")
				}
			}
			done <- err
		}(g)
	}
	for g := 0; g < 8; g++ {
		require.NoError(t, <-done)
	}
}

func TestCertificateHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts Options
		want []string
	}{
		{Options{}, []string{"Client-Cert", "Client-Cert-Chain"}},
		{Options{Header: "X-Client-Cert"}, []string{"X-Client-Cert", "Client-Cert-Chain"}},
		{Options{Header: "X-Forwarded-Client-Cert", ChainHeader: "X-Chain"}, []string{"X-Forwarded-Client-Cert", "X-Chain", "Client-Cert-Chain"}},
		{Options{Header: "client-cert-chain"}, []string{"Client-Cert-Chain"}},
		{Options{Profile: "rfc9440"}, []string{"Client-Cert", "Client-Cert-Chain"}},
		{Options{Profile: "nginx"}, []string{"Ssl-Client-Cert"}},
		{Options{Profile: "haproxy", ChainHeader: "x-chain"}, []string{"X-Ssl-Client-Cert", "X-Chain"}},
	} {
		assert.Equal(t, tc.want, mustNew(t, tc.opts).CertificateHeaders(), "%+v", tc.opts)
	}
	// autoReports holds every profile auto reports for the producers'
	// values (so their chain headers are stripped).
	for _, tc := range producerCases(t) {
		if tc.auto != "" {
			assert.Contains(t, autoReports, tc.auto, tc.name)
		}
	}
}
