package mtlsauth

import (
	"encoding/base64"
	"strconv"
	"strings"
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
	// from is this request's input, when id came from the cache.
	from presented
}

const placeholderPrefix = "http.mtls."

// replace is a caddy.ReplacerFunc. Every {http.mtls.*} key resolves, to the
// empty string when there is nothing to say, so that unauthenticated requests
// render cleanly; {http.auth.user.id} resolves only when authenticated, so a
// later auth handler's value is not shadowed.
func (o *outcome) replace(key string) (any, bool) {
	k, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		if key == "http.auth.user.id" && o.id != nil {
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
		return id.fingerprint()
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
