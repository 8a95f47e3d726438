package revocation

import (
	"errors"
	"strings"
)

// Errors that Result.Err wraps besides those in checker.go; test with
// errors.Is.
var (
	// ErrNoCRLSign: the CRL's issuer has a key usage extension without
	// cRLSign, so it may not sign CRLs (RFC 5280 4.2.1.3) and its CRL is not
	// used.
	ErrNoCRLSign = errors.New("the CRL's issuer lacks the cRLSign key usage")
	// ErrResponderDown: the OCSP responder could not be reached, failed, or
	// did not answer in time.
	ErrResponderDown = errors.New("OCSP responder did not answer")
	// ErrCRLUnavailable: a CRL named in the certificate (distribution point)
	// could not be fetched.
	ErrCRLUnavailable = errors.New("CRL could not be fetched")
)

// explanations pairs each error an Unknown result can wrap with what it
// means to an operator, in the order Explain lists them.
var explanations = []struct {
	err  error
	text string
}{
	{ErrNotCovered, "no CRL or OCSP responder covers the certificate's issuer"},
	{ErrNoCRLSign, "the CRL's issuer lacks the cRLSign key usage"},
	{ErrResponderDown, "the OCSP responder could not be reached or did not answer in time"},
	{ErrCRLUnavailable, "the certificate's CRL could not be fetched"},
	{ErrStale, "the CRL is past its nextUpdate and no newer one could be loaded"},
	{ErrResponderUnknown, "the OCSP responder does not know the certificate"},
	{ErrBadSignature, "a CRL or OCSP answer is not signed by the certificate's issuer"},
	{ErrTooLarge, "a CRL or OCSP answer is larger than allowed"},
	{ErrNoIssuer, "the chain has no issuer to check the certificate with"},
	{ErrChainOrder, "a certificate in the chain is not followed by its issuer"},
}

// Explain says in a few words why a status is Unknown, from Result.Err:
// every known cause it wraps, joined by "; " (several sources may each
// have failed their own way). It never includes certificate material,
// names or URLs, so it can go into an error message a client sees; log
// the error itself for those.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	var parts []string
	for _, e := range explanations {
		if errors.Is(err, e.err) {
			parts = append(parts, e.text)
		}
	}
	if len(parts) == 0 {
		return "no trustworthy current answer could be had"
	}
	return strings.Join(parts, "; ")
}
