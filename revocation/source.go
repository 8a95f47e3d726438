package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// crlSource is a configured CRL: a file or a URL. Its fields other than
// cur are touched only by New and Refresh (serialized by refreshMu).
type crlSource struct {
	name  string
	isURL bool
	cur   atomic.Pointer[crl]

	modTime   time.Time // file: of the last version read (good or not)
	size      int64
	fetchedAt time.Time // URL: last attempt
	failed    bool      // URL: the last attempt failed
	stale     bool      // staleness has been logged
	lastErr   string    // the failure logged last; "" after a success or a change
	// last is the outcome of the last refresh, read by CRLs at any time.
	last atomic.Pointer[refreshNote]
}

// refresh loads the CRL if it changed (always when initial). It reports
// whether a new CRL is in use. On failure the current one is kept.
func (s *crlSource) refresh(ctx context.Context, c *Checker, initial bool) (bool, error) {
	now := c.now()
	old := s.cur.Load()
	var (
		data []byte
		err  error
	)
	if s.isURL {
		if !initial && !s.due(old, now, c.horizon) {
			s.checkStale(c, old, now)
			return false, nil
		}
		s.fetchedAt = now
		fctx, cancel := context.WithTimeout(ctx, c.cfg.CRLTimeout)
		data, err = c.get(fctx, s.name, c.cfg.MaxCRLBytes)
		cancel()
	} else {
		var st os.FileInfo
		st, err = os.Stat(s.name)
		if err == nil && !st.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err != nil {
			return false, s.fail(c, old, now, err)
		}
		// The file is there: a later disappearance is news again, and a
		// version that failed to load is not read again until it changes.
		s.lastErr = ""
		if !initial && st.ModTime().Equal(s.modTime) && st.Size() == s.size {
			s.checkStale(c, old, now)
			return false, nil
		}
		// Remember this version even if it turns out broken, so that it is
		// not read again until it changes.
		s.modTime, s.size = st.ModTime(), st.Size()
		data, err = readCapped(s.name, c.cfg.MaxCRLBytes)
	}
	if err != nil {
		return false, s.fail(c, old, now, err)
	}
	l, err := parseCRL(data, s.name, now)
	if err != nil {
		return false, s.fail(c, old, now, err)
	}
	if old != nil {
		if bytes.Equal(l.list.Raw, old.list.Raw) {
			s.failed, s.lastErr = false, ""
			s.checkStale(c, old, now)
			return false, nil
		}
		if s.isURL && l.thisUpdate.Before(old.thisUpdate) {
			return false, s.fail(c, old, now, errors.New("the fetched CRL is older than the one in use"))
		}
		if err := l.inherit(old); err != nil {
			return false, s.fail(c, old, now, err)
		}
	}
	s.cur.Store(l)
	s.failed, s.stale, s.lastErr = false, false, ""
	if !initial {
		c.log("CRL reloaded", s.name, nil)
	}
	s.checkStale(c, l, now)
	return true, nil
}

// due reports whether a configured URL should be fetched again: it failed
// last time, or its CRL passes its nextUpdate before the next refresh, or
// it has no nextUpdate and was fetched an hour ago.
func (s *crlSource) due(old *crl, now time.Time, horizon time.Duration) bool {
	switch {
	case old == nil || s.failed:
		return true
	case old.nextUpdate.IsZero():
		return now.Sub(s.fetchedAt) >= noNextUpdateCRLTTL
	default:
		return !now.Add(horizon).Before(old.nextUpdate)
	}
}

// fail records and logs a failed reload; the current CRL stays in use. A
// failure that repeats the one logged last word for word (a file still
// missing, a server still down) is returned but not logged again, so a
// refresh every few seconds does not repeat it on every tick.
func (s *crlSource) fail(c *Checker, old *crl, now time.Time, err error) error {
	err = fmt.Errorf("CRL %s: %w", s.name, err)
	s.failed = true
	if old == nil {
		return err
	}
	if msg := err.Error(); msg != s.lastErr {
		s.lastErr = msg
		c.log("CRL could not be reloaded; keeping the last good one", s.name, err)
	}
	s.checkStale(c, old, now)
	return err
}

// checkStale logs, once, that the CRL in use has passed its nextUpdate.
func (s *crlSource) checkStale(c *Checker, l *crl, now time.Time) {
	if l == nil || s.stale || !l.stale(now) {
		return
	}
	s.stale = true
	c.log("CRL is past its nextUpdate; certificates it covers are unknown (rejected unless soft_fail) until a newer one is loaded", s.name, ErrStale)
}

// readCapped reads a file of at most limit bytes.
func readCapped(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllCapped(f, limit)
}

func readAllCapped(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// get fetches url with a GET, accepting only 200 and at most limit bytes.
func (c *Checker) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.do(req, limit)
}

// do sends req, accepting only 200 and at most limit bytes.
func (c *Checker) do(req *http.Request, limit int64) ([]byte, error) {
	req.Header.Set("User-Agent", "caddy-mtls-auth-revocation")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, resp.ContentLength, limit)
	}
	return readAllCapped(resp.Body, limit)
}
