package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultCRLTimeout      = 5 * time.Second
	DefaultOCSPTimeout     = 2 * time.Second
	DefaultMaxCRLBytes     = 10 << 20
	DefaultMaxCachedCRLs   = 256
	DefaultMaxCachedOCSP   = 10000
	DefaultRefreshInterval = time.Minute
)

const (
	// clockSkew is how far in the future a CRL's thisUpdate or an OCSP
	// answer's thisUpdate may be.
	clockSkew = 5 * time.Minute
	// noNextUpdateTTL is how long an OCSP answer without nextUpdate is used,
	// and how long a CRL from a distribution point without nextUpdate is
	// used before it is fetched again (an hour).
	noNextUpdateTTL    = 5 * time.Minute
	noNextUpdateCRLTTL = time.Hour
	// failureTTL is how long a failed fetch or lookup is remembered before
	// it is tried again, so that a dead server costs one timeout per
	// certificate every few seconds, not one per request.
	failureTTL = 5 * time.Second
	// unknownTTL caps how long an OCSP "unknown" answer is remembered.
	unknownTTL = time.Minute
	// maxAgeNoNextUpdate is the oldest thisUpdate accepted in an OCSP
	// answer without nextUpdate: such answers are made on request, and an
	// old one is a replay.
	maxAgeNoNextUpdate = time.Hour
	// maxOCSPResponseBytes caps an OCSP response.
	maxOCSPResponseBytes = 256 << 10
)

// Errors that Result.Err wraps; test with errors.Is.
var (
	// ErrStale: the CRL is past its nextUpdate and no newer one could be
	// loaded.
	ErrStale = errors.New("CRL is past its nextUpdate")
	// ErrNotCovered: no CRL or OCSP responder covers the certificate.
	ErrNotCovered = errors.New("no CRL or OCSP responder covers the certificate")
	// ErrNoIssuer: the chain holds one certificate that is not self-issued,
	// so there is no issuer to check it with.
	ErrNoIssuer = errors.New("the chain has no issuer for the certificate")
	// ErrChainOrder: a certificate in the chain is not followed by its
	// issuer.
	ErrChainOrder = errors.New("the next certificate in the chain is not its issuer")
	// ErrTooLarge: a CRL or OCSP response is larger than allowed.
	ErrTooLarge = errors.New("response too large")
	// ErrBadSignature: a CRL or OCSP response is not signed by the
	// certificate's issuer (or a responder it delegated).
	ErrBadSignature = errors.New("signature does not verify with the issuer")
	// ErrResponderUnknown: the OCSP responder answered "unknown".
	ErrResponderUnknown = errors.New("OCSP responder does not know the certificate")
)

// Status is the revocation status of a certificate or chain. The zero
// value is Unknown, so that a forgotten assignment fails safe.
type Status uint8

const (
	// Unknown: no trustworthy current answer could be had.
	Unknown Status = iota
	// Good: not revoked, according to current, verified answers.
	Good
	// Revoked: listed on a verified CRL or reported revoked by OCSP.
	Revoked
)

// String returns "unknown", "good" or "revoked".
func (s Status) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	default:
		return "unknown"
	}
}

// Config configures a Checker. At least one of CRLs, CRLFromCertificate and
// OCSP must be set; every source set is consulted for every certificate.
// Whether an Unknown result is rejected (hard fail) or allowed (soft fail)
// is the caller's decision, so it is not configured here.
type Config struct {
	// CRLs are CRL files (DER or PEM) or http/https URLs, loaded by New.
	CRLs []string
	// CRLFromCertificate also uses the http/https CRL distribution points
	// named in each certificate.
	CRLFromCertificate bool
	// OCSP asks an OCSP responder about each certificate.
	OCSP bool
	// OCSPResponder is the responder URL to ask for every certificate;
	// empty means the certificate's own (Authority Information Access).
	// Only with OCSP.
	OCSPResponder string

	// CRLTimeout bounds one CRL fetch. Default 5s.
	CRLTimeout time.Duration
	// OCSPTimeout bounds one OCSP request. Default 2s.
	OCSPTimeout time.Duration
	// MaxCRLBytes caps a CRL file or download. Default 10 MiB.
	MaxCRLBytes int64
	// MaxCachedCRLs caps the CRLs kept from distribution points. Default 256.
	MaxCachedCRLs int
	// MaxCachedOCSP caps the OCSP answers kept. Default 10,000.
	MaxCachedOCSP int
	// RefreshInterval is how often the Checker calls Refresh itself.
	// Default 1m; negative: never (the caller calls Refresh). Results
	// resting on configured CRLs are valid for at most this long (1m when
	// negative), since a CRL may be replaced before its nextUpdate.
	RefreshInterval time.Duration

	// HTTPClient makes the requests. Default: a client that honours the
	// proxy environment and follows at most 3 http/https redirects. The
	// timeouts above apply in any case.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives events worth an operator's attention: a CRL that could
	// not be reloaded (the last good one is kept), a CRL that became stale, a
	// CRL whose signature does not verify with an issuer, and (with a nil
	// err) a CRL reloaded. source is the file or URL. It is called from
	// the refresh loop and from Check, concurrently. May be nil.
	Logger func(msg, source string, err error)
	// OnReload is called after Refresh put a reloaded configured CRL in
	// use (not at New), from the goroutine that called Refresh. A caller
	// that caches results resting on configured CRLs drops them then, so a
	// replaced CRL takes effect at the next refresh rather than when
	// ValidUntil passes. May be nil.
	OnReload func()
	// Observer is told each method's answer for each checked certificate
	// (for metrics). May be nil.
	Observer Observer
}

// Result is the revocation status of a chain.
type Result struct {
	// Status is the combined status of the checked certificates.
	Status Status
	// Which is the index in the chain of the certificate that made the
	// result Revoked (the first revoked one) or Unknown (the first unknown
	// one); -1 when Good or the chain is empty.
	Which int
	// ValidUntil is when the answers this result rests on expire; a cached
	// result must not be used past it. Zero for Unknown.
	ValidUntil time.Time
	// RevokedAt and RevocationReason (an RFC 5280 CRLReason code) are set
	// when Revoked.
	RevokedAt        time.Time
	RevocationReason int
	// Source names the answer behind a Revoked result: "crl <file-or-url>"
	// or "ocsp <url>".
	Source string
	// Err says why the result is Unknown; nil otherwise.
	Err error
}

// Checker checks chains against CRLs and OCSP. It is safe for concurrent
// use. Close it when done.
type Checker struct {
	cfg    Config
	now    func() time.Time
	client *http.Client
	ownTr  *http.Transport // the default client's transport, closed by Close
	log    func(msg, source string, err error)

	// horizon bounds ValidUntil for answers from configured CRLs: they may
	// be replaced at the next refresh.
	horizon time.Duration

	sources    []*crlSource
	configured map[string]bool // configured CRL URLs, not fetched again as distribution points
	index      atomic.Pointer[crlIndex]
	refreshMu  sync.Mutex
	cdp        *cdpCache
	ocsp       *ocspCache
	baseCtx    context.Context
	cancel     context.CancelFunc
	loopDone   chan struct{}
	closeOnce  sync.Once
}

// New validates cfg, loads the configured CRLs and starts the refresh loop.
// It fails if cfg is invalid or a configured CRL cannot be loaded.
func New(cfg Config) (*Checker, error) {
	if len(cfg.CRLs) == 0 && !cfg.CRLFromCertificate && !cfg.OCSP {
		return nil, errors.New("revocation: nothing to check: configure CRLs, CRLs from certificates or OCSP")
	}
	if cfg.OCSPResponder != "" {
		if !cfg.OCSP {
			return nil, errors.New("revocation: an OCSP responder is given but OCSP is off")
		}
		if err := CheckResponder(cfg.OCSPResponder); err != nil {
			return nil, fmt.Errorf("revocation: %w", err)
		}
	}
	if cfg.CRLTimeout < 0 || cfg.OCSPTimeout < 0 || cfg.MaxCRLBytes < 0 || cfg.MaxCachedCRLs < 0 || cfg.MaxCachedOCSP < 0 {
		return nil, errors.New("revocation: timeouts, sizes and cache sizes must not be negative")
	}
	if cfg.CRLTimeout == 0 {
		cfg.CRLTimeout = DefaultCRLTimeout
	}
	if cfg.OCSPTimeout == 0 {
		cfg.OCSPTimeout = DefaultOCSPTimeout
	}
	if cfg.MaxCRLBytes == 0 {
		cfg.MaxCRLBytes = DefaultMaxCRLBytes
	}
	if cfg.MaxCachedCRLs == 0 {
		cfg.MaxCachedCRLs = DefaultMaxCachedCRLs
	}
	if cfg.MaxCachedOCSP == 0 {
		cfg.MaxCachedOCSP = DefaultMaxCachedOCSP
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	c := &Checker{
		cfg:        cfg,
		now:        cfg.Now,
		client:     cfg.HTTPClient,
		log:        cfg.Logger,
		horizon:    cfg.RefreshInterval,
		configured: map[string]bool{},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = func(string, string, error) {}
	}
	if c.horizon < 0 {
		c.horizon = DefaultRefreshInterval
	}
	if c.client == nil {
		c.client, c.ownTr = defaultClient()
	}
	seen := map[string]bool{}
	for _, name := range cfg.CRLs {
		if err := CheckCRL(name); err != nil {
			return nil, fmt.Errorf("revocation: %w", err)
		}
		if seen[name] {
			return nil, fmt.Errorf("revocation: CRL %q given twice", name)
		}
		seen[name] = true
		s := &crlSource{name: name, isURL: isHTTPURL(name)}
		if s.isURL {
			c.configured[name] = true
		}
		c.sources = append(c.sources, s)
	}
	c.baseCtx, c.cancel = context.WithCancel(context.Background())

	var errs []error
	for _, s := range c.sources {
		_, err := s.refresh(c.baseCtx, c, true)
		s.note(c.now(), err)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.cancel()
		if c.ownTr != nil {
			c.ownTr.CloseIdleConnections()
		}
		return nil, fmt.Errorf("revocation: %w", err)
	}
	c.rebuildIndex()
	if cfg.CRLFromCertificate {
		c.cdp = newCDPCache(cfg.MaxCachedCRLs)
	}
	if cfg.OCSP {
		c.ocsp = newOCSPCache(cfg.MaxCachedOCSP)
	}
	if cfg.RefreshInterval > 0 && len(c.sources) > 0 {
		c.loopDone = make(chan struct{})
		go c.loop(cfg.RefreshInterval)
	}
	return c, nil
}

func defaultClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
			}
			return nil
		},
	}, tr
}

// CheckCRL reports whether name can be loaded as a CRL: a file path, or an
// http or https URL with a host. New applies it to every configured CRL; a
// configuration parser may apply it first, to report the line.
func CheckCRL(name string) error {
	if name == "" {
		return errors.New("empty CRL name")
	}
	if hasScheme(name) && !isFetchableURL(name) {
		return fmt.Errorf("CRL %q: only files and http/https URLs are supported", name)
	}
	return nil
}

// CheckResponder reports whether u can be asked as an OCSP responder: an
// http or https URL with a host. New applies it to Config.OCSPResponder.
func CheckResponder(u string) error {
	if !isFetchableURL(u) {
		return fmt.Errorf("OCSP responder %q: want an http or https URL", u)
	}
	return nil
}

// hasScheme reports whether s starts with a URL scheme. A one-letter
// scheme is a Windows drive letter: s is then a path.
func hasScheme(s string) bool {
	u, err := url.Parse(s)
	return err == nil && len(u.Scheme) > 1
}

// isFetchableURL reports whether s is an http or https URL with a host.
func isFetchableURL(s string) bool {
	if !isHTTPURL(s) {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Host != ""
}

// isHTTPURL tells URLs from file names on the request path, without
// parsing: the names were checked by CheckCRL and CheckResponder.
func isHTTPURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func (c *Checker) loop(every time.Duration) {
	defer close(c.loopDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.baseCtx.Done():
			return
		case <-t.C:
			_ = c.Refresh(c.baseCtx)
		}
	}
}

// Refresh re-reads configured CRL files whose modification time or size
// changed and re-fetches configured CRL URLs whose CRL passes its
// nextUpdate before the next refresh (or has no nextUpdate and is an hour
// old, or failed last time). A CRL that cannot be reloaded is kept, and the
// failure is logged and returned. The Checker calls it every
// RefreshInterval unless that is negative.
func (c *Checker) Refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	var (
		errs    []error
		changed bool
	)
	for _, s := range c.sources {
		ch, err := s.refresh(ctx, c, false)
		s.note(c.now(), err)
		changed = changed || ch
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		c.rebuildIndex()
		if c.cfg.OnReload != nil {
			c.cfg.OnReload()
		}
	}
	return errors.Join(errs...)
}

// Close stops the refresh loop, cancels fetches in flight and releases idle
// connections. Check still works after Close, from what is cached.
func (c *Checker) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.loopDone != nil {
			<-c.loopDone
		}
		if c.ownTr != nil {
			c.ownTr.CloseIdleConnections()
		}
	})
	return nil
}

// certResult is the status of one certificate.
type certResult struct {
	status     Status
	validUntil time.Time
	revokedAt  time.Time
	reason     int
	source     string
	err        error
}

// maxStackChain is the chain length handled without allocating.
const maxStackChain = 8

// Check returns the revocation status of a verified chain: leaf first, each
// certificate followed by its issuer, ending at the trust anchor. Every
// certificate but the last is checked. Network lookups (distribution point
// CRLs and OCSP answers not cached) for different certificates of the chain
// run in parallel, each bounded by its timeout and by ctx.
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate) Result {
	switch len(chain) {
	case 0:
		return Result{Status: Unknown, Which: -1, Err: errors.New("revocation: empty chain")}
	case 1:
		if selfIssued(chain[0]) {
			return Result{Status: Good, Which: -1, ValidUntil: chain[0].NotAfter}
		}
		return Result{Status: Unknown, Which: 0, Err: ErrNoIssuer}
	}
	now := c.now()
	n := len(chain) - 1
	var (
		stackRes [maxStackChain]certResult
		stackPen [maxStackChain]int
	)
	results := stackRes[:0]
	if n > maxStackChain {
		results = make([]certResult, 0, n)
	}
	pending := stackPen[:0]
	for i := 0; i < n; i++ {
		r, ok := c.checkCert(ctx, chain[i], chain[i+1], now, false)
		if ok && r.status == Revoked {
			return combine([]certResult{r}, i)
		}
		if !ok {
			pending = append(pending, i)
		}
		results = append(results, r)
	}
	switch len(pending) {
	case 0:
	case 1:
		i := pending[0]
		results[i], _ = c.checkCert(ctx, chain[i], chain[i+1], now, true)
	default:
		for k, r := range c.checkParallel(ctx, chain, pending, now) {
			results[pending[k]] = r
		}
	}
	return combine(results, 0)
}

// checkParallel checks chain[i] for each i in pending, each in its own
// goroutine, and returns the results in the order of pending.
func (c *Checker) checkParallel(ctx context.Context, chain []*x509.Certificate, pending []int, now time.Time) []certResult {
	out := make([]certResult, len(pending))
	var wg sync.WaitGroup
	for k, i := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k], _ = c.checkCert(ctx, chain[i], chain[i+1], now, true)
		}()
	}
	wg.Wait()
	return out
}

// combine folds per-certificate results; offset is the chain index of
// results[0].
func combine(results []certResult, offset int) Result {
	out := Result{Status: Good, Which: -1}
	unknown := -1
	for i, r := range results {
		switch r.status {
		case Revoked:
			return Result{
				Status: Revoked, Which: offset + i, ValidUntil: r.validUntil,
				RevokedAt: r.revokedAt, RevocationReason: r.reason, Source: r.source,
			}
		case Unknown:
			if unknown < 0 {
				unknown = i
			}
		case Good:
			if out.ValidUntil.IsZero() || r.validUntil.Before(out.ValidUntil) {
				out.ValidUntil = r.validUntil
			}
		}
	}
	if unknown >= 0 {
		return Result{Status: Unknown, Which: offset + unknown, Err: results[unknown].err}
	}
	return out
}

func selfIssued(c *x509.Certificate) bool {
	return string(c.RawSubject) == string(c.RawIssuer)
}

// tally collects the answers of the sources for one certificate.
type tally struct {
	good       bool
	validUntil time.Time
	errs       []error
}

func (t *tally) addGood(until time.Time) {
	if !t.good || until.Before(t.validUntil) {
		t.validUntil = until
	}
	t.good = true
}

func (t *tally) addErr(err error) { t.errs = append(t.errs, err) }

// checkCert checks one certificate against every source. With network
// false it answers only from memory and reports ok=false if some source
// would need the network.
func (c *Checker) checkCert(ctx context.Context, cert, issuer *x509.Certificate, now time.Time, network bool) (res certResult, ok bool) {
	obs := newSeen()
	if c.cfg.Observer != nil {
		defer func() {
			if ok {
				obs.report(c.cfg.Observer)
			}
		}()
	}
	if string(cert.RawIssuer) != string(issuer.RawSubject) {
		return certResult{status: Unknown, err: fmt.Errorf("certificate serial %x from %q: %w",
			cert.SerialNumber, issuerName(cert), ErrChainOrder)}, true
	}
	var t tally
	covered := false

	if idx := c.index.Load(); idx != nil {
		for _, l := range idx.byIssuer[string(cert.RawIssuer)] {
			a := l.answer(c, cert, issuer, now)
			if a.status == notApplicable {
				continue
			}
			covered = true
			obs.add(MethodCRL, a.status)
			switch a.status {
			case Revoked:
				return a.certResult(), true
			case Good:
				until := a.validUntil
				if h := now.Add(c.horizon); until.IsZero() || h.Before(until) {
					until = h
				}
				t.addGood(until)
			default:
				t.addErr(a.err)
			}
		}
	}

	if c.cdp != nil {
		for _, u := range cert.CRLDistributionPoints {
			if !isHTTPURL(u) || c.configured[u] {
				continue
			}
			covered = true
			a, ok := c.cdp.answer(ctx, c, u, cert, issuer, now, network)
			if !ok {
				return certResult{}, false
			}
			obs.add(MethodCRL, a.status)
			if a.status == Revoked {
				return a.certResult(), true
			}
			if a.status == Good {
				t.addGood(a.validUntil)
				break
			}
			t.addErr(a.err)
		}
	}

	if c.ocsp != nil {
		u := c.cfg.OCSPResponder
		if u == "" {
			for _, s := range cert.OCSPServer {
				if isHTTPURL(s) {
					u = s
					break
				}
			}
		}
		if u != "" {
			covered = true
			a, ok := c.ocsp.answer(ctx, c, u, cert, issuer, now, network)
			if !ok {
				return certResult{}, false
			}
			obs.add(MethodOCSP, a.status)
			switch a.status {
			case Revoked:
				return a.certResult(), true
			case Good:
				t.addGood(a.validUntil)
			default:
				t.addErr(a.err)
			}
		}
	}

	if t.good {
		return certResult{status: Good, validUntil: t.validUntil}, true
	}
	if !covered {
		return certResult{status: Unknown, err: fmt.Errorf("certificate serial %x from %q: %w",
			cert.SerialNumber, issuerName(cert), ErrNotCovered)}, true
	}
	return certResult{status: Unknown, err: fmt.Errorf("certificate serial %x from %q: %w",
		cert.SerialNumber, issuerName(cert), errors.Join(t.errs...))}, true
}

func issuerName(cert *x509.Certificate) string { return cert.Issuer.String() }

// notApplicable extends Status with "this source does not cover the
// certificate".
const notApplicable Status = 255

// answer is one source's answer for one certificate.
type answer struct {
	status     Status
	validUntil time.Time // Good, Revoked: when the answer expires
	revokedAt  time.Time
	reason     int
	source     string
	err        error // Unknown: why
}

func (a answer) certResult() certResult {
	return certResult(a)
}
