package decoder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Family S: Envoy's x-forwarded-client-cert (also Istio, Azure Container
// Apps, Airlock). The value is a ","-separated list of elements, one per
// proxy hop; an element is a ";"-separated list of key=value pairs. Keys are
// case-insensitive; By, URI and DNS may repeat. Values containing "," ";"
// or "=" should be double-quoted, with '"' and '\' escaped by a backslash;
// Envoy always quotes Cert, Chain and Subject, but never By or URI (an Envoy
// TODO), so an unquoted By or URI value runs on across ";" and "," until
// what follows looks like the next known key ("Hash=", "By=", ...).
//
// The decoder takes the element chosen by Options.XFCCElement (default: the
// last, written by the proxy nearest to us), checks its By against
// Options.XFCCBy when set, and decodes its Chain (which includes the leaf)
// or else its Cert. It never looks for "the first Cert= anywhere".

// XFCCElement is one element of an x-forwarded-client-cert value: what one
// proxy said about the client it saw. Quotes and backslash escapes are
// removed; Cert and Chain are still URL-encoded PEM.
type XFCCElement struct {
	// By holds the URI SANs of the proxy that wrote the element.
	By []string
	// Hash is the SHA-256 of the client's leaf, hex.
	Hash string
	// Cert is the client's leaf, URL-encoded PEM.
	Cert string
	// Chain is the client's chain, leaf included, URL-encoded PEM blocks.
	Chain string
	// Subject is the leaf's subject, as the proxy printed it.
	Subject string
	// URI and DNS are the leaf's URI and DNS SANs.
	URI []string
	DNS []string
}

var xfccKeys = [...]string{"by", "hash", "cert", "chain", "subject", "uri", "dns"}

func isXFCCKey(k string) bool {
	for _, x := range xfccKeys {
		if strings.EqualFold(k, x) {
			return true
		}
	}
	return false
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// keyAhead reports whether s[i:] (after optional spaces) is the end of the
// input, another separator, or a known XFCC key followed by '='.
func keyAhead(s string, i int) bool {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i == len(s) || s[i] == ',' || s[i] == ';' {
		return true
	}
	j := i
	for j < len(s) && isTokenChar(s[j]) {
		j++
	}
	return j < len(s) && s[j] == '=' && isXFCCKey(s[i:j])
}

func xfccErr(format string, args ...any) error {
	return &Error{Kind: KindMalformed, Msg: "x-forwarded-client-cert: " + fmt.Sprintf(format, args...)}
}

// ParseXFCC parses an x-forwarded-client-cert value (several field lines
// joined with ","). It returns every element, first (farthest hop) to last
// (nearest hop). Errors are *Error of KindMalformed; their messages give
// element numbers and offsets, never the content.
func ParseXFCC(s string) ([]XFCCElement, error) {
	els := make([]XFCCElement, 0, 2)
	var cur XFCCElement
	pair := 0
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		el := len(els) + 1
		if i == len(s) || (pair == 0 && s[i] == ',') {
			if pair == 0 {
				return nil, xfccErr("element %d is empty (offset %d)", el, i)
			}
			return append(els, cur), nil
		}
		k0 := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		key := s[k0:i]
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, xfccErr("element %d, pair %d: expected key=value at offset %d", el, pair+1, k0)
		}
		i++
		var val string
		if i < len(s) && s[i] == '"' {
			v, next, ok := readQuoted(s, i)
			if !ok {
				return nil, xfccErr("element %d, pair %d: unterminated quoted value starting at offset %d", el, pair+1, i)
			}
			val, i = v, next
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && s[i] != ';' && s[i] != ',' {
				return nil, xfccErr("element %d, pair %d: unexpected character after the quoted value at offset %d", el, pair+1, i)
			}
		} else {
			odd := strings.EqualFold(key, "by") || strings.EqualFold(key, "uri")
			j := i
			for ; j < len(s); j++ {
				if c := s[j]; (c == ';' || c == ',') && (!odd || keyAhead(s, j+1)) {
					break
				}
			}
			val, i = strings.TrimRight(s[i:j], " \t"), j
		}
		if err := cur.set(key, val, el, pair+1); err != nil {
			return nil, err
		}
		pair++
		if i == len(s) {
			return append(els, cur), nil
		}
		if s[i] == ',' {
			els = append(els, cur)
			cur, pair = XFCCElement{}, 0
		}
		i++
	}
}

// readQuoted reads the quoted string starting at s[i] == '"'. It returns
// the unescaped value and the offset after the closing quote.
func readQuoted(s string, i int) (string, int, bool) {
	j := i + 1
	for ; j < len(s); j++ {
		switch s[j] {
		case '"':
			return s[i+1 : j], j + 1, true
		case '\\':
			goto escaped
		}
	}
	return "", 0, false
escaped:
	var b strings.Builder
	b.WriteString(s[i+1 : j])
	for ; j < len(s); j++ {
		switch c := s[j]; c {
		case '"':
			return b.String(), j + 1, true
		case '\\':
			if j+1 == len(s) {
				return "", 0, false
			}
			j++
			b.WriteByte(s[j])
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

func (e *XFCCElement) set(key, val string, el, pair int) error {
	single := func(dst *string, name string) error {
		if *dst != "" {
			return xfccErr("element %d, pair %d: key %s repeated", el, pair, name)
		}
		*dst = val
		return nil
	}
	switch {
	case strings.EqualFold(key, "by"):
		e.By = append(e.By, val)
	case strings.EqualFold(key, "hash"):
		return single(&e.Hash, "Hash")
	case strings.EqualFold(key, "cert"):
		return single(&e.Cert, "Cert")
	case strings.EqualFold(key, "chain"):
		return single(&e.Chain, "Chain")
	case strings.EqualFold(key, "subject"):
		return single(&e.Subject, "Subject")
	case strings.EqualFold(key, "uri"):
		e.URI = append(e.URI, val)
	case strings.EqualFold(key, "dns"):
		e.DNS = append(e.DNS, val)
	}
	// Unknown keys are ignored.
	return nil
}

// decodeXFCC decodes the selected element of an XFCC value into r.
func (d *Decoder) decodeXFCC(r *run, s string) error {
	els, err := ParseXFCC(s)
	if err != nil {
		return err
	}
	n := len(els)
	i := d.opts.XFCCElement
	if i < 0 {
		i += n
	} else {
		i--
	}
	if i < 0 || i >= n {
		return xfccErr("the value has %d element(s); xfcc_element %d selects none", n, d.opts.XFCCElement)
	}
	el := &els[i]
	where := fmt.Sprintf("x-forwarded-client-cert element %d of %d: ", i+1, n)
	if by := d.opts.XFCCBy; by != "" && !slices.Contains(el.By, by) {
		return &Error{Kind: KindUntrustedHop, Msg: where + fmt.Sprintf("not written by the proxy named in xfcc_by (it has %d By value(s), none equal)", len(el.By))}
	}
	r.fam = famXFCC
	switch {
	case el.Chain != "":
		r.where = where + "Chain: "
		if err := r.decodeXFCCField(el.Chain); err != nil {
			return err
		}
		if el.Cert != "" {
			c := getRun(r.max)
			c.where = where + "Cert: "
			err := c.decodeXFCCField(el.Cert)
			same := err == nil && bytes.Equal(c.ders[0], r.ders[0])
			putRun(c)
			if err != nil {
				return err
			}
			if !same {
				return xfccErr("element %d of %d: Cert is not the first certificate of Chain", i+1, n)
			}
		}
	case el.Cert != "":
		r.where = where + "Cert: "
		if err := r.decodeXFCCField(el.Cert); err != nil {
			return err
		}
	default:
		return &Error{Kind: KindMalformed, Msg: where + "no Cert or Chain key: the proxy forwarded the client's identity but not its certificate (Envoy: set_current_client_cert_details with cert: true or chain: true)"}
	}
	if h := el.Hash; len(h) == 64 {
		var want [32]byte
		if _, err := hex.Decode(want[:], []byte(h)); err == nil && sha256.Sum256(r.ders[0]) != want {
			return &Error{Kind: KindMalformed, Msg: where + "Hash does not match the certificate"}
		}
	}
	r.where = ""
	return nil
}

func (r *run) decodeXFCCField(v string) error {
	err := r.decodePayload(trimOWS(v), famPayload)
	if err == ErrAbsent || (err == nil && len(r.ders) == 0) {
		return r.errf("holds no certificate")
	}
	return err
}
