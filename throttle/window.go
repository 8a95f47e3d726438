package throttle

// Buckets is how many buckets a window is cut into when a tier allows more
// requests than that; see the package documentation. A tier of at most
// Buckets requests keeps one bucket per distinct request time: an exact
// sliding log.
const Buckets = 32

// grain is the width of one bucket, in the unit window is given in (the
// limiter's clock resolution): one unit for a tier of at most Buckets
// requests, else window/Buckets rounded up, so that Buckets grains cover the
// window.
func grain(requests int, window int64) int64 {
	if requests <= Buckets {
		return 1
	}
	return max((window+Buckets-1)/Buckets, 1)
}

// capacity is the most buckets a key holds: one per request for a tier of at
// most Buckets requests; else Buckets+1, since the window (t-Window, t]
// touches at most that many grid cells.
func capacity(requests int) int { return min(requests, Buckets+1) }
