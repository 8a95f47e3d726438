package store

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"
)

// maxParallelWrites bounds the storage writes one bulk add has in flight.
const maxParallelWrites = 8

// AddCert stores a certificate for api; see AddCerts.
func (r *Runtime) AddCert(ctx context.Context, api string, rec Record) (*Entry, error) {
	entries, err := r.AddCerts(ctx, api, []Record{rec})
	var item *ItemError
	if errors.As(err, &item) {
		return nil, item.Err // one record: no element numbers
	}
	if err != nil {
		return nil, err
	}
	return entries[0], nil
}

// AddCerts stores certificates for api, all or nothing. Every record is
// checked first: a bad alias or PEM, a certificate that is expired or not
// yet valid, an alias or certificate given twice, an alias that exists or a
// certificate already listed for api; the first problem is returned as an
// *ItemError naming the element and nothing is written. A storage failure
// while writing removes what this call wrote and returns a StorageError.
// Costs one existence check and one write per record, one version token
// write, and O(log n) in memory per record.
func (r *Runtime) AddCerts(ctx context.Context, api string, recs []Record) ([]*Entry, error) {
	if err := ValidName("api", api); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no certificates given", ErrInvalid)
	}
	now := r.now().UTC()
	entries := make([]*Entry, len(recs))
	keys := make([]string, len(recs))
	data := make([][]byte, len(recs))
	aliasAt := make(map[string]int, len(recs))
	certAt := make(map[Fingerprint]int, len(recs))
	for i, rec := range recs {
		e, err := entryFromRecord(rec, "admin API")
		if err == nil {
			err = checkValidity(e.Cert, now)
		}
		if err != nil {
			return nil, &ItemError{i, err}
		}
		if j, dup := aliasAt[rec.Alias]; dup {
			return nil, &ItemError{i, fmt.Errorf("%w: alias '%s' is also given by element %d", ErrInvalid, rec.Alias, j)}
		}
		if j, dup := certAt[e.Fingerprint]; dup {
			return nil, &ItemError{i, fmt.Errorf("%w: the same certificate is also given by element %d", ErrInvalid, j)}
		}
		aliasAt[rec.Alias], certAt[e.Fingerprint] = i, i
		if rec.AddedAt.IsZero() {
			rec.AddedAt = now
		}
		e.AddedAt = rec.AddedAt
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, &ItemError{i, err}
		}
		entries[i], keys[i], data[i] = e, r.certKey(api, rec.Alias), b
	}

	if err := r.claimAdds(api, keys, entries); err != nil {
		return nil, err
	}
	defer r.release(api, keys, entries)
	// Records another instance stored that this one has not loaded yet.
	for i, key := range keys {
		if r.storage.Exists(ctx, key) {
			return nil, &ItemError{i, fmt.Errorf("%w: alias '%s' already exists in API '%s'", ErrConflict, entries[i].Alias, api)}
		}
	}
	// From here on the storage changes: finish even if the caller leaves.
	ctx = context.WithoutCancel(ctx)
	if i, err := r.storeAll(ctx, keys, data); err != nil {
		return nil, &ItemError{i, &StorageError{fmt.Errorf("storing certificate '%s': %v", entries[i].Alias, err)}}
	}
	r.mu.Lock()
	list := r.Snapshot().APIs[api]
	for i, e := range entries {
		r.seen[keys[i]] = seenRecord{sum: sha256.Sum256(data[i]), cert: e}
		list, _ = list.with(e)
	}
	r.swapLocked(func(s *Snapshot) *Snapshot { return s.withAPI(api, list) })
	r.mu.Unlock()
	_ = r.ann.announce(ctx, r.writeToken) // a failure is retried by Sync
	return entries, nil
}

// checkValidity refuses a certificate outside its validity period now.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: the certificate expired on %s", ErrInvalid, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: the certificate is not valid before %s", ErrInvalid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// storeAll writes the records, several at a time. If any write fails it
// deletes the ones that were written, announces that if anything was (a
// reload elsewhere may have seen them), and returns the failed index.
func (r *Runtime) storeAll(ctx context.Context, keys []string, data [][]byte) (int, error) {
	written := make([]bool, len(keys))
	failedAt, failure := -1, error(nil)
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallelWrites)
	for i := range keys {
		mu.Lock()
		stop := failure != nil
		mu.Unlock()
		if stop {
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := r.write(func() error { return r.storage.Store(ctx, keys[i], data[i]) })
			mu.Lock()
			defer mu.Unlock()
			if err != nil && (failure == nil || i < failedAt) {
				failedAt, failure = i, err
			}
			written[i] = err == nil
		}()
	}
	wg.Wait()
	if failure == nil {
		return -1, nil
	}
	wrote := false
	for i, ok := range written {
		if ok {
			wrote = true
			// Best effort: if this fails too, the next reload anywhere
			// loads the record, as if it had been added.
			_ = r.write(func() error { return r.storage.Delete(ctx, keys[i]) })
		}
	}
	if wrote {
		_ = r.ann.announce(ctx, r.writeToken)
	}
	return failedAt, failure
}

// RemoveCert deletes alias from api.
func (r *Runtime) RemoveCert(ctx context.Context, api, alias string) error {
	if err := ValidName("api", api); err != nil {
		return err
	}
	if err := ValidName("alias", alias); err != nil {
		return err
	}
	key := r.certKey(api, alias)
	if err := r.claim(key); err != nil {
		return err
	}
	defer r.release("", []string{key}, nil)
	if !r.storage.Exists(ctx, key) {
		return fmt.Errorf("%w: no alias '%s' in API '%s'", ErrNotFound, alias, api)
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.write(func() error { return r.storage.Delete(ctx, key) }); err != nil {
		return &StorageError{fmt.Errorf("deleting certificate: %v", err)}
	}
	r.mu.Lock()
	delete(r.seen, key)
	list := r.Snapshot().APIs[api].without(alias)
	r.swapLocked(func(s *Snapshot) *Snapshot { return s.withAPI(api, list) })
	r.mu.Unlock()
	_ = r.ann.announce(ctx, r.writeToken)
	return nil
}

// UpdateCert changes the tier and meta of alias in api: edit gets the
// stored record and may change its Tier and Meta (anything else it changes
// is put back). The record is read from storage, so the change applies to
// the latest version whichever instance wrote it.
func (r *Runtime) UpdateCert(ctx context.Context, api, alias string, edit func(*Record) error) (*Entry, error) {
	if err := ValidName("api", api); err != nil {
		return nil, err
	}
	if err := ValidName("alias", alias); err != nil {
		return nil, err
	}
	key := r.certKey(api, alias)
	if err := r.claim(key); err != nil {
		return nil, err
	}
	defer r.release("", []string{key}, nil)
	stored, err := r.storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no alias '%s' in API '%s'", ErrNotFound, alias, api)
	}
	if err != nil {
		return nil, &StorageError{fmt.Errorf("loading certificate: %v", err)}
	}
	var rec Record
	if err := json.Unmarshal(stored, &rec); err != nil {
		return nil, fmt.Errorf("the stored record %s does not parse: %v", key, err)
	}
	orig := rec
	if err := edit(&rec); err != nil {
		return nil, err
	}
	rec.Alias, rec.PEM, rec.CA, rec.AddedAt = orig.Alias, orig.PEM, orig.CA, orig.AddedAt
	e, err := entryFromRecord(rec, "admin API")
	if err != nil {
		return nil, fmt.Errorf("the stored record %s: %v", key, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.write(func() error { return r.storage.Store(ctx, key, data) }); err != nil {
		return nil, &StorageError{fmt.Errorf("storing certificate: %v", err)}
	}
	r.mu.Lock()
	r.seen[key] = seenRecord{sum: sha256.Sum256(data), cert: e}
	list, _ := r.Snapshot().APIs[api].with(e)
	r.swapLocked(func(s *Snapshot) *Snapshot { return s.withAPI(api, list) })
	r.mu.Unlock()
	_ = r.ann.announce(ctx, r.writeToken)
	return e, nil
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
		rec.When = r.now().UTC()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	key := r.denyKey(rec.Fingerprint)
	if err := r.claim(key); err != nil {
		return rec, err
	}
	defer r.release("", []string{key}, nil)
	ctx = context.WithoutCancel(ctx)
	if err := r.write(func() error { return r.storage.Store(ctx, key, data) }); err != nil {
		return rec, &StorageError{fmt.Errorf("storing deny entry: %v", err)}
	}
	r.mu.Lock()
	d := rec
	r.seen[key] = seenRecord{sum: sha256.Sum256(data), deny: &d}
	r.swapLocked(func(s *Snapshot) *Snapshot { return s.withDeny(fp, &d) })
	r.mu.Unlock()
	_ = r.ann.announce(ctx, r.writeToken)
	return rec, nil
}

// Undeny removes a fingerprint from the deny list.
func (r *Runtime) Undeny(ctx context.Context, fingerprint string) error {
	fp, err := ParseFingerprint(fingerprint)
	if err != nil {
		return err
	}
	key := r.denyKey(fp.String())
	if err := r.claim(key); err != nil {
		return err
	}
	defer r.release("", []string{key}, nil)
	if !r.storage.Exists(ctx, key) {
		return fmt.Errorf("%w: %s is not denied", ErrNotFound, fp)
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.write(func() error { return r.storage.Delete(ctx, key) }); err != nil {
		return &StorageError{fmt.Errorf("deleting deny entry: %v", err)}
	}
	r.mu.Lock()
	delete(r.seen, key)
	r.swapLocked(func(s *Snapshot) *Snapshot { return s.withDeny(fp, nil) })
	r.mu.Unlock()
	_ = r.ann.announce(ctx, r.writeToken)
	return nil
}

// write runs a storage write or delete of a record outside any listing of
// this instance (see listJSON).
func (r *Runtime) write(f func() error) error {
	r.listing.RLock()
	defer r.listing.RUnlock()
	return f()
}

// claim marks key as changing; a second request on it is a conflict.
func (r *Runtime) claim(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[key] {
		return fmt.Errorf("%w: %s is being changed by another request; try again", ErrConflict, key)
	}
	r.busy[key] = true
	return nil
}

// claimAdds checks new certificates against what this instance knows and
// against other adds under way, and claims their keys and fingerprints.
func (r *Runtime) claimAdds(api string, keys []string, entries []*Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.Snapshot().APIs[api]
	for i, e := range entries {
		if _, ok := r.seen[keys[i]]; ok {
			return &ItemError{i, fmt.Errorf("%w: alias '%s' already exists in API '%s'", ErrConflict, e.Alias, api)}
		}
		if prev := list.Lookup(e.Fingerprint); prev != nil {
			return &ItemError{i, fmt.Errorf("%w: this certificate is already in API '%s' as '%s'", ErrConflict, api, prev.Alias)}
		}
		if r.busy[keys[i]] || r.claimed[apiFingerprint{api, e.Fingerprint}] {
			return &ItemError{i, fmt.Errorf("%w: alias '%s' or its certificate is being added to API '%s' by another request", ErrConflict, e.Alias, api)}
		}
	}
	for i, e := range entries {
		r.busy[keys[i]] = true
		r.claimed[apiFingerprint{api, e.Fingerprint}] = true
	}
	return nil
}

// release ends the claims of claim and claimAdds.
func (r *Runtime) release(api string, keys []string, entries []*Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.busy, k)
	}
	for _, e := range entries {
		delete(r.claimed, apiFingerprint{api, e.Fingerprint})
	}
}

// swapLocked publishes change(current) as the new snapshot.
func (r *Runtime) swapLocked(change func(*Snapshot) *Snapshot) {
	next := change(r.Snapshot())
	next.Generation = r.gen.Add(1)
	r.snap.Store(next)
}

// withAPI is s with api's list replaced (nil removes it). Copies the map of
// APIs, not the lists.
func (s *Snapshot) withAPI(api string, list *AllowList) *Snapshot {
	apis := make(map[string]*AllowList, len(s.APIs)+1)
	for k, v := range s.APIs {
		apis[k] = v
	}
	if list == nil {
		delete(apis, api)
	} else {
		apis[api] = list
	}
	return &Snapshot{APIs: apis, Deny: s.Deny}
}

// withDeny is s with fp denied as d (nil removes it).
func (s *Snapshot) withDeny(fp Fingerprint, d *DenyRecord) *Snapshot {
	deny := make(map[Fingerprint]DenyRecord, len(s.Deny)+1)
	for k, v := range s.Deny {
		deny[k] = v
	}
	if d == nil {
		delete(deny, fp)
	} else {
		deny[fp] = *d
	}
	return &Snapshot{APIs: s.APIs, Deny: deny}
}
