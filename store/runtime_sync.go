package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// racyWindow: a record modified this recently may be rewritten within the
// same tick of the storage's clock (file systems stamp in coarse ticks)
// with the same size, so its stamp does not prove it unchanged; it is
// re-read until it is older (the same rule as git's "racily clean" files).
const racyWindow = 2 * time.Second

// Sync brings the snapshot up to date with storage. When the version token
// has not moved since the last load it costs that one read; otherwise every
// record is listed and stat'ed and the changed ones are read. Records that
// fail to parse are skipped (a record that parsed before keeps its last
// good version) and reported in the returned error, once per reload. A
// storage failure keeps the current snapshot and returns a StorageError.
// Sync also retries announcing local changes whose token write failed.
func (r *Runtime) Sync(ctx context.Context) error {
	var announceErr error
	if r.ann.pending() {
		if err := r.ann.announce(ctx, r.writeToken); err != nil {
			announceErr = &StorageError{fmt.Errorf("announcing runtime changes to other instances: %v", err)}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	token, err := r.readToken(ctx)
	if err != nil {
		return errors.Join(announceErr, &StorageError{fmt.Errorf("reading the runtime version record: %v", err)})
	}
	if r.loaded && token == r.token {
		return announceErr
	}
	problems, err := r.reloadLocked(ctx)
	if err != nil {
		return errors.Join(announceErr, err)
	}
	r.token, r.loaded = token, true
	return errors.Join(announceErr, problems)
}

// readToken loads the version token; "" when there is none yet.
func (r *Runtime) readToken(ctx context.Context) (string, error) {
	data, err := r.storage.Load(ctx, r.versionKey())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return string(data), err
}

// writeToken stores a new version token.
func (r *Runtime) writeToken(ctx context.Context) error {
	return r.storage.Store(ctx, r.versionKey(), []byte(newToken()))
}

// reloadLocked re-reads every record, reading only those whose stamp
// changed, and swaps in a new snapshot if anything did. It returns the
// records it skipped (joined) and, separately, a storage failure.
func (r *Runtime) reloadLocked(ctx context.Context) (problems, failure error) {
	certKeys, err := r.listJSON(ctx, r.apisDir())
	if err != nil {
		return nil, &StorageError{fmt.Errorf("listing runtime certificates: %v", err)}
	}
	denyKeys, err := r.listJSON(ctx, r.denyDir())
	if err != nil {
		return nil, &StorageError{fmt.Errorf("listing deny list: %v", err)}
	}
	var skipped []error
	now := r.now()
	changed := !r.loaded
	next := make(map[string]seenRecord, len(certKeys)+len(denyKeys))
	for _, key := range append(certKeys, denyKeys...) {
		info, err := r.storage.Stat(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, &StorageError{fmt.Errorf("reading %s: %v", key, err)}
		}
		stamp := trustedStamp(info, now)
		prev, had := r.seen[key]
		if had && stamp != "" && prev.stamp == stamp {
			next[key] = prev
			continue
		}
		data, err := r.storage.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// A record that cannot be read is not a record that is gone:
			// dropping it could drop a deny entry. Keep the last state.
			return nil, &StorageError{fmt.Errorf("loading %s: %v", key, err)}
		}
		sum := sha256.Sum256(data)
		if had && prev.sum == sum {
			prev.stamp = stamp
			next[key] = prev
			continue
		}
		rec, err := r.parseRecord(key, data)
		if err != nil {
			skipped = append(skipped, err)
			if had {
				prev.stamp = "" // read it again next time
				next[key] = prev
			}
			continue
		}
		rec.stamp, rec.sum = stamp, sum
		next[key] = rec
		changed = true
	}
	if len(next) != len(r.seen) {
		changed = true // some were removed (additions set changed above)
	}
	r.seen = next
	if changed {
		snap, dups := r.buildSnapshot(next)
		r.snap.Store(snap)
		skipped = append(skipped, dups...)
	}
	return errors.Join(skipped...), nil
}

// trustedStamp is the modification stamp of a record, or "" when it
// cannot prove the record unchanged: no modification time, or a recent one
// (racyWindow).
func trustedStamp(info certmagic.KeyInfo, now time.Time) string {
	if info.Modified.IsZero() || now.Sub(info.Modified) < racyWindow {
		return ""
	}
	return fmt.Sprintf("%d/%d", info.Modified.UnixNano(), info.Size)
}

// listJSON lists the .json keys below dir; a missing dir is empty. (The
// .json filter also skips a file storage's temporary files.)
//
// FileStorage's List walks the folder and fails with "not exist" when an
// entry it read vanishes before it stats it: a temporary file renamed into
// place, a record deleted. That must not read as "no records": only a
// folder that is itself absent is empty. This instance's own writes are
// kept out of the listing (r.listing); another instance's can still race
// it, so the listing is retried, then reported as a storage failure (the
// snapshot is kept and the next tick tries again).
func (r *Runtime) listJSON(ctx context.Context, dir string) ([]string, error) {
	const attempts = 3
	for i := 1; ; i++ {
		r.listing.Lock()
		keys, err := r.storage.List(ctx, dir, true)
		r.listing.Unlock()
		if err == nil {
			out := keys[:0]
			for _, k := range keys {
				if strings.HasSuffix(k, ".json") {
					out = append(out, k)
				}
			}
			sort.Strings(out)
			return out, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if !r.storage.Exists(ctx, dir) {
			return nil, nil
		}
		if i == attempts {
			return nil, fmt.Errorf("%v (entries vanished during the listing: writes under way elsewhere)", err)
		}
	}
}

// parseRecord parses one stored record.
func (r *Runtime) parseRecord(key string, data []byte) (seenRecord, error) {
	if strings.HasPrefix(key, r.denyDir()+"/") {
		var d DenyRecord
		if err := json.Unmarshal(data, &d); err != nil {
			return seenRecord{}, fmt.Errorf("%s: %v", key, err)
		}
		if _, err := ParseFingerprint(d.Fingerprint); err != nil {
			return seenRecord{}, fmt.Errorf("%s: %v", key, err)
		}
		return seenRecord{deny: &d}, nil
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
	return seenRecord{cert: e}, nil
}

// apiOf is the API a certificate key belongs to:
// <prefix>/apis/<api>/certs/<alias>.json.
func (r *Runtime) apiOf(key string) string {
	api, _, _ := strings.Cut(strings.TrimPrefix(key, r.apisDir()+"/"), "/")
	return api
}

// buildSnapshot indexes the records into a new snapshot, in key order. A
// certificate stored under two aliases of one API (two instances added it
// at once) is kept under the first and the other is reported.
func (r *Runtime) buildSnapshot(records map[string]seenRecord) (*Snapshot, []error) {
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	snap := &Snapshot{APIs: map[string]*AllowList{}, Deny: map[Fingerprint]DenyRecord{}}
	var dups []error
	for _, k := range keys {
		rec := records[k]
		switch {
		case rec.deny != nil:
			fp, _ := ParseFingerprint(rec.deny.Fingerprint)
			snap.Deny[fp] = *rec.deny
		case rec.cert != nil:
			api := r.apiOf(k)
			list, ok := snap.APIs[api].with(rec.cert)
			if !ok {
				dups = append(dups, fmt.Errorf("%s: the same certificate is in API '%s' as '%s'; skipped", k, api, list.Lookup(rec.cert.Fingerprint).Alias))
				continue
			}
			snap.APIs[api] = list
		}
	}
	snap.Generation = r.gen.Add(1)
	return snap, dups
}
