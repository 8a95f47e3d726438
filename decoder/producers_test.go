package decoder

// Producers: small functions that build a header value exactly the way each
// load balancer builds it, from its source code or documentation. Tests and
// fixtures use them; each comment names what it mirrors.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"strings"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// ngxUriComponent is nginx's uri_component escape table from
// src/core/ngx_string.c (ngx_escape_uri, NGX_ESCAPE_URI_COMPONENT):
// "not ALPHA, DIGIT, "-", ".", "_", "~"". Bit n of word n/32 set = escape.
var ngxUriComponent = [8]uint32{
	0xffffffff, // 0x00-0x1f
	0xfc009fff, // ?>=< ;:98 7654 3210  /.-, +*)( '&%$ #"!
	0x78000001, // _^]\ [ZYX WVUT SRQP  ONML KJIH GFED CBA@
	0xb8000001, //  ~}| {zyx wvut srqp  onml kjih gfed cba`
	0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
}

// ngxUriComponentOld is the variant found in other nginx source copies, which
// also leaves ! ' ( ) * literal (0xfc00987d).
var ngxUriComponentOld = func() [8]uint32 { t := ngxUriComponent; t[1] = 0xfc00987d; return t }()

// ngxEscape mirrors ngx_escape_uri: upper-case hex, table lookup per byte.
func ngxEscape(src []byte, table [8]uint32) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for _, c := range src {
		if table[c>>5]&(1<<(c&0x1f)) != 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// nginxEscapedCert mirrors $ssl_client_escaped_cert (ngx_ssl_get_escaped_certificate):
// the raw PEM through ngx_escape_uri(..., NGX_ESCAPE_URI_COMPONENT). U1.
func nginxEscapedCert(c *testpki.Cert) string { return ngxEscape(c.PEM(), ngxUriComponent) }

// nginxSslClientCert mirrors the deprecated $ssl_client_cert
// (ngx_ssl_get_certificate): the PEM with a TAB after every LF, the final LF
// dropped. P.
func nginxSslClientCert(c *testpki.Cert) string {
	p := strings.TrimSuffix(string(c.PEM()), "\n")
	return strings.ReplaceAll(p, "\n", "\n\t")
}

// unfold is what an RFC 9112 §5.2 receiver makes of an obs-fold: each
// CRLF/LF followed by whitespace becomes one space.
func unfold(s string) string { return strings.ReplaceAll(s, "\n\t", " ") }

// envoyPercentEncode mirrors Envoy's Http::Utility::PercentEncoding as used
// for XFCC Cert/Chain: every byte except ALPHA, DIGIT and "*-._" becomes
// %XX ("SPACE is encoded as %20, NOT as the + character"). U1. The
// package's XFCC writer (xfccwrite.go) encodes the same way.
func envoyPercentEncode(pem []byte) string {
	var b strings.Builder
	envoyPercentEncodeTo(&b, pem)
	return b.String()
}

// envoyOldEncode mirrors older Envoy's
// absl::StrReplaceAll(pem, {{"\n","%0A"},{" ","%20"},{"+","%2B"},{"/","%2F"},{"=","%3D"}}). U1.
func envoyOldEncode(pem []byte) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(string(pem))
}

// xfccElement mirrors mutateXfccRequestHeader in Envoy's
// conn_manager_utility.cc: By=<uri> per local URI SAN, Hash=<sha256 hex>,
// then the configured details: Cert="<U1>", Chain="<U1 blocks>",
// Subject="<dn>" (always present; BoringSSL's X509_NAME_print_ex with
// XN_FLAG_RFC2253, written between quotes as is), URI=<uri> per SAN
// ("URI=" when none), DNS=<name> per SAN (both the SAN's bytes, unquoted
// and unescaped); joined with ";".
func xfccElement(by []string, c *testpki.Cert, cert, chain bool, encode func([]byte) string) string {
	var chainPEM []byte
	if chain {
		chainPEM = c.ChainPEM()
	}
	return envoyElement(by, c.Cert, cert, chainPEM, encode)
}

// envoyElement is xfccElement for any certificate; chainPEM, when not
// nil, is sent as Chain.
func envoyElement(by []string, c *x509.Certificate, cert bool, chainPEM []byte, encode func([]byte) string) string {
	var parts []string
	for _, u := range by {
		parts = append(parts, "By="+u)
	}
	sum := sha256.Sum256(c.Raw)
	parts = append(parts, "Hash="+hex.EncodeToString(sum[:]))
	if cert {
		parts = append(parts, `Cert="`+encode(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))+`"`)
	}
	if chainPEM != nil {
		parts = append(parts, `Chain="`+encode(chainPEM)+`"`)
	}
	subject, err := formatName(c.RawSubject, flavorBoringSSL)
	if err != nil {
		panic(err)
	}
	parts = append(parts, `Subject="`+subject+`"`)
	facts, ok := readCertFacts(c.Raw)
	if !ok {
		panic("envoyElement: unreadable certificate")
	}
	if len(facts.uris) == 0 {
		parts = append(parts, "URI=")
	}
	for _, u := range facts.uris {
		parts = append(parts, "URI="+string(u))
	}
	for _, d := range facts.dns {
		parts = append(parts, "DNS="+string(d))
	}
	return strings.Join(parts, ";")
}

// albEncode mirrors AWS ALB's X-Amzn-Mtls-Clientcert: URL-encoded PEM "with
// +=/ as safe characters": space %20, LF %0A, everything else of PEM literal. U2.
func albEncode(pem []byte) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20").Replace(string(pem))
}

// albDocEncode is the form of the ALB documentation's own example, which
// escapes '=' as %3D but leaves '+' and '/' literal.
func albDocEncode(pem []byte) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20", "=", "%3D").Replace(string(pem))
}

// traefikSanitize mirrors Traefik's passtlsclientcert sanitize(): the PEM
// without its BEGIN/END lines and without "\n".
func traefikSanitize(pem []byte) string {
	s := strings.ReplaceAll(string(pem), "-----BEGIN CERTIFICATE-----", "")
	s = strings.ReplaceAll(s, "-----END CERTIFICATE-----", "")
	return strings.ReplaceAll(s, "\n", "")
}

// traefikCert mirrors X-Forwarded-Tls-Client-Cert (Traefik >= 2.9.4): every
// peer certificate sanitized, joined with ",". B.
func traefikCert(certs ...*testpki.Cert) string {
	var parts []string
	for _, c := range certs {
		parts = append(parts, traefikSanitize(c.PEM()))
	}
	return strings.Join(parts, ",")
}

// traefikCertOld mirrors Traefik <= 2.9.3, which also ran url.QueryEscape
// over each sanitized piece.
func traefikCertOld(certs ...*testpki.Cert) string {
	var parts []string
	for _, c := range certs {
		parts = append(parts, url.QueryEscape(traefikSanitize(c.PEM())))
	}
	return strings.Join(parts, ",")
}

// haproxyDER mirrors %[ssl_c_der,base64]: standard base64 of the leaf DER. B.
func haproxyDER(c *testpki.Cert) string { return base64.StdEncoding.EncodeToString(c.DER()) }

// haproxyQuoted mirrors %{+Q}[ssl_c_der,base64]: the same, in double quotes.
func haproxyQuoted(c *testpki.Cert) string { return `"` + haproxyDER(c) + `"` }

// haproxyChainDER mirrors %[ssl_c_chain_der,base64]: one base64 of the DER
// of every certificate of SSL_get_peer_cert_chain (server side: without the
// leaf), concatenated.
func haproxyChainDER(certs ...*testpki.Cert) string {
	var der []byte
	for _, c := range certs {
		der = append(der, c.DER()...)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// apacheCert mirrors mod_headers' "%{SSL_CLIENT_CERT}s": unwrap_header
// replaces every CR and LF with a space. P. A nil certificate gives the
// literal "(null)".
func apacheCert(c *testpki.Cert) string {
	if c == nil {
		return "(null)"
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(string(c.PEM()))
}

// wso2Cert mirrors the WSO2 Choreo Connect documentation: the armor around
// a base64 of the whole PEM text (D).
func wso2Cert(c *testpki.Cert) string {
	return "-----BEGIN CERTIFICATE-----" + base64.StdEncoding.EncodeToString(c.PEM()) + "-----END CERTIFICATE-----"
}

// rfc9440 mirrors an RFC 8941 byte sequence ":" base64(DER) ":".
func rfc9440(c *testpki.Cert, pad bool) string {
	enc := base64.StdEncoding
	if !pad {
		enc = base64.RawStdEncoding
	}
	return ":" + enc.EncodeToString(c.DER()) + ":"
}

// rfc9440List mirrors a Client-Cert-Chain list, members joined by sep
// ("," for GCP, ", " for Cloudflare's cert_chain_rfc9440).
func rfc9440List(sep string, pad bool, certs ...*testpki.Cert) string {
	var parts []string
	for _, c := range certs {
		parts = append(parts, rfc9440(c, pad))
	}
	return strings.Join(parts, sep)
}

// b64 is plain base64 DER (Cloudflare Cf-Client-Cert-Der-Base64, Azure
// X-ARR-ClientCert, Caddy certificate_der_base64).
func b64(c *testpki.Cert) string { return base64.StdEncoding.EncodeToString(c.DER()) }

func chainPEM(certs ...*testpki.Cert) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.PEM()...)
	}
	return out
}
