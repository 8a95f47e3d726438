package revocation

// lru is a bounded map from string to V that evicts the least recently
// used entry. It is not safe for concurrent use: callers hold a lock.
type lru[V any] struct {
	max  int
	m    map[string]*lruNode[V]
	head lruNode[V] // sentinel: head.next is the most recent
}

type lruNode[V any] struct {
	key        string
	val        V
	prev, next *lruNode[V]
}

func newLRU[V any](max int) *lru[V] {
	l := &lru[V]{max: max, m: make(map[string]*lruNode[V])}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

// get returns the value for key and marks it most recently used.
func (l *lru[V]) get(key string) (V, bool) {
	return l.found(l.m[key])
}

// getBytes is get for a key in a byte slice, without allocating.
func (l *lru[V]) getBytes(key []byte) (V, bool) {
	return l.found(l.m[string(key)])
}

func (l *lru[V]) found(n *lruNode[V]) (V, bool) {
	if n == nil {
		var zero V
		return zero, false
	}
	l.unlink(n)
	l.pushFront(n)
	return n.val, true
}

// put sets key to v, evicting the least recently used entry if full.
func (l *lru[V]) put(key string, v V) {
	if n := l.m[key]; n != nil {
		n.val = v
		l.unlink(n)
		l.pushFront(n)
		return
	}
	if len(l.m) >= l.max {
		last := l.head.prev
		l.unlink(last)
		delete(l.m, last.key)
	}
	n := &lruNode[V]{key: key, val: v}
	l.m[key] = n
	l.pushFront(n)
}

func (l *lru[V]) len() int { return len(l.m) }

func (l *lru[V]) unlink(n *lruNode[V]) {
	n.prev.next = n.next
	n.next.prev = n.prev
}

func (l *lru[V]) pushFront(n *lruNode[V]) {
	n.prev = &l.head
	n.next = l.head.next
	l.head.next.prev = n
	l.head.next = n
}
