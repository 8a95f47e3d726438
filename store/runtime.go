package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
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
// cluster, and an in-memory Snapshot of it. Writes go to storage first and
// then refresh the snapshot; Sync re-reads storage to pick up other
// instances' writes.
type Runtime struct {
	storage certmagic.Storage
	prefix  string

	snap atomic.Pointer[Snapshot]
	gen  atomic.Uint64

	// mu serialises writes and syncs from this instance. Across instances,
	// each record has its own key, so writers never rewrite each other's
	// files except on the same alias.
	mu sync.Mutex
	// seen caches parsed records by key and modification stamp, so a sync
	// re-parses only what changed.
	seen map[string]seenRecord
}

type seenRecord struct {
	stamp string
	cert  *Entry      // for certificate records
	deny  *DenyRecord // for deny records
}

// NewRuntime makes a runtime store under prefix (e.g. "mtls_auth") in
// storage. Call Sync to load it.
func NewRuntime(storage certmagic.Storage, prefix string) *Runtime {
	r := &Runtime{storage: storage, prefix: strings.TrimSuffix(prefix, "/"), seen: map[string]seenRecord{}}
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

// AddCert stores a certificate for api. The record is checked first; a
// duplicate alias or a certificate already listed for api is a conflict.
// Nothing is written on any error.
func (r *Runtime) AddCert(ctx context.Context, api string, rec Record) (*Entry, error) {
	if err := ValidName("api", api); err != nil {
		return nil, err
	}
	e, err := entryFromRecord(rec, "admin API")
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.syncLocked(ctx); err != nil {
		return nil, err
	}
	key := r.certKey(api, rec.Alias)
	if r.storage.Exists(ctx, key) {
		return nil, fmt.Errorf("%w: alias '%s' already exists in API '%s'", ErrConflict, rec.Alias, api)
	}
	if list := r.Snapshot().APIs[api]; list != nil {
		if prev := list.Lookup(e.Fingerprint); prev != nil {
			return nil, fmt.Errorf("%w: this certificate is already in API '%s' as '%s'", ErrConflict, api, prev.Alias)
		}
	}
	if rec.AddedAt.IsZero() {
		rec.AddedAt = time.Now().UTC()
	}
	e.AddedAt = rec.AddedAt
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := r.storage.Store(ctx, key, data); err != nil {
		return nil, fmt.Errorf("storing certificate: %v", err)
	}
	return e, r.syncLocked(ctx)
}

// RemoveCert deletes alias from api.
func (r *Runtime) RemoveCert(ctx context.Context, api, alias string) error {
	if err := ValidName("api", api); err != nil {
		return err
	}
	if err := ValidName("alias", alias); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := r.certKey(api, alias)
	if !r.storage.Exists(ctx, key) {
		return fmt.Errorf("%w: no alias '%s' in API '%s'", ErrNotFound, alias, api)
	}
	if err := r.storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting certificate: %v", err)
	}
	return r.syncLocked(ctx)
}

// Deny adds a fingerprint (64 lowercase or uppercase hex digits) to the
// deny list. Denying a denied fingerprint again updates its reason.
func (r *Runtime) Deny(ctx context.Context, rec DenyRecord) (DenyRecord, error) {
	fp, err := ParseFingerprint(rec.Fingerprint)
	if err != nil {
		return rec, err
	}
	rec.Fingerprint = fp.String()
	if len(rec.Reason) > 1024 {
		return rec, fmt.Errorf("%w: reason is longer than 1024 characters", ErrInvalid)
	}
	if rec.When.IsZero() {
		rec.When = time.Now().UTC()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.storage.Store(ctx, r.denyKey(rec.Fingerprint), data); err != nil {
		return rec, fmt.Errorf("storing deny entry: %v", err)
	}
	return rec, r.syncLocked(ctx)
}

// Undeny removes a fingerprint from the deny list.
func (r *Runtime) Undeny(ctx context.Context, fingerprint string) error {
	fp, err := ParseFingerprint(fingerprint)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := r.denyKey(fp.String())
	if !r.storage.Exists(ctx, key) {
		return fmt.Errorf("%w: %s is not denied", ErrNotFound, fp)
	}
	if err := r.storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting deny entry: %v", err)
	}
	return r.syncLocked(ctx)
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

// Sync re-reads storage and swaps in a new snapshot if anything changed.
// Records that fail to parse are skipped and reported in the returned
// error (joined), without hiding the good ones. A storage failure keeps the
// current snapshot.
func (r *Runtime) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncLocked(ctx)
}

func (r *Runtime) syncLocked(ctx context.Context) error {
	certKeys, err := r.listJSON(ctx, r.apisDir())
	if err != nil {
		return &StorageError{fmt.Errorf("listing runtime certificates: %v", err)}
	}
	denyKeys, err := r.listJSON(ctx, r.denyDir())
	if err != nil {
		return &StorageError{fmt.Errorf("listing deny list: %v", err)}
	}
	var problems []error
	changed := false
	next := make(map[string]seenRecord, len(certKeys)+len(denyKeys))
	for _, key := range append(certKeys, denyKeys...) {
		info, err := r.storage.Stat(ctx, key)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed between List and Stat
			}
			return &StorageError{fmt.Errorf("reading %s: %v", key, err)}
		}
		stamp := fmt.Sprintf("%d/%d", info.Modified.UnixNano(), info.Size)
		if prev, ok := r.seen[key]; ok && prev.stamp == stamp {
			next[key] = prev
			continue
		}
		changed = true
		rec, err := r.loadRecord(ctx, key, stamp)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		next[key] = rec
	}
	if len(next) != len(r.seen) {
		changed = true
	}
	if !changed && r.Snapshot() != emptySnapshot {
		return errors.Join(problems...)
	}
	snap, err := r.buildSnapshot(next)
	if err != nil {
		return err
	}
	r.seen = next
	r.snap.Store(snap)
	return errors.Join(problems...)
}

// listJSON lists the .json keys below dir; a missing dir is empty.
func (r *Runtime) listJSON(ctx context.Context, dir string) ([]string, error) {
	keys, err := r.storage.List(ctx, dir, true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	out := keys[:0]
	for _, k := range keys {
		if strings.HasSuffix(k, ".json") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// loadRecord reads and parses one stored record.
func (r *Runtime) loadRecord(ctx context.Context, key, stamp string) (seenRecord, error) {
	data, err := r.storage.Load(ctx, key)
	if err != nil {
		return seenRecord{}, fmt.Errorf("loading %s: %v", key, err)
	}
	if strings.HasPrefix(key, r.denyDir()+"/") {
		var d DenyRecord
		if err := json.Unmarshal(data, &d); err != nil {
			return seenRecord{}, fmt.Errorf("%s: %v", key, err)
		}
		if _, err := ParseFingerprint(d.Fingerprint); err != nil {
			return seenRecord{}, fmt.Errorf("%s: %v", key, err)
		}
		return seenRecord{stamp: stamp, deny: &d}, nil
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return seenRecord{}, fmt.Errorf("%s: %v", key, err)
	}
	e, err := entryFromRecord(rec, key)
	if err != nil {
		return seenRecord{}, fmt.Errorf("%s: %v", key, err)
	}
	if want := path.Base(key); want != rec.Alias+".json" {
		return seenRecord{}, fmt.Errorf("%s: alias '%s' does not match its key", key, rec.Alias)
	}
	return seenRecord{stamp: stamp, cert: e}, nil
}

// buildSnapshot indexes the parsed records into a new snapshot.
func (r *Runtime) buildSnapshot(records map[string]seenRecord) (*Snapshot, error) {
	perAPI := map[string][]*Entry{}
	deny := map[Fingerprint]DenyRecord{}
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec := records[k]
		switch {
		case rec.deny != nil:
			fp, _ := ParseFingerprint(rec.deny.Fingerprint)
			deny[fp] = *rec.deny
		case rec.cert != nil:
			// key: <prefix>/apis/<api>/certs/<alias>.json
			rel := strings.TrimPrefix(k, r.apisDir()+"/")
			api, _, _ := strings.Cut(rel, "/")
			perAPI[api] = append(perAPI[api], rec.cert)
		}
	}
	snap := &Snapshot{APIs: make(map[string]*AllowList, len(perAPI)), Deny: deny, Generation: r.gen.Add(1)}
	for api, entries := range perAPI {
		list, err := NewAllowList(entries)
		if err != nil {
			// Two instances raced the same certificate under two aliases:
			// keep the first alias of each certificate.
			list = dedupe(entries)
		}
		snap.APIs[api] = list
	}
	return snap, nil
}

// dedupe builds an allow list keeping the first entry of each certificate.
func dedupe(entries []*Entry) *AllowList {
	seen := map[Fingerprint]bool{}
	var kept []*Entry
	for _, e := range entries {
		if !seen[e.Fingerprint] {
			seen[e.Fingerprint] = true
			kept = append(kept, e)
		}
	}
	list, _ := NewAllowList(kept)
	return list
}
