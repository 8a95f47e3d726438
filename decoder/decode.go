package decoder

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// New validates opts, fills in the defaults (MaxHeaderBytes, MaxChain,
// XFCCElement = -1, Header and ChainHeader from the profile, else
// DefaultHeader) and returns a Decoder. Header names are stored in canonical
// MIME form. An unknown profile is an error naming the valid ones.
func New(opts Options) (*Decoder, error) {
	if opts.Profile == "" {
		opts.Profile = ProfileAuto
	}
	p, ok := profiles[strings.ToLower(opts.Profile)]
	if !ok {
		return nil, fmt.Errorf("decoder: unknown profile %q; valid profiles: %s",
			opts.Profile, strings.Join(profileNames, ", "))
	}
	opts.Profile = p.name
	switch {
	case opts.MaxHeaderBytes < 0:
		return nil, fmt.Errorf("decoder: max_header_bytes must not be negative, got %d", opts.MaxHeaderBytes)
	case opts.MaxHeaderBytes == 0:
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	switch {
	case opts.MaxChain < 0:
		return nil, fmt.Errorf("decoder: max_chain must not be negative, got %d", opts.MaxChain)
	case opts.MaxChain == 0:
		opts.MaxChain = DefaultMaxChain
	}
	if opts.XFCCElement == 0 {
		opts.XFCCElement = -1
	}
	switch {
	case opts.MaxXFCCElements < 0:
		return nil, fmt.Errorf("decoder: max_xfcc_elements must not be negative, got %d", opts.MaxXFCCElements)
	case opts.MaxXFCCElements == 0:
		opts.MaxXFCCElements = DefaultMaxXFCCElements
	}
	if err := checkProxies(opts.XFCCProxies); err != nil {
		return nil, err
	}
	opts.XFCCProxies = slices.Clone(opts.XFCCProxies)
	if opts.Header == "" {
		opts.Header = p.header
	}
	if opts.Header == "" {
		opts.Header = DefaultHeader
	}
	if opts.ChainHeader == "" {
		opts.ChainHeader = p.chainHeader
	}
	for _, h := range []string{opts.Header, opts.ChainHeader} {
		if h != "" && !validFieldName(h) {
			return nil, fmt.Errorf("decoder: %q is not a valid header field name", h)
		}
	}
	opts.Header = canon(opts.Header)
	opts.ChainHeader = canon(opts.ChainHeader)
	if opts.ChainHeader != "" && opts.ChainHeader == opts.Header {
		return nil, fmt.Errorf("decoder: chain header %q is the certificate header itself", opts.ChainHeader)
	}
	if (opts.XFCCElement != -1 || opts.XFCCBy != "" || len(opts.XFCCProxies) > 0) && p.name != ProfileEnvoyXFCC && p.name != ProfileAuto {
		return nil, fmt.Errorf("decoder: xfcc_element, xfcc_by and xfcc_proxies apply only to the envoy_xfcc and auto profiles, not %s", p.name)
	}
	if opts.XFCCElement != -1 && len(opts.XFCCProxies) > 0 {
		return nil, fmt.Errorf("decoder: xfcc_element and xfcc_proxies are alternatives: xfcc_proxies selects the element by its URI")
	}
	for _, h := range []string{opts.Header, opts.ChainHeader} {
		if h == traefikInfoHeader {
			return nil, fmt.Errorf("decoder: %s is %s", h, traefikInfoHint)
		}
	}
	d := &Decoder{opts: opts, profile: p, chainCache: newParsedCache()}
	if p.one {
		d.oneWhy = fmt.Sprintf("profile %s sends exactly one certificate (the client's) in %s", p.name, opts.Header)
	}
	return d, nil
}

// checkProxies validates Options.XFCCProxies.
func checkProxies(proxies []string) error {
	for i, p := range proxies {
		if strings.TrimSpace(p) != p || p == "" {
			return fmt.Errorf("decoder: xfcc_proxies entry %d is empty or has surrounding spaces", i+1)
		}
		if slices.Contains(proxies[:i], p) {
			return fmt.Errorf("decoder: xfcc_proxies lists %q twice", p)
		}
	}
	return nil
}

// validFieldName reports whether h is an RFC 9110 token.
func validFieldName(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return h != ""
}

// listHeader reports whether the certificate header is a list header whose
// field lines are joined with ",".
func (d *Decoder) listHeader() bool {
	return d.profile.list || (d.profile.name == ProfileAuto && d.opts.Header == XFCCHeader)
}

// Decode decodes the certificate header's values (all field lines of that
// header, as from http.Header.Values) and the chain header's values (nil
// when there is none).
//
// An absent or empty header, or a "no certificate" sentinel ("(null)", `""`,
// "NONE"), gives ErrAbsent. A singleton header (every profile's certificate
// header except envoy_xfcc's) present more than once gives KindDuplicate;
// list headers (XFCC, chain headers) have their lines joined with ",". The
// total size is checked against MaxHeaderBytes before any decoding work, and
// the number of certificates against MaxChain (and XFCC elements against
// MaxXFCCElements). Every other failure is an *Error of KindMalformed (or
// KindUntrustedHop for XFCC).
//
// The certificates of the chain header follow the leaf; a chain that starts
// with the leaf itself (Envoy's Chain, some RFC 9440 producers) is not
// duplicated. One certificate means one: a profile whose producer sends
// exactly one certificate in the certificate header (and RFC 9440's
// Client-Cert, and Envoy's Cert) gets exactly one or the value is
// malformed, and in every header each certificate after the first must be
// a CA certificate ("end-entity certificate at position N"), so two values
// merged by a proxy never read as a client and its intermediate. Keys are
// checked with CheckKeys before anything is returned.
func (d *Decoder) Decode(values, chainValues []string) (Result, error) {
	total := 0
	for _, v := range values {
		total += len(v)
	}
	for _, v := range chainValues {
		total += len(v)
	}
	if total > d.opts.MaxHeaderBytes {
		return Result{}, errorf(KindTooLarge, "certificate headers total %d bytes, over the limit of %d", total, d.opts.MaxHeaderBytes)
	}
	if len(values) == 0 {
		return Result{}, ErrAbsent
	}
	var v string
	switch {
	case d.listHeader():
		v = joinList(values)
	case len(values) > 1:
		return Result{}, errorf(KindDuplicate, "header %s appears %d times; a certificate header must appear once", d.opts.Header, len(values))
	default:
		v = values[0]
	}
	s := trimOWS(v)
	if isSentinel(s) {
		return Result{}, ErrAbsent
	}

	r := getRun(d.opts.MaxChain)
	r.chainCache = d.chainCache
	defer putRun(r)
	r.one = d.oneWhy
	if err := d.decodeCert(r, s); err != nil {
		return Result{}, err
	}
	r.one = ""
	if len(r.ders) == 0 { // not reached: every family yields a certificate or an error
		return Result{}, errorf(KindMalformed, "no certificate found")
	}
	res := Result{Profile: d.opts.Profile}
	if d.profile.name == ProfileAuto {
		res.Profile = r.detected()
	}

	if d.opts.ChainHeader != "" && len(chainValues) > 0 {
		c := trimOWS(joinList(chainValues))
		if !isSentinel(c) {
			r.where = "chain header: "
			r.inChain = true
			r.skipDup = r.ders[0]
			if err := r.decodePayload(c, famPayload); err != nil && err != ErrAbsent {
				return Result{}, err
			}
		}
	}
	certs, err := r.parse()
	if err != nil {
		return Result{}, err
	}
	if err := CheckKeys(certs); err != nil {
		return Result{}, err
	}
	res.Certs = certs
	return res, nil
}

// decodeCert decodes the certificate header value s (trimmed, not a
// sentinel) into r.
func (d *Decoder) decodeCert(r *run, s string) error {
	if looksTraefikInfo(s) {
		return r.errf("the value is %s", traefikInfoHint)
	}
	fams := d.profile.fams
	if fams&famXFCC != 0 && (d.profile.name == ProfileEnvoyXFCC || looksXFCC(s)) {
		return d.decodeXFCC(r, s)
	}
	return r.decodePayload(s, fams)
}

// joinList joins the non-empty field lines of a list header with ",".
func joinList(values []string) string {
	n, last := 0, ""
	for _, v := range values {
		if trimOWS(v) != "" {
			n++
			last = v
		}
	}
	if n <= 1 {
		return last
	}
	var b strings.Builder
	for _, v := range values {
		if trimOWS(v) == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
	}
	return b.String()
}

// trimOWS trims spaces, tabs, CR and LF at both ends.
func trimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && isWS(s[i]) {
		i++
	}
	for j > i && isWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isSentinel reports whether s (trimmed) means "no certificate".
func isSentinel(s string) bool {
	switch len(s) {
	case 0:
		return true
	case 2:
		return s == `""` || s == "::"
	case 4:
		return strings.EqualFold(s, "none")
	case 6:
		return strings.EqualFold(s, "(null)")
	}
	return false
}

// unquote strips one pair of enclosing double quotes (HAProxy %{+Q}).
func unquote(s string) (string, int) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1], 1
	}
	return s, 0
}

// seg is a base64 region [start,end) of the work buffer.
type seg struct{ start, end int }

// run holds the state of one Decode call: the work buffer, the DER found so
// far, and what was detected.
type run struct {
	max     int
	where   string // prefix of error messages: which header or XFCC field
	buf     []byte // work buffer (pooled)
	segs    []seg
	ders    [][]byte
	skipDup []byte // a first chain certificate equal to this one is dropped
	fam     family // family detected for the certificate header
	literal bool   // URL-encoded value with literal '+', '/' or '='
	double  bool   // one extra base64-of-PEM level was removed
	depth   int
	decoded bool // offsets refer to the percent-decoded value
	// one, when set, says why the value being decoded must hold exactly one
	// certificate (for error messages); base is where its certificates
	// start in ders.
	one  string
	base int
	// inChain: the value being decoded is a chain (a chain header or an
	// XFCC Chain), so an RFC 9440 value there is a List, not an Item.
	inChain bool
	// spans is scratch space for the XFCC element locations.
	spans []xfccSpan
	// chainCache reuses parsed chain certificates; nil to parse each time.
	chainCache *parsedCache
}

var runPool = sync.Pool{New: func() any { return &run{buf: make([]byte, 0, 4096)} }}

func getRun(max int) *run {
	r := runPool.Get().(*run)
	r.max = max
	return r
}

func putRun(r *run) {
	if cap(r.buf) > 256<<10 {
		return
	}
	*r = run{buf: r.buf[:0], segs: r.segs[:0], ders: clearDers(r.ders), spans: r.spans[:0]}
	runPool.Put(r)
}

func clearDers(d [][]byte) [][]byte {
	clear(d)
	return d[:0]
}

// errf makes a KindMalformed error prefixed with the run's location.
func (r *run) errf(format string, args ...any) *Error {
	return &Error{Kind: KindMalformed, Msg: r.where + fmt.Sprintf(format, args...)}
}

// offset describes an offset in the work buffer for messages.
func (r *run) offset(o int) string {
	if r.decoded {
		return fmt.Sprintf("offset %d of the percent-decoded value", o)
	}
	return fmt.Sprintf("offset %d", o)
}

// certN names certificate i (0-based) of n for messages.
func certN(i, n int) string {
	if n == 1 {
		return "certificate"
	}
	return fmt.Sprintf("certificate %d of %d", i+1, n)
}

// decodePayload decodes one payload value s (trimmed) of the families in
// allowed into r.ders.
func (r *run) decodePayload(s string, allowed famSet) error {
	body, _ := unquote(s)
	body = trimOWS(body)
	if isSentinel(body) {
		return ErrAbsent
	}
	if allowed&famXFCC == 0 && looksXFCC(body) {
		return r.errf("the value looks like %s, which this profile does not accept (it expects %s); try profile %s or auto",
			famXFCC, allowed, ProfileEnvoyXFCC)
	}
	fam := sniffPayload(body)
	r.base = len(r.ders)
	if fam == famRFC9440 {
		if allowed&fam == 0 {
			return r.errf("the value looks like %s, which this profile does not accept (it expects %s); try profile %s or auto",
				fam, allowed, suggest(fam, false))
		}
		if r.where == "" {
			r.fam = fam
		}
		return r.decodeRFC9440(body)
	}
	// Work on a copy in the pooled buffer: percent-decoding is done in place.
	r.buf = append(r.buf[:0], body...)
	r.decoded = false
	b := r.buf
	if fam == famURLPEM {
		var err error
		b, err = r.percentDecode(b)
		if err != nil {
			return err
		}
		r.decoded = true
		if !bytes.Contains(b, []byte(beginMarker)) {
			// Percent-encoded bare base64 (Traefik <= 2.9.3).
			fam = famBase64
		}
	}
	if allowed&fam == 0 {
		return r.errf("the value looks like %s, which this profile does not accept (it expects %s); try profile %s or auto",
			fam, allowed, suggest(fam, r.literal))
	}
	if r.where == "" {
		r.fam = fam
	}
	r.segs = r.segs[:0]
	var err error
	switch fam {
	case famURLPEM, famPEM:
		err = r.pemSegments(b)
	case famBase64:
		err = r.base64Segments(b)
	}
	if err != nil {
		return err
	}
	return r.decodeSegments(b, r.segs, fam == famBase64)
}

// decodeSegments base64-decodes every segment of b into one DER buffer and
// records each certificate. blob: a segment may hold several concatenated
// DER certificates (HAProxy ssl_c_chain_der).
func (r *run) decodeSegments(b []byte, segs []seg, blob bool) error {
	n := len(segs)
	if err := r.checkCount(n); err != nil {
		return err
	}
	size := 0
	for _, s := range segs {
		size += (s.end-s.start)*3/4 + 3
	}
	der := make([]byte, 0, size)
	for i, s := range segs {
		start := len(der)
		var bad int
		var why string
		der, bad, why = appendBase64(der, b[s.start:s.end])
		if why != "" {
			return r.errf("%s: base64 at %s: %s", certN(i, n), r.offset(s.start+bad), why)
		}
		out := der[start:len(der):len(der)]
		if err := r.addDER(out, i, n, blob); err != nil {
			return err
		}
	}
	return nil
}

const beginMarker = "-----BEGIN"

// addDER records the decoded bytes of segment i of n.
func (r *run) addDER(out []byte, i, n int, blob bool) error {
	switch {
	case len(out) == 0:
		return r.errf("%s is empty", certN(i, n))
	case bytes.HasPrefix(out, []byte(beginMarker)):
		return r.unwrapDouble(out, i, n)
	case out[0] != 0x30:
		return r.errf("%s: the decoded bytes are not DER (no SEQUENCE at the start)", certN(i, n))
	}
	if !blob {
		return r.add(out)
	}
	for len(out) > 0 {
		l, ok := derLen(out)
		if !ok {
			return r.errf("%s: DER: bad length at byte %d of the decoded certificate data", certN(i, n), len(out))
		}
		if err := r.add(out[:l:l]); err != nil {
			return err
		}
		out = out[l:]
	}
	return nil
}

// checkCount fails when n more certificates would pass the chain limit. A
// first chain certificate equal to the leaf is not counted: it is dropped.
func (r *run) checkCount(n int) error {
	if r.one != "" && n > 1 {
		return r.errf("%d certificates, but %s (a proxy may have merged a client-sent value with its own)", n, r.one)
	}
	have := len(r.ders)
	if r.skipDup != nil {
		have--
	}
	if n+have > r.max {
		return &Error{Kind: KindTooLarge, Msg: r.where + fmt.Sprintf("%d certificates, over the limit of %d", n+have, r.max)}
	}
	return nil
}

// add records one DER certificate, enforcing the chain limit.
func (r *run) add(der []byte) error {
	if r.skipDup != nil {
		dup := bytes.Equal(der, r.skipDup)
		r.skipDup = nil
		if dup {
			return nil
		}
	}
	if r.one != "" && len(r.ders) > r.base {
		return r.errf("more than one certificate, but %s (a proxy may have merged a client-sent value with its own)", r.one)
	}
	if len(r.ders) >= r.max {
		return &Error{Kind: KindTooLarge, Msg: r.where + fmt.Sprintf("more than %d certificates", r.max)}
	}
	r.ders = append(r.ders, der)
	return nil
}

// derLen returns the length of the DER SEQUENCE (header included) at the
// start of b.
func derLen(b []byte) (int, bool) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, false
	}
	l, h := int(b[1]), 2
	if l >= 0x80 {
		k := l & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k {
			return 0, false
		}
		l = 0
		for _, c := range b[2 : 2+k] {
			l = l<<8 | int(c)
		}
		h += k
	}
	if h+l > len(b) {
		return 0, false
	}
	return h + l, true
}

// parse turns the collected DER into certificates.
func (r *run) parse() ([]*x509.Certificate, error) {
	r.where = ""
	n := len(r.ders)
	certs := make([]*x509.Certificate, 0, n)
	for i, der := range r.ders {
		var c *x509.Certificate
		var err error
		if i > 0 && r.chainCache != nil {
			c, err = r.chainCache.parse(der)
		} else {
			c, err = x509.ParseCertificate(der)
		}
		if err != nil {
			return nil, r.errf("%s: not a valid X.509 certificate: %s", certN(i, n), sanitize(err))
		}
		// Whatever the header, the certificates after the client's are
		// intermediates (or a root); an end-entity certificate there is
		// another client's, merged in by a proxy or added by the client.
		if i > 0 && !(c.BasicConstraintsValid && c.IsCA) {
			return nil, r.errf("end-entity certificate at position %d of %d: only CA certificates may follow the client's certificate", i+1, n)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// sanitize keeps an x509 error's message up to the first quote, so that no
// field value of the certificate is echoed.
func sanitize(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\"'`"); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " (details withheld)"
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// detected names the profile that the auto profile found.
func (r *run) detected() string {
	switch {
	case r.fam == famXFCC:
		return ProfileEnvoyXFCC
	case r.double:
		return ProfileWSO2
	case r.fam == famURLPEM && r.literal:
		return ProfileAWSALB
	}
	return suggest(r.fam, false)
}
