// Package store holds the certificate lists a route authorizes against:
// pinned certificates and CAs with their aliases and metadata. Lists are
// immutable once built, so the request path reads them without locks.
//
// The package has no Caddy imports and no init().
package store

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding.
type Fingerprint [sha256.Size]byte

// FingerprintOf hashes a certificate's DER.
func FingerprintOf(cert *x509.Certificate) Fingerprint { return sha256.Sum256(cert.Raw) }

// String is the lowercase hex form used in placeholders, logs and the API.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// Entry is one allowed certificate: pinned exactly (by fingerprint), or a
// CA whose issued certificates are allowed under its alias. Which one is
// said explicitly by CA, never read from the certificate's extensions: a
// self-signed client certificate often carries CA:TRUE (openssl req -x509
// sets it), and pinning it must not let its key holder mint new identities.
type Entry struct {
	Alias       string
	Cert        *x509.Certificate
	Fingerprint Fingerprint
	// CA makes the entry admit every certificate its certificate issued
	// (allow_ca, or a runtime record with "ca": true). Set it through
	// NewEntry, which checks that the certificate can be a CA.
	CA bool
	// Tier names the throttling tier bound to this certificate, if any.
	Tier string
	// Meta is free-form data handed on as {http.mtls.meta.<key>}.
	Meta map[string]string
	// Source says where the entry came from (a file path), for messages.
	Source string
	// AddedAt is when a runtime entry was added; zero for files.
	AddedAt time.Time
}

// IsCA reports whether the entry admits the certificates it issued.
func (e *Entry) IsCA() bool { return e.CA }

// NewEntry makes an entry of cert under alias: pinned exactly, or, with ca,
// a CA entry, which cert must be able to be (see CheckCA). source says
// where it came from, for messages.
func NewEntry(alias string, cert *x509.Certificate, ca bool, source string) (*Entry, error) {
	if ca {
		if err := CheckCA(cert); err != nil {
			return nil, err
		}
	}
	return &Entry{Alias: alias, Cert: cert, Fingerprint: FingerprintOf(cert), CA: ca, Source: source}, nil
}

// ErrNotCA is wrapped by the errors of CheckCA.
var ErrNotCA = errors.New("not a CA")

// CheckCA reports why cert cannot anchor a CA entry: it must say CA:TRUE
// in its basic constraints and, when it has a key usage extension, allow
// keyCertSign. (Go's path validation does not look at an issuer's key
// usage, so this is checked here, once, when the entry is made.)
func CheckCA(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("%w: its basic constraints do not say CA:TRUE", ErrNotCA)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: its key usage does not include keyCertSign", ErrNotCA)
	}
	return nil
}

// AllowList indexes entries by fingerprint and alias, and keeps the CA
// entries as a pool to build chains to. It is immutable and safe for
// concurrent use.
type AllowList struct {
	entries       []*Entry
	byFingerprint map[Fingerprint]*Entry
	byAlias       map[string]*Entry
	cas           *x509.CertPool // nil when no entry is a CA
}

// NewAllowList indexes entries. Aliases must be unique and a certificate may
// be listed once.
func NewAllowList(entries []*Entry) (*AllowList, error) {
	l := &AllowList{
		entries:       entries,
		byFingerprint: make(map[Fingerprint]*Entry, len(entries)),
		byAlias:       make(map[string]*Entry, len(entries)),
	}
	for _, e := range entries {
		if e.Alias == "" {
			return nil, fmt.Errorf("certificate from %s has no alias", e.Source)
		}
		if prev, dup := l.byAlias[e.Alias]; dup {
			return nil, fmt.Errorf("alias '%s' is used twice (%s and %s)", e.Alias, prev.Source, e.Source)
		}
		e.Fingerprint = FingerprintOf(e.Cert)
		if prev, dup := l.byFingerprint[e.Fingerprint]; dup {
			return nil, fmt.Errorf("certificate of alias '%s' (%s) is already allowed as '%s'", e.Alias, e.Source, prev.Alias)
		}
		l.byAlias[e.Alias] = e
		l.byFingerprint[e.Fingerprint] = e
		if e.IsCA() {
			if l.cas == nil {
				l.cas = x509.NewCertPool()
			}
			l.cas.AddCert(e.Cert)
		}
	}
	return l, nil
}

// Len is the number of entries.
func (l *AllowList) Len() int { return len(l.entries) }

// Entries returns the entries in the order they were given.
func (l *AllowList) Entries() []*Entry { return l.entries }

// Lookup finds an entry by the fingerprint of its certificate.
func (l *AllowList) Lookup(fp Fingerprint) *Entry { return l.byFingerprint[fp] }

// Match returns the entry that admits a client presenting leaf (with its
// fingerprint fp) and intermediates, or nil, and the chain the admission
// rests on: the leaf alone for a pinned certificate, else the verified path
// from the leaf to the CA entry's certificate (leaf first, each certificate
// followed by its issuer). A leaf pinned as itself wins over a CA that
// issued it. A CA entry admits a leaf when a chain from the leaf, through
// the presented intermediates, verifies to that CA at now for client
// authentication; the signatures are checked, so a certificate that merely
// names the CA as its issuer is not admitted. A pinned certificate admits
// nothing but itself, whatever its extensions.
func (l *AllowList) Match(leaf *x509.Certificate, fp Fingerprint, intermediates []*x509.Certificate, now time.Time) (*Entry, []*x509.Certificate) {
	if e := l.byFingerprint[fp]; e != nil {
		return e, []*x509.Certificate{leaf}
	}
	if l.cas == nil {
		return nil, nil
	}
	chains, err := pathverify.Client(leaf, l.cas, intermediates, now)
	if err != nil {
		return nil, nil
	}
	// The most specific anchor: the CA closest to the leaf over all chains.
	var best *Entry
	var bestChain []*x509.Certificate
	bestDepth := -1
	for _, chain := range chains {
		for depth, c := range chain[1:] {
			if e := l.byFingerprint[FingerprintOf(c)]; e != nil && e.IsCA() {
				if best == nil || depth < bestDepth {
					best, bestDepth, bestChain = e, depth, chain[:depth+2]
				}
				break
			}
		}
	}
	return best, bestChain
}
