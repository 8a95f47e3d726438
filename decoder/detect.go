package decoder

import "strings"

// The auto profile tells the families apart by shape, in this order, and
// Result.Profile names the profile that stands for the family found:
//
//	shape of the (trimmed) value                        family  Result.Profile
//	starts with a known XFCC key and '=' (By=, Hash=,   S       envoy_xfcc
//	  Cert=, Chain=, Subject=, URI=, DNS=)
//	starts with ':' (after one pair of quotes is        R       rfc9440
//	  stripped)
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
// ':', '-', ';' or a '=' followed by more data, and base64 of DER starts
// with "MI", never with an XFCC key.

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
	case len(s) > 0 && s[0] == ':':
		return famRFC9440
	case strings.IndexByte(s, '%') >= 0:
		return famURLPEM
	case strings.Contains(s, beginMarker):
		return famPEM
	}
	return famBase64
}
