package mtlsauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("cmd root")
	inter := root.NewIntermediate("cmd intermediate")
	leaf := inter.NewLeaf("cmd-client.example", testpki.Serial(0x03A5B1),
		testpki.DNS("cmd-client.example"), testpki.URIs("spiffe://example/cmd"),
		testpki.Emails("cmd@example.com"), testpki.IPs("192.0.2.7"))
	pemText := string(leaf.PEM())
	u1 := strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(pemText)
	alb := strings.NewReplacer("\n", "%0A", " ", "%20").Replace(pemText + string(inter.PEM()))
	der := base64.StdEncoding.EncodeToString(leaf.DER())
	other := testpki.NewSelfSigned("other.example")
	xfcc := `By=spiffe://edge;Cert="` + strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(string(other.PEM())) +
		`",By=spiffe://inner;Hash=` + leaf.Fingerprint() + `;Cert="` + u1 + `"`

	cases := []struct {
		name    string
		input   string
		flags   decodeFlags
		profile string
		certs   []*testpki.Cert
	}{
		{"nginx value with trailing newline", u1 + "\n", decodeFlags{}, "nginx", []*testpki.Cert{leaf}},
		{"header line, CRLF", "Ssl-Client-Cert: " + u1 + "\r\n", decodeFlags{profile: "nginx"}, "nginx", []*testpki.Cert{leaf}},
		{"alb chain", "X-Amzn-Mtls-Clientcert: " + alb, decodeFlags{}, "aws_alb", []*testpki.Cert{leaf, inter}},
		{"haproxy quoted", `X-SSL-Client-Cert: "` + der + `"` + "\n", decodeFlags{profile: "haproxy"}, "haproxy", []*testpki.Cert{leaf}},
		{"rfc9440", ":" + der + ":", decodeFlags{}, "rfc9440", []*testpki.Cert{leaf}},
		{"xfcc last element", "x-forwarded-client-cert: " + xfcc, decodeFlags{}, "envoy_xfcc", []*testpki.Cert{leaf}},
		{"xfcc first element", xfcc, decodeFlags{profile: "envoy_xfcc", xfccElement: "first"}, "envoy_xfcc", []*testpki.Cert{other}},
		{"raw nginx $ssl_client_cert with continuation lines", strings.ReplaceAll(strings.TrimSuffix(pemText, "\n"), "\n", "\n\t"), decodeFlags{}, "pem", []*testpki.Cert{leaf}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// JSON
			var out bytes.Buffer
			f := tc.flags
			f.json = true
			require.NoError(t, runDecode(strings.NewReader(tc.input), &out, f))
			var got []map[string]any
			require.NoError(t, json.Unmarshal(out.Bytes(), &got))
			require.Len(t, got, len(tc.certs))
			for i, c := range tc.certs {
				assert.Equal(t, c.Fingerprint(), got[i]["sha256_fingerprint"])
				assert.Equal(t, tc.profile, got[i]["profile"])
				assert.Equal(t, c.Cert.Subject.String(), got[i]["subject"])
				assert.Equal(t, float64(i+1), got[i]["position"])
			}
			// Text
			out.Reset()
			require.NoError(t, runDecode(strings.NewReader(tc.input), &out, tc.flags))
			assert.Contains(t, out.String(), "profile: "+tc.profile+"\n")
			assert.Contains(t, out.String(), "sha256_fingerprint: "+tc.certs[0].Fingerprint())
		})
	}
}

func TestDecodeCommandReport(t *testing.T) {
	t.Parallel()
	root := testpki.NewRoot("report root")
	leaf := root.NewLeaf("report.example", testpki.Serial(0x03A5B1),
		testpki.DNS("report.example", "www.report.example"), testpki.URIs("spiffe://example/report"),
		testpki.Emails("report@example.com"), testpki.IPs("192.0.2.7", "2001:db8::7"))
	var out bytes.Buffer
	in := strings.NewReader(base64.StdEncoding.EncodeToString(leaf.DER()) + "," + base64.StdEncoding.EncodeToString(root.DER()))
	require.NoError(t, runDecode(in, &out, decodeFlags{json: true}))
	var got []certReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &got))
	require.Len(t, got, 2)
	want := certReport{
		Position: 1, Role: "leaf", Profile: "der_base64",
		Subject: "CN=report.example", Issuer: "CN=report root", Serial: "03a5b1",
		SHA256:    leaf.Fingerprint(),
		NotBefore: leaf.Cert.NotBefore.UTC().Format("2006-01-02T15:04:05Z"),
		NotAfter:  leaf.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"),
		DNSNames:  []string{"report.example", "www.report.example"},
		URIs:      []string{"spiffe://example/report"},
		Emails:    []string{"report@example.com"},
		IPs:       []string{"192.0.2.7", "2001:db8::7"},
	}
	assert.Equal(t, want, got[0])
	assert.Equal(t, "chain", got[1].Role)
	assert.True(t, got[1].IsCA)
	assert.Equal(t, []string{}, got[1].DNSNames, "empty lists are [] in JSON, not null")
	assert.Contains(t, out.String(), `"dns_names": []`)

	out.Reset()
	require.NoError(t, runDecode(strings.NewReader(base64.StdEncoding.EncodeToString(leaf.DER())), &out, decodeFlags{}))
	for _, line := range []string{
		"certificate 1 (leaf)",
		"  serial:             03a5b1",
		"  dns_names:          report.example, www.report.example",
		"  ips:                192.0.2.7, 2001:db8::7",
		"  is_ca:              false",
	} {
		assert.Contains(t, out.String(), line+"\n")
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	t.Parallel()
	leaf := testpki.NewSelfSigned("err.example")
	der := base64.StdEncoding.EncodeToString(leaf.DER())
	cases := []struct {
		name, input string
		flags       decodeFlags
		want        string
	}{
		{"garbage", "MII" + der[3:40] + "!!" + der[40:], decodeFlags{}, "malformed: certificate: base64 at offset 40: illegal character"},
		{"empty", "\n", decodeFlags{}, "holds no certificate"},
		{"null", "(null)", decodeFlags{}, "holds no certificate"},
		{"unknown profile", der, decodeFlags{profile: "f5"}, `unknown profile "f5"`},
		{"wrong profile", der, decodeFlags{profile: "gcp"}, "try profile der_base64"},
		{"bad xfcc element", der, decodeFlags{xfccElement: "middle"}, "invalid --xfcc-element"},
		{"too big", strings.Repeat("A", maxDecodeInput+1), decodeFlags{}, "input is over"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := runDecode(strings.NewReader(tc.input), &out, tc.flags)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), der[10:30], "no certificate material in errors")
			assert.Empty(t, out.String())
		})
	}
}

func TestSplitHeaderLine(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, name, value string }{
		{"abc\n", "", "abc"},
		{"abc\r\n", "", "abc"},
		{"abc\n\n", "", "abc\n"},
		{"X-Client-Cert: abc", "X-Client-Cert", "abc"},
		{"X-Client-Cert:abc", "X-Client-Cert", "abc"},
		{":MIIB:", "", ":MIIB:"},
		{"By=spiffe://a;Cert=\"x\"", "", "By=spiffe://a;Cert=\"x\""},
		{"Client-Cert: :MIIB:\n", "Client-Cert", ":MIIB:"},
		{"-----BEGIN%20CERTIFICATE-----%0A", "", "-----BEGIN%20CERTIFICATE-----%0A"},
	}
	for _, tc := range cases {
		name, value := splitHeaderLine(tc.in)
		assert.Equal(t, tc.name, name, tc.in)
		assert.Equal(t, tc.value, value, tc.in)
	}
	_ = decoder.Profiles
}
