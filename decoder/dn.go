package decoder

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Distinguished names as OpenSSL and BoringSSL print them with
// X509_NAME_print_ex(..., XN_FLAG_RFC2253), which is what `openssl x509
// -nameopt RFC2253`, nginx's $ssl_client_s_dn and Envoy's XFCC Subject
// show. Go's pkix.Name.String differs: it knows fewer attribute names
// (emailAddress comes out as 1.2.840.113549.1.9.1=#160f...), writes
// SERIALNUMBER and POSTALCODE in upper case, loses multi-valued RDN order
// and does not escape bytes above 0x7F.
//
// The rules, from BoringSSL's crypto/x509/name_print.c and
// crypto/asn1/a_strex.c (OpenSSL's are the same but for the one noted in
// escapeValue):
//
//   - RDNs last to first, separated by ","; the values of a multi-valued
//     RDN separated by "+", also last to first;
//   - the attribute's short name (CN, O, emailAddress, DC, ...), or the
//     dotted OID when the library does not know it;
//   - a value of unknown attribute type, or of a non-string ASN.1 type, as
//     "#" and the upper-case hex of its whole DER encoding;
//   - string values converted to UTF-8 (T61String read as Latin-1), then
//     every byte escaped: above 0x7E or below 0x20 as \XX, the RFC 2253
//     specials , + " \ < > ; as \c, a leading space or '#' and a trailing
//     space as \c.

// nameAttr is an attribute type OpenSSL prints by a short name.
type nameAttr struct {
	oid string
	sn  string
	// opensslOnly: OpenSSL 1.1+ knows the name but BoringSSL (Envoy's
	// library) prints the dotted OID and the value as hex.
	opensslOnly bool
}

var nameAttrTable = []nameAttr{
	{"2.5.4.3", "CN", false},
	{"2.5.4.4", "SN", false},
	{"2.5.4.5", "serialNumber", false},
	{"2.5.4.6", "C", false},
	{"2.5.4.7", "L", false},
	{"2.5.4.8", "ST", false},
	{"2.5.4.9", "street", false},
	{"2.5.4.10", "O", false},
	{"2.5.4.11", "OU", false},
	{"2.5.4.12", "title", false},
	{"2.5.4.13", "description", false},
	{"2.5.4.15", "businessCategory", false},
	{"2.5.4.16", "postalAddress", false},
	{"2.5.4.17", "postalCode", false},
	{"2.5.4.18", "postOfficeBox", false},
	{"2.5.4.19", "physicalDeliveryOfficeName", false},
	{"2.5.4.20", "telephoneNumber", false},
	{"2.5.4.41", "name", false},
	{"2.5.4.42", "GN", false},
	{"2.5.4.43", "initials", false},
	{"2.5.4.44", "generationQualifier", false},
	{"2.5.4.45", "x500UniqueIdentifier", false},
	{"2.5.4.46", "dnQualifier", false},
	{"2.5.4.65", "pseudonym", false},
	{"2.5.4.72", "role", false},
	{"0.9.2342.19200300.100.1.1", "UID", false},
	{"0.9.2342.19200300.100.1.3", "mail", false},
	{"0.9.2342.19200300.100.1.25", "DC", false},
	{"1.2.840.113549.1.9.1", "emailAddress", false},
	{"1.2.840.113549.1.9.2", "unstructuredName", false},
	{"1.2.840.113549.1.9.8", "unstructuredAddress", false},
	{"2.5.4.97", "organizationIdentifier", true},
	{"1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL", true},
	{"1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST", true},
	{"1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC", true},
}

// nameAttrs maps the DER content octets of an attribute type OID to its
// entry.
var nameAttrs = func() map[string]nameAttr {
	m := make(map[string]nameAttr, len(nameAttrTable))
	for _, a := range nameAttrTable {
		m[string(oidContent(a.oid))] = a
	}
	return m
}()

// oidContent encodes a dotted OID's content octets (for the table above;
// panics on a malformed literal).
func oidContent(dotted string) []byte {
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(dotted, ".") {
		n := 0
		for _, c := range p {
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	der, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return der[2:] // short-form length: every OID above is under 128 bytes
}

// nameFlavor picks the attribute table and the one escaping difference.
type nameFlavor uint8

const (
	flavorOpenSSL nameFlavor = iota
	flavorBoringSSL
)

var errBadName = errors.New("not a valid DER-encoded X.509 name")

// FormatName renders der, a DER-encoded X.509 Name such as
// x509.Certificate.RawSubject or RawIssuer, as OpenSSL prints it with
// -nameopt RFC2253 (X509_NAME_print_ex with XN_FLAG_RFC2253): for example
// "emailAddress=ops@example.com,CN=client1,O=Example". It fails only on
// input that is not a DER Name; any name x509.ParseCertificate accepts
// renders (the structure is read as leniently as x509 reads it).
func FormatName(der []byte) (string, error) {
	return formatName(der, flavorOpenSSL)
}

// SubjectName is c's subject as FormatName prints it (OpenSSL's
// -nameopt RFC2253), falling back to Go's pkix.Name.String should the raw
// subject not parse (it always does in a certificate x509 parsed).
func SubjectName(c *x509.Certificate) string {
	if s, err := FormatName(c.RawSubject); err == nil {
		return s
	}
	return c.Subject.String()
}

// IssuerName is SubjectName for c's issuer.
func IssuerName(c *x509.Certificate) string {
	if s, err := FormatName(c.RawIssuer); err == nil {
		return s
	}
	return c.Issuer.String()
}

// ava is one attribute type and value of a name, in DER order.
type ava struct {
	oid  []byte // content octets of the type OID
	tag  cbasn1.Tag
	val  []byte // content octets of the value
	full []byte // the value's whole DER element
	set  int    // index of its RDN
}

func formatName(der []byte, flavor nameFlavor) (string, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return "", errBadName
	}
	var buf [8]ava
	avas := buf[:0]
	for set := 0; !seq.Empty(); set++ {
		var rdn cryptobyte.String
		if !seq.ReadASN1(&rdn, cbasn1.SET) {
			return "", errBadName
		}
		for !rdn.Empty() {
			var atv, oid, full cryptobyte.String
			var tag cbasn1.Tag
			if !rdn.ReadASN1(&atv, cbasn1.SEQUENCE) ||
				!atv.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || len(oid) == 0 ||
				!atv.ReadAnyASN1Element(&full, &tag) {
				return "", errBadName
			}
			var val cryptobyte.String
			if el := full; !el.ReadAnyASN1(&val, &tag) {
				return "", errBadName
			}
			avas = append(avas, ava{oid: oid, tag: tag, val: val, full: full, set: set})
		}
	}
	var b strings.Builder
	for i := len(avas) - 1; i >= 0; i-- {
		a := &avas[i]
		if i < len(avas)-1 {
			if a.set == avas[i+1].set {
				b.WriteByte('+')
			} else {
				b.WriteByte(',')
			}
		}
		attr, known := nameAttrs[string(a.oid)]
		if known && attr.opensslOnly && flavor == flavorBoringSSL {
			known = false
		}
		if known {
			b.WriteString(attr.sn)
		} else {
			if !writeOID(&b, a.oid) {
				return "", errBadName
			}
		}
		b.WriteByte('=')
		if !known || !writeNameValue(&b, a.tag, a.val, flavor) {
			writeHexDump(&b, a.full)
		}
	}
	return b.String(), nil
}

// writeOID writes the dotted form of an OID's content octets (what
// OBJ_obj2txt writes for an object the library does not know).
func writeOID(b *strings.Builder, content []byte) bool {
	var v uint64
	first := true
	for i, c := range content {
		if v > 1<<56 {
			return false
		}
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 {
			if i == len(content)-1 {
				return false
			}
			continue
		}
		if first {
			switch {
			case v < 40:
				b.WriteString("0.")
			case v < 80:
				b.WriteString("1.")
				v -= 40
			default:
				b.WriteString("2.")
				v -= 80
			}
			first = false
		} else {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(v, 10))
		v = 0
	}
	return !first
}

// writeHexDump writes "#" and the upper-case hex of der.
func writeHexDump(b *strings.Builder, der []byte) {
	const hexdig = "0123456789ABCDEF"
	b.WriteByte('#')
	for _, c := range der {
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&0xf])
	}
}

// writeNameValue writes a string value escaped as above. It returns false,
// writing nothing, for a type that is printed as a hex dump instead.
func writeNameValue(b *strings.Builder, tag cbasn1.Tag, v []byte, flavor nameFlavor) bool {
	width := 0 // bytes per character, big-endian
	switch tag {
	case cbasn1.UTF8String:
		// Already UTF-8: escaped byte by byte.
		for i, c := range v {
			escapeNameByte(b, c, i == 0, i == len(v)-1, len(v) == 1, flavor)
		}
		return true
	case cbasn1.PrintableString, cbasn1.T61String, cbasn1.IA5String, cbasn1.Tag(18), // NumericString
		cbasn1.UTCTime, cbasn1.GeneralizedTime, cbasn1.Tag(26): // VisibleString
		width = 1 // Latin-1
	case cbasn1.Tag(30): // BMPString
		width = 2 // UCS-2
	case cbasn1.Tag(28): // UniversalString
		width = 4 // UCS-4
	default:
		return false
	}
	if len(v)%width != 0 {
		return false
	}
	// Converted to UTF-8.
	n := len(v) / width
	for i := 0; i < n; i++ {
		var r rune
		for _, c := range v[i*width : (i+1)*width] {
			r = r<<8 | rune(c)
		}
		writeRune(b, r, i == 0, i == n-1, n == 1, flavor)
	}
	return true
}

// writeRune writes the UTF-8 encoding of r, each byte escaped; only its
// first byte counts as "first" and only its last as "last".
func writeRune(b *strings.Builder, r rune, first, last, only bool, flavor nameFlavor) {
	var u [utf8.UTFMax]byte
	n := encodeRuneLax(u[:], r)
	for i := 0; i < n; i++ {
		escapeNameByte(b, u[i], first && i == 0, last && i == n-1, only && n == 1, flavor)
	}
}

// encodeRuneLax is utf8.EncodeRune without the replacement of surrogates
// and out-of-range values, as OpenSSL's UTF8_putc writes them.
func encodeRuneLax(p []byte, r rune) int {
	switch c := uint32(r); {
	case c < 0x80:
		p[0] = byte(c)
		return 1
	case c < 0x800:
		p[0], p[1] = 0xC0|byte(c>>6), 0x80|byte(c&0x3F)
		return 2
	case c < 0x10000:
		p[0], p[1], p[2] = 0xE0|byte(c>>12), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F)
		return 3
	case c < 0x110000:
		p[0], p[1], p[2], p[3] = 0xF0|byte(c>>18), 0x80|byte(c>>12&0x3F), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F)
		return 4
	}
	// Beyond Unicode: what UTF8_putc cannot write, printed as U+FFFD.
	return utf8.EncodeRune(p, utf8.RuneError)
}

// escapeNameByte writes one byte of a value, escaped for RFC 2253.
// OpenSSL's do_buf overwrites the "first" flag with the "last" one for a
// one-character value, so a lone '#' stays unescaped there; BoringSSL
// escapes it.
func escapeNameByte(b *strings.Builder, c byte, first, last, only bool, flavor nameFlavor) {
	const hexdig = "0123456789ABCDEF"
	if only && flavor == flavorOpenSSL {
		first = false
	}
	switch {
	case c > 0x7E || c < 0x20:
		b.WriteByte('\\')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&0xf])
	case c == '\\' || c == '"' || c == ',' || c == '+' || c == '<' || c == '>' || c == ';',
		first && (c == ' ' || c == '#'), last && c == ' ':
		b.WriteByte('\\')
		b.WriteByte(c)
	default:
		b.WriteByte(c)
	}
}
