package store

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkPmap asserts m holds exactly want.
func checkPmap(t *testing.T, m pmap[int, int], want map[int]int) {
	t.Helper()
	require.Equal(t, len(want), m.Len())
	for k, v := range want {
		got, ok := m.get(k)
		require.True(t, ok, "key %d missing", k)
		require.Equal(t, v, got, "key %d", k)
	}
	seen := map[int]int{}
	m.each(func(k, v int) bool {
		_, dup := seen[k]
		require.False(t, dup, "key %d listed twice", k)
		seen[k] = v
		return true
	})
	require.Equal(t, want, seen)
}

func TestPmapAgainstMap(t *testing.T) {
	t.Parallel()
	hashes := map[string]func(int) uint64{
		"good hash":            func(k int) uint64 { return uint64(k) * 0x9E3779B97F4A7C15 },
		"identity":             func(k int) uint64 { return uint64(k) },
		"high bits only":       func(k int) uint64 { return uint64(k) << 50 },
		"many full collisions": func(k int) uint64 { return uint64(k % 7) },
		"one hash":             func(int) uint64 { return 42 },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, 2))
			m := newPmap[int, int](hash)
			want := map[int]int{}
			// Old versions must stay as they were: keep some and check them
			// at the end.
			type version struct {
				m    pmap[int, int]
				want map[int]int
			}
			var kept []version
			for i := 0; i < 3000; i++ {
				k := rng.IntN(400)
				if rng.IntN(3) == 0 {
					m = m.del(k)
					delete(want, k)
				} else {
					m = m.set(k, i)
					want[k] = i
				}
				if i%250 == 0 {
					c := make(map[int]int, len(want))
					for k, v := range want {
						c[k] = v
					}
					kept = append(kept, version{m, c})
				}
				if i%100 == 0 {
					checkPmap(t, m, want)
				}
			}
			checkPmap(t, m, want)
			for _, v := range kept {
				checkPmap(t, v.m, v.want)
			}
			_, ok := m.get(1000)
			assert.False(t, ok, "a key never set is absent")
			for k := range want {
				m = m.del(k)
			}
			checkPmap(t, m, map[int]int{})
			assert.Nil(t, m.root, "deleting every key leaves no nodes")
		})
	}
}

func TestPmapDeleteMissingKeepsMap(t *testing.T) {
	t.Parallel()
	m := newPmap[int, int](func(k int) uint64 { return uint64(k % 3) })
	m = m.set(1, 1).set(4, 4)
	same := m.del(7) // same hash as 1 and 4, not there
	assert.Same(t, m.root, same.root)
	assert.Equal(t, 2, same.Len())
	same = m.del(2) // a hash nobody has
	assert.Same(t, m.root, same.root)
}

func TestPmapEachStops(t *testing.T) {
	t.Parallel()
	m := newPmap[int, int](func(k int) uint64 { return uint64(k) })
	for i := 0; i < 100; i++ {
		m = m.set(i, i)
	}
	calls := 0
	m.each(func(int, int) bool { calls++; return calls < 5 })
	assert.Equal(t, 5, calls)
}
