package decoder

// Family R: RFC 9440 Client-Cert / Client-Cert-Chain, RFC 8941 byte
// sequences ":" base64(DER) ":". The chain header is an RFC 8941 list:
// members separated by "," with optional spaces or tabs around it, possibly
// split over several field lines (joined with "," before decoding). Used by
// GCP (client_cert_leaf, client_cert_chain), Cloudflare (cert_rfc9440,
// cert_chain_rfc9440), CloudFront and HAProxy by recipe.
//
// Padding is optional (RFC 8941 parsers "SHOULD NOT fail when = padding is
// not present"). Parameters after a member (";key=value") are ignored. A list
// in the Client-Cert header itself is tolerated: its first member is the leaf.

// rfc9440Segments records the base64 of every byte sequence in b.
func (r *run) rfc9440Segments(b []byte) error {
	n, err := r.checkListCount(b)
	if err != nil {
		return err
	}
	start := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != ',' {
			continue
		}
		k := len(r.segs)
		lo, hi := trimRange(b, start, i)
		if lo == hi {
			return r.errf("%s is empty", certN(k, n))
		}
		if b[lo] != ':' {
			return r.errf("%s: at %s: a byte sequence must start with ':'", certN(k, n), r.offset(lo))
		}
		end := -1
		for j := lo + 1; j < hi; j++ {
			if b[j] == ':' {
				end = j
				break
			}
		}
		if end < 0 {
			return r.errf("%s: at %s: the byte sequence has no closing ':'", certN(k, n), r.offset(lo))
		}
		if end+1 < hi && b[end+1] != ';' {
			return r.errf("%s: at %s: unexpected text after the byte sequence", certN(k, n), r.offset(end+1))
		}
		if end == lo+1 {
			return r.errf("%s is an empty byte sequence", certN(k, n))
		}
		r.segs = append(r.segs, seg{lo + 1, end})
		start = i + 1
	}
	return nil
}
