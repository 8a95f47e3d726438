package decoder

// Family D: double encoding. WSO2 Choreo Connect documents
//
//	SSL-CLIENT-CERT: -----BEGIN CERTIFICATE-----<base64 of the whole PEM text>-----END CERTIFICATE-----
//
// the armor goes around a base64 of the PEM, not of the DER; a rejected Caddy
// PR proposed the same (base64 of PEM, no armor). Whatever family carried it,
// when a base64 payload decodes to bytes starting with "-----BEGIN", the
// decoded bytes are read once more as PEM. Only one extra level is removed:
// a third level is malformed.

// unwrapDouble reads out, the decoded bytes of segment i of n, as PEM text.
func (r *run) unwrapDouble(out []byte, i, n int) error {
	if r.depth > 0 {
		return r.errf("%s: encoded more than twice", certN(i, n))
	}
	r.double = true
	r.depth++
	defer func() { r.depth-- }()
	where, decoded, segs := r.where, r.decoded, r.segs
	r.where = where + certN(i, n) + ": inside its base64-encoded PEM: "
	r.decoded = false
	// The inner text lives in the outer DER buffer, which nothing else
	// references: decode it into a buffer of its own.
	r.segs = nil
	err := r.pemSegments(out)
	if err == nil {
		err = r.decodeSegments(out, r.segs, false)
	}
	r.where, r.decoded, r.segs = where, decoded, segs
	return err
}
