package decoder

import (
	"net/textproto"
	"slices"
	"sort"
	"strings"
)

// family is a payload encoding (see the package documentation).
type family uint8

const (
	famURLPEM  family = 1 << iota // U1/U2: URL-encoded PEM, '+' '/' '=' escaped or literal
	famPEM                        // P: PEM, possibly with mangled line breaks
	famBase64                     // B: bare base64 DER (comma list, quoted, one DER blob)
	famRFC9440                    // R: RFC 9440 byte sequences ":b64:", comma list
	famXFCC                       // S: Envoy x-forwarded-client-cert
)

// famSet is a set of families a profile accepts.
type famSet = family

const famAll = famURLPEM | famPEM | famBase64 | famRFC9440 | famXFCC

// famPayload are the families that can appear inside a chain header or an
// XFCC Cert/Chain value.
const famPayload = famURLPEM | famPEM | famBase64 | famRFC9440

func (f family) String() string {
	switch f {
	case famURLPEM:
		return "URL-encoded PEM"
	case famPEM:
		return "PEM"
	case famBase64:
		return "base64 DER"
	case famRFC9440:
		return "RFC 9440 byte sequence"
	case famXFCC:
		return "Envoy x-forwarded-client-cert"
	}
	var parts []string
	for _, g := range []family{famURLPEM, famPEM, famBase64, famRFC9440, famXFCC} {
		if f&g != 0 {
			parts = append(parts, g.String())
		}
	}
	return strings.Join(parts, " or ")
}

// profile is one producer: its default header names and the payload
// families it is known to send.
type profile struct {
	name string
	// header and chainHeader are the default header names, canonical.
	header      string
	chainHeader string
	// fams are the families accepted in the certificate header.
	fams famSet
	// list: the certificate header is a list header (XFCC), whose field
	// lines are joined with ","; otherwise it is a singleton.
	list bool
	// one: the producer sends exactly one certificate in the certificate
	// header (intermediates, if any, come in the chain header), so a
	// second one there is malformed.
	one bool
}

// Profile names (fixed by the design; users, docs and tests depend on them).
const (
	ProfileAuto       = "auto"
	ProfileAWSALB     = "aws_alb"
	ProfileNginx      = "nginx"
	ProfileEnvoyXFCC  = "envoy_xfcc"
	ProfileTraefik    = "traefik"
	ProfileHAProxy    = "haproxy"
	ProfileCloudflare = "cloudflare"
	ProfileGCP        = "gcp"
	ProfileAzure      = "azure"
	ProfileApache     = "apache"
	ProfileWSO2       = "wso2"
	ProfileRFC9440    = "rfc9440"
	ProfilePEM        = "pem"
	ProfileDERBase64  = "der_base64"
)

// XFCCHeader is Envoy's header, canonical form.
const XFCCHeader = "X-Forwarded-Client-Cert"

func canon(h string) string {
	if h == "" {
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(h)
}

// profiles is the profile table. Every family of every producer the package
// documentation lists is covered; the accepted families are a little wider
// than what the producer strictly emits where a neighbour variant is common
// (nginx's deprecated $ssl_client_cert is mangled PEM, Azure App Service
// sends base64 DER but Application Gateway sends PEM, ...).
//
// one is set for producers that put exactly one certificate in the
// certificate header: nginx ($ssl_client_escaped_cert, $ssl_client_cert),
// HAProxy (ssl_c_der), Cloudflare, GCP (client_cert_leaf), Azure, Apache
// (SSL_CLIENT_CERT), WSO2 and RFC 9440 (Client-Cert). The others send a
// chain there (ALB passthrough, Traefik's list of what the client sent) or
// are generic (auto, pem, der_base64); their second and later
// certificates must still be CA certificates (decode.go), and an RFC 9440
// value in a certificate header is always a single Item.
var profiles = map[string]*profile{
	ProfileAuto:       {name: ProfileAuto, header: DefaultHeader, fams: famAll},
	ProfileAWSALB:     {name: ProfileAWSALB, header: "X-Amzn-Mtls-Clientcert", fams: famURLPEM | famPEM},
	ProfileNginx:      {name: ProfileNginx, header: "Ssl-Client-Cert", fams: famURLPEM | famPEM, one: true},
	ProfileEnvoyXFCC:  {name: ProfileEnvoyXFCC, header: XFCCHeader, fams: famXFCC, list: true},
	ProfileTraefik:    {name: ProfileTraefik, header: "X-Forwarded-Tls-Client-Cert", fams: famBase64},
	ProfileHAProxy:    {name: ProfileHAProxy, header: "X-Ssl-Client-Cert", chainHeader: "X-Ssl-Client-Cert-Chain", fams: famBase64, one: true},
	ProfileCloudflare: {name: ProfileCloudflare, header: "Cf-Client-Cert-Der-Base64", fams: famBase64 | famRFC9440, one: true},
	ProfileGCP:        {name: ProfileGCP, header: "X-Client-Cert-Leaf", chainHeader: "X-Client-Cert-Chain", fams: famRFC9440, one: true},
	ProfileAzure:      {name: ProfileAzure, header: "X-Arr-Clientcert", fams: famBase64 | famPEM | famURLPEM, one: true},
	ProfileApache:     {name: ProfileApache, header: "Ssl-Client-Cert", fams: famPEM | famURLPEM, one: true},
	ProfileWSO2:       {name: ProfileWSO2, header: "X-Wso2-Client-Certificate", fams: famPEM | famURLPEM | famBase64, one: true},
	ProfileRFC9440:    {name: ProfileRFC9440, header: "Client-Cert", chainHeader: "Client-Cert-Chain", fams: famRFC9440, one: true},
	ProfilePEM:        {name: ProfilePEM, header: DefaultHeader, fams: famPEM},
	ProfileDERBase64:  {name: ProfileDERBase64, header: DefaultHeader, fams: famBase64},
}

// profileNames is Profiles(), computed once.
var profileNames = func() []string {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		if n != ProfileAuto {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append([]string{ProfileAuto}, names...)
}()

// Profiles lists the valid profile names, "auto" first, the others sorted;
// for error messages and docs.
func Profiles() []string { return append([]string(nil), profileNames...) }

// suggest names a profile that accepts family f, for error messages.
func suggest(f family, literal bool) string {
	switch f {
	case famURLPEM:
		if literal {
			return ProfileAWSALB
		}
		return ProfileNginx
	case famPEM:
		return ProfilePEM
	case famBase64:
		return ProfileDERBase64
	case famRFC9440:
		return ProfileRFC9440
	case famXFCC:
		return ProfileEnvoyXFCC
	}
	return ProfileAuto
}

// autoReports are the profiles the auto profile may report (run.detected).
var autoReports = [...]string{ProfileEnvoyXFCC, ProfileRFC9440, ProfileNginx, ProfileAWSALB, ProfilePEM, ProfileDERBase64, ProfileWSO2}

// CertificateHeaders lists every header a request could carry a certificate
// in for this decoder, canonical, without repeats: the certificate header,
// the chain header, and with the auto profile the chain headers of the
// profiles it may report (RFC 9440's Client-Cert-Chain): auto does not read
// those, but an upstream of that family would. The handler removes them all
// before passing a request on, so that no client-sent certificate header
// reaches an upstream.
func (d *Decoder) CertificateHeaders() []string {
	out := []string{d.opts.Header}
	add := func(h string) {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	add(d.opts.ChainHeader)
	if d.profile.name == ProfileAuto {
		for _, name := range autoReports {
			add(profiles[name].chainHeader)
		}
	}
	return out
}
