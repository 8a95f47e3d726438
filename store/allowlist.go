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

// Entry is one allowed certificate: a leaf pinned as itself, or a CA whose
// issued certificates are allowed under its alias.
type Entry struct {
	Alias       string
	Cert        *x509.Certificate
	Fingerprint Fingerprint
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
func (e *Entry) IsCA() bool { return e.Cert.BasicConstraintsValid && e.Cert.IsCA }

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
// fingerprint fp) and intermediates, or nil. A leaf pinned as itself wins
// over a CA that issued it. A CA entry admits a leaf when a chain from the
// leaf, through the presented intermediates, verifies to that CA at now for
// client authentication; the signatures are checked, so a certificate that
// merely names the CA as its issuer is not admitted.
func (l *AllowList) Match(leaf *x509.Certificate, fp Fingerprint, intermediates []*x509.Certificate, now time.Time) *Entry {
	if e := l.byFingerprint[fp]; e != nil {
		return e
	}
	if l.cas == nil {
		return nil
	}
	chains, err := pathverify.Client(leaf, l.cas, intermediates, now)
	if err != nil {
		return nil
	}
	// The most specific anchor: the CA closest to the leaf over all chains.
	var best *Entry
	bestDepth := -1
	for _, chain := range chains {
		for depth, c := range chain[1:] {
			if e := l.byFingerprint[FingerprintOf(c)]; e != nil && e.IsCA() {
				if best == nil || depth < bestDepth {
					best, bestDepth = e, depth
				}
				break
			}
		}
	}
	return best
}
