package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// The version record is how instances sharing a storage learn that
// something changed without re-reading every record: after every change a
// writer stores a fresh random token there, and each sync tick reads it (one
// storage operation) and reloads everything only when it moved.
//
// Why this is safe with several writers and no compare-and-swap:
//   - a writer stores its records first and the token after, so a reader
//     that saw a token also sees every change that token announced;
//   - a reader reads the token before listing, and adopts that token only
//     when the reload built on it succeeds; a change announced after the
//     read carries a token the reader has not adopted, so the next tick
//     reloads again;
//   - tokens are random, so no write leaves the token as any reader last
//     saw it, even when two writers overwrite each other's token;
//   - a writer never adopts its own token: another instance's token may
//     have been overwritten by it, so the writer reloads on its next tick
//     like everyone else (one full read per tick while changes go on,
//     never one per change).

// newToken makes a version token.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// announcer writes the version token after changes, one write for all the
// changes stored while the previous write was under way (group commit), so
// parallel writers share token writes instead of queueing one each.
type announcer struct {
	mu      sync.Mutex
	cond    sync.Cond
	asked   uint64 // changes stored so far that want announcing
	covered uint64 // changes stored before a finished token write began
	writing bool
	lastErr error // the last token write's result; non-nil makes Sync retry it
}

func newAnnouncer() *announcer {
	a := &announcer{}
	a.cond.L = &a.mu
	return a
}

// announce returns after a token write that began after the caller's
// change was stored, with that write's error. write stores a new token.
func (a *announcer) announce(ctx context.Context, write func(context.Context) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	mine := a.asked
	for a.covered < mine {
		if a.writing {
			a.cond.Wait()
			continue
		}
		a.writing = true
		target := a.asked
		a.mu.Unlock()
		// The change is stored: announce it even if the caller has gone.
		err := write(context.WithoutCancel(ctx))
		a.mu.Lock()
		a.writing = false
		// On failure too: lastErr makes Sync retry, and a later write that
		// succeeds covers these changes since it begins after them.
		a.covered = target
		a.lastErr = err
		a.cond.Broadcast()
	}
	return a.lastErr
}

// pending reports whether the last token write failed.
func (a *announcer) pending() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr != nil
}
