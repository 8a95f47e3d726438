package store

import "math/bits"

// pmap is a persistent hash map (a hash array mapped trie): set and del
// return a new map that shares all but the O(log32 n) nodes on the changed
// path with the old one, which stays valid and unchanged. A runtime allow
// list of 10,000 certificates thus takes or drops one certificate by copying
// about three small nodes, while requests keep reading the previous list
// without locks.
//
// Keys are placed by a 64-bit hash, 5 bits per level; keys whose hashes are
// fully equal share a leaf (a short list), so a weak hash costs speed, never
// correctness. The zero pmap is not usable: make one with newPmap.
type pmap[K comparable, V any] struct {
	root *pnode[K, V]
	n    int
	hash func(K) uint64
}

const (
	pbits = 5
	pmask = 1<<pbits - 1
)

type pnode[K comparable, V any] struct {
	bitmap uint32 // which of the 32 slots are used
	slots  []pslot[K, V]
}

// pslot is a sub-trie or a leaf, never both.
type pslot[K comparable, V any] struct {
	node *pnode[K, V]
	leaf *pleaf[K, V]
}

// pleaf holds the keys of one full hash; almost always exactly one.
type pleaf[K comparable, V any] struct {
	hash uint64
	kvs  []pkv[K, V]
}

type pkv[K comparable, V any] struct {
	k K
	v V
}

func newPmap[K comparable, V any](hash func(K) uint64) pmap[K, V] {
	return pmap[K, V]{hash: hash}
}

// Len is the number of keys.
func (m pmap[K, V]) Len() int { return m.n }

// get finds k.
func (m pmap[K, V]) get(k K) (V, bool) {
	var zero V
	h := m.hash(k)
	n := m.root
	for shift := uint(0); n != nil; shift += pbits {
		bit := uint32(1) << (h >> shift & pmask)
		if n.bitmap&bit == 0 {
			return zero, false
		}
		s := n.slots[bits.OnesCount32(n.bitmap&(bit-1))]
		if s.node != nil {
			n = s.node
			continue
		}
		if s.leaf.hash != h {
			return zero, false
		}
		for _, kv := range s.leaf.kvs {
			if kv.k == k {
				return kv.v, true
			}
		}
		return zero, false
	}
	return zero, false
}

// set returns m with k mapped to v.
func (m pmap[K, V]) set(k K, v V) pmap[K, V] {
	h := m.hash(k)
	if m.root == nil {
		m.root = &pnode[K, V]{}
	}
	var added bool
	m.root, added = m.root.set(0, h, k, v)
	if added {
		m.n++
	}
	return m
}

// del returns m without k.
func (m pmap[K, V]) del(k K) pmap[K, V] {
	if m.root == nil {
		return m
	}
	root, removed := m.root.del(0, m.hash(k), k)
	if removed {
		m.root = root
		m.n--
	}
	return m
}

// each calls f for every key and value, in no particular order, until f
// returns false.
func (m pmap[K, V]) each(f func(K, V) bool) {
	if m.root != nil {
		m.root.each(f)
	}
}

func (n *pnode[K, V]) each(f func(K, V) bool) bool {
	for _, s := range n.slots {
		if s.node != nil {
			if !s.node.each(f) {
				return false
			}
			continue
		}
		for _, kv := range s.leaf.kvs {
			if !f(kv.k, kv.v) {
				return false
			}
		}
	}
	return true
}

func (n *pnode[K, V]) set(shift uint, h uint64, k K, v V) (*pnode[K, V], bool) {
	bit := uint32(1) << (h >> shift & pmask)
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	if n.bitmap&bit == 0 {
		slots := make([]pslot[K, V], len(n.slots)+1)
		copy(slots, n.slots[:pos])
		slots[pos] = pslot[K, V]{leaf: &pleaf[K, V]{hash: h, kvs: []pkv[K, V]{{k, v}}}}
		copy(slots[pos+1:], n.slots[pos:])
		return &pnode[K, V]{bitmap: n.bitmap | bit, slots: slots}, true
	}
	s := n.slots[pos]
	added := false
	switch {
	case s.node != nil:
		s.node, added = s.node.set(shift+pbits, h, k, v)
	case s.leaf.hash == h:
		kvs := make([]pkv[K, V], len(s.leaf.kvs), len(s.leaf.kvs)+1)
		copy(kvs, s.leaf.kvs)
		added = true
		for i := range kvs {
			if kvs[i].k == k {
				kvs[i].v, added = v, false
				break
			}
		}
		if added {
			kvs = append(kvs, pkv[K, V]{k, v})
		}
		s.leaf = &pleaf[K, V]{hash: h, kvs: kvs}
	default:
		// Two hashes share this slot: push both one level down.
		s = pslot[K, V]{node: split(shift+pbits, s.leaf, &pleaf[K, V]{hash: h, kvs: []pkv[K, V]{{k, v}}})}
		added = true
	}
	slots := make([]pslot[K, V], len(n.slots))
	copy(slots, n.slots)
	slots[pos] = s
	return &pnode[K, V]{bitmap: n.bitmap, slots: slots}, added
}

// split makes the node at shift holding two leaves of different hashes that
// agree on every bit below shift. Two different 64-bit hashes differ in
// some 5-bit group, so this ends by shift 60.
func split[K comparable, V any](shift uint, a, b *pleaf[K, V]) *pnode[K, V] {
	ia, ib := a.hash>>shift&pmask, b.hash>>shift&pmask
	if ia == ib {
		return &pnode[K, V]{bitmap: 1 << ia, slots: []pslot[K, V]{{node: split(shift+pbits, a, b)}}}
	}
	if ia > ib {
		a, b, ia, ib = b, a, ib, ia
	}
	return &pnode[K, V]{bitmap: 1<<ia | 1<<ib, slots: []pslot[K, V]{{leaf: a}, {leaf: b}}}
}

// del returns n without k (nil when that leaves it empty) and whether k
// was there.
func (n *pnode[K, V]) del(shift uint, h uint64, k K) (*pnode[K, V], bool) {
	bit := uint32(1) << (h >> shift & pmask)
	if n.bitmap&bit == 0 {
		return n, false
	}
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	s := n.slots[pos]
	switch {
	case s.node != nil:
		child, removed := s.node.del(shift+pbits, h, k)
		if !removed {
			return n, false
		}
		switch {
		case child == nil:
			return n.without(pos, bit), true
		case len(child.slots) == 1 && child.slots[0].leaf != nil:
			// A lone leaf moves back up, so the trie stays as shallow as
			// the keys need.
			s = child.slots[0]
		default:
			s.node = child
		}
	case s.leaf.hash == h:
		i := -1
		for j, kv := range s.leaf.kvs {
			if kv.k == k {
				i = j
				break
			}
		}
		if i < 0 {
			return n, false
		}
		if len(s.leaf.kvs) == 1 {
			return n.without(pos, bit), true
		}
		kvs := make([]pkv[K, V], 0, len(s.leaf.kvs)-1)
		kvs = append(append(kvs, s.leaf.kvs[:i]...), s.leaf.kvs[i+1:]...)
		s.leaf = &pleaf[K, V]{hash: h, kvs: kvs}
	default:
		return n, false
	}
	slots := make([]pslot[K, V], len(n.slots))
	copy(slots, n.slots)
	slots[pos] = s
	return &pnode[K, V]{bitmap: n.bitmap, slots: slots}, true
}

// without returns n less the slot at pos, or nil if that was the last.
func (n *pnode[K, V]) without(pos int, bit uint32) *pnode[K, V] {
	if len(n.slots) == 1 {
		return nil
	}
	slots := make([]pslot[K, V], 0, len(n.slots)-1)
	slots = append(append(slots, n.slots[:pos]...), n.slots[pos+1:]...)
	return &pnode[K, V]{bitmap: n.bitmap &^ bit, slots: slots}
}
