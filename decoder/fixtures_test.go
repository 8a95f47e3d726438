package decoder

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// go test ./decoder -run TestFixtures -update rewrites testdata/ from a new
// hierarchy. Only public certificates are written; the keys are discarded.
var update = flag.Bool("update", false, "regenerate decoder/testdata fixtures")

// fixture is one entry of testdata/fixtures.json.
type fixture struct {
	File        string   `json:"file"`                   // testdata/headers/<file>: the header value, byte-exact
	Profile     string   `json:"profile"`                // profile that decodes it
	Header      string   `json:"header"`                 // the header it travels in
	ChainFile   string   `json:"chain_file,omitempty"`   // chain header value, if any
	ChainHeader string   `json:"chain_header,omitempty"` // and its header
	Certs       []string `json:"certs"`                  // expected, leaf first: testdata/pki/<name>.pem; empty = ErrAbsent
	Auto        string   `json:"auto,omitempty"`         // Result.Profile under auto (cert header only)
	Producer    string   `json:"producer"`               // what made it
	Source      string   `json:"source"`                 // where the producer's format is documented
}

func TestFixtures(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	raw, err := os.ReadFile("testdata/fixtures.json")
	require.NoError(t, err)
	var fixtures []fixture
	require.NoError(t, json.Unmarshal(raw, &fixtures))
	require.NotEmpty(t, fixtures)
	for _, fx := range fixtures {
		t.Run(fx.File, func(t *testing.T) {
			v := readHeader(t, fx.File)
			var chain []string
			if fx.ChainFile != "" {
				chain = []string{readHeader(t, fx.ChainFile)}
			}
			d := mustNew(t, Options{Profile: fx.Profile, Header: fx.Header, ChainHeader: fx.ChainHeader})
			require.Equal(t, canon(fx.Header), d.Header())
			res, err := d.Decode([]string{v}, chain)
			if len(fx.Certs) == 0 {
				require.ErrorIs(t, err, ErrAbsent)
				return
			}
			require.NoError(t, err)
			require.Len(t, res.Certs, len(fx.Certs))
			for i, name := range fx.Certs {
				assert.Equal(t, readPKI(t, name), res.Certs[i].Raw, "certificate %d (%s)", i+1, name)
			}
			if fx.Auto != "" {
				res, err := mustNew(t, Options{Header: fx.Header}).Decode([]string{v}, nil)
				require.NoError(t, err)
				assert.Equal(t, fx.Auto, res.Profile)
				assert.Equal(t, readPKI(t, fx.Certs[0]), res.Certs[0].Raw)
			}
		})
	}
}

func readHeader(t testing.TB, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", "headers", name))
	require.NoError(t, err)
	return string(b)
}

func readPKI(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "pki", name+".pem"))
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	return blk.Bytes
}

// fixtureHeaders lists the committed header values, for fuzz seeds.
func fixtureHeaders(t testing.TB) map[string]string {
	names, err := filepath.Glob(filepath.Join("testdata", "headers", "*.txt"))
	require.NoError(t, err)
	sort.Strings(names)
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[filepath.Base(n)] = readHeader(t, filepath.Base(n))
	}
	return out
}

func writeFixtures(t *testing.T) {
	// Long-lived on purpose: decoding does not check validity.
	v := testpki.Validity(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2125, 1, 1, 0, 0, 0, 0, time.UTC))
	root := testpki.NewRoot("mtlsauth fixtures root CA", v, testpki.Organization("caddy-mtls-auth tests"), testpki.Serial(1))
	inter := root.NewIntermediate("mtlsauth fixtures intermediate CA", v, testpki.Organization("caddy-mtls-auth tests"), testpki.Serial(2))
	var leaf *testpki.Cert
	for i := 0; leaf == nil || !hasSpecials(leaf); i++ {
		require.Less(t, i, 100)
		leaf = inter.NewLeaf("client1.example", v, testpki.Key(testpki.RSA2048), testpki.Serial(0x03A5B1),
			testpki.Organization("caddy-mtls-auth tests"),
			testpki.DNS("client1.example"), testpki.URIs("spiffe://cluster.local/ns/prod/sa/frontend"),
			testpki.Emails("ops@client1.example"), testpki.IPs("192.0.2.10"))
	}
	other := testpki.NewSelfSigned("someone-else.example", v, testpki.Serial(7))

	require.NoError(t, os.RemoveAll("testdata/headers"))
	require.NoError(t, os.RemoveAll("testdata/pki"))
	require.NoError(t, os.MkdirAll("testdata/headers", 0o755))
	require.NoError(t, os.MkdirAll("testdata/pki", 0o755))
	for name, c := range map[string]*testpki.Cert{"root": root, "intermediate": inter, "leaf": leaf, "other": other} {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "pki", name+".pem"), c.PEM(), 0o644))
	}
	put := func(name, value string) {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "headers", name), []byte(value), 0o644))
	}
	lir := []string{"leaf", "intermediate", "root"}
	li := []string{"leaf", "intermediate"}
	l := []string{"leaf"}
	var fx []fixture
	add := func(f fixture, value, chainValue string) {
		put(f.File, value)
		if f.ChainFile != "" {
			put(f.ChainFile, chainValue)
		}
		fx = append(fx, f)
	}
	add(fixture{File: "aws_alb_passthrough.txt", Profile: "aws_alb", Header: "X-Amzn-Mtls-Clientcert", Certs: lir, Auto: "aws_alb",
		Producer: "AWS ALB mTLS passthrough: the chain leaf to root, URL-encoded with + = / left literal (albEncode)",
		Source:   "§1 AWS Application Load Balancer"}, albEncode(chainPEM(leaf, inter, root)), "")
	add(fixture{File: "aws_alb_leaf_doc_form.txt", Profile: "aws_alb", Header: "X-Amzn-Mtls-Clientcert-Leaf", Certs: l, Auto: "aws_alb",
		Producer: "AWS ALB verify mode leaf header in the form of the AWS doc example, '=' as %3D, '+' '/' literal (albDocEncode)",
		Source:   "§1 AWS Application Load Balancer"}, albDocEncode(leaf.PEM()), "")
	add(fixture{File: "nginx_ssl_client_escaped_cert.txt", Profile: "nginx", Header: "Ssl-Client-Cert", Certs: l, Auto: "nginx",
		Producer: "nginx $ssl_client_escaped_cert: ngx_escape_uri with the uri_component table (ngxEscape); ingress-nginx ssl-client-cert",
		Source:   "§2 NGINX and ingress-nginx"}, nginxEscapedCert(leaf), "")
	add(fixture{File: "nginx_ssl_client_cert.txt", Profile: "nginx", Header: "X-Ssl-Client-Cert", Certs: l, Auto: "pem",
		Producer: "nginx deprecated $ssl_client_cert: PEM with a TAB after every LF, final LF dropped (nginxSslClientCert)",
		Source:   "§2 NGINX and ingress-nginx"}, nginxSslClientCert(leaf), "")
	add(fixture{File: "nginx_ssl_client_cert_unfolded.txt", Profile: "nginx", Header: "X-Ssl-Client-Cert", Certs: l, Auto: "pem",
		Producer: "the same after an RFC 9112 receiver replaced each obs-fold with a space (unfold)",
		Source:   "§2 NGINX and ingress-nginx"}, unfold(nginxSslClientCert(leaf)), "")
	add(fixture{File: "envoy_xfcc.txt", Profile: "envoy_xfcc", Header: "X-Forwarded-Client-Cert", Certs: li, Auto: "envoy_xfcc",
		Producer: "Envoy SANITIZE_SET with set_current_client_cert_details cert, chain, subject, uri, dns; PercentEncoding (xfccElement)",
		Source:   "§3 Envoy x-forwarded-client-cert"},
		xfccElement([]string{"spiffe://cluster.local/ns/edge/sa/gateway"}, leaf, true, true, envoyPercentEncode), "")
	add(fixture{File: "envoy_xfcc_two_hops.txt", Profile: "envoy_xfcc", Header: "X-Forwarded-Client-Cert", Certs: l, Auto: "envoy_xfcc",
		Producer: "Envoy APPEND_FORWARD behind an edge that did not sanitize: a forged first element (other) and the real last one; older StrReplaceAll encoding",
		Source:   "§3 Envoy x-forwarded-client-cert"},
		xfccElement([]string{"spiffe://attacker"}, other, true, false, envoyOldEncode)+","+
			xfccElement([]string{"spiffe://cluster.local/ns/edge/sa/gateway"}, leaf, true, false, envoyOldEncode), "")
	add(fixture{File: "traefik.txt", Profile: "traefik", Header: "X-Forwarded-Tls-Client-Cert", Certs: li, Auto: "der_base64",
		Producer: "Traefik >= 2.9.4 passTLSClientCert pem: true: each peer certificate sanitized, joined with ',' (traefikCert)",
		Source:   "§4 Traefik passTLSClientCert"}, traefikCert(leaf, inter), "")
	add(fixture{File: "traefik_2.9.3.txt", Profile: "traefik", Header: "X-Forwarded-Tls-Client-Cert", Certs: li, Auto: "der_base64",
		Producer: "Traefik <= 2.9.3: each sanitized piece url.QueryEscape'd (traefikCertOld)",
		Source:   "§4 Traefik passTLSClientCert"}, traefikCertOld(leaf, inter), "")
	add(fixture{File: "haproxy.txt", Profile: "haproxy", Header: "X-Ssl-Client-Cert", Certs: l, Auto: "der_base64",
		Producer: "HAProxy http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64] (haproxyDER)",
		Source:   "§5 HAProxy"}, haproxyDER(leaf), "")
	add(fixture{File: "haproxy_quoted.txt", Profile: "haproxy", Header: "X-Ssl-Client-Cert", Certs: lir, Auto: "der_base64",
		ChainFile: "haproxy_quoted_chain.txt", ChainHeader: "X-Ssl-Client-Cert-Chain",
		Producer: "HAProxy set-header with %{+Q}[ssl_c_der,base64] and %{+Q}[ssl_c_chain_der,base64] (one base64 of the concatenated DER)",
		Source:   "§5 HAProxy"}, haproxyQuoted(leaf), `"`+haproxyChainDER(inter, root)+`"`)
	add(fixture{File: "cloudflare_der_base64.txt", Profile: "cloudflare", Header: "Cf-Client-Cert-Der-Base64", Certs: l, Auto: "der_base64",
		Producer: "Cloudflare client_certificate_forwarding: base64 DER of the leaf (b64)",
		Source:   "§6 Cloudflare"}, b64(leaf), "")
	add(fixture{File: "cloudflare_rfc9440.txt", Profile: "cloudflare", Header: "Client-Cert", Certs: lir, Auto: "rfc9440",
		ChainFile: "cloudflare_rfc9440_chain.txt", ChainHeader: "Client-Cert-Chain",
		Producer: "Cloudflare transform rule with cf.tls_client_auth.cert_rfc9440 and cert_chain_rfc9440 (members joined with \", \")",
		Source:   "§6 Cloudflare"}, rfc9440(leaf, true), rfc9440List(", ", true, inter, root))
	add(fixture{File: "gcp_leaf.txt", Profile: "gcp", Header: "X-Client-Cert-Leaf", Certs: li, Auto: "rfc9440",
		ChainFile: "gcp_chain.txt", ChainHeader: "X-Client-Cert-Chain",
		Producer: "GCP ALB custom headers X-Client-Cert-Leaf:{client_cert_leaf} and X-Client-Cert-Chain:{client_cert_chain}",
		Source:   "§7 Google Cloud Application Load Balancer"}, rfc9440(leaf, true), rfc9440List(",", true, inter))
	add(fixture{File: "azure_app_service.txt", Profile: "azure", Header: "X-Arr-Clientcert", Certs: l, Auto: "der_base64",
		Producer: "Azure App Service X-ARR-ClientCert: base64 DER of the leaf (b64)",
		Source:   "§8 Azure"}, b64(leaf), "")
	add(fixture{File: "apache.txt", Profile: "apache", Header: "Ssl-Client-Cert", Certs: l, Auto: "pem",
		Producer: "Apache RequestHeader set SSL_CLIENT_CERT \"%{SSL_CLIENT_CERT}s\": CR and LF become spaces (apacheCert)",
		Source:   "§5 Apache httpd"}, apacheCert(leaf), "")
	add(fixture{File: "apache_null.txt", Profile: "apache", Header: "Ssl-Client-Cert",
		Producer: "Apache with no client certificate: the literal (null)",
		Source:   "§5 Apache httpd"}, apacheCert(nil), "")
	add(fixture{File: "wso2_choreo_connect.txt", Profile: "wso2", Header: "X-Wso2-Client-Certificate", Certs: l, Auto: "wso2",
		Producer: "WSO2 Choreo Connect documented form: armor around base64 of the whole PEM text (wso2Cert)",
		Source:   "§11 WSO2"}, wso2Cert(leaf), "")
	add(fixture{File: "rfc9440_unpadded.txt", Profile: "rfc9440", Header: "Client-Cert", Certs: lir, Auto: "rfc9440",
		ChainFile: "rfc9440_unpadded_chain.txt", ChainHeader: "Client-Cert-Chain",
		Producer: "RFC 9440 Client-Cert and Client-Cert-Chain without '=' padding (RFC 8941 allows it), chain with spaces after commas",
		Source:   "§11 RFC 9440"}, rfc9440(leaf, false), rfc9440List(" ,  ", false, inter, root))
	add(fixture{File: "pem_trailing_junk.txt", Profile: "pem", Header: "Client-Cert", Certs: l, Auto: "pem",
		Producer: "PEM with line breaks as spaces and literal [\\r][\\n] after END (wso2/carbon-apimgt#13933)",
		Source:   "Pitfall 11"}, apacheCert(leaf)+`[\r][\n]`, "")

	out, err := json.MarshalIndent(fx, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile("testdata/fixtures.json", append(out, '\n'), 0o644))
	// Make sure nothing secret slipped in.
	filepath.Walk("testdata", func(p string, info os.FileInfo, err error) error {
		require.NoError(t, err)
		if !info.IsDir() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.False(t, bytes.Contains(b, []byte("PRIVATE KEY")), p)
		}
		return nil
	})
}
