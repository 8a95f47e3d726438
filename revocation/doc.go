// Package revocation checks whether the certificates of a verified chain
// have been revoked, by certificate revocation lists (CRLs, RFC 5280) and by
// OCSP (RFC 6960). It is a plain library: no init, no Caddy imports.
//
// # Sources
//
// A [Checker] is built once from a [Config] and consulted for every chain:
//
//   - Configured CRLs (files or http/https URLs) are loaded by [New], which
//     fails if any of them cannot be loaded. [Checker.Refresh] (run every
//     Config.RefreshInterval by the Checker itself unless disabled) re-reads a
//     file whose modification time or size changed and re-fetches a URL whose
//     CRL is about to pass, or has passed, its nextUpdate. A replacement that
//     cannot be read, does not parse, is not signed by the issuer the previous
//     one was verified against, or (for a URL) is older than the one in use is
//     refused: the last good CRL stays in use and the event is logged (once:
//     a failure that repeats word for word, such as a file still missing or
//     a server still down, is not logged again). Config.OnReload tells a
//     caller that caches results when a reloaded CRL is put in use.
//   - With Config.CRLFromCertificate, the http/https CRL distribution points
//     named in each certificate are fetched on first use, cached (a bounded
//     LRU) until their nextUpdate, and re-fetched on the first use after it.
//     Concurrent fetches of one URL are coalesced.
//   - With Config.OCSP, the responder (Config.OCSPResponder, else the first
//     http/https responder in the certificate's Authority Information Access)
//     is asked by HTTP POST (request hashed with SHA-1, as responders expect;
//     no nonce). The answer must be about the certificate (serial and issuer
//     hashes), signed by the issuer or by a responder certificate the issuer
//     delegated with the OCSPSigning extended key usage, and current:
//     thisUpdate not more than 5 minutes ahead, nextUpdate not passed, and
//     without a nextUpdate not more than an hour old. It is cached (a bounded
//     LRU) until its nextUpdate, or 5 minutes when it has none; an "unknown"
//     answer for at most a minute and a failure for 5 seconds, so that a dead
//     responder costs one timeout per certificate now and then, not one per
//     request. Concurrent lookups of one certificate are coalesced.
//
// A CRL is used for a certificate only when its issuer name equals the
// certificate's issuer name, its signature verifies with the issuer
// certificate from the chain being checked (verified lazily on first use
// with that issuer, and remembered), and its scope (Issuing Distribution
// Point) covers the certificate. Delta CRLs, indirect CRLs and CRLs limited
// to some revocation reasons are refused when loaded. Lookups are a map
// access by serial number.
//
// # Which certificates are checked
//
// [Checker.Check] takes a verified chain, leaf first, each certificate
// followed by its issuer, ending at the trust anchor it was verified to
// (normally the root). Every certificate but the last is checked against the
// one after it; the last is the anchor, trusted by configuration, and is not
// checked. A chain of one self-issued certificate has nothing to check and is
// [Good]; a chain of one certificate that is not self-issued has no issuer to
// check it with and is [Unknown]. Check must only be given chains that have
// been verified: it trusts the chain's issuers and the URLs they signed. A
// certificate not followed by its issuer (by name) is Unknown.
//
// # Status
//
// For one certificate, every configured source is consulted: it is [Revoked]
// if any source says so (a CRL listing it counts even when the CRL is past
// its nextUpdate: revocation is final); otherwise [Good] if at least one
// source gave a valid, current answer that it is not revoked; otherwise
// [Unknown]. For the chain: any Revoked makes the result Revoked; else any
// Unknown makes it Unknown; else it is Good.
//
// Unknown means that no trustworthy current answer could be had for some
// certificate: no CRL or responder covers it, the CRL is stale (past its
// nextUpdate and no newer one could be loaded), a signature did not verify,
// the responder answered "unknown", failed, or did not answer within the
// timeout; a CRL whose issuer has a key usage without cRLSign is not used.
// Result.Err says why (with sentinels for errors.Is), and [Explain] says it in
// words fit for a client-facing message. What to do with Unknown is the caller's
// decision: reject (hard fail, the safe default) or allow and log (soft fail).
//
// # ValidUntil
//
// Result.ValidUntil is the earliest expiry of the answers the result rests
// on: a CRL's nextUpdate, an OCSP answer's nextUpdate (or 5 minutes after it
// was fetched when it has none), and for configured CRLs no later than the
// next refresh, since a CRL may be replaced before its nextUpdate. A caller
// that caches results must not reuse one past ValidUntil. It is zero for
// Unknown results, which must not be cached.
//
// # Observing
//
// Config.Observer, when set, is told each method's answer (CRL or OCSP,
// good, revoked or unknown) for every certificate Check answers about, once
// per certificate, so that a caller can count checks without this package
// depending on a metrics library. [Checker.CRLs] reports each configured
// CRL's thisUpdate and nextUpdate and the outcome of its last refresh, and
// [Checker.OCSPCacheLen] the OCSP answers held, for a status page.
package revocation
