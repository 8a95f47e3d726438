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
// entries as trust anchors to build chains to. It is immutable and safe
// for concurrent use.
type AllowList struct {
	entries       []*Entry
	byFingerprint map[Fingerprint]*Entry
	byAlias       map[string]*Entry
	// cas are the CA entries as anchors, with what was learnt about
	// presented certificates against them; nil when no entry is a CA.
	// A new list (any change) starts them afresh.
	cas *pathverify.Anchors
}

// NewAllowList indexes entries. Aliases must be unique and a certificate may
// be listed once.
func NewAllowList(entries []*Entry) (*AllowList, error) {
	l := &AllowList{
		entries:       entries,
		byFingerprint: make(map[Fingerprint]*Entry, len(entries)),
		byAlias:       make(map[string]*Entry, len(entries)),
	}
	var cas *x509.CertPool
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
			if cas == nil {
				cas = x509.NewCertPool()
			}
			cas.AddCert(e.Cert)
		}
	}
	if cas != nil {
		// No fast path: Match chooses among all verified chains.
		l.cas = pathverify.NewAnchors(cas, false)
	}
	return l, nil
}

// Len is the number of entries.
func (l *AllowList) Len() int { return len(l.entries) }

// Entries returns the entries in the order they were given.
func (l *AllowList) Entries() []*Entry { return l.entries }

// Lookup finds an entry by the fingerprint of its certificate.
func (l *AllowList) Lookup(fp Fingerprint) *Entry { return l.byFingerprint[fp] }

// Match returns the entry that admits the request's leaf (whose
// fingerprint is fp), and the chain the admission rests on: the leaf alone
// for a pinned certificate, else the verified path from the leaf to the CA
// entry's certificate (leaf first, each certificate followed by its
// issuer). A leaf pinned as itself wins over a CA that issued it. A CA
// entry admits a leaf when a chain from the leaf, through the presented
// intermediates, verifies to that CA at the request's time for client
// authentication (at the request's bounded cost, see pathverify); the
// signatures are checked, so a certificate that merely names the CA as its
// issuer is not admitted. Of several CA entries, the one closest to the
// leaf wins. A chain holding a certificate the request denies (the CA
// entry's own included) admits nothing; when every chain that would admit
// the leaf holds one, the error is a *pathverify.DeniedError.
// pathverify.ErrTooManyChecks is returned when the request's budget runs
// out. Otherwise a leaf no entry admits gives nil and no error.
func (l *AllowList) Match(r *pathverify.Request, fp Fingerprint) (*Entry, []*x509.Certificate, error) {
	leaf := r.Leaf()
	if e := l.byFingerprint[fp]; e != nil {
		return e, []*x509.Certificate{leaf}, nil
	}
	if l.cas == nil {
		return nil, nil, nil
	}
	chains, err := l.cas.Verify(r)
	var denied *pathverify.DeniedError
	switch {
	case errors.As(err, &denied), errors.Is(err, pathverify.ErrTooManyChecks):
		return nil, nil, err
	case err != nil:
		return nil, nil, nil // no chain to a CA entry: not admitted
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
	return best, bestChain, nil
}
