package decoder

import (
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseXFCC(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want []XFCCElement
	}{
		{
			name: "envoy doc example, two hops",
			in:   "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com",
			want: []XFCCElement{
				{By: []string{"http://frontend.lyft.com"}, Hash: "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688", URI: []string{"http://testclient.lyft.com"}},
				{By: []string{"http://backend.lyft.com"}, Hash: "9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e", URI: []string{"http://frontend.lyft.com"}},
			},
		},
		{
			name: "envoy doc example with subject and cert",
			in:   `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;Cert="-----BEGIN%20CERTIFICATE-----%0AMIID"`,
			want: []XFCCElement{{By: []string{"http://frontend.lyft.com"}, Hash: "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
				Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client", URI: []string{"http://testclient.lyft.com"}, Cert: "-----BEGIN%20CERTIFICATE-----%0AMIID"}},
		},
		{
			name: "istio sidecar: empty subject, no cert",
			in:   `By=spiffe://cluster.local/ns/prod/sa/api;Hash=9f0ce1;Subject="";URI=spiffe://cluster.local/ns/prod/sa/frontend`,
			want: []XFCCElement{{By: []string{"spiffe://cluster.local/ns/prod/sa/api"}, Hash: "9f0ce1", URI: []string{"spiffe://cluster.local/ns/prod/sa/frontend"}}},
		},
		{
			name: "empty URI",
			in:   `Hash=ab;URI=`,
			want: []XFCCElement{{Hash: "ab", URI: []string{""}}},
		},
		{
			name: "quoted values with escapes and separators",
			in:   `Subject="CN=a\,b;c \"q\" \\x=y",DNS=d`,
			want: []XFCCElement{{Subject: `CN=a,b;c "q" \x=y`}, {DNS: []string{"d"}}},
		},
		{
			name: "separators inside quotes",
			in:   `Cert="a,b;c=d";By=x`,
			want: []XFCCElement{{Cert: "a,b;c=d", By: []string{"x"}}},
		},
		{
			name: "case-insensitive keys, repeated By/URI/DNS",
			in:   `by=a;BY=b;hASH=h;uri=u1;Uri=u2;dns=d1;DNS=d2;cErT="c";CHAIN="ch";subject="s"`,
			want: []XFCCElement{{By: []string{"a", "b"}, Hash: "h", URI: []string{"u1", "u2"}, DNS: []string{"d1", "d2"}, Cert: "c", Chain: "ch", Subject: "s"}},
		},
		{
			name: "unquoted By and URI with ; , and = (Envoy TODO)",
			in:   `By=spiffe://a;b,c=d;Hash=h;URI=http://x/?q=1;r=2,s;DNS=n,By=z`,
			want: []XFCCElement{{By: []string{"spiffe://a;b,c=d"}, Hash: "h", URI: []string{"http://x/?q=1;r=2,s"}, DNS: []string{"n"}}, {By: []string{"z"}}},
		},
		{
			name: "split at the first =",
			in:   `DNS=a=b;Hash==x`,
			want: []XFCCElement{{DNS: []string{"a=b"}, Hash: "=x"}},
		},
		{
			name: "spaces around separators (joined lines)",
			in:   `By=a ; Hash=h , By=b;Hash=i`,
			want: []XFCCElement{{By: []string{"a"}, Hash: "h"}, {By: []string{"b"}, Hash: "i"}},
		},
		{
			name: "unknown keys ignored",
			in:   `Foo=bar;By=a`,
			want: []XFCCElement{{By: []string{"a"}}},
		},
		{
			name: "trailing semicolon",
			in:   `By=a;`,
			want: []XFCCElement{{By: []string{"a"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseXFCC(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseXFCCErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{``, "element 1 is empty"},
		{`By=a,,By=b`, "element 2 is empty"},
		{`By=a,`, "element 2 is empty"},
		{`Cert="abc`, "element 1, pair 1: unterminated quoted value starting at offset 5"},
		{`Cert="abc\`, "unterminated quoted value"},
		{`Cert="abc\"`, "unterminated quoted value"},
		{`Cert="a"b;By=x`, "unexpected character after the quoted value at offset 8"},
		{`Hash=a;noequals`, "element 1, pair 2: expected key=value at offset 7"},
		{`By=a;noequals`, ""}, // no error: By is unquoted and may hold ';' (see TestParseXFCC)
		{`=x`, "expected key=value at offset 0"},
		{`By=a;Hash=1;Hash=2`, "key Hash repeated"},
		{`Cert="a";cert="b"`, "key Cert repeated"},
		{`By=a,By=b;Chain="x";Chain="y"`, "element 2, pair 3: key Chain repeated"},
	}
	for _, tc := range cases {
		els, err := ParseXFCC(tc.in)
		if tc.want == "" {
			require.NoError(t, err)
			assert.Equal(t, []string{"a;noequals"}, els[0].By)
			continue
		}
		require.Error(t, err, tc.in)
		assert.Equal(t, KindMalformed, KindOf(err), tc.in)
		assert.Contains(t, err.Error(), tc.want, tc.in)
		assert.True(t, strings.HasPrefix(err.Error(), "malformed: x-forwarded-client-cert: "))
	}
}

func TestDecodeXFCC(t *testing.T) {
	t.Parallel()
	p := pki(t)
	leaf, other := p.leaf, p.other
	edge := xfccElement([]string{"spiffe://edge"}, other, true, false, envoyPercentEncode)
	inner := xfccElement([]string{"spiffe://inner", "spiffe://inner2"}, leaf, true, true, envoyPercentEncode)
	two := edge + "," + inner
	cases := []struct {
		name    string
		opts    Options
		values  []string
		want    []*testpki.Cert
		kind    Kind
		message string
	}{
		{name: "last by default", values: []string{two}, want: []*testpki.Cert{leaf, p.inter}},
		{name: "first", opts: Options{XFCCElement: 1}, values: []string{two}, want: []*testpki.Cert{other}},
		{name: "second", opts: Options{XFCCElement: 2}, values: []string{two}, want: []*testpki.Cert{leaf, p.inter}},
		{name: "one before last", opts: Options{XFCCElement: -2}, values: []string{two}, want: []*testpki.Cert{other}},
		{name: "out of range", opts: Options{XFCCElement: 3}, values: []string{two}, kind: KindMalformed, message: "the value has 2 element(s); xfcc_element 3 selects none"},
		{name: "out of range negative", opts: Options{XFCCElement: -3}, values: []string{two}, kind: KindMalformed, message: "selects none"},
		{name: "by matches", opts: Options{XFCCBy: "spiffe://inner2"}, values: []string{two}, want: []*testpki.Cert{leaf, p.inter}},
		{name: "by does not match", opts: Options{XFCCBy: "spiffe://edge"}, values: []string{two}, kind: KindUntrustedHop,
			message: "element 2 of 2: not written by the proxy named in xfcc_by"},
		{name: "by on the first element", opts: Options{XFCCBy: "spiffe://edge", XFCCElement: 1}, values: []string{two}, want: []*testpki.Cert{other}},
		{name: "attacker element first, proxy appended one without a cert",
			values: []string{edge + ",By=spiffe://inner;Hash=" + leaf.Fingerprint() + `;Subject="";URI=`},
			kind:   KindMalformed, message: "element 2 of 2: no Cert or Chain key"},
		{name: "cert is not the first of chain",
			values: []string{`Cert="` + envoyPercentEncode(other.PEM()) + `";Chain="` + envoyPercentEncode(leaf.ChainPEM()) + `"`},
			kind:   KindMalformed, message: "Cert is not the first certificate of Chain"},
		{name: "hash mismatch", values: []string{"Hash=" + other.Fingerprint() + `;Cert="` + envoyPercentEncode(leaf.PEM()) + `"`},
			kind: KindMalformed, message: "element 1 is inconsistent: its Hash is not the SHA-256 of its certificate"},
		{name: "upper-case hash", values: []string{"Hash=" + strings.ToUpper(leaf.Fingerprint()) + `;Cert="` + envoyPercentEncode(leaf.PEM()) + `"`},
			want: []*testpki.Cert{leaf}},
		{name: "broken cert", values: []string{`By=x;Cert="-----BEGIN%20CERTIFICATE-----%0AM!!%0A-----END%20CERTIFICATE-----"`},
			kind: KindMalformed, message: "x-forwarded-client-cert element 1 of 1: Cert: certificate: base64 at offset"},
		{name: "empty cert", values: []string{`By=x;Cert=""`}, kind: KindMalformed, message: "no Cert or Chain key"},
		{name: "null cert", values: []string{`By=x;Cert="(null)"`}, kind: KindMalformed, message: "Cert: holds no certificate"},
		{name: "unquoted cert", values: []string{`By=x;Cert=` + envoyOldEncode(leaf.PEM())}, want: []*testpki.Cert{leaf}},
		{name: "base64 cert (raw forms)", values: []string{`By=x;Cert="` + b64(leaf) + `"`}, want: []*testpki.Cert{leaf}},
		{name: "parse error", values: []string{`By=x;Cert="abc`}, kind: KindMalformed, message: "unterminated"},
		{name: "chain too long", opts: Options{MaxChain: 1}, values: []string{inner}, kind: KindTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Profile = "envoy_xfcc"
			res, err := mustNew(t, tc.opts).Decode(tc.values, nil)
			if tc.kind != 0 {
				require.Error(t, err)
				assert.Equal(t, tc.kind, KindOf(err), err.Error())
				assert.Contains(t, err.Error(), tc.message)
				for _, v := range tc.values {
					assertNoEcho(t, err.Error(), v)
				}
				return
			}
			require.NoError(t, err)
			requireCerts(t, tc.want, res)
			assert.Equal(t, "envoy_xfcc", res.Profile)
		})
	}
}
