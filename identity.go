package mtlsauth

import (
	"crypto/x509"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// identity is an authenticated client certificate as the rest of Caddy
// sees it. It is shared by every request that presents the same certificate
// (through the verification cache) and keeps what those requests need at
// every hit (the fingerprint, the allow-list entry's names, the verified
// intermediates), not the certificate: see compact.
type identity struct {
	fp    store.Fingerprint
	alias string
	tier  string
	meta  map[string]string
	// inters are the DER of the verified chain's certificates between the
	// leaf and its trust anchor (for placeholders that hand the chain on).
	inters [][]byte
	// leaf is the parsed leaf, set only on the request that verified it
	// (it has it anyway).
	leaf *x509.Certificate
	// der and built are the leaf's DER and the string forms of its names,
	// kept once a placeholder of a cached identity has needed them (see
	// outcome.leafDER and outcome.names).
	der   atomic.Pointer[[]byte]
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

// newIdentity is the identity of leaf, admitted by e (nil when no allow
// list is involved); poolChain is the chain verified to the trust pool,
// leaf to root (nil without a pool), whose intermediates are handed on to
// upstreams ({http.mtls.rfc9440.chain}). Without a pool nothing verified a
// chain, so none is handed on.
func newIdentity(leaf *x509.Certificate, fp store.Fingerprint, e *store.Entry, poolChain []*x509.Certificate) *identity {
	id := &identity{fp: fp, leaf: leaf}
	if len(poolChain) > 2 {
		id.inters = make([][]byte, 0, len(poolChain)-2)
		for _, c := range poolChain[1 : len(poolChain)-1] {
			id.inters = append(id.inters, c.Raw)
		}
	}
	if e != nil {
		id.alias, id.tier, id.meta = e.Alias, e.Tier, e.Meta
	}
	return id
}

// compact is the copy of id that the verification cache keeps: no
// certificate, parsed or not (the parsed leaf costs several times its DER,
// and the DER is what the leaf's names and DER placeholders are rebuilt from
// on demand, out of the request that hits: it presents the very same
// input), and the intermediates as intern makes them.
func (id *identity) compact(intern func([][]byte) [][]byte) *identity {
	c := &identity{fp: id.fp, alias: id.alias, tier: id.tier, meta: id.meta, inters: intern(id.inters)}
	c.built.Store(id.built.Load())
	return c
}

// presented is what a request presented, as far as a cached identity may
// need it: its input is the one the identity was verified from (the cache
// key is its digest), so decoding it again gives the same leaf.
type presented struct {
	dec           *decoder.Decoder
	values, chain []string
	tls           []*x509.Certificate
}

// leaf parses the presented leaf again; nil if that fails, which cannot
// happen for an input that verified.
func (p *presented) leaf() *x509.Certificate {
	if len(p.tls) > 0 {
		return p.tls[0]
	}
	if p.dec == nil {
		return nil
	}
	res, err := p.dec.Decode(p.values, p.chain)
	if err != nil {
		return nil
	}
	return res.Certs[0]
}

// leaf is the parsed leaf of an authenticated request: the identity's own,
// else (a cached identity) this request's input parsed again; nil when that
// fails. The fingerprint check makes sure that it is the very certificate
// verified, whatever became of the input since (a later handler may rewrite
// a header it was told to keep).
func (o *outcome) leaf() *x509.Certificate {
	if o.id.leaf != nil {
		return o.id.leaf
	}
	if o.reparsed != nil {
		return o.reparsed
	}
	if leaf := o.from.leaf(); leaf != nil && store.FingerprintOf(leaf) == o.id.fp {
		o.reparsed = leaf
		return leaf
	}
	return nil
}

// leafDER is the leaf's DER encoding. A cached identity keeps it, in a
// buffer of its own, once a placeholder has asked for it.
func (o *outcome) leafDER() []byte {
	id := o.id
	if id.leaf != nil {
		return id.leaf.Raw
	}
	if der := id.der.Load(); der != nil {
		return *der
	}
	leaf := o.leaf()
	if leaf == nil {
		return nil
	}
	der := make([]byte, len(leaf.Raw))
	copy(der, leaf.Raw)
	id.der.CompareAndSwap(nil, &der)
	return *id.der.Load()
}

// names returns the string forms of the leaf's names, building them on
// first use (empty, and not kept, if the leaf cannot be had).
func (o *outcome) names() *certNames {
	id := o.id
	if n := id.built.Load(); n != nil {
		return n
	}
	leaf := id.leaf
	if der := id.der.Load(); leaf == nil && der != nil {
		leaf, _ = x509.ParseCertificate(*der) // it parsed when it was verified
	}
	if leaf == nil {
		if leaf = o.leaf(); leaf == nil {
			return &certNames{}
		}
	}
	n := &certNames{
		// As OpenSSL prints names (emailAddress=, not the OID in hex).
		subject:  decoder.SubjectName(leaf),
		cn:       leaf.Subject.CommonName,
		issuer:   decoder.IssuerName(leaf),
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

// reserve bounds the memory that placeholders may add to the cached copy
// of the identity (compact keeps neither), so that the cache counts it
// before anything has read a placeholder: the DER, and the names: their
// structs, and for each name at most twice its DER (escaping and the
// attribute-type prefixes of a distinguished name stay within that) plus
// the allocator's rounding, the serial in decimal, an RFC 3339 time, and a
// string header per SAN. It needs the parsed leaf (the request's identity).
func (id *identity) reserve() int {
	const str = 16 // a string header
	leaf := id.leaf
	if leaf == nil {
		return 0
	}
	// The DER is one allocation of its own: its size class can be an
	// eighth, sometimes a sixth, above its length.
	n := int(unsafe.Sizeof([]byte(nil))) + allocRounding + len(leaf.Raw) + len(leaf.Raw)/4
	n += int(unsafe.Sizeof(certNames{})) + 5*allocRounding + len(time.RFC3339)
	n += 2 * (len(leaf.RawSubject) + len(leaf.RawIssuer))
	if leaf.SerialNumber != nil {
		n += 3 * (leaf.SerialNumber.BitLen() + 7) / 8
	}
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

// userID is {http.auth.user.id} without a user_id template: the alias,
// else the subject CN.
func (o *outcome) userID() string {
	if o.id.alias != "" {
		return o.id.alias
	}
	return o.names().cn
}
