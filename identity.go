package mtlsauth

import (
	"crypto/x509"
	"encoding/hex"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// identity is an authenticated client certificate as the rest of Caddy
// sees it. It is immutable once built (its names are built once, on first
// use) and shared by every request that presents the same certificate
// (through the verification cache). It keeps the leaf's DER and a few
// strings, not the parsed certificate: see compact.
type identity struct {
	fp    store.Fingerprint
	alias string
	tier  string
	meta  map[string]string
	// der is the leaf's DER encoding.
	der []byte
	// inters are the DER of the verified chain's certificates between the
	// leaf and its trust anchor (for placeholders that hand the chain on).
	inters [][]byte
	// leaf is the parsed leaf, set only on the request that verified it
	// (it has it anyway); a cached identity parses der again the first time
	// a placeholder needs its names.
	leaf  *x509.Certificate
	built atomic.Pointer[certNames]
}

// certNames are the string forms of a certificate's names.
type certNames struct {
	subject, cn, issuer, serial, notAfter string
	sans                                  *sanNames // nil when the certificate has none
}

// sanNames are the subject alternative names, each list in the
// certificate's order.
type sanNames struct {
	dns, emails, uris, ips []string
}

// newIdentity is the identity of leaf, verified through chain (leaf to
// trust anchor) and admitted by e (nil when no allow list is involved).
func newIdentity(leaf *x509.Certificate, fp store.Fingerprint, e *store.Entry, chain []*x509.Certificate) *identity {
	id := &identity{fp: fp, der: leaf.Raw, leaf: leaf}
	if len(chain) > 2 {
		id.inters = make([][]byte, 0, len(chain)-2)
		for _, c := range chain[1 : len(chain)-1] {
			id.inters = append(id.inters, c.Raw)
		}
	}
	if e != nil {
		id.alias, id.tier, id.meta = e.Alias, e.Tier, e.Meta
	}
	return id
}

// compact is the copy of id that the verification cache keeps: the DER in
// a buffer of its own (the request's may hold more: a whole header, or a
// whole TLS handshake message), the intermediates as intern makes them, and
// no parsed certificate, which costs several times its DER.
func (id *identity) compact(intern func([][]byte) [][]byte) *identity {
	c := &identity{fp: id.fp, alias: id.alias, tier: id.tier, meta: id.meta,
		der: make([]byte, len(id.der)), inters: intern(id.inters)}
	copy(c.der, id.der)
	c.built.Store(id.built.Load())
	return c
}

// names returns the string forms of the certificate's names, building them
// on first use.
func (id *identity) names() *certNames {
	if n := id.built.Load(); n != nil {
		return n
	}
	leaf := id.leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(id.der); err != nil {
			leaf = &x509.Certificate{} // cannot happen: der parsed when it was verified
		}
	}
	n := &certNames{
		subject:  leaf.Subject.String(),
		cn:       leaf.Subject.CommonName,
		issuer:   leaf.Issuer.String(),
		notAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
	}
	if leaf.SerialNumber != nil {
		n.serial = leaf.SerialNumber.String()
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.URIs)+len(leaf.IPAddresses) > 0 {
		s := &sanNames{dns: leaf.DNSNames, emails: leaf.EmailAddresses}
		for _, u := range leaf.URIs {
			s.uris = append(s.uris, u.String())
		}
		for _, ip := range leaf.IPAddresses {
			s.ips = append(s.ips, ip.String())
		}
		n.sans = s
	}
	// Two first readers may both build; either result is the same.
	id.built.CompareAndSwap(nil, n)
	return id.built.Load()
}

// namesReserve bounds the memory names() adds to the identity, so that
// the cache can count it before anything has read a placeholder: the
// structs, and for each name at most twice its DER (escaping and the
// attribute-type prefixes of a distinguished name stay within that) plus
// the allocator's rounding, the serial in decimal, an RFC 3339 time, and a
// string header per SAN. Without the parsed leaf (a cached copy), the
// reserve is taken from the DER's length.
func (id *identity) namesReserve() int {
	const str = 16 // a string header
	n := int(unsafe.Sizeof(certNames{})) + 5*allocRounding + len(time.RFC3339)
	leaf := id.leaf
	if leaf == nil {
		return n + 2*len(id.der)
	}
	n += 2*(len(leaf.RawSubject)+len(leaf.RawIssuer)) + 3*(leaf.SerialNumber.BitLen()+7)/8
	sans := len(leaf.DNSNames) + len(leaf.EmailAddresses) + len(leaf.URIs) + len(leaf.IPAddresses)
	if sans == 0 {
		return n
	}
	n += int(unsafe.Sizeof(sanNames{})) + 4*allocRounding + sans*(str+allocRounding)
	for _, s := range leaf.DNSNames {
		n += len(s)
	}
	for _, s := range leaf.EmailAddresses {
		n += len(s)
	}
	for _, u := range leaf.URIs {
		n += 2 * len(u.String())
	}
	return n + len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")*len(leaf.IPAddresses)
}

// allocRounding is what the allocator adds to a small allocation on
// average, rounding it up to its size class.
const allocRounding = 8

// fingerprint is {http.mtls.fingerprint}: the SHA-256 of the leaf's DER,
// lowercase hex.
func (id *identity) fingerprint() string { return hex.EncodeToString(id.fp[:]) }

// userID is {http.auth.user.id}: the alias, else the subject CN.
func (id *identity) userID() string {
	if id.alias != "" {
		return id.alias
	}
	return id.names().cn
}
