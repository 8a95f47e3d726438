package decoder

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
)

// EncodeXFCC writes one x-forwarded-client-cert element for c, the way
// Envoy writes it for its client (Hash, Cert, Subject, URI, DNS, in that
// order), for a proxy that hands a verified client on to an upstream that
// reads XFCC. Unlike Envoy it quotes a URI or DNS value that holds a
// separator (',' ';' '=' '"' '\' or a space), escaping '"' and '\' with a
// backslash, so that no SAN can split the element. Cert is the PEM
// percent-encoded as Envoy's Http::Utility::PercentEncoding does (all but
// ALPHA, DIGIT and "*-._"); Subject is the subject as FormatName prints
// it, quoted with '"' and '\' escaped (Envoy leaves the printed subject's
// own \" and \\ as they are, so a reader that unescapes loses them; here
// it gets the RFC 2253 text back). The element decodes, with this package,
// to c and is consistent.
//
// ok is false, and the element empty, when c has a SAN with a control
// character, which no header value can carry.
func EncodeXFCC(c *x509.Certificate) (element string, ok bool) {
	facts, ok := readCertFacts(c.Raw)
	if !ok {
		return "", false
	}
	subject := SubjectName(c)
	var b strings.Builder
	b.Grow(len(c.Raw)*2 + 200)
	sum := sha256.Sum256(c.Raw)
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteString(`;Cert="`)
	envoyPercentEncodeTo(&b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	b.WriteString(`";Subject=`)
	writeQuoted(&b, []byte(subject))
	if len(facts.uris) == 0 {
		b.WriteString(";URI=")
	}
	for _, u := range facts.uris {
		if !writeXFCCValue(&b, ";URI=", u) {
			return "", false
		}
	}
	for _, d := range facts.dns {
		if !writeXFCCValue(&b, ";DNS=", d) {
			return "", false
		}
	}
	return b.String(), true
}

// writeXFCCValue writes key and v, quoted when v holds a separator.
func writeXFCCValue(b *strings.Builder, key string, v []byte) bool {
	quote := false
	for _, c := range v {
		switch {
		case c < 0x20 || c == 0x7f:
			return false
		case strings.IndexByte(",;=\"\\ ", c) >= 0:
			quote = true
		}
	}
	b.WriteString(key)
	if quote {
		writeQuoted(b, v)
	} else {
		b.Write(v)
	}
	return true
}

// writeQuoted writes v between double quotes, '"' and '\' escaped.
func writeQuoted(b *strings.Builder, v []byte) {
	b.WriteByte('"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
}

// envoyPercentEncodeTo writes p with every byte but ALPHA, DIGIT and "*-._"
// as %XX (upper-case hex).
func envoyPercentEncodeTo(b *strings.Builder, p []byte) {
	const hexdig = "0123456789ABCDEF"
	for _, c := range p {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&0xf])
	}
}
