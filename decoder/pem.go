package decoder

import "bytes"

// Family P: PEM whose line breaks were mangled on the way into a header
// (Apache mod_headers turns CR and LF into spaces, nginx's deprecated
// $ssl_client_cert puts a TAB after every LF, a receiver of an obs-fold
// replaces it with a space, F5 X509::whole, Azure Application Gateway), or
// PEM on one line. encoding/pem rejects all of these, so the armor is
// located by hand, the body's whitespace dropped and the rest base64-decoded.
// The same scanner reads URL-encoded PEM once its escapes are decoded
// (urlpem.go).
//
// Accepted: any number of CERTIFICATE blocks (concatenated, as in ALB and
// Envoy chains), whitespace between them, the armor label separated by a
// space or a '+' (form encoding), and trailing junk after the last END
// marker such as real CR/LF or the literal text [\r] / [\n] some load
// balancers append (wso2/carbon-apimgt#13933).

const (
	endMarker = "-----END"
	certLabel = "CERTIFICATE-----"
)

// pemSegments records the base64 body of every CERTIFICATE block in b.
func (r *run) pemSegments(b []byte) error {
	n := bytes.Count(b, []byte(beginMarker))
	if n == 0 {
		return r.errf("no -----BEGIN CERTIFICATE----- marker")
	}
	if err := r.checkCount(n); err != nil {
		return err
	}
	pos := 0
	for i := 0; i < n; i++ {
		k := bytes.Index(b[pos:], []byte(beginMarker))
		if k < 0 { // cannot happen: counted above
			break
		}
		if !junkOnly(b[pos:pos+k], i > 0) {
			if i == 0 {
				return r.errf("unexpected text before the BEGIN marker (at %s)", r.offset(pos))
			}
			return r.errf("unexpected text between certificates %d and %d (at %s)", i, i+1, r.offset(pos))
		}
		p, ok := armorLabel(b, pos+k+len(beginMarker))
		if !ok {
			return r.errf("%s: the PEM block at %s is not a CERTIFICATE", certN(i, n), r.offset(pos+k))
		}
		e := bytes.Index(b[p:], []byte(endMarker))
		if e < 0 {
			return r.errf("%s: no -----END CERTIFICATE----- marker", certN(i, n))
		}
		r.segs = append(r.segs, seg{p, p + e})
		q, ok := armorLabel(b, p+e+len(endMarker))
		if !ok {
			return r.errf("%s: the END marker at %s is not END CERTIFICATE", certN(i, n), r.offset(p+e))
		}
		pos = q
	}
	// Anything after the last END marker is ignored (trailing junk).
	return nil
}

// armorLabel checks " CERTIFICATE-----" at b[p:] (the space may be a '+',
// from form encoding) and returns the offset after it.
func armorLabel(b []byte, p int) (int, bool) {
	if p >= len(b) || (b[p] != ' ' && b[p] != '+') {
		return 0, false
	}
	p++
	if !bytes.HasPrefix(b[p:], []byte(certLabel)) {
		return 0, false
	}
	return p + len(certLabel), true
}

// junkOnly reports whether b holds only whitespace and, between blocks, the
// literal escape junk [\r], [\n], \r and \n.
func junkOnly(b []byte, between bool) bool {
	for i := 0; i < len(b); {
		switch {
		case isWS(b[i]):
			i++
		case between && (bytes.HasPrefix(b[i:], []byte(`[\r]`)) || bytes.HasPrefix(b[i:], []byte(`[\n]`))):
			i += 4
		case between && (bytes.HasPrefix(b[i:], []byte(`\r`)) || bytes.HasPrefix(b[i:], []byte(`\n`))):
			i += 2
		default:
			return false
		}
	}
	return true
}
