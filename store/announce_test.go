package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestAnnounceCoversEveryChange: each announce returns only after a token
// write that began after the caller's change, and parallel callers share
// writes.
func TestAnnounceCoversEveryChange(t *testing.T) {
	t.Parallel()
	a := newAnnouncer()
	var changes atomic.Int64 // changes stored so far
	var mu sync.Mutex
	var finished []int64 // for each finished write, the changes stored when it began
	var writes atomic.Int64
	write := func(context.Context) error {
		began := changes.Load()
		writes.Add(1)
		time.Sleep(time.Millisecond)
		mu.Lock()
		finished = append(finished, began)
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				mine := changes.Add(1)
				assert.NoError(t, a.announce(context.Background(), write))
				mu.Lock()
				covered := false
				for _, began := range finished {
					covered = covered || began >= mine
				}
				mu.Unlock()
				assert.True(t, covered, "change %d returned before a write that began after it", mine)
			}
		}()
	}
	wg.Wait()
	assert.Less(t, writes.Load(), int64(200), "parallel changes share token writes")
	assert.False(t, a.pending())
}

func TestAnnounceFailureIsPending(t *testing.T) {
	t.Parallel()
	a := newAnnouncer()
	down := errors.New("down")
	assert.ErrorIs(t, a.announce(context.Background(), func(context.Context) error { return down }), down)
	assert.True(t, a.pending())
	assert.NoError(t, a.announce(context.Background(), func(context.Context) error { return nil }))
	assert.False(t, a.pending())
}
