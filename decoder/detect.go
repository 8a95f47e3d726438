package decoder

import "strings"

// The auto profile tells the families apart by shape, in this order, and
// Result.Profile names the profile that stands for the family found:
//
//	shape of the (trimmed) value                        family  Result.Profile
//	starts with a known XFCC key and '=' (By=, Hash=,   S       envoy_xfcc
//	  Cert=, Chain=, Subject=, URI=, DNS=)
//	starts with ':' or '(' (after one pair of quotes    R       rfc9440
//	  is stripped)
//	contains '%', and armor once the escapes are        U1      nginx    ('+' '/' '=' all escaped)
//	  decoded                                           U2      aws_alb  (a literal '+', '/' or '=')
//	contains '%', no armor once decoded                 B       der_base64 (Traefik <= 2.9.3)
//	contains "-----BEGIN"                               P       pem
//	anything else: base64 DER, possibly quoted,         B       der_base64
//	  comma-joined, several DER in one blob
//	any base64 that decodes to "-----BEGIN" (base64     D       wso2
//	  of a PEM text, one extra level at most)
//
// These checks cannot confuse two families: base64 never contains '%',
// ':', '(', '-', ';' or a '=' followed by more data, and base64 of DER
// starts with "MI", never with an XFCC key.

// looksXFCC reports whether s starts with a known XFCC key and '='.
func looksXFCC(s string) bool {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return i < len(s) && s[i] == '=' && isXFCCKey(s[:i])
}

// sniffPayload tells the payload families apart by shape (XFCC is checked
// by the caller). s has had its quotes stripped.
func sniffPayload(s string) family {
	switch {
	case len(s) > 0 && (s[0] == ':' || s[0] == '('): // a byte sequence or an inner list
		return famRFC9440
	case strings.IndexByte(s, '%') >= 0:
		return famURLPEM
	case strings.Contains(s, beginMarker):
		return famPEM
	}
	return famBase64
}

// Traefik's passTLSClientCert writes two headers: X-Forwarded-Tls-Client-Cert
// (the certificates, family B) and X-Forwarded-Tls-Client-Cert-Info, which
// holds only metadata: per certificate `Subject="...";Issuer="...";
// SerialNumber="...";NB="...";NA="...";SAN="..."`, the whole value
// url.QueryEscape'd. Its keys overlap XFCC's (Subject), so reading it by
// mistake used to end in a confusing XFCC or base64 error.

const traefikInfoHeader = "X-Forwarded-Tls-Client-Cert-Info"

const traefikInfoHint = "Traefik's X-Forwarded-Tls-Client-Cert-Info header, which carries no certificate: read X-Forwarded-Tls-Client-Cert (profile traefik)"

// traefikInfoKeys are the record keys Traefik writes, in its order.
var traefikInfoKeys = [...]string{"Subject", "Issuer", "SerialNumber", "NB", "NA", "SAN"}

// looksTraefikInfo reports whether s is an X-Forwarded-Tls-Client-Cert-Info
// value: query-escaped (`Subject%3D%22...`) or, once unescaped, a record
// that starts with one of Traefik's keys and `="` and has a key XFCC does
// not know (Issuer, SerialNumber, NB, NA, SAN).
func looksTraefikInfo(s string) bool {
	for _, k := range traefikInfoKeys {
		if len(s) > len(k) && s[:len(k)] == k {
			switch rest := s[len(k):]; {
			case strings.HasPrefix(rest, "%3D%22"), strings.HasPrefix(rest, "%3d%22"):
				return true
			case strings.HasPrefix(rest, `="`):
				return k != "Subject" || hasTraefikOnlyKey(s)
			}
		}
	}
	return false
}

// hasTraefikOnlyKey reports whether s has `;Issuer="` or another key of a
// Traefik record that XFCC does not have.
func hasTraefikOnlyKey(s string) bool {
	for _, k := range traefikInfoKeys[1:] {
		if strings.Contains(s, ";"+k+`="`) {
			return true
		}
	}
	return false
}
