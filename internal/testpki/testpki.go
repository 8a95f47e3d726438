// Package testpki makes throwaway X.509 hierarchies for tests and demos:
// roots, intermediates and leaves with chosen validity, key usage and SANs.
// Nothing it makes is meant to protect anything; keys live in memory unless
// written out with the Write helpers. It panics on the (practically
// impossible) failures of key generation and signing so that call sites stay
// short; it is only for tests, benchmarks and demo tooling.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// KeyType selects the key algorithm of a generated certificate.
type KeyType int

const (
	// ECDSAP256 is the default: fast to generate and to verify.
	ECDSAP256 KeyType = iota
	// RSA2048 is what most corporate PKIs still issue.
	RSA2048
)

// Cert is a generated certificate with its key and the chain above it.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Issuer is the certificate that signed this one; nil for a root.
	Issuer *Cert
}

// options collects what an Option may change.
type options struct {
	notBefore, notAfter time.Time
	eku                 []x509.ExtKeyUsage
	noEKU               bool
	dns                 []string
	emails              []string
	ips                 []net.IP
	uris                []*url.URL
	keyType             KeyType
	signer              crypto.Signer
	serial              *big.Int
	crlURLs             []string
	ocspURLs            []string
	org                 string
	keyUsage            x509.KeyUsage
	modify              []func(*x509.Certificate)
	publicKey           crypto.PublicKey
}

// Option changes one property of a certificate to be made.
type Option func(*options)

// Validity sets the validity window.
func Validity(notBefore, notAfter time.Time) Option {
	return func(o *options) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// Expired makes a certificate whose validity ended an hour ago.
func Expired() Option {
	return Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
}

// NotYetValid makes a certificate whose validity starts in a day.
func NotYetValid() Option {
	return Validity(time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
}

// EKU sets the extended key usages (default for leaves: clientAuth).
func EKU(usages ...x509.ExtKeyUsage) Option {
	return func(o *options) { o.eku = usages; o.noEKU = len(usages) == 0 }
}

// NoEKU leaves the extended key usage extension out entirely.
func NoEKU() Option { return func(o *options) { o.eku = nil; o.noEKU = true } }

// DNS adds DNS SANs.
func DNS(names ...string) Option { return func(o *options) { o.dns = append(o.dns, names...) } }

// Emails adds email SANs.
func Emails(addrs ...string) Option {
	return func(o *options) { o.emails = append(o.emails, addrs...) }
}

// IPs adds IP SANs.
func IPs(ips ...string) Option {
	return func(o *options) {
		for _, s := range ips {
			o.ips = append(o.ips, net.ParseIP(s))
		}
	}
}

// URIs adds URI SANs (SPIFFE IDs, say).
func URIs(uris ...string) Option {
	return func(o *options) {
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				panic(err)
			}
			o.uris = append(o.uris, u)
		}
	}
}

// Key selects the key algorithm.
func Key(k KeyType) Option { return func(o *options) { o.keyType = k } }

// UseKey makes the certificate for an existing key instead of a new one:
// making many certificates costs a signature each, not a key generation.
func UseKey(k crypto.Signer) Option { return func(o *options) { o.signer = k } }

// key is the certificate's key: the one UseKey gave, else a new one.
func (o *options) key() crypto.Signer {
	if o.signer != nil {
		return o.signer
	}
	return newKey(o.keyType)
}

// Serial sets the serial number.
func Serial(n int64) Option { return func(o *options) { o.serial = big.NewInt(n) } }

// CRLDistributionPoints sets the CRL URLs named in the certificate.
func CRLDistributionPoints(urls ...string) Option {
	return func(o *options) { o.crlURLs = urls }
}

// OCSPServers sets the OCSP responder URLs named in the certificate's AIA.
func OCSPServers(urls ...string) Option { return func(o *options) { o.ocspURLs = urls } }

// Organization sets the subject's O attribute.
func Organization(org string) Option { return func(o *options) { o.org = org } }

// KeyUsage replaces the key usage bits of a CA or a leaf (e.g. a CA
// without cRLSign).
func KeyUsage(ku x509.KeyUsage) Option { return func(o *options) { o.keyUsage = ku } }

// Modify changes the certificate's template before it is signed, for
// properties no other option sets (constraints, policies, extensions).
// Several Modify options apply in order.
func Modify(f func(tmpl *x509.Certificate)) Option {
	return func(o *options) { o.modify = append(o.modify, f) }
}

// Policies sets the certificate policies, as dotted OIDs.
func Policies(oids ...string) Option {
	return Modify(func(tmpl *x509.Certificate) {
		for _, s := range oids {
			oid, err := x509.ParseOID(s)
			if err != nil {
				panic(err)
			}
			tmpl.Policies = append(tmpl.Policies, oid)
		}
	})
}

// RequireExplicitPolicy adds a policy constraints extension whose
// requireExplicitPolicy is skip (0: every certificate from this one's
// subject on must carry an acceptable policy). crypto/x509 parses it but
// does not write it.
func RequireExplicitPolicy(skip int) Option {
	if skip < 0 || skip > 127 {
		panic("testpki: RequireExplicitPolicy takes 0..127")
	}
	// PolicyConstraints ::= SEQUENCE { requireExplicitPolicy [0] IMPLICIT INTEGER }
	value := []byte{0x30, 0x03, 0x80, 0x01, byte(skip)}
	return Modify(func(tmpl *x509.Certificate) {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: []int{2, 5, 29, 36}, Critical: true, Value: value})
	})
}

// Padding adds a non-critical extension of n bytes (of an unregistered
// OID) to the certificate: a certificate as large as a client likes.
func Padding(n int) Option {
	return Modify(func(tmpl *x509.Certificate) {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: []int{1, 3, 6, 1, 4, 1, 99999, 7}, Value: make([]byte, n)})
	})
}

// PublicKey makes the certificate carry pub as its subject key, with no
// private key (Cert.Key stays nil; the certificate can sign nothing). It
// makes certificates with keys that are slow or impossible to generate,
// such as an oversized RSA modulus.
func PublicKey(pub crypto.PublicKey) Option { return func(o *options) { o.publicKey = pub } }

func newOptions(opts []Option) *options {
	o := &options{
		notBefore: time.Now().Add(-time.Hour),
		notAfter:  time.Now().Add(24 * time.Hour),
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.serial == nil {
		s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		if err != nil {
			panic(err)
		}
		o.serial = s
	}
	return o
}

func newKey(k KeyType) crypto.Signer {
	var (
		key crypto.Signer
		err error
	)
	switch k {
	case RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	return key
}

// NewRoot makes a self-signed root CA.
func NewRoot(cn string, opts ...Option) *Cert {
	o := newOptions(opts)
	if o.notAfter.Sub(o.notBefore) < 48*time.Hour && len(opts) == 0 {
		o.notAfter = time.Now().Add(10 * 24 * time.Hour)
	}
	tmpl := caTemplate(cn, o)
	return sign(tmpl, nil, o)
}

// NewIntermediate makes a CA certificate signed by c.
func (c *Cert) NewIntermediate(cn string, opts ...Option) *Cert {
	o := newOptions(opts)
	return sign(caTemplate(cn, o), c, o)
}

// NewLeaf makes an end-entity certificate signed by c, with the clientAuth
// extended key usage unless an option says otherwise.
func (c *Cert) NewLeaf(cn string, opts ...Option) *Cert {
	o := newOptions(opts)
	tmpl := &x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               name(cn, o),
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		DNSNames:              o.dns,
		EmailAddresses:        o.emails,
		IPAddresses:           o.ips,
		URIs:                  o.uris,
		CRLDistributionPoints: o.crlURLs,
		OCSPServer:            o.ocspURLs,
	}
	if o.keyUsage != 0 {
		tmpl.KeyUsage = o.keyUsage
	}
	switch {
	case o.noEKU:
	case len(o.eku) > 0:
		tmpl.ExtKeyUsage = o.eku
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return sign(tmpl, c, o)
}

// NewSelfSigned makes a self-signed end-entity certificate (a client that
// made up its own identity).
func NewSelfSigned(cn string, opts ...Option) *Cert {
	o := newOptions(opts)
	tmpl := &x509.Certificate{
		SerialNumber: o.serial,
		Subject:      name(cn, o),
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return sign(tmpl, nil, o)
}

// Forge makes what an attacker can make of c without its key: a CA
// certificate naming c as its issuer (c's subject, and c's key identifier
// as its authority key identifier), signed with a key of the attacker's
// of the kind c's key checks. Path validation must refuse it: its
// signature does not verify under c's key.
func (c *Cert) Forge(cn string, opts ...Option) *Cert {
	o := newOptions(opts)
	tmpl := caTemplate(cn, o)
	tmpl.AuthorityKeyId = c.Cert.SubjectKeyId
	fakeIssuer := &Cert{Cert: &x509.Certificate{
		Subject: c.Cert.Subject, RawSubject: c.Cert.RawSubject, SubjectKeyId: c.Cert.SubjectKeyId,
	}, Key: throwawayKey(keyTypeOf(c.Key))}
	return sign(tmpl, fakeIssuer, o)
}

func keyTypeOf(k crypto.Signer) KeyType {
	if _, ok := k.(*rsa.PrivateKey); ok {
		return RSA2048
	}
	return ECDSAP256
}

// MadeUpRSAKey is an RSA public key with a modulus of bits bits that is
// no product of two primes: no private key exists. It is what a client
// puts in a certificate it forges, at no cost to itself, whatever its
// size.
func MadeUpRSAKey(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(12345)), E: 65537}
}

// ForgedChain is what a client that holds no key of the PKI can send to
// make verifying its chain cost the most: a leaf naming inter as its
// issuer (signed with a key of the client's), inter itself (public),
// forged intermediates named like inter and issued, on their face, by
// inter's issuer (each costs a signature check under that issuer's key,
// and fails), and CA certificates no path can reach (each costs parsing
// alone; the decoder refuses end-entity certificates after the leaf). opts apply to every certificate the client makes up (say, the
// largest key accepted, and padding). Leaf first; 2+forged+unreachable
// certificates.
func ForgedChain(inter *Cert, forged, unreachable int, opts ...Option) []*Cert {
	out := []*Cert{inter.Forge("forged client", opts...), inter}
	for range forged {
		out = append(out, inter.Issuer.Forge(inter.Cert.Subject.CommonName, opts...))
	}
	for i := range unreachable {
		out = append(out, NewRoot(fmt.Sprintf("unreachable %d", i), opts...))
	}
	return out
}

// NewImpostor makes what an attacker can make without impersonated's key: a
// CA certificate whose subject and issuer names are impersonated's subject,
// with a key of its own, signed by another key of the attacker's (so it
// verifies under nothing anyone trusts, not even itself), carrying whatever
// the options say (CRL distribution points, OCSP servers).
func NewImpostor(impersonated *Cert, opts ...Option) *Cert {
	o := newOptions(opts)
	tmpl := caTemplate("", o)
	tmpl.RawSubject = impersonated.Cert.RawSubject
	// The issuer name is the parent's subject; the parent's public key is
	// not consulted, so a template naming impersonated and the attacker's
	// signing key make the forgery.
	parent := &x509.Certificate{RawSubject: impersonated.Cert.RawSubject}
	key := newKey(o.keyType)
	return &Cert{Cert: create(tmpl, parent, key.Public(), newKey(o.keyType)), Key: key}
}

func name(cn string, o *options) pkix.Name {
	n := pkix.Name{CommonName: cn}
	if o.org != "" {
		n.Organization = []string{o.org}
	}
	return n
}

func caTemplate(cn string, o *options) *x509.Certificate {
	ku := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	if o.keyUsage != 0 {
		ku = o.keyUsage
	}
	return &x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               name(cn, o),
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              ku,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: o.crlURLs,
		OCSPServer:            o.ocspURLs,
	}
}

// sign signs tmpl with issuer (self-signed when issuer is nil), after
// the options' modifications, over the options' key; with the PublicKey
// option the certificate carries that key instead and has no private key
// (self-signed, it is signed by a throwaway key).
func sign(tmpl *x509.Certificate, issuer *Cert, o *options) *Cert {
	for _, f := range o.modify {
		f(tmpl)
	}
	var key crypto.Signer
	pub := o.publicKey
	if pub == nil {
		key = o.key()
		pub = key.Public()
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	if signer == nil {
		signer = throwawayKey(o.keyType)
	}
	c := &Cert{Cert: create(tmpl, parent, pub, signer), Issuer: issuer}
	if key != nil {
		c.Key = key
	}
	return c
}

var (
	throwawayMu   sync.Mutex
	throwawayKeys = map[KeyType]crypto.Signer{}
)

// throwawayKey is one key per type, made once: what signs forged and
// made-up certificates (an attacker reuses its keys too, and an RSA key
// takes long to make).
func throwawayKey(k KeyType) crypto.Signer {
	throwawayMu.Lock()
	defer throwawayMu.Unlock()
	if throwawayKeys[k] == nil {
		throwawayKeys[k] = newKey(k)
	}
	return throwawayKeys[k]
}

// CrossSigned re-issues c (its subject and its key, a new serial) under
// issuer: a cross-signed CA certificate.
func (c *Cert) CrossSigned(issuer *Cert) *Cert {
	tmpl := *c.Cert
	tmpl.AuthorityKeyId = nil
	tmpl.SerialNumber = newOptions(nil).serial
	return &Cert{Cert: create(&tmpl, issuer.Cert, c.Cert.PublicKey, issuer.Key), Key: c.Key, Issuer: issuer}
}

// create makes the certificate of tmpl for pub, issued under parent's
// subject and signed by signer.
func create(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert
}

// DER is the certificate's DER encoding.
func (c *Cert) DER() []byte { return c.Cert.Raw }

// PEM is the certificate in PEM, with a trailing newline.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the private key in PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Fingerprint is the lowercase hex SHA-256 of the DER.
func (c *Cert) Fingerprint() string {
	sum := sha256.Sum256(c.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Chain is this certificate followed by its issuers up to, but not
// including, the root: what a client sends in the TLS handshake.
func (c *Cert) Chain() []*Cert {
	out := []*Cert{c}
	for p := c.Issuer; p != nil && p.Issuer != nil; p = p.Issuer {
		out = append(out, p)
	}
	return out
}

// ChainPEM is Chain in PEM, concatenated.
func (c *Cert) ChainPEM() []byte {
	var out []byte
	for _, x := range c.Chain() {
		out = append(out, x.PEM()...)
	}
	return out
}

// WriteFile writes data to dir/name with 0600 permissions and returns the path.
func WriteFile(dir, name string, data []byte) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", err
	}
	return p, nil
}
