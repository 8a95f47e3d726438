package decoder

import "bytes"

// Family U: URL-encoded PEM.
//
//   - U1, '+' '/' '=' escaped: nginx $ssl_client_escaped_cert
//     (ngx_escape_uri with the URI component table: all but ALPHA, DIGIT and
//     "-._~" become %XX), ingress-nginx ssl-client-cert, Envoy XFCC Cert and
//     Chain (PercentEncoding: all but ALPHA, DIGIT and "*-._"; older Envoy
//     replaced only LF, space, '+', '/' and '='), Kong url_encoded.
//   - U2, '+' '/' '=' literal: AWS ALB X-Amzn-Mtls-Clientcert(-Leaf),
//     CloudFront-Viewer-Cert-Pem. The ALB documentation's own example
//     escapes '=' as %3D anyway, so both forms are accepted.
//
// Only %XX escapes are decoded; '+' stays a '+' (url.QueryUnescape would turn
// it into a space and break every ALB certificate). The decoded text is then
// read by the PEM scanner (pem.go), so several concatenated blocks (an ALB
// chain, an Envoy Chain) work too. When the decoded text has no armor it is
// read as base64 DER (Traefik <= 2.9.3 escaped the bare base64 pieces).

// percentDecode decodes the %XX escapes of b in place and, for the
// certificate header (where it tells aws_alb from nginx), notes in r
// whether a literal '+', '/' or '=' was seen (the ALB form).
func (r *run) percentDecode(b []byte) ([]byte, error) {
	track := r.where == "" && !r.literal
	w := 0
	for i := 0; i < len(b); {
		k := bytes.IndexByte(b[i:], '%')
		if k < 0 {
			k = len(b) - i
		}
		if k > 0 {
			run := b[i : i+k]
			if track && bytes.ContainsAny(run, "+/=") {
				r.literal, track = true, false
			}
			w += copy(b[w:], run)
			i += k
			if i == len(b) {
				break
			}
		}
		if i+2 >= len(b) {
			return nil, r.errf("percent-encoding at offset %d: truncated escape", i)
		}
		h, ok1 := unhex(b[i+1])
		l, ok2 := unhex(b[i+2])
		if !ok1 || !ok2 {
			return nil, r.errf("percent-encoding at offset %d: invalid escape", i)
		}
		b[w] = h<<4 | l
		w++
		i += 3
	}
	return b[:w], nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
