package mtlsauth

import "net/http"

// reason is the code a rejected or unauthenticated request carries in
// {http.mtls.error}. The set and the status of each are part of the
// plugin's contract (the README's "Status codes and reasons" table): users
// match on them in handle_errors and later auth handlers, so a code is
// never renamed or reused for another meaning.
type reason string

const (
	reasonMissing         reason = "missing"
	reasonUntrustedSource reason = "untrusted_source"
	reasonMalformed       reason = "malformed"
	reasonTooLarge        reason = "too_large"
	reasonDuplicateHeader reason = "duplicate_header"
	reasonUntrusted       reason = "untrusted"
	reasonExpired         reason = "expired"
	reasonNotYetValid     reason = "not_yet_valid"
	reasonWrongUsage      reason = "wrong_usage"
	reasonRevoked         reason = "revoked"
	reasonNotAllowed      reason = "not_allowed"
	reasonDenied          reason = "denied"
	reasonThrottled       reason = "throttled"
)

// reasonRevocationUnknown: no CRL or OCSP answer could establish the
// revocation status (and no soft_fail). reasonRevoked means an answer said
// the certificate is revoked.
const reasonRevocationUnknown reason = "revocation_unknown"

// status is the HTTP status a rejection with this reason answers:
// 401 when no valid certificate could be established, 403 when a valid
// certificate is not allowed here, 429 when throttled.
func (r reason) status() int {
	switch r {
	case reasonNotAllowed, reasonDenied:
		return http.StatusForbidden
	case reasonThrottled:
		return http.StatusTooManyRequests
	default:
		return http.StatusUnauthorized
	}
}

// absent reports whether the reason means "no certificate was presented",
// which optional mode lets through unauthenticated.
func (r reason) absent() bool {
	return r == reasonMissing || r == reasonUntrustedSource
}
