package revocation

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidAKI           = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber     = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRL      = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDP     = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidReasonCode    = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDay = asn1.ObjectIdentifier{2, 5, 29, 24}
)

// crl is a parsed CRL, indexed by serial number. Immutable once built,
// except for the cache of issuers its signature was checked against.
type crl struct {
	name       string // file or URL
	source     string // "crl <name>"
	rawIssuer  string
	aki        []byte
	thisUpdate time.Time
	nextUpdate time.Time
	revoked    map[string]revokedEntry
	scope      scope
	// list holds what CheckSignatureFrom needs; its entries are dropped.
	list *x509.RevocationList

	vmu      sync.Mutex
	verified atomic.Pointer[[]verification]
}

type revokedEntry struct {
	at     time.Time
	reason int
}

// verification remembers whether the CRL's signature verified with one
// issuer certificate.
type verification struct {
	issuer *x509.Certificate
	err    error
}

// maxVerifications bounds the issuers remembered per CRL.
const maxVerifications = 8

// parseCRL parses a DER or PEM CRL and refuses the kinds this package does
// not handle (delta, indirect, reason-partitioned, unknown critical
// extensions) and CRLs that are not yet valid.
func parseCRL(data []byte, name string, now time.Time) (*crl, error) {
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block is %q, want X509 CRL", block.Type)
		}
		der = block.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	l := &crl{
		name:       name,
		source:     "crl " + name,
		rawIssuer:  string(rl.RawIssuer),
		aki:        rl.AuthorityKeyId,
		thisUpdate: rl.ThisUpdate,
		nextUpdate: rl.NextUpdate,
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidIssuingDP):
			if l.scope, err = parseIDP(ext.Value); err != nil {
				return nil, err
			}
		case ext.Id.Equal(oidDeltaCRL):
			return nil, errors.New("delta CRLs are not supported")
		case ext.Id.Equal(oidAKI), ext.Id.Equal(oidCRLNumber):
		case ext.Critical:
			return nil, fmt.Errorf("unsupported critical extension %v", ext.Id)
		}
	}
	if rl.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("not valid before its thisUpdate %s", rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !rl.NextUpdate.IsZero() && rl.NextUpdate.Before(rl.ThisUpdate) {
		return nil, errors.New("nextUpdate is before thisUpdate")
	}
	l.revoked = make(map[string]revokedEntry, len(rl.RevokedCertificateEntries))
	var buf [64]byte
	for _, e := range rl.RevokedCertificateEntries {
		for _, x := range e.Extensions {
			if x.Critical && !x.Id.Equal(oidReasonCode) && !x.Id.Equal(oidInvalidityDay) {
				return nil, fmt.Errorf("unsupported critical entry extension %v (indirect CRL?)", x.Id)
			}
		}
		l.revoked[string(appendSerial(buf[:0], e.SerialNumber))] = revokedEntry{at: e.RevocationTime, reason: e.ReasonCode}
	}
	// Drop the parsed entries (the map has them); the parser still fills
	// the deprecated field too.
	rl.RevokedCertificateEntries = nil
	//lint:ignore SA1019 clearing it, not using it
	rl.RevokedCertificates = nil
	l.list = rl
	return l, nil
}

// appendSerial appends a serial number's map key: its magnitude in
// big-endian bytes, after a '-' when negative.
func appendSerial(dst []byte, n *big.Int) []byte {
	if n.Sign() < 0 {
		dst = append(dst, '-')
	}
	size := (n.BitLen() + 7) / 8
	start := len(dst)
	dst = slices.Grow(dst, size)[:start+size]
	n.FillBytes(dst[start:])
	return dst
}

// stale reports whether the CRL is past its nextUpdate at now.
func (l *crl) stale(now time.Time) bool {
	return !l.nextUpdate.IsZero() && !now.Before(l.nextUpdate)
}

// answer is this CRL's answer for cert, issued by issuer. A listed serial is
// Revoked even when the CRL is stale; otherwise a stale CRL is Unknown.
func (l *crl) answer(c *Checker, cert, issuer *x509.Certificate, now time.Time) answer {
	if !l.scope.covers(cert) {
		return answer{status: notApplicable}
	}
	if len(l.aki) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(l.aki, issuer.SubjectKeyId) {
		return answer{status: Unknown, err: fmt.Errorf("%s: %w: signed by another key (authority key identifier differs)", l.source, ErrBadSignature)}
	}
	if err := l.verify(c, issuer); err != nil {
		return answer{status: Unknown, err: fmt.Errorf("%s: %w", l.source, err)}
	}
	var buf [64]byte
	if e, ok := l.revoked[string(appendSerial(buf[:0], cert.SerialNumber))]; ok {
		until := l.nextUpdate
		if until.IsZero() {
			until = now.Add(noNextUpdateTTL)
		}
		return answer{status: Revoked, validUntil: until, revokedAt: e.at, reason: e.reason, source: l.source}
	}
	if l.stale(now) {
		return answer{status: Unknown, err: fmt.Errorf("%s: %w (%s)", l.source, ErrStale, l.nextUpdate.UTC().Format(time.RFC3339))}
	}
	return answer{status: Good, validUntil: l.nextUpdate}
}

// verify checks, once per issuer certificate, that the CRL is issued and
// signed by issuer.
func (l *crl) verify(c *Checker, issuer *x509.Certificate) error {
	if p := l.verified.Load(); p != nil {
		for _, v := range *p {
			if v.issuer == issuer || bytes.Equal(v.issuer.Raw, issuer.Raw) {
				return v.err
			}
		}
	}
	var err error
	if l.rawIssuer != string(issuer.RawSubject) {
		err = errors.New("CRL issuer name differs from the issuer's subject")
	} else if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCRLSign == 0 {
		err = ErrNoCRLSign // CheckSignatureFrom would say only "constraint violation"
	} else if e := l.list.CheckSignatureFrom(issuer); e != nil {
		err = fmt.Errorf("%w: %v", ErrBadSignature, e)
	}
	l.remember(issuer, err)
	if err != nil {
		c.log("CRL does not verify with the certificate's issuer; not used for it", l.name, err)
	}
	return err
}

func (l *crl) remember(issuer *x509.Certificate, err error) {
	l.vmu.Lock()
	defer l.vmu.Unlock()
	var next []verification
	if p := l.verified.Load(); p != nil {
		next = append(next, *p...)
	}
	if len(next) >= maxVerifications {
		next = next[1:]
	}
	next = append(next, verification{issuer: issuer, err: err})
	l.verified.Store(&next)
}

// inherit checks a replacement CRL against the issuers its predecessor was
// verified with: if there were any, it must verify with one of them. The
// ones it verifies with are remembered.
func (l *crl) inherit(old *crl) error {
	p := old.verified.Load()
	if p == nil {
		return nil
	}
	tried := false
	var ok bool
	for _, v := range *p {
		if v.err != nil {
			continue
		}
		tried = true
		if l.rawIssuer == string(v.issuer.RawSubject) && l.list.CheckSignatureFrom(v.issuer) == nil {
			l.remember(v.issuer, nil)
			ok = true
		}
	}
	if tried && !ok {
		return fmt.Errorf("%w: the new CRL is not signed by the issuer of the one in use", ErrBadSignature)
	}
	return nil
}

// scope is what an Issuing Distribution Point extension limits a CRL to.
type scope struct {
	userOnly bool     // only end-entity certificates
	caOnly   bool     // only CA certificates
	dps      []string // only certificates naming one of these distribution points
}

// covers reports whether the CRL's scope includes cert.
func (s *scope) covers(cert *x509.Certificate) bool {
	if s.userOnly && cert.IsCA || s.caOnly && !cert.IsCA {
		return false
	}
	if len(s.dps) == 0 {
		return true
	}
	for _, u := range cert.CRLDistributionPoints {
		if slices.Contains(s.dps, u) {
			return true
		}
	}
	return false
}

// parseIDP parses an Issuing Distribution Point extension (RFC 5280
// 5.2.5), refusing indirect CRLs, reason-partitioned CRLs, attribute
// certificate CRLs and distribution points named relative to the issuer.
func parseIDP(der []byte) (scope, error) {
	var s scope
	malformed := errors.New("malformed issuing distribution point")
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return s, malformed
	}
	var dpn cryptobyte.String
	var hasDP bool
	if !seq.ReadOptionalASN1(&dpn, &hasDP, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return s, malformed
	}
	if hasDP {
		var full cryptobyte.String
		var hasFull bool
		if !dpn.ReadOptionalASN1(&full, &hasFull, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return s, malformed
		}
		if !hasFull {
			return s, errors.New("issuing distribution point named relative to the CRL issuer is not supported")
		}
		for !full.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !full.ReadAnyASN1(&gn, &tag) {
				return s, malformed
			}
			if tag == cbasn1.Tag(6).ContextSpecific() {
				s.dps = append(s.dps, string(gn))
			}
		}
		if len(s.dps) == 0 {
			return s, errors.New("issuing distribution point names no URI")
		}
	}
	flag := func(tag uint8) (bool, bool) {
		var v cryptobyte.String
		var present bool
		if !seq.ReadOptionalASN1(&v, &present, cbasn1.Tag(tag).ContextSpecific()) {
			return false, false
		}
		if !present {
			return false, true
		}
		return len(v) == 1 && v[0] != 0, len(v) == 1
	}
	var ok bool
	if s.userOnly, ok = flag(1); !ok {
		return s, malformed
	}
	if s.caOnly, ok = flag(2); !ok {
		return s, malformed
	}
	var reasons cryptobyte.String
	var hasReasons bool
	if !seq.ReadOptionalASN1(&reasons, &hasReasons, cbasn1.Tag(3).ContextSpecific()) {
		return s, malformed
	}
	if hasReasons {
		return s, errors.New("CRLs limited to some revocation reasons are not supported")
	}
	indirect, ok := flag(4)
	if !ok {
		return s, malformed
	}
	attrs, ok := flag(5)
	if !ok || !seq.Empty() || s.userOnly && s.caOnly {
		return s, malformed
	}
	if indirect {
		return s, errors.New("indirect CRLs are not supported")
	}
	if attrs {
		return s, errors.New("CRL covers attribute certificates only")
	}
	return s, nil
}

// crlIndex maps an issuer's raw subject to the configured CRLs it issued.
type crlIndex struct {
	byIssuer map[string][]*crl
}

func (c *Checker) rebuildIndex() {
	idx := &crlIndex{byIssuer: map[string][]*crl{}}
	for _, s := range c.sources {
		if l := s.cur.Load(); l != nil {
			idx.byIssuer[l.rawIssuer] = append(idx.byIssuer[l.rawIssuer], l)
		}
	}
	c.index.Store(idx)
}
