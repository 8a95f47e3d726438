package decoder

import (
	"bytes"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// certFacts are what an XFCC element says about its certificate besides
// the certificate itself: the subject, and the DNS and URI SANs exactly as
// encoded (Envoy copies the IA5String bytes into the header unchanged).
type certFacts struct {
	subject []byte   // DER of the subject Name
	dns     [][]byte // dNSName SANs, in order
	uris    [][]byte // uniformResourceIdentifier SANs, in order
}

// oidSAN is 2.5.29.17, subjectAltName, as DER content octets.
var oidSAN = []byte{0x55, 0x1d, 0x11}

// readCertFacts walks der (one X.509 certificate) far enough to find its
// subject and SANs, without building an x509.Certificate: it is run on
// every XFCC element that carries a certificate, of which only the
// selected one is parsed in full. It reads these places the way
// x509.ParseCertificate does (extensions only in version 3 certificates;
// what follows them in the TBSCertificate ignored), so it never reads other
// SANs than x509 would; it also fails on a second subjectAltName extension.
func readCertFacts(der []byte) (certFacts, bool) {
	var f certFacts
	in := cryptobyte.String(der)
	var cert, tbs, subject cryptobyte.String
	var version int
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1Integer(&version, cbasn1.Tag(0).Constructed().ContextSpecific(), 0) ||
		version < 0 || version > 2 ||
		!tbs.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // signature
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // issuer
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // validity
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) { // subjectPublicKeyInfo
		return f, false
	}
	f.subject = subject
	if version < 2 { // v1 and v2 certificates have no extensions
		return f, true
	}
	var wrapped, exts cryptobyte.String
	var present bool
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) || // issuerUniqueID
		!tbs.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) || // subjectUniqueID
		!tbs.ReadOptionalASN1(&wrapped, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return f, false
	}
	if !present {
		return f, true
	}
	if !wrapped.ReadASN1(&exts, cbasn1.SEQUENCE) {
		return f, false
	}
	seen := false
	for !exts.Empty() {
		var ext, oid, val cryptobyte.String
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) ||
			!ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) ||
			!ext.ReadASN1(&val, cbasn1.OCTET_STRING) {
			return f, false
		}
		if !bytes.Equal(oid, oidSAN) {
			continue
		}
		if seen {
			return f, false
		}
		seen = true
		var names cryptobyte.String
		if !val.ReadASN1(&names, cbasn1.SEQUENCE) {
			return f, false
		}
		for !names.Empty() {
			var name cryptobyte.String
			var tag cbasn1.Tag
			if !names.ReadAnyASN1(&name, &tag) {
				return f, false
			}
			switch tag {
			case cbasn1.Tag(2).ContextSpecific():
				f.dns = append(f.dns, name)
			case cbasn1.Tag(6).ContextSpecific():
				f.uris = append(f.uris, name)
			}
		}
	}
	return f, true
}
