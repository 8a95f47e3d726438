package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// ocspCache holds OCSP answers by certificate (issuer name, issuer key,
// serial).
type ocspCache struct {
	lru   *lru.Cache[string, *ocspEntry]
	group singleflight.Group
}

// ocspEntry is a remembered answer (or failure) and when it expires.
type ocspEntry struct {
	answer  answer
	expires time.Time
}

func newOCSPCache(max int) *ocspCache {
	l, _ := lru.New[string, *ocspEntry](max) // errs only for a size < 1; New makes it at least 1
	return &ocspCache{lru: l}
}

// appendOCSPKey appends the cache key of cert: issuer subject, issuer key
// and serial, length-prefixed.
func appendOCSPKey(dst []byte, cert, issuer *x509.Certificate) []byte {
	for _, part := range [][]byte{issuer.RawSubject, issuer.RawSubjectPublicKeyInfo} {
		dst = append(dst, byte(len(part)>>16), byte(len(part)>>8), byte(len(part)))
		dst = append(dst, part...)
	}
	return appendSerial(dst, cert.SerialNumber)
}

// answer is the responder's answer for cert, from the cache when current.
// With network false it reports ok=false when a request is needed.
func (k *ocspCache) answer(ctx context.Context, c *Checker, url string, cert, issuer *x509.Certificate, now time.Time, network bool) (answer, bool) {
	var buf [768]byte
	key := appendOCSPKey(buf[:0], cert, issuer)
	// The lookup views key as a string without copying it: Get only
	// compares the key, it never keeps it. key is never empty.
	e, _ := k.lru.Get(unsafe.String(&key[0], len(key)))
	if e != nil && now.Before(e.expires) {
		return e.answer, true
	}
	if !network {
		return answer{}, false
	}
	skey := string(key)
	ch := k.group.DoChan(skey, func() (any, error) {
		e := c.queryOCSP(url, cert, issuer)
		k.lru.Add(skey, e)
		return e, nil
	})
	select {
	case r := <-ch:
		return r.Val.(*ocspEntry).answer, true
	case <-ctx.Done():
		return answer{status: Unknown, err: fmt.Errorf("ocsp %s: %w: %w", url, ErrResponderDown, ctx.Err())}, true
	}
}

// queryOCSP asks the responder at url about cert and verifies the answer.
// Failures become Unknown entries remembered for failureTTL.
func (c *Checker) queryOCSP(url string, cert, issuer *x509.Certificate) *ocspEntry {
	now := c.now()
	fail := func(err error) *ocspEntry {
		return &ocspEntry{
			answer:  answer{status: Unknown, err: fmt.Errorf("ocsp %s: %w", url, err)},
			expires: now.Add(failureTTL),
		}
	}
	reqDER, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(c.baseCtx, c.cfg.OCSPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqDER))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	body, err := c.do(req, maxOCSPResponseBytes)
	if err != nil {
		if !errors.Is(err, ErrTooLarge) {
			err = fmt.Errorf("%w: %w", ErrResponderDown, err)
		}
		return fail(err)
	}
	resp, err := verifyOCSP(body, cert, issuer, now)
	if err != nil {
		return fail(err)
	}
	expires := resp.NextUpdate
	if expires.IsZero() {
		expires = now.Add(noNextUpdateTTL)
	}
	switch resp.Status {
	case ocsp.Good:
		return &ocspEntry{answer: answer{status: Good, validUntil: expires}, expires: expires}
	case ocsp.Revoked:
		return &ocspEntry{answer: answer{
			status: Revoked, validUntil: expires, revokedAt: resp.RevokedAt,
			reason: resp.RevocationReason, source: "ocsp " + url,
		}, expires: expires}
	default:
		if limit := now.Add(unknownTTL); limit.Before(expires) {
			expires = limit
		}
		return &ocspEntry{answer: answer{status: Unknown, err: fmt.Errorf("ocsp %s: %w", url, ErrResponderUnknown)}, expires: expires}
	}
}

// verifyOCSP parses an OCSP response for cert and checks that it is about
// cert (serial and issuer hashes), signed by issuer or by a responder
// issuer delegated (OCSPSigning), and current at now.
func verifyOCSP(body []byte, cert, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	// With a nil issuer, ParseResponseForCert checks the signature only
	// against an embedded certificate; the issuer checks are done below,
	// because ParseResponseForCert wrongly requires an embedded issuer
	// certificate to be signed by itself.
	resp, err := ocsp.ParseResponseForCert(body, cert, nil)
	if err != nil {
		return nil, err
	}
	if err := checkCertID(body, cert, issuer); err != nil {
		return nil, err
	}
	if err := checkResponder(resp, issuer, now); err != nil {
		return nil, err
	}
	if resp.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("answer not valid before %s", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate) {
		return nil, fmt.Errorf("answer expired at %s", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	if resp.NextUpdate.IsZero() && now.Sub(resp.ThisUpdate) > maxAgeNoNextUpdate {
		return nil, fmt.Errorf("answer without nextUpdate made at %s: too old", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	return resp, nil
}

// checkResponder checks who signed the response. ParseResponseForCert has
// verified the signature with the embedded certificate, if there is one.
func checkResponder(resp *ocsp.Response, issuer *x509.Certificate, now time.Time) error {
	rc := resp.Certificate
	if rc == nil {
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return nil
	}
	if bytes.Equal(rc.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
		return nil // signed by the issuer's own key
	}
	if err := rc.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: responder certificate is not issued by the certificate's issuer: %v", ErrBadSignature, err)
	}
	if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return fmt.Errorf("%w: responder certificate lacks the OCSPSigning extended key usage", ErrBadSignature)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return errors.New("responder certificate is outside its validity window")
	}
	return nil
}

// The OCSP response structures (RFC 6960), as far as checkCertID needs.
type ocspResponseASN1 struct {
	Status   asn1.Enumerated
	Response struct {
		ResponseType asn1.ObjectIdentifier
		Response     []byte
	} `asn1:"explicit,tag:0,optional"`
}

type ocspBasicASN1 struct {
	TBSResponseData struct {
		Raw            asn1.RawContent
		Version        int `asn1:"optional,default:0,explicit,tag:0"`
		RawResponderID asn1.RawValue
		ProducedAt     time.Time `asn1:"generalized"`
		Responses      []ocspSingleASN1
		Extensions     []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspSingleASN1 struct {
	CertID struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		NameHash      []byte
		IssuerKeyHash []byte
		SerialNumber  *big.Int
	}
	Good    asn1.Flag `asn1:"tag:0,optional"`
	Revoked struct {
		RevocationTime time.Time       `asn1:"generalized"`
		Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
	} `asn1:"tag:1,optional"`
	Unknown          asn1.Flag        `asn1:"tag:2,optional"`
	ThisUpdate       time.Time        `asn1:"generalized"`
	NextUpdate       time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	SingleExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

var certIDHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

// checkCertID checks that the single response ParseResponseForCert picked
// (the first with cert's serial) names cert's issuer: ParseResponseForCert
// matches the serial only.
func checkCertID(body []byte, cert, issuer *x509.Certificate) error {
	var r ocspResponseASN1
	if _, err := asn1.Unmarshal(body, &r); err != nil {
		return err
	}
	var b ocspBasicASN1
	if _, err := asn1.Unmarshal(r.Response.Response, &b); err != nil {
		return err
	}
	for _, s := range b.TBSResponseData.Responses {
		if s.CertID.SerialNumber == nil || s.CertID.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		var h crypto.Hash
		for _, x := range certIDHashes {
			if s.CertID.HashAlgorithm.Algorithm.Equal(x.oid) {
				h = x.hash
			}
		}
		if h == 0 || !h.Available() {
			return errors.New("unsupported CertID hash algorithm")
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
			return err
		}
		nh := h.New()
		nh.Write(issuer.RawSubject)
		kh := h.New()
		kh.Write(spki.PublicKey.RightAlign())
		if !bytes.Equal(nh.Sum(nil), s.CertID.NameHash) || !bytes.Equal(kh.Sum(nil), s.CertID.IssuerKeyHash) {
			return errors.New("the answer is about a certificate of another issuer")
		}
		return nil
	}
	return errors.New("no answer for the certificate's serial")
}
