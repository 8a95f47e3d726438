package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
)

// Errors the runtime store returns for bad requests; callers map them to
// HTTP statuses (400, 404, 409).
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// StorageError is a failure of the storage itself (as opposed to a bad
// record in it): the snapshot was kept as it was.
type StorageError struct{ Err error }

func (e *StorageError) Error() string { return e.Err.Error() }
func (e *StorageError) Unwrap() error { return e.Err }

// IsStorageError reports whether err includes a StorageError.
func IsStorageError(err error) bool {
	var se *StorageError
	return errors.As(err, &se)
}

// ItemError is a bad element of a bulk request; it wraps ErrInvalid or
// ErrConflict (or a StorageError), so callers map it as the single form.
type ItemError struct {
	// Index is the element's position in the request, from 0.
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("element %d: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// Record is a runtime certificate as persisted in storage. It pins exactly
// that certificate unless CA is set.
type Record struct {
	Alias string            `json:"alias"`
	PEM   string            `json:"pem"`
	Tier  string            `json:"tier,omitempty"`
	Meta  map[string]string `json:"meta,omitempty"`
	// CA admits every certificate this CA issued; the certificate must then
	// be a CA (see CheckCA).
	CA      bool      `json:"ca,omitempty"`
	AddedAt time.Time `json:"added_at"`
}

// DenyRecord is one denied certificate, refused on every route.
type DenyRecord struct {
	Fingerprint string    `json:"fingerprint"`
	Reason      string    `json:"reason,omitempty"`
	When        time.Time `json:"when"`
}

// Snapshot is an immutable view of the runtime state: per-API allow lists
// and the deny list. The request path reads it without locks.
type Snapshot struct {
	// APIs maps an API name to its runtime allow list.
	APIs map[string]*AllowList
	// Deny maps a fingerprint to why it was denied.
	Deny map[Fingerprint]DenyRecord
	// Generation changes whenever the content changes.
	Generation uint64
}

// emptySnapshot is what a store holds before its first load.
var emptySnapshot = &Snapshot{APIs: map[string]*AllowList{}, Deny: map[Fingerprint]DenyRecord{}}

// Runtime keeps certificates added and removed at runtime in a
// certmagic.Storage, the source of truth shared by every instance of a
// cluster, and an in-memory Snapshot of it.
//
// Costs: a change is O(1) storage operations (a check, the record, the
// version token) plus an O(log n) update of the in-memory index; Sync is one
// storage read (the version token) when nothing changed, and a full re-read
// (list, stat each record, load the changed ones) only when the token moved.
// See announce.go for why that sees every other instance's changes.
type Runtime struct {
	storage certmagic.Storage
	prefix  string
	// now is the clock for upload validity checks and for telling
	// trustworthy modification stamps (tests replace it).
	now func() time.Time

	snap atomic.Pointer[Snapshot]
	gen  atomic.Uint64
	ann  *announcer

	// mu guards the fields below and every snapshot swap. It is not held
	// across this instance's storage writes, so parallel requests write in
	// parallel; a reload holds it across its reads, so a local change
	// applies wholly before or wholly after a reload.
	mu sync.Mutex
	// seen holds every record this instance knows, by storage key, with
	// what tells whether it changed.
	seen map[string]seenRecord
	// busy holds the keys, and claimed the per-API fingerprints, of local
	// changes under way, so two requests never race on one record.
	busy    map[string]bool
	claimed map[apiFingerprint]bool
	// token is the version token the snapshot was loaded at; loaded tells
	// that a full load has succeeded.
	token  string
	loaded bool

	// listing is held by a reload's listings, and shared by this
	// instance's writes and deletes of records, so a listing never sees a
	// file of ours vanish under it (see listJSON).
	listing sync.RWMutex
}

type apiFingerprint struct {
	api string
	fp  Fingerprint
}

type seenRecord struct {
	// stamp is the storage's modification stamp when it can be trusted to
	// change with the content, else "" (then the record is re-read on the
	// next reload).
	stamp string
	// sum is the SHA-256 of the stored bytes.
	sum  [sha256.Size]byte
	cert *Entry      // for certificate records
	deny *DenyRecord // for deny records
}

// NewRuntime makes a runtime store under prefix (e.g. "mtls_auth") in
// storage. Call Sync to load it.
func NewRuntime(storage certmagic.Storage, prefix string) *Runtime {
	r := &Runtime{
		storage: storage,
		prefix:  strings.TrimSuffix(prefix, "/"),
		now:     time.Now,
		ann:     newAnnouncer(),
		seen:    map[string]seenRecord{},
		busy:    map[string]bool{},
		claimed: map[apiFingerprint]bool{},
	}
	r.snap.Store(emptySnapshot)
	return r
}

// Snapshot returns the current view. Never nil.
func (r *Runtime) Snapshot() *Snapshot { return r.snap.Load() }

func (r *Runtime) certsDir(api string) string { return path.Join(r.prefix, "apis", api, "certs") }
func (r *Runtime) certKey(api, alias string) string {
	return path.Join(r.certsDir(api), alias+".json")
}
func (r *Runtime) denyDir() string          { return path.Join(r.prefix, "deny") }
func (r *Runtime) denyKey(fp string) string { return path.Join(r.denyDir(), fp+".json") }
func (r *Runtime) apisDir() string          { return path.Join(r.prefix, "apis") }

// versionKey holds the version token (announce.go). It is outside the
// record directories, so listing records never returns it.
func (r *Runtime) versionKey() string { return path.Join(r.prefix, "version") }

// ValidName checks an API name or alias: it becomes a storage path segment,
// so it is restricted to letters, digits, '.', '_' and '-', 1 to 128
// characters, not starting with '.'.
func ValidName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, kind)
	}
	if len(s) > 128 {
		return fmt.Errorf("%w: %s is longer than 128 characters", ErrInvalid, kind)
	}
	if s[0] == '.' {
		return fmt.Errorf("%w: %s must not start with '.'", ErrInvalid, kind)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s may hold only letters, digits, '.', '_' and '-'", ErrInvalid, kind)
		}
	}
	return nil
}

// entryFromRecord parses and checks a record.
func entryFromRecord(rec Record, source string) (*Entry, error) {
	if err := ValidName("alias", rec.Alias); err != nil {
		return nil, err
	}
	if strings.TrimSpace(rec.PEM) == "" {
		return nil, fmt.Errorf("%w: pem is required", ErrInvalid)
	}
	if !strings.Contains(rec.PEM, "-----BEGIN") {
		return nil, fmt.Errorf("%w: pem must be a PEM-encoded certificate", ErrInvalid)
	}
	certs, err := ParseCertificates([]byte(rec.PEM), "pem")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%w: pem holds %d certificates; give one certificate per alias", ErrInvalid, len(certs))
	}
	e, err := NewEntry(rec.Alias, certs[0], rec.CA, source)
	if err != nil {
		return nil, fmt.Errorf("%w: \"ca\": true: %v; without \"ca\" the record pins exactly this certificate", ErrInvalid, err)
	}
	e.Tier, e.Meta, e.AddedAt = rec.Tier, rec.Meta, rec.AddedAt
	return e, nil
}

// ParseFingerprint reads a SHA-256 fingerprint in hex, with or without
// colons.
func ParseFingerprint(s string) (Fingerprint, error) {
	var fp Fingerprint
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if len(clean) != 2*len(fp) {
		return fp, fmt.Errorf("%w: fingerprint must be the SHA-256 of the certificate, 64 hex digits", ErrInvalid)
	}
	for i := 0; i < len(fp); i++ {
		hi, ok1 := unhex(clean[2*i])
		lo, ok2 := unhex(clean[2*i+1])
		if !ok1 || !ok2 {
			return fp, fmt.Errorf("%w: fingerprint must be hex", ErrInvalid)
		}
		fp[i] = hi<<4 | lo
	}
	return fp, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
