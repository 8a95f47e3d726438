package decoder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Decoding an x-forwarded-client-cert value:
//
//  1. Count and locate the elements without building them; more than
//     Options.MaxXFCCElements is too_large.
//  2. Select the client's element: with Options.XFCCProxies, start from
//     the last element and step back while every URI of the element is a
//     listed proxy (in Istio the sidecar's element has URI = the gateway's
//     SPIFFE ID, so the gateway's element, which carries the client's
//     Cert, is reached); an element with any other URI, or none, is never
//     stepped over. Otherwise Options.XFCCElement counts from either end.
//  3. Check every element that carries a Cert or Chain, selected or not
//     (checkXFCCConsistent). One inconsistent element fails the whole
//     header as malformed: it is the trace of a SAN that forged elements.
//  4. The selected element must carry a Cert or Chain, and By must name
//     Options.XFCCBy when that is set; its certificates are the result.
//
// Only the elements with a certificate, the selected one and those
// stepped over are built.

// decodeXFCC decodes the selected element of the XFCC value s into r.
func (d *Decoder) decodeXFCC(r *run, s string) error {
	spans, err := xfccSpans(s, d.opts.MaxXFCCElements, r.spans[:0])
	r.spans = spans
	if err != nil {
		return err
	}
	r.fam = famXFCC
	n := len(spans)
	sel, selErr := d.selectXFCC(s, spans)
	// selBy is the selected element's By values, kept from the loop (which
	// builds every element carrying a Cert) for the xfcc_by check.
	var selBy []string
	for i, sp := range spans {
		if !sp.cert {
			continue
		}
		el, mask, err := buildXFCCElement(s, sp.start, i+1)
		if err != nil {
			return err
		}
		if i == sel {
			selBy = el.By
		}
		t := r
		if i != sel {
			t = getRun(r.max)
		}
		err = t.decodeXFCCCerts(&el, i, n)
		if err == nil {
			err = checkXFCCConsistent(&el, mask, t.ders[0], i, n)
		}
		if t != r {
			putRun(t)
		}
		if err != nil {
			return err
		}
	}
	if selErr != nil {
		return selErr
	}
	where := fmt.Sprintf("x-forwarded-client-cert element %d of %d: ", sel+1, n)
	if !spans[sel].cert {
		return &Error{Kind: KindMalformed, Msg: where + d.noCertHint(spans, sel)}
	}
	if by := d.opts.XFCCBy; by != "" && !slices.Contains(selBy, by) {
		return &Error{Kind: KindUntrustedHop, Msg: where + fmt.Sprintf("not written by the proxy named in xfcc_by (it has %d By value(s), none equal)", len(selBy))}
	}
	return nil
}

// selectXFCC returns the index of the client's element (step 2 above).
func (d *Decoder) selectXFCC(s string, spans []xfccSpan) (int, error) {
	n := len(spans)
	if proxies := d.opts.XFCCProxies; len(proxies) > 0 {
		i := n - 1
		for ; i >= 0; i-- {
			el, _, err := buildXFCCElement(s, spans[i].start, i+1)
			if err != nil {
				return -1, err
			}
			if !allListed(el.URI, proxies) {
				return i, nil
			}
		}
		return -1, xfccErr("the URI of every element (%d) is a proxy listed in xfcc_proxies: no element describes the client", n)
	}
	i := d.opts.XFCCElement
	if i < 0 {
		i += n
	} else {
		i--
	}
	if i < 0 || i >= n {
		return -1, xfccErr("the value has %d element(s); xfcc_element %d selects none", n, d.opts.XFCCElement)
	}
	return i, nil
}

// allListed reports whether uris is not empty and each of them (the URI
// SANs of the peer of the hop that wrote the element) is in proxies.
func allListed(uris, proxies []string) bool {
	if len(uris) == 0 {
		return false
	}
	for _, u := range uris {
		if !slices.Contains(proxies, u) {
			return false
		}
	}
	return true
}

// noCertHint explains why the selected element, which has no certificate,
// cannot be used.
func (d *Decoder) noCertHint(spans []xfccSpan, sel int) string {
	if len(d.opts.XFCCProxies) > 0 {
		return "no Cert or Chain key in the element reached by stepping back over the proxies listed in xfcc_proxies: " +
			"either the hop that wrote it did not forward the client's certificate (Envoy: set_current_client_cert_details with cert: true), " +
			"or its URI is a proxy that xfcc_proxies does not list"
	}
	for k := sel - 1; k >= 0; k-- {
		if spans[k].cert {
			return fmt.Sprintf("no Cert or Chain key, but element %d has one: when proxies that do not forward the certificate follow the client's hop "+
				"(Istio: an ingress gateway, then the workload's sidecar), list the URIs they write (the gateway's SPIFFE ID) in xfcc_proxies", k+1)
		}
	}
	return "no Cert or Chain key: the proxy forwarded the client's identity but not its certificate (Envoy: set_current_client_cert_details with cert: true or chain: true)"
}

// decodeXFCCCerts decodes the certificates of element i of n into r: its
// Chain (leaf included), or else its Cert. A Cert next to a Chain must be
// the Chain's first certificate.
func (r *run) decodeXFCCCerts(el *XFCCElement, i, n int) error {
	where := fmt.Sprintf("x-forwarded-client-cert element %d of %d: ", i+1, n)
	defer func() { r.where, r.one, r.inChain = "", "", false }()
	if el.Chain == "" {
		r.where, r.one = where+"Cert: ", envoyCertOne
		return r.decodeXFCCField(el.Cert)
	}
	r.where, r.inChain = where+"Chain: ", true
	if err := r.decodeXFCCField(el.Chain); err != nil {
		return err
	}
	if el.Cert == "" {
		return nil
	}
	c := getRun(r.max)
	defer putRun(c)
	c.where, c.one = where+"Cert: ", envoyCertOne
	if err := c.decodeXFCCField(el.Cert); err != nil {
		return err
	}
	if !bytes.Equal(c.ders[0], r.ders[0]) {
		return xfccErr("element %d of %d: Cert is not the first certificate of Chain", i+1, n)
	}
	return nil
}

// envoyCertOne says why an XFCC Cert holds one certificate.
const envoyCertOne = "Envoy's Cert is the client's certificate alone (the chain goes in Chain)"

func (r *run) decodeXFCCField(v string) error {
	err := r.decodePayload(trimOWS(v), famPayload)
	if err == ErrAbsent || (err == nil && len(r.ders) == 0) {
		return r.errf("holds no certificate")
	}
	return err
}

// checkXFCCConsistent checks that element i of n says nothing about its
// certificate (leaf, its DER) that the certificate does not say: Hash is
// its SHA-256, Subject is its subject as Envoy prints it (BoringSSL's
// X509_NAME_print_ex with XN_FLAG_RFC2253, or OpenSSL's), URI and DNS are
// exactly its URI and DNS SANs, in order. Keys the element lacks are not
// checked (they depend on Envoy's set_current_client_cert_details).
//
// Envoy writes URI and DNS unquoted, so a certificate whose SAN holds
// ",By=...;Cert=..." splits its own element: the forged element follows,
// and the real one is cut short and no longer matches its certificate.
// A forged element can be made consistent (it copies someone's public
// certificate), the cut one cannot, so failing the whole header stops the
// forgery wherever the selection would have landed. Inside a pair, a SAN
// holding ";Cert=" or ";Hash=" repeats a key Envoy already wrote (an
// error), or, with Envoy not sending Cert, gives the element a Cert that
// its Hash does not match.
func checkXFCCConsistent(el *XFCCElement, mask keyMask, leaf []byte, i, n int) error {
	what := xfccInconsistency(el, mask, leaf)
	if what == "" {
		return nil
	}
	return xfccErr("element %d is inconsistent: %s (element %d of %d; a header whose elements contradict their certificates is refused: a certificate SAN holding ',' or ';' can forge elements)",
		i+1, what, i+1, n)
}

func xfccInconsistency(el *XFCCElement, mask keyMask, leaf []byte) string {
	f, ok := readCertFacts(leaf)
	if !ok {
		return "its certificate is not a valid X.509 certificate"
	}
	if mask&keyHash != 0 {
		var h [sha256.Size]byte
		if len(el.Hash) != 2*sha256.Size {
			return "its Hash is not a SHA-256 in hex"
		}
		if _, err := hex.Decode(h[:], []byte(el.Hash)); err != nil {
			return "its Hash is not a SHA-256 in hex"
		}
		if sha256.Sum256(leaf) != h {
			return "its Hash is not the SHA-256 of its certificate"
		}
	}
	if mask&keySubject != 0 && !subjectMatches(el.Subject, f.subject) {
		return "its Subject is not its certificate's subject"
	}
	if mask&keyURI != 0 && !sansMatch(el.URI, f.uris) {
		return "its URI values are not its certificate's URI SANs"
	}
	if mask&keyDNS != 0 && !sansMatch(el.DNS, f.dns) {
		return "its DNS values are not its certificate's DNS SANs"
	}
	return ""
}

// subjectMatches compares an element's Subject with the subject name
// (DER) as BoringSSL or OpenSSL print it, escapes kept (an unquoted
// value) or removed (a quoted one, whose backslash escapes the lexer
// undid).
func subjectMatches(got string, name []byte) bool {
	var prev string
	for _, flavor := range []nameFlavor{flavorBoringSSL, flavorOpenSSL} {
		want, err := formatName(name, flavor)
		if err != nil {
			return false
		}
		if want == prev {
			continue
		}
		if got == want || got == unescapeQuoted(want) {
			return true
		}
		prev = want
	}
	return false
}

// sansMatch compares an element's URI or DNS values with the SANs of its
// certificate. Envoy writes "URI=" for a certificate without URI SANs.
func sansMatch(got []string, sans [][]byte) bool {
	if len(sans) == 0 {
		return len(got) == 0 || (len(got) == 1 && got[0] == "")
	}
	if len(got) != len(sans) {
		return false
	}
	for i := range got {
		if got[i] != string(sans[i]) {
			return false
		}
	}
	return true
}
