package mtlsauth

import (
	"bytes"
	"crypto/x509"
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
			var rep struct {
				Profile      string           `json:"profile"`
				Verdict      string           `json:"verdict"`
				Certificates []map[string]any `json:"certificates"`
			}
			require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
			assert.Equal(t, tc.profile, rep.Profile)
			assert.Equal(t, "ok", rep.Verdict)
			got := rep.Certificates
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
	var rep decodeReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
	got := rep.Certificates
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
		{"too big", strings.Repeat("A", maxDecodeInput+1), decodeFlags{}, "stdin is over"},
		{"the handler's reason", der + "," + der, decodeFlags{}, "(the handler's reason: malformed)"},
		{"missing chain file", der, decodeFlags{chainFile: "/nonexistent/chain"}, "/nonexistent/chain"},
		{"missing ca file", der, decodeFlags{caFile: "/nonexistent/ca.pem"}, "--ca: open /nonexistent/ca.pem"},
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

func TestDecodeCommandVerdict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := testpki.NewRoot("verdict root")
	inter := root.NewIntermediate("verdict intermediate")
	leaf := inter.NewLeaf("client", testpki.URIs("spiffe://cluster.local/ns/prod/sa/client"))
	expired := inter.NewLeaf("expired", testpki.Expired())
	serverOnly := inter.NewLeaf("server", testpki.EKU(x509.ExtKeyUsageServerAuth))
	write := func(name string, data []byte) string {
		p, err := testpki.WriteFile(dir, name, data)
		require.NoError(t, err)
		return p
	}
	ca := write("ca.pem", root.PEM())
	otherCA := write("other.pem", testpki.NewRoot("other").PEM())
	chain := write("chain.txt", []byte("Client-Cert-Chain: :"+base64.StdEncoding.EncodeToString(inter.DER())+":\n"))
	item := func(c *testpki.Cert) string { return ":" + base64.StdEncoding.EncodeToString(c.DER()) + ":" }
	gateway := strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(string(leaf.PEM()))
	istio := "x-forwarded-client-cert: Hash=" + leaf.Fingerprint() + `;Cert="` + gateway + `"` +
		",By=spiffe://cluster.local/ns/prod/sa/api;Hash=" + strings.Repeat("ab", 32) + `;Subject="";URI=spiffe://gw`

	cases := []struct {
		name     string
		input    string
		flags    decodeFlags
		verdict  string
		verified bool
		line     string
	}{
		{"valid, no --ca", item(leaf), decodeFlags{}, "ok", false, "(validity and key usage only: give --ca to verify the chain)"},
		{"expired without --ca", item(expired), decodeFlags{}, "expired", false, "certificate expired at"},
		{"server auth only", item(serverOnly), decodeFlags{}, "wrong_usage", false, "does not include clientAuth"},
		{"verified through --chain", item(leaf), decodeFlags{caFile: ca, chainFile: chain}, "ok", true, "chain verified to " + ca},
		{"intermediate missing", item(leaf), decodeFlags{caFile: ca}, "untrusted", false, "chain does not verify to the trust pool"},
		{"another CA", item(leaf), decodeFlags{caFile: otherCA, chainFile: chain}, "untrusted", false, ""},
		{"expired with --ca", item(expired), decodeFlags{caFile: ca, chainFile: chain}, "expired", false, ""},
		{"istio with --xfcc-proxies", istio, decodeFlags{caFile: ca, chainFile: chain, xfccProxies: []string{"spiffe://gw"}}, "ok", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := runDecode(strings.NewReader(tc.input), &out, tc.flags)
			if tc.verdict == "ok" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, "the handler would reject this certificate: "+tc.verdict)
			}
			assert.Contains(t, out.String(), "\nverdict: "+tc.verdict+"\n")
			assert.Contains(t, out.String(), tc.line)

			out.Reset()
			f := tc.flags
			f.json = true
			_ = runDecode(strings.NewReader(tc.input), &out, f)
			var rep decodeReport
			require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
			assert.Equal(t, tc.verdict, rep.Verdict)
			assert.Equal(t, tc.verified, rep.ChainVerified)
			assert.Equal(t, leaf.Fingerprint() == rep.Certificates[0].SHA256, tc.name != "expired without --ca" && tc.name != "expired with --ca" && tc.name != "server auth only")
		})
	}
	// Without --xfcc-proxies the Istio header's last element has no Cert,
	// and the error says what to do.
	err := runDecode(strings.NewReader(istio), &bytes.Buffer{}, decodeFlags{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "xfcc_proxies")
}
