package store

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// memStorage is an in-memory certmagic.Storage whose modification times
// come from a clock the test controls (a file system stamps in coarse ticks;
// a frozen clock is the worst case of that).
type memStorage struct {
	mu    sync.Mutex
	files map[string]memFile
	clock func() time.Time
}

type memFile struct {
	data []byte
	mod  time.Time
}

func newMemStorage(clock func() time.Time) *memStorage {
	return &memStorage{files: map[string]memFile{}, clock: clock}
}

func (m *memStorage) Lock(context.Context, string) error   { return nil }
func (m *memStorage) Unlock(context.Context, string) error { return nil }

func (m *memStorage) Store(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[key] = memFile{data: append([]byte(nil), value...), mod: m.clock()}
	return nil
}

func (m *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), f.data...), nil
}

// Delete removes key and everything below it, like FileStorage.
func (m *memStorage) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.files {
		if k == key || strings.HasPrefix(k, key+"/") {
			delete(m.files, k)
		}
	}
	return nil
}

// Exists is true for a file, and for a folder (a prefix of files), like
// FileStorage.
func (m *memStorage) Exists(_ context.Context, key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.files {
		if k == key || strings.HasPrefix(k, key+"/") {
			return true
		}
	}
	return false
}

// List returns the files below prefix (recursive only; the runtime needs
// no more).
func (m *memStorage) List(_ context.Context, prefix string, _ bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.files {
		if strings.HasPrefix(k, prefix+"/") {
			out = append(out, k)
		}
	}
	if out == nil {
		return nil, fs.ErrNotExist
	}
	sort.Strings(out)
	return out, nil
}

func (m *memStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[key]
	if !ok {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, Modified: f.mod, Size: int64(len(f.data)), IsTerminal: true}, nil
}

// countingStorage counts the operations made on a storage and can fail or
// interleave some of them.
type countingStorage struct {
	certmagic.Storage
	mu    sync.Mutex
	calls map[string]int
	// fail, if set, is asked before each operation; an error is returned
	// instead of doing it.
	fail func(op, key string) error
	// before, if set, runs before each operation (outside the lock).
	before func(op, key string)
}

func newCounting(s certmagic.Storage) *countingStorage {
	return &countingStorage{Storage: s, calls: map[string]int{}}
}

func (c *countingStorage) op(op, key string) error {
	c.mu.Lock()
	c.calls[op]++
	fail, before := c.fail, c.before
	c.mu.Unlock()
	if before != nil {
		before(op, key)
	}
	if fail != nil {
		return fail(op, key)
	}
	return nil
}

// counts returns the operations counted since the last call and resets.
func (c *countingStorage) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = map[string]int{}
	return out
}

func (c *countingStorage) setFail(f func(op, key string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = f
}

func (c *countingStorage) setBefore(f func(op, key string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.before = f
}

func (c *countingStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := c.op("Store", key); err != nil {
		return err
	}
	return c.Storage.Store(ctx, key, value)
}

func (c *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := c.op("Load", key); err != nil {
		return nil, err
	}
	return c.Storage.Load(ctx, key)
}

func (c *countingStorage) Delete(ctx context.Context, key string) error {
	if err := c.op("Delete", key); err != nil {
		return err
	}
	return c.Storage.Delete(ctx, key)
}

func (c *countingStorage) Exists(ctx context.Context, key string) bool {
	if err := c.op("Exists", key); err != nil {
		return true // what FileStorage answers when it cannot tell
	}
	return c.Storage.Exists(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if err := c.op("List", prefix); err != nil {
		return nil, err
	}
	return c.Storage.List(ctx, prefix, recursive)
}

func (c *countingStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := c.op("Stat", key); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return c.Storage.Stat(ctx, key)
}
