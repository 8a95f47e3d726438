package decoder

import "strings"

// The leniency shim in front of the RFC 8941 parser (github.com/dunglas/httpsfv).
// RFC 8941 §4.2.7 says a parser "SHOULD NOT fail when '=' padding is not
// present", and producers do leave it out; httpsfv decodes byte sequences
// with base64.StdEncoding, which requires it. sfvPad adds the missing
// padding; everything else is parsed by the spec.

// sfvPad returns s with '=' padding added to every byte sequence that has
// none and whose length is not a multiple of four, and the number of
// top-level list members of s (commas outside strings, byte sequences and
// inner lists, plus one), so that a list can be measured against a limit
// before it is parsed. It does not validate anything: what it cannot make
// sense of it leaves to the parser, which then fails.
//
// A byte sequence starts where a bare item may start (the beginning, or
// after ',', '=', '(' or whitespace) with ':'; a ':' anywhere else belongs
// to a token. Strings ("..." and %"...") are skipped with their escapes.
func sfvPad(s string) (string, int) {
	var b *strings.Builder
	members, depth, last := 1, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			i = skipSFVString(s, i)
		case c == ':' && (i == 0 || strings.IndexByte(",=( \t", s[i-1]) >= 0):
			j := strings.IndexByte(s[i+1:], ':')
			if j < 0 {
				return finishPad(b, s, last), members
			}
			j += i + 1
			body := s[i+1 : j]
			if pad := (4 - len(body)%4) % 4; pad > 0 && pad < 3 && !strings.Contains(body, "=") {
				if b == nil {
					b = &strings.Builder{}
					b.Grow(len(s) + 8)
				}
				b.WriteString(s[last:j])
				b.WriteString("=="[:pad])
				last = j
			}
			i = j
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			members++
		}
	}
	return finishPad(b, s, last), members
}

func finishPad(b *strings.Builder, s string, last int) string {
	if b == nil {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// skipSFVString returns the offset of the quote closing the string that
// opens at s[i] (or the end of s).
func skipSFVString(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s)
}
