package decoder

import (
	"errors"

	"github.com/dunglas/httpsfv"
)

// Family R: RFC 9440 Client-Cert / Client-Cert-Chain, parsed as RFC 8941
// structured fields by github.com/dunglas/httpsfv. Used by GCP
// (client_cert_leaf, client_cert_chain), Cloudflare (cert_rfc9440,
// cert_chain_rfc9440), CloudFront and HAProxy by recipe.
//
//   - The certificate header is an Item: one byte sequence ":" base64(DER)
//     ":" with optional parameters. RFC 9440 §2.2: Client-Cert "MUST NOT
//     have a list of values", so a List there (":bob:, :alice:") is
//     malformed, never "bob plus an intermediate".
//   - The chain header is a List of byte sequences, possibly split over
//     several field lines (joined with ","). Parameters are allowed and
//     ignored; a string parameter may hold commas
//     (`:A:, :B:;note="a,b"` is two members).
//   - The one leniency (sfv.go): missing '=' padding, which RFC 8941 asks
//     parsers to accept.

// decodeRFC9440 decodes the structured field s into r.ders: a List when
// r.inChain, else an Item.
func (r *run) decodeRFC9440(s string) error {
	padded, n := sfvPad(s)
	var members []httpsfv.Member
	if r.inChain {
		if err := r.checkCount(n); err != nil {
			return err
		}
		l, err := httpsfv.UnmarshalList([]string{padded})
		if err != nil {
			return r.errf("not an RFC 8941 list of byte sequences (%s)", sfvError(err))
		}
		members = l
	} else {
		if n > 1 {
			if _, err := httpsfv.UnmarshalList([]string{padded}); err == nil {
				return r.errf("a list of %d members where RFC 9440 allows one byte sequence (Client-Cert is a single certificate; intermediates go in the chain header)", n)
			}
		}
		it, err := httpsfv.UnmarshalItem([]string{padded})
		if err != nil {
			return r.errf("not an RFC 8941 byte sequence (%s)", sfvError(err))
		}
		members = []httpsfv.Member{it}
	}
	n = len(members)
	if err := r.checkCount(n); err != nil {
		return err
	}
	for i, m := range members {
		it, ok := m.(httpsfv.Item)
		if !ok {
			return r.errf("%s is an inner list, not a byte sequence", certN(i, n))
		}
		der, ok := it.Value.([]byte)
		if !ok {
			return r.errf("%s is not a byte sequence (\":base64:\")", certN(i, n))
		}
		if err := r.addDER(der, i, n, false); err != nil {
			return err
		}
	}
	return nil
}

// sfvError describes an httpsfv error by its kind and offset (httpsfv's
// messages, and those of encoding/base64 it wraps, hold no input text).
func sfvError(err error) string {
	var ue *httpsfv.UnmarshalError
	if errors.As(err, &ue) {
		return ue.Error()
	}
	return "invalid"
}
