package decoder

import (
	"fmt"
	"strings"
)

// Family S: Envoy's x-forwarded-client-cert (also Istio, Azure Container
// Apps, Airlock). The value is a ","-separated list of elements, one per
// proxy hop; an element is a ";"-separated list of key=value pairs. Keys are
// case-insensitive; By, URI and DNS may repeat. Values containing "," ";"
// or "=" should be double-quoted, with '"' and '\' escaped by a backslash;
// Envoy always quotes Cert, Chain and Subject, but never By, URI or DNS (an
// Envoy TODO), so an unquoted By or URI value runs on across ";" and ","
// until what follows looks like the next known key ("Hash=", "By=", ...).
//
// That last point is why a certificate's SANs can forge elements: a DNS or
// URI SAN holding ",By=<proxy>;Cert=<someone else's certificate>" reads as
// an element of its own. xfccdecode.go refuses every header in which an
// element that carries a certificate says something about it that the
// certificate does not (see checkXFCCConsistent).
//
// This file is the grammar: a lexer that reads one pair at a time, which
// lets the decoder count and locate elements without building them, and
// ParseXFCC, which builds every element.

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

// xfccKey identifies a known key; the values are bits of a keyMask.
type xfccKey uint8

const (
	keyBy xfccKey = 1 << iota
	keyHash
	keyCert
	keyChain
	keySubject
	keyURI
	keyDNS
)

var xfccKeys = [...]struct {
	name string
	key  xfccKey
}{{"by", keyBy}, {"hash", keyHash}, {"cert", keyCert}, {"chain", keyChain}, {"subject", keySubject}, {"uri", keyURI}, {"dns", keyDNS}}

// lookupXFCCKey returns the known key named k (any case), or 0.
func lookupXFCCKey(k string) xfccKey {
	for _, x := range xfccKeys {
		if strings.EqualFold(k, x.name) {
			return x.key
		}
	}
	return 0
}

func isXFCCKey(k string) bool { return lookupXFCCKey(k) != 0 }

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

// xfccLexer reads an XFCC value one key=value pair at a time. Started at
// the offset where an element begins (with el set to its number), it
// reads exactly what a lexer started at 0 reads from there.
type xfccLexer struct {
	s    string
	i    int
	el   int // 1-based element of the next pair
	pair int // pairs read so far in element el
	done bool
	// raw: leave quoted values escaped (no allocation); for counting.
	raw bool
}

// xfccPair is one pair read by the lexer.
type xfccPair struct {
	key  string
	val  string // unescaped, unless the lexer is raw
	el   int    // its element
	pair int    // its 1-based number within the element
}

// next reads the next pair; ok is false at the end of the value. After a
// pair that ends its element, l.el has moved on and l.i is where the next
// element starts.
func (l *xfccLexer) next() (p xfccPair, ok bool, err error) {
	if l.done {
		return p, false, nil
	}
	s, i := l.s, l.i
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i == len(s) || (l.pair == 0 && s[i] == ',') {
		if l.pair == 0 {
			return p, false, xfccErr("element %d is empty (offset %d)", l.el, i)
		}
		l.done = true
		return p, false, nil
	}
	k0 := i
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	key := s[k0:i]
	if key == "" || i == len(s) || s[i] != '=' {
		return p, false, xfccErr("element %d, pair %d: expected key=value at offset %d", l.el, l.pair+1, k0)
	}
	i++
	var val string
	if i < len(s) && s[i] == '"' {
		end, escaped, ok := quotedEnd(s, i)
		if !ok {
			return p, false, xfccErr("element %d, pair %d: unterminated quoted value starting at offset %d", l.el, l.pair+1, i)
		}
		val = s[i+1 : end]
		if escaped && !l.raw {
			val = unescapeQuoted(val)
		}
		i = end + 1
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i < len(s) && s[i] != ';' && s[i] != ',' {
			return p, false, xfccErr("element %d, pair %d: unexpected character after the quoted value at offset %d", l.el, l.pair+1, i)
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
	l.pair++
	p = xfccPair{key: key, val: val, el: l.el, pair: l.pair}
	switch {
	case i == len(s):
		l.done = true
	case s[i] == ',':
		l.el++
		l.pair = 0
		i++
	default: // ';'
		i++
	}
	l.i = i
	return p, true, nil
}

// quotedEnd finds the quote closing the quoted string that starts at
// s[i] == '"'; escaped reports a backslash inside.
func quotedEnd(s string, i int) (end int, escaped, ok bool) {
	// Fast path: no backslash before the next quote (Cert and Chain never
	// have one).
	if k := strings.IndexByte(s[i+1:], '"'); k >= 0 && strings.IndexByte(s[i+1:i+1+k], '\\') < 0 {
		return i + 1 + k, false, true
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '"':
			return j, escaped, true
		case '\\':
			escaped = true
			j++
		}
	}
	return 0, false, false
}

// unescapeQuoted removes the backslash of every backslash escape.
func unescapeQuoted(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for j := 0; j < len(v); j++ {
		if v[j] == '\\' && j+1 < len(v) {
			j++
		}
		b.WriteByte(v[j])
	}
	return b.String()
}

// keyMask records which known keys an element has (a key with an empty
// value, such as Subject="" or URI=, counts as present).
type keyMask = xfccKey

// set records one pair in e.
func (e *XFCCElement) set(p xfccPair, mask *keyMask) error {
	k := lookupXFCCKey(p.key)
	single := func(dst *string, name string) error {
		if *mask&k != 0 {
			return xfccErr("element %d, pair %d: key %s repeated", p.el, p.pair, name)
		}
		*dst = p.val
		return nil
	}
	var err error
	switch k {
	case keyBy:
		e.By = append(e.By, p.val)
	case keyHash:
		err = single(&e.Hash, "Hash")
	case keyCert:
		err = single(&e.Cert, "Cert")
	case keyChain:
		err = single(&e.Chain, "Chain")
	case keySubject:
		err = single(&e.Subject, "Subject")
	case keyURI:
		e.URI = append(e.URI, p.val)
	case keyDNS:
		e.DNS = append(e.DNS, p.val)
	}
	// Unknown keys are ignored.
	*mask |= k
	return err
}

// ParseXFCC parses an x-forwarded-client-cert value (several field lines
// joined with ","). It returns every element, first (farthest hop) to last
// (nearest hop). Errors are *Error of KindMalformed; their messages give
// element numbers and offsets, never the content. The decoder does not
// use it: it builds only the elements it needs (xfccdecode.go).
func ParseXFCC(s string) ([]XFCCElement, error) {
	els := make([]XFCCElement, 0, 2)
	l := xfccLexer{s: s, el: 1}
	var cur XFCCElement
	var mask keyMask
	for {
		p, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return append(els, cur), nil
		}
		if err := cur.set(p, &mask); err != nil {
			return nil, err
		}
		if l.el != p.el {
			els = append(els, cur)
			cur, mask = XFCCElement{}, 0
		}
	}
}

// xfccSpan locates one element without building it.
type xfccSpan struct {
	start int  // offset of its first pair
	cert  bool // it has a non-empty Cert or Chain
}

// xfccSpans counts and locates the elements of s, building none, and
// fails with KindTooLarge as soon as there are more than max (the cost of
// a header of thousands of tiny elements stays that of max+1 of them).
func xfccSpans(s string, max int, spans []xfccSpan) ([]xfccSpan, error) {
	l := xfccLexer{s: s, el: 1, raw: true}
	spans = append(spans, xfccSpan{})
	for {
		p, ok, err := l.next()
		if err != nil {
			return spans, err
		}
		if !ok {
			return spans, nil
		}
		if k := lookupXFCCKey(p.key); (k == keyCert || k == keyChain) && p.val != "" {
			spans[len(spans)-1].cert = true
		}
		if l.el != p.el {
			if len(spans) == max {
				return spans, &Error{Kind: KindTooLarge, Msg: fmt.Sprintf("x-forwarded-client-cert: more than %d elements (max_xfcc_elements)", max)}
			}
			spans = append(spans, xfccSpan{start: l.i})
		}
	}
}

// buildXFCCElement builds element el (1-based), which starts at offset
// start of s, and reports which known keys it has.
func buildXFCCElement(s string, start, el int) (XFCCElement, keyMask, error) {
	l := xfccLexer{s: s, i: start, el: el}
	var e XFCCElement
	var mask keyMask
	for {
		p, ok, err := l.next()
		if err != nil {
			return e, 0, err
		}
		if !ok {
			return e, mask, nil
		}
		if err := e.set(p, &mask); err != nil {
			return e, 0, err
		}
		if l.el != el {
			return e, mask, nil
		}
	}
}
