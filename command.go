package mtlsauth

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mtls-auth",
		Usage: "decode [--profile <name>] [--json] [--xfcc-element first|last|<n>]",
		Short: "Tools for the mtls_auth handler",
		Long: `
Tools for the mtls_auth HTTP handler.

  decode   decodes a captured client certificate header read from stdin
`,
		CobraFunc: func(cmd *cobra.Command) {
			decode := &cobra.Command{
				Use:   "decode [--profile <name>] [--json] [--xfcc-element first|last|<n>]",
				Short: "Decodes a captured client certificate header read from stdin",
				Long: `
Reads one client certificate header value on stdin, as a load balancer sent
it, decodes it with the same code as the mtls_auth handler, and prints each
certificate: subject, issuer, serial (hex), SHA-256 fingerprint, validity,
DNS/URI/email/IP SANs and whether it is a CA, plus the profile that decoded
it. The input may be the bare value or a "Header-Name: value" line; one
trailing newline is ignored. Nothing is verified: this shows what the header
holds, not whether it is trusted.

--profile
    The producer profile: ` + strings.Join(decoder.Profiles(), ", ") + `.
    Default auto, which recognises the encoding by its shape.

--json
    Print a JSON array with one object per certificate, leaf first.

--xfcc-element
    For x-forwarded-client-cert values: first, last (default) or a position
    (1 is the first, -1 the last).

Example:
    echo "$HEADER" | caddy mtls-auth decode --profile nginx
`,
				Args: cobra.NoArgs,
				RunE: func(cmd *cobra.Command, _ []string) error {
					profile, _ := cmd.Flags().GetString("profile")
					asJSON, _ := cmd.Flags().GetBool("json")
					element, _ := cmd.Flags().GetString("xfcc-element")
					err := runDecode(os.Stdin, cmd.OutOrStdout(), decodeFlags{profile: profile, json: asJSON, xfccElement: element})
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "mtls-auth decode:", err)
						cmd.SilenceErrors = true
					}
					return err
				},
			}
			decode.Flags().StringP("profile", "p", decoder.ProfileAuto, "producer profile (auto, aws_alb, nginx, envoy_xfcc, ...)")
			decode.Flags().Bool("json", false, "print a JSON array")
			decode.Flags().String("xfcc-element", "last", "XFCC element: first, last or a position")
			cmd.AddCommand(decode)
		},
	})
}

// decodeFlags are the options of `caddy mtls-auth decode`.
type decodeFlags struct {
	profile     string
	json        bool
	xfccElement string
}

// maxDecodeInput bounds what the command reads from stdin.
const maxDecodeInput = 1 << 20

// runDecode reads a header value from in, decodes it and writes the report
// to out.
func runDecode(in io.Reader, out io.Writer, f decodeFlags) error {
	raw, err := io.ReadAll(io.LimitReader(in, maxDecodeInput+1))
	if err != nil {
		return fmt.Errorf("reading stdin: %v", err)
	}
	if len(raw) > maxDecodeInput {
		return fmt.Errorf("input is over %d bytes", maxDecodeInput)
	}
	name, value := splitHeaderLine(string(raw))
	if f.xfccElement == "" {
		f.xfccElement = "last"
	}
	element, ok := parseXFCCElement(f.xfccElement)
	if !ok {
		return fmt.Errorf("invalid --xfcc-element %q: %s", f.xfccElement, xfccElementWant)
	}
	opts := decoder.Options{
		Profile:        f.profile,
		MaxHeaderBytes: maxDecodeInput,
		MaxChain:       64,
		XFCCElement:    element,
	}
	if strings.EqualFold(name, decoder.XFCCHeader) {
		opts.Header = name // auto reads it as a list header
	}
	d, err := decoder.New(opts)
	if err != nil {
		return err
	}
	res, err := d.Decode([]string{value}, nil)
	if errors.Is(err, decoder.ErrAbsent) {
		return errors.New("the input holds no certificate (empty, or a \"no certificate\" value such as (null))")
	}
	if err != nil {
		return err
	}
	return writeCertReport(out, res, f.json)
}

// splitHeaderLine trims one trailing newline and, when the input is a
// "Header-Name: value" line, splits off the name. A value never starts with
// a header name and a colon: RFC 9440 starts with ':', XFCC keys are
// followed by '=', PEM and base64 hold no ':' before a non-token character.
func splitHeaderLine(s string) (name, value string) {
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	i := 0
	for i < len(s) && isTokenByte(s[i]) {
		i++
	}
	if i > 0 && i < len(s) && s[i] == ':' {
		return s[:i], strings.TrimLeft(s[i+1:], " \t")
	}
	return "", s
}

func isTokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// certReport is one certificate as `caddy mtls-auth decode` prints it.
type certReport struct {
	Position  int      `json:"position"`
	Role      string   `json:"role"`
	Profile   string   `json:"profile"`
	Subject   string   `json:"subject"`
	Issuer    string   `json:"issuer"`
	Serial    string   `json:"serial"`
	SHA256    string   `json:"sha256_fingerprint"`
	NotBefore string   `json:"not_before"`
	NotAfter  string   `json:"not_after"`
	DNSNames  []string `json:"dns_names"`
	URIs      []string `json:"uris"`
	Emails    []string `json:"emails"`
	IPs       []string `json:"ips"`
	IsCA      bool     `json:"is_ca"`
}

func newCertReport(i int, profile string, c *x509.Certificate) certReport {
	r := certReport{
		Position:  i + 1,
		Role:      "leaf",
		Profile:   profile,
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    serialHex(c),
		SHA256:    store.FingerprintOf(c).String(),
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
		DNSNames:  append([]string{}, c.DNSNames...),
		URIs:      []string{},
		Emails:    append([]string{}, c.EmailAddresses...),
		IPs:       []string{},
		IsCA:      c.IsCA,
	}
	if i > 0 {
		r.Role = "chain"
	}
	for _, u := range c.URIs {
		r.URIs = append(r.URIs, u.String())
	}
	for _, ip := range c.IPAddresses {
		r.IPs = append(r.IPs, ip.String())
	}
	return r
}

func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	s := hex.EncodeToString(c.SerialNumber.Bytes())
	if s == "" {
		s = "00"
	}
	if c.SerialNumber.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// writeCertReport prints res as text or as a JSON array.
func writeCertReport(w io.Writer, res decoder.Result, asJSON bool) error {
	reports := make([]certReport, 0, len(res.Certs))
	for i, c := range res.Certs {
		reports = append(reports, newCertReport(i, res.Profile, c))
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "profile: %s\n", res.Profile)
	fmt.Fprintf(&b, "certificates: %d\n", len(reports))
	list := func(v []string) string {
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	}
	for _, r := range reports {
		fmt.Fprintf(&b, "\ncertificate %d (%s)\n", r.Position, r.Role)
		fmt.Fprintf(&b, "  subject:            %s\n", r.Subject)
		fmt.Fprintf(&b, "  issuer:             %s\n", r.Issuer)
		fmt.Fprintf(&b, "  serial:             %s\n", r.Serial)
		fmt.Fprintf(&b, "  sha256_fingerprint: %s\n", r.SHA256)
		fmt.Fprintf(&b, "  not_before:         %s\n", r.NotBefore)
		fmt.Fprintf(&b, "  not_after:          %s\n", r.NotAfter)
		fmt.Fprintf(&b, "  dns_names:          %s\n", list(r.DNSNames))
		fmt.Fprintf(&b, "  uris:               %s\n", list(r.URIs))
		fmt.Fprintf(&b, "  emails:             %s\n", list(r.Emails))
		fmt.Fprintf(&b, "  ips:                %s\n", list(r.IPs))
		fmt.Fprintf(&b, "  is_ca:              %t\n", r.IsCA)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
