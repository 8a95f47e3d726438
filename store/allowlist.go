// Package store holds the certificate lists a route authorizes against:
// pinned certificates and CAs with their aliases and metadata. Lists are
// immutable once built, so the request path reads them without locks.
//
// The package has no Caddy imports and no init().
package store

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"sync"
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
// concurrent use. A runtime list changes by deriving a new list (with,
// without) that shares almost all of its index with the old one, so taking
// or dropping one certificate costs O(log n), not a rebuild.
type AllowList struct {
	byFingerprint pmap[Fingerprint, *Entry]
	byAlias       pmap[string, *Entry]
	// cas are the CA entries and their trust anchors; nil when no entry is
	// a CA. A list whose CA entries change gets a new set.
	cas *caSet

	// entries is the listing order: as given to NewAllowList, or by alias
	// for a derived list, where it is built on first use.
	entries     []*Entry
	entriesOnce sync.Once
}

// fingerprintHash places a fingerprint in the index: it is already a
// SHA-256, so its first bytes are as good a hash as any.
func fingerprintHash(fp Fingerprint) uint64 { return binary.LittleEndian.Uint64(fp[:8]) }

// aliasSeed keys the alias hash; random per process.
var aliasSeed = maphash.MakeSeed()

func aliasHash(s string) uint64 { return maphash.String(aliasSeed, s) }

func emptyAllowList() *AllowList {
	return &AllowList{
		byFingerprint: newPmap[Fingerprint, *Entry](fingerprintHash),
		byAlias:       newPmap[string, *Entry](aliasHash),
	}
}

// NewAllowList indexes entries. Aliases must be unique and a certificate may
// be listed once.
func NewAllowList(entries []*Entry) (*AllowList, error) {
	l := emptyAllowList()
	var cas []*Entry
	for _, e := range entries {
		if e.Alias == "" {
			return nil, fmt.Errorf("certificate from %s has no alias", e.Source)
		}
		if prev := l.Alias(e.Alias); prev != nil {
			return nil, fmt.Errorf("alias '%s' is used twice (%s and %s)", e.Alias, prev.Source, e.Source)
		}
		e.Fingerprint = FingerprintOf(e.Cert)
		if prev := l.Lookup(e.Fingerprint); prev != nil {
			return nil, fmt.Errorf("certificate of alias '%s' (%s) is already allowed as '%s'", e.Alias, e.Source, prev.Alias)
		}
		l.byAlias = l.byAlias.set(e.Alias, e)
		l.byFingerprint = l.byFingerprint.set(e.Fingerprint, e)
		if e.IsCA() {
			cas = append(cas, e)
		}
	}
	if len(cas) > 0 {
		l.cas = &caSet{entries: cas}
	}
	l.entries = entries
	return l, nil
}

// caSet is the CA entries of a list, in the order added, and the trust
// anchors made of them on first use. Anchors are built when a request
// needs them, not per change: a list derived entry by entry (a reload, a
// bulk add) builds them once, not once per CA entry. Lists whose CA
// entries are the same share one set, and with it what its anchors have
// learnt about presented certificates. Immutable but for the anchors,
// which sync.Once guards.
type caSet struct {
	entries []*Entry
	once    sync.Once
	anchors *pathverify.Anchors
}

// plus is s (which may be nil) with e added, as a new set.
func (s *caSet) plus(e *Entry) *caSet {
	var entries []*Entry
	if s != nil {
		entries = s.entries[:len(s.entries):len(s.entries)]
	}
	return &caSet{entries: append(entries, e)}
}

// minus is s less e, as a new set; nil when that leaves it empty.
func (s *caSet) minus(e *Entry) *caSet {
	entries := make([]*Entry, 0, len(s.entries))
	for _, c := range s.entries {
		if c != e {
			entries = append(entries, c)
		}
	}
	if len(entries) == 0 {
		return nil
	}
	return &caSet{entries: entries}
}

// trust is the entries' certificates as trust anchors. No fast path: Match
// chooses among all verified chains.
func (s *caSet) trust() *pathverify.Anchors {
	s.once.Do(func() {
		pool := x509.NewCertPool()
		for _, e := range s.entries {
			pool.AddCert(e.Cert)
		}
		s.anchors = pathverify.NewAnchors(pool, false)
	})
	return s.anchors
}

// with returns l (which may be nil) plus e, replacing the entry of the same
// alias. e.Fingerprint must be set. If e's certificate is listed under
// another alias, the list is returned unchanged with ok false: a
// certificate has one alias per list. Costs O(log n), plus O(number of CA
// entries) when a CA comes or goes (a copy of the entry list; the anchors
// are built once, when a request first needs them).
func (l *AllowList) with(e *Entry) (_ *AllowList, ok bool) {
	if l == nil {
		l = emptyAllowList()
	}
	if prev := l.Lookup(e.Fingerprint); prev != nil && prev.Alias != e.Alias {
		return l, false
	}
	n := emptyAllowList()
	if base := l.without(e.Alias); base != nil {
		// A new list: base may be l itself, which must not change.
		n.byFingerprint, n.byAlias, n.cas = base.byFingerprint, base.byAlias, base.cas
	}
	n.byAlias = n.byAlias.set(e.Alias, e)
	n.byFingerprint = n.byFingerprint.set(e.Fingerprint, e)
	if e.IsCA() {
		n.cas = n.cas.plus(e)
	}
	return n, true
}

// without returns l less the entry of alias: l itself when there is none,
// nil when that leaves it empty. Costs as with does.
func (l *AllowList) without(alias string) *AllowList {
	if l == nil {
		return nil
	}
	e := l.Alias(alias)
	if e == nil {
		return l
	}
	if l.Len() == 1 {
		return nil
	}
	n := &AllowList{
		byFingerprint: l.byFingerprint,
		byAlias:       l.byAlias.del(alias),
		cas:           l.cas,
	}
	if held, _ := n.byFingerprint.get(e.Fingerprint); held == e {
		n.byFingerprint = n.byFingerprint.del(e.Fingerprint)
	}
	if e.IsCA() {
		n.cas = l.cas.minus(e)
	}
	return n
}

// Len is the number of entries; 0 for a nil list.
func (l *AllowList) Len() int {
	if l == nil {
		return 0
	}
	return l.byAlias.Len()
}

// Entries returns the entries: in the order given for a list built by
// NewAllowList, by alias for a runtime list. The first call on a runtime
// list sorts it (O(n log n)); the result is shared, do not modify it.
func (l *AllowList) Entries() []*Entry {
	l.entriesOnce.Do(func() {
		if l.entries != nil {
			return
		}
		out := make([]*Entry, 0, l.Len())
		l.byAlias.each(func(_ string, e *Entry) bool {
			out = append(out, e)
			return true
		})
		sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
		l.entries = out
	})
	return l.entries
}

// Lookup finds an entry by the fingerprint of its certificate; nil for a
// nil list.
func (l *AllowList) Lookup(fp Fingerprint) *Entry {
	if l == nil {
		return nil
	}
	e, _ := l.byFingerprint.get(fp)
	return e
}

// Alias finds an entry by its alias; nil for a nil list.
func (l *AllowList) Alias(alias string) *Entry {
	if l == nil {
		return nil
	}
	e, _ := l.byAlias.get(alias)
	return e
}

// Match returns the entry that admits the request's leaf (whose
// fingerprint is fp), and the chain the admission rests on: the leaf alone
// for a pinned certificate, else the verified path from the leaf to the CA
// entry's certificate (leaf first, each certificate followed by its
// issuer). A leaf pinned as itself wins over a CA that issued it. A CA
// entry admits a leaf when a chain from the leaf, through the presented
// intermediates, verifies to that CA at the request's time for client
// authentication, at the request's bounded cost (see pathverify); the
// signatures are checked, so a certificate that merely names the CA as its
// issuer is not admitted. Of several CA entries, the one closest to the
// leaf wins. A pinned certificate admits nothing but itself, whatever its
// extensions.
//
// A chain holding a certificate the request denies (the CA entry's own
// included, and the CA entries above it) admits nothing; when every chain
// that would admit the leaf holds one, the error is a
// *pathverify.DeniedError. pathverify.ErrTooManyChecks is returned when
// the request's budget runs out. A leaf no entry admits is nil and no
// error.
func (l *AllowList) Match(r *pathverify.Request, fp Fingerprint) (*Entry, []*x509.Certificate, error) {
	leaf := r.Leaf()
	if e := l.Lookup(fp); e != nil {
		return e, []*x509.Certificate{leaf}, nil
	}
	if l.cas == nil {
		return nil, nil, nil
	}
	chains, err := l.cas.trust().Verify(r)
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
			if e := l.Lookup(FingerprintOf(c)); e != nil && e.IsCA() {
				if best == nil || depth < bestDepth {
					best, bestDepth, bestChain = e, depth, chain[:depth+2]
				}
				break
			}
		}
	}
	return best, bestChain, nil
}
