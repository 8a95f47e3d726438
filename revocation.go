package mtlsauth

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtlsauth/caddy-mtls-auth/revocation"
)

// Revocation checks that the chain's certificates (the leaf and the
// intermediates, not the root) are not revoked, by CRL and/or OCSP.
type Revocation struct {
	// CRL files (DER or PEM) or http/https URLs. Loaded at startup (one that
	// cannot be loaded fails the configuration); checked every
	// `sync_interval` (global option, default 10s) like the certificate
	// files, and re-read when the file changes or the CRL reaches its
	// nextUpdate: a replaced CRL takes effect within `sync_interval`. A
	// replacement that cannot be used keeps the last good CRL (logged once
	// per change). A CRL past its nextUpdate that cannot be refreshed leaves
	// its certificates' status unknown.
	CRL []string `json:"crl,omitempty"`
	// Also fetch the http/https CRLs named in each certificate's CRL
	// distribution points (cached until their nextUpdate, bounded).
	CRLFromCertificate bool `json:"crl_from_certificate,omitempty"`
	// Ask an OCSP responder about each certificate; answers are verified
	// and cached until their nextUpdate.
	OCSP bool `json:"ocsp,omitempty"`
	// The responder to ask. Default: the certificate's own (AIA).
	OCSPResponder string `json:"ocsp_responder,omitempty"`
	// Allow requests whose revocation status cannot be established (logged
	// at warn). Default: reject them, 401 `revocation_unknown`, with the
	// cause in the error message (no CRL covers the issuer, the responder
	// is down, ...). `revoked` is kept for certificates a CRL or an OCSP
	// answer lists as revoked.
	SoftFail bool `json:"soft_fail,omitempty"`
}

// provisionRevocation builds the checker.
func (h *Handler) provisionRevocation() error {
	if h.Revocation == nil {
		return nil
	}
	crls := make([]string, len(h.Revocation.CRL))
	for i, c := range h.Revocation.CRL {
		crls[i] = h.path(c)
	}
	logger := h.logger
	checker, err := revocation.New(revocation.Config{
		CRLs:               crls,
		CRLFromCertificate: h.Revocation.CRLFromCertificate,
		OCSP:               h.Revocation.OCSP,
		OCSPResponder:      h.Revocation.OCSPResponder,
		RefreshInterval:    h.crlRefreshInterval(),
		OnReload:           h.crlReloaded,
		Observer:           observeRevocation,
		Logger: func(msg, source string, err error) {
			if err != nil {
				logger.Warn(msg, zap.String("source", source), zap.Error(err))
				return
			}
			logger.Info(msg, zap.String("source", source))
		},
	})
	if err != nil {
		return fmt.Errorf("revocation: %v", err)
	}
	h.verifier.revocation = checker
	h.verifier.softFail = h.Revocation.SoftFail
	h.verifier.logger = h.logger
	if h.poolModule == nil {
		h.logger.Warn("revocation without trust_pool: a pinned certificate sent without its issuer cannot be checked and is refused unless soft_fail")
	}
	return nil
}

// checkRevocation checks chain (leaf first, each certificate followed by
// its issuer) and maps the result to a reason. until is how long a good
// answer holds; known is false when the status could not be established
// (such a result must not be reused).
func (v *verifier) checkRevocation(ctx context.Context, chain []*x509.Certificate, fp string) (r reason, detail string, until time.Time, known bool) {
	res := v.revocation.Check(ctx, chain)
	switch res.Status {
	case revocation.Good:
		return "", "", res.ValidUntil, true
	case revocation.Revoked:
		if c := v.logger.Check(zapcore.InfoLevel, "revoked certificate presented"); c != nil {
			c.Write(zap.String("fingerprint", fp), zap.Int("chain_index", res.Which), zap.String("source", res.Source), zap.Int("revocation_reason", res.RevocationReason))
		}
		if res.Which == 0 {
			return reasonRevoked, "certificate revoked", time.Time{}, true
		}
		return reasonRevoked, "a certificate in the chain is revoked", time.Time{}, true
	}
	if v.softFail {
		if c := v.logger.Check(zapcore.WarnLevel, "revocation status unknown; allowed by soft_fail"); c != nil {
			c.Write(zap.String("fingerprint", fp), zap.Error(res.Err))
		}
		return "", "", time.Time{}, false
	}
	if c := v.logger.Check(zapcore.DebugLevel, "revocation status unknown"); c != nil {
		c.Write(zap.String("fingerprint", fp), zap.Int("chain_index", res.Which), zap.Error(res.Err))
	}
	return reasonRevocationUnknown, unknownDetail(res), time.Time{}, false
}

// unknownDetail says why the status could not be established, and for
// which certificate, without certificate material (the error message may
// reach the client; the log has the full error).
func unknownDetail(res revocation.Result) string {
	whose := "the certificate"
	if res.Which > 0 {
		whose = "a certificate in the chain"
	}
	return "revocation status of " + whose + " could not be established: " + revocation.Explain(res.Err)
}

// unmarshalRevocation reads the revocation block:
//
//	revocation {
//		crl <file-or-url>...
//		crl_from_certificate
//		ocsp [<responder-url>]
//		soft_fail
//	}
func (h *Handler) unmarshalRevocation(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	rv := &Revocation{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("revocation: %s already specified", sub)
		}
		seen[sub] = true
		switch sub {
		case "crl":
			rv.CRL = d.RemainingArgs()
			if len(rv.CRL) == 0 {
				return d.ArgErr()
			}
			for _, c := range rv.CRL {
				if err := revocation.CheckCRL(c); err != nil {
					return d.Errf("revocation: %v", err)
				}
			}
		case "crl_from_certificate", "soft_fail":
			if d.NextArg() {
				return d.ArgErr()
			}
			if sub == "soft_fail" {
				rv.SoftFail = true
			} else {
				rv.CRLFromCertificate = true
			}
		case "ocsp":
			rv.OCSP = true
			args := d.RemainingArgs()
			switch len(args) {
			case 0:
			case 1:
				if err := revocation.CheckResponder(args[0]); err != nil {
					return d.Errf("revocation: %v", err)
				}
				rv.OCSPResponder = args[0]
			default:
				return d.ArgErr()
			}
		default:
			return d.Errf("revocation: unrecognized subdirective '%s'", sub)
		}
	}
	if len(rv.CRL) == 0 && !rv.CRLFromCertificate && !rv.OCSP {
		return d.Err("revocation: nothing to check: give crl, crl_from_certificate or ocsp")
	}
	h.Revocation = rv
	return nil
}
