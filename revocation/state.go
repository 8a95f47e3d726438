package revocation

import "time"

// CRLState is what a configured CRL looks like now, for an operator.
type CRLState struct {
	// Name is the file or URL as configured.
	Name string
	// ThisUpdate and NextUpdate are those of the CRL in use (NextUpdate is
	// zero when the CRL has none).
	ThisUpdate, NextUpdate time.Time
	// LastRefresh is when it was last checked for a newer version (at load
	// and at every refresh); LastError is that check's failure, nil when it
	// succeeded (the last good CRL then stays in use).
	LastRefresh time.Time
	LastError   error
}

// refreshNote is the outcome of one refresh of a configured CRL.
type refreshNote struct {
	at  time.Time
	err error
}

// note records the outcome of a refresh of s.
func (s *crlSource) note(at time.Time, err error) {
	s.last.Store(&refreshNote{at: at, err: err})
}

// CRLs returns the state of the configured CRLs, in configuration order.
// Safe for concurrent use with Check and Refresh.
func (c *Checker) CRLs() []CRLState {
	out := make([]CRLState, 0, len(c.sources))
	for _, s := range c.sources {
		st := CRLState{Name: s.name}
		if l := s.cur.Load(); l != nil {
			st.ThisUpdate, st.NextUpdate = l.thisUpdate, l.nextUpdate
		}
		if n := s.last.Load(); n != nil {
			st.LastRefresh, st.LastError = n.at, n.err
		}
		out = append(out, st)
	}
	return out
}

// OCSPCacheLen is the number of OCSP answers (and remembered failures)
// cached; 0 without OCSP.
func (c *Checker) OCSPCacheLen() int {
	if c.ocsp == nil {
		return 0
	}
	return c.ocsp.lru.Len()
}
