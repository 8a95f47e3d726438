package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// cdpCache holds the CRLs fetched from certificates' distribution points,
// by URL.
type cdpCache struct {
	lru   *lru.Cache[string, *cdpEntry]
	group singleflight.Group
}

// cdpEntry is the state of one distribution point. Immutable: a fetch
// replaces the whole entry.
type cdpEntry struct {
	url     string
	crl     *crl      // the last good CRL; nil if none yet
	expires time.Time // when crl must be fetched again
	err     error     // why the last fetch failed
	retryAt time.Time // no fetch before this
}

func newCDPCache(max int) *cdpCache {
	l, _ := lru.New[string, *cdpEntry](max) // errs only for a size < 1; New makes it at least 1
	return &cdpCache{lru: l}
}

// answer is the distribution point's answer for cert. With network false
// it reports ok=false when a fetch is needed.
func (k *cdpCache) answer(ctx context.Context, c *Checker, url string, cert, issuer *x509.Certificate, now time.Time, network bool) (answer, bool) {
	e, _ := k.lru.Get(url)
	if e != nil && (e.crl != nil && now.Before(e.expires) || now.Before(e.retryAt)) {
		return e.use(c, cert, issuer, now), true
	}
	if !network {
		return answer{}, false
	}
	ch := k.group.DoChan(url, func() (any, error) {
		return k.fetch(c, url, issuer), nil
	})
	select {
	case r := <-ch:
		e = r.Val.(*cdpEntry)
	case <-ctx.Done():
		return answer{status: Unknown, err: fmt.Errorf("crl %s: %w: %w", url, ErrCRLUnavailable, ctx.Err())}, true
	}
	return e.use(c, cert, issuer, now), true
}

// use answers from the entry's CRL, if any.
func (e *cdpEntry) use(c *Checker, cert, issuer *x509.Certificate, now time.Time) answer {
	if e.crl == nil {
		return answer{status: Unknown, err: e.err}
	}
	a := e.crl.answer(c, cert, issuer, now)
	switch a.status {
	case notApplicable:
		return answer{status: Unknown, err: fmt.Errorf("crl %s: does not cover the certificate", e.url)}
	case Good:
		if !now.Before(e.expires) {
			return answer{status: Unknown, err: errors.Join(fmt.Errorf("crl %s: %w", e.url, ErrStale), e.err)}
		}
		a.validUntil = e.expires
	case Unknown:
		if e.err != nil {
			a.err = errors.Join(a.err, e.err)
		}
	}
	return a
}

// fetch downloads, parses and verifies the CRL at url, and stores the new
// entry. On failure the previous CRL, if any, is kept.
func (k *cdpCache) fetch(c *Checker, url string, issuer *x509.Certificate) *cdpEntry {
	old, _ := k.lru.Get(url)

	ctx, cancel := context.WithTimeout(c.baseCtx, c.cfg.CRLTimeout)
	defer cancel()
	now := c.now()
	data, err := c.get(ctx, url, c.cfg.MaxCRLBytes)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		err = fmt.Errorf("%w: %w", ErrCRLUnavailable, err)
	}
	var l *crl
	if err == nil {
		l, err = parseCRL(data, url, now)
	}
	if err == nil {
		err = l.verify(c, issuer)
	}
	if err == nil && old != nil && old.crl != nil && l.thisUpdate.Before(old.crl.thisUpdate) {
		err = errors.New("the fetched CRL is older than the one in use")
	}
	e := &cdpEntry{url: url, retryAt: now.Add(failureTTL)}
	if err != nil {
		e.err = fmt.Errorf("crl %s: %w", url, err)
		if old != nil {
			e.crl, e.expires = old.crl, old.expires
		}
	} else {
		e.crl, e.expires = l, l.nextUpdate
		if e.expires.IsZero() {
			e.expires = now.Add(noNextUpdateCRLTTL)
		}
	}
	k.lru.Add(url, e)
	return e
}
