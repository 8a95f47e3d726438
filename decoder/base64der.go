package decoder

import "bytes"

// Family B: bare base64 of DER, one line, no armor (HAProxy ssl_c_der,base64,
// Azure App Service X-ARR-ClientCert, Cloudflare Cf-Client-Cert-Der-Base64,
// Traefik X-Forwarded-Tls-Client-Cert, Caddy certificate_der_base64, F5
// b64encode). Shapes accepted:
//
//   - one certificate: MIIB...==
//   - wrapped in one pair of double quotes: "MIIB...==" (HAProxy %{+Q})
//   - a comma list, leaf first: MIIB...,MIIC... (Traefik; spaces after
//     commas and quotes around each item are tolerated)
//   - percent-encoded items: MIIB...%2B...%3D%3D (Traefik <= 2.9.3 ran
//     url.QueryEscape over each piece); '%' never occurs in base64, so this
//     is unambiguous, and '+' is never turned into a space
//   - one base64 of several concatenated DER certificates (HAProxy
//     ssl_c_chain_der,base64)
//   - padding optional, whitespace anywhere ignored (F5 line wrapping)
//   - base64 of a PEM text (double encoding, see wso2.go)

// base64Segments splits b into the base64 items of a comma list. The
// members are counted against the chain limit before any is decoded. (This
// is the package's one comma-list scanner: RFC 9440 lists, whose members
// may hold commas in parameters, are parsed as RFC 8941 structured fields.)
func (r *run) base64Segments(b []byte) error {
	n := bytes.Count(b, []byte{','}) + 1
	if err := r.checkCount(n); err != nil {
		return err
	}
	start := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != ',' {
			continue
		}
		lo, hi := trimRange(b, start, i)
		if hi-lo >= 2 && b[lo] == '"' && b[hi-1] == '"' {
			lo, hi = trimRange(b, lo+1, hi-1)
		}
		if lo == hi {
			return r.errf("%s is empty", certN(len(r.segs), n))
		}
		r.segs = append(r.segs, seg{lo, hi})
		start = i + 1
	}
	return nil
}

// trimRange trims whitespace from b[lo:hi] and returns the new bounds.
func trimRange(b []byte, lo, hi int) (int, int) {
	for lo < hi && isWS(b[lo]) {
		lo++
	}
	for hi > lo && isWS(b[hi-1]) {
		hi--
	}
	return lo, hi
}

const (
	b64Invalid = 0xFF
	b64Space   = 0xFE
	b64Pad     = 0xFD
	b64Junk    = 0xFC // backslash or [: maybe literal line-break junk
)

var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = b64Invalid
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t[' '], t['\t'], t['\r'], t['\n'] = b64Space, b64Space, b64Space, b64Space
	t['='] = b64Pad
	t['\\'], t['['] = b64Junk, b64Junk
	return t
}()

// junkLen returns the length of the literal line-break junk at the start of
// b: \r, \n or \t written as two characters, or [\r] / [\n] (some load
// balancers write line breaks so, wso2/carbon-apimgt#13933). Backslash and
// '[' never occur in base64, so skipping these cannot change the data.
func junkLen(b []byte) int {
	switch {
	case len(b) >= 2 && b[0] == '\\' && (b[1] == 'r' || b[1] == 'n' || b[1] == 't'):
		return 2
	case len(b) >= 4 && b[0] == '[' && b[1] == '\\' && (b[2] == 'r' || b[2] == 'n') && b[3] == ']':
		return 4
	}
	return 0
}

// appendBase64 appends the standard-base64 decoding of src to dst. '+' is
// data, never a space; whitespace is skipped; padding is optional but, when
// present, must be in the right place. Literal line-break junk (junkLen) is
// skipped like whitespace. On failure it returns the offset in
// src and a reason (never the data).
func appendBase64(dst, src []byte) ([]byte, int, string) {
	var acc uint32
	n := 0 // sextets in the current quantum
	i := 0
	// Fast path: whole quanta of four alphabet characters.
	for ; i+4 <= len(src); i += 4 {
		a, b, c, d := b64Table[src[i]], b64Table[src[i+1]], b64Table[src[i+2]], b64Table[src[i+3]]
		if a|b|c|d >= 64 {
			break
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst = append(dst, byte(v>>16), byte(v>>8), byte(v))
	}
	for ; i < len(src); i++ {
		c := b64Table[src[i]]
		switch {
		case c < 64:
			acc = acc<<6 | uint32(c)
			n++
			if n == 4 {
				dst = append(dst, byte(acc>>16), byte(acc>>8), byte(acc))
				acc, n = 0, 0
			}
		case c == b64Space:
		case c == b64Junk:
			k := junkLen(src[i:])
			if k == 0 {
				return dst, i, "illegal character"
			}
			i += k - 1
		case c == b64Pad:
			if n < 2 {
				return dst, i, "padding in the wrong place"
			}
			pads := 0
			for j := i; j < len(src); j++ {
				switch b64Table[src[j]] {
				case b64Pad:
					pads++
					if n+pads > 4 {
						return dst, j, "too much padding"
					}
				case b64Space:
				case b64Junk:
					k := junkLen(src[j:])
					if k == 0 {
						return dst, j, "data after padding"
					}
					j += k - 1
				default:
					return dst, j, "data after padding"
				}
			}
			i = len(src)
		default:
			return dst, i, "illegal character"
		}
	}
	switch n {
	case 1:
		return dst, len(src), "truncated (a single character in the last group)"
	case 2:
		dst = append(dst, byte(acc>>4))
	case 3:
		dst = append(dst, byte(acc>>10), byte(acc>>2))
	}
	return dst, 0, ""
}
