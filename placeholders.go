package mtlsauth

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// outcome is what the handler established about one request. Its replace
// method answers the {http.mtls.*} placeholders lazily, so a request pays
// only for the placeholders something actually reads.
type outcome struct {
	id      *identity // nil unless authenticated
	source  string    // "header", "tls" or ""
	profile string
	reason  reason // "" on success
	detail  string
	// fingerprint of a certificate that was decoded but not accepted, for logs.
	rejectedFP string
	// its subject CN, and the alias of the allow entry that admitted it
	// before a later check refused it (revocation), for logs.
	rejectedCN, rejectedAlias string
	// from is this request's input, when id came from the cache.
	from presented
	// reparsed is the leaf parsed again from this request's input for a
	// cached identity (outcome.leaf), kept for the request's other
	// placeholders.
	reparsed *x509.Certificate
	// up holds the forms handed on to upstreams, made on first use for this
	// request (upstream.go); the cached identity does not keep them.
	up *upstreamForms
}

const placeholderPrefix = "http.mtls."

// replace is a caddy.ReplacerFunc. Every {http.mtls.*} key resolves, to the
// empty string when there is nothing to say, so that unauthenticated requests
// render cleanly; {http.auth.user.id} resolves only when authenticated, so a
// later auth handler's value is not shadowed.
func (o *outcome) replace(key string) (any, bool) {
	k, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		if key == userIDKey && o.id != nil {
			return o.userID(), true
		}
		return nil, false
	}
	switch k {
	case "authenticated":
		return strconv.FormatBool(o.id != nil), true
	case "source":
		return o.source, true
	case "profile":
		return o.profile, true
	case "error":
		return string(o.reason), true
	}
	if o.id == nil {
		return "", true
	}
	return o.placeholder(k), true
}

// placeholder answers one key below http.mtls. for an authenticated request.
func (o *outcome) placeholder(k string) string {
	id := o.id
	switch k {
	case "fingerprint":
		return id.fp.String()
	case "subject":
		return o.names().subject
	case "subject.cn":
		return o.names().cn
	case "issuer":
		return o.names().issuer
	case "serial":
		return o.names().serial
	case "not_after":
		return o.names().notAfter
	case "alias":
		return id.alias
	case "tier":
		return id.tier
	case "certificate_der_base64":
		return base64.StdEncoding.EncodeToString(o.leafDER())
	case "rfc9440.cert":
		return o.upstream().rfc9440Cert
	case "rfc9440.chain":
		return o.upstream().rfc9440Chain
	case "xfcc":
		return o.upstream().xfcc
	case "x5t_s256":
		return o.upstream().x5tS256
	case "spiffe_id":
		return o.upstream().spiffeID
	}
	if key, ok := strings.CutPrefix(k, "meta."); ok {
		return id.meta[key]
	}
	if rest, ok := strings.CutPrefix(k, "san."); ok {
		name, index, indexed := strings.Cut(rest, ".")
		var list []string
		if sans := o.names().sans; sans != nil {
			switch name {
			case "dns_names":
				list = sans.dns
			case "uris":
				list = sans.uris
			case "emails":
				list = sans.emails
			case "ips":
				list = sans.ips
			}
		}
		if !indexed {
			return strings.Join(list, ",")
		}
		if i, err := strconv.Atoi(index); err == nil && i >= 0 && i < len(list) {
			return list[i]
		}
	}
	return ""
}

// userIDKey is the placeholder Caddy's access logs read the user from.
const userIDKey = "http.auth.user.id"

// userIDReplacer answers {http.auth.user.id} with the user_id template,
// evaluated with the request's replacer when asked, and every other key as
// o.replace does. It is made per request: o's identity is shared through
// the cache.
func userIDReplacer(repl *caddy.Replacer, template string, o *outcome) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		if key == userIDKey {
			return repl.ReplaceAll(template, ""), true
		}
		return o.replace(key)
	}
}

// checkUserID refuses a user_id template that refers to itself.
func checkUserID(template string) error {
	if strings.Contains(template, "{"+userIDKey) {
		return fmt.Errorf("user_id: the template may not use {%s}, which it defines", userIDKey)
	}
	return nil
}
