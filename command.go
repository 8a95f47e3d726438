package mtlsauth

import (
	"context"
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
	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mtls-auth",
		Usage: "decode [--profile <name>] [--chain <file>] [--ca <pool.pem>] [--json] [--xfcc-element first|last|<n>] [--xfcc-proxies <uri>,...]",
		Short: "Tools for the mtls_auth handler",
		Long: `
Tools for the mtls_auth HTTP handler.

  decode   decodes a captured client certificate header read from stdin
`,
		CobraFunc: func(cmd *cobra.Command) {
			decode := &cobra.Command{
				Use:   "decode [--profile <name>] [--chain <file>] [--ca <pool.pem>] [--json] [--xfcc-element first|last|<n>] [--xfcc-proxies <uri>,...]",
				Short: "Decodes a captured client certificate header read from stdin",
				Long: `
Reads one client certificate header value on stdin, as a load balancer sent
it, decodes it with the same code as the mtls_auth handler, and prints each
certificate: subject, issuer, serial (hex), SHA-256 fingerprint, validity,
DNS/URI/email/IP SANs and whether it is a CA, plus the profile that decoded
it. The input may be the bare value or a "Header-Name: value" line; one
trailing newline is ignored.

Then it checks the certificate as the handler does and prints the verdict:
ok, or the reason code the handler would give (expired, not_yet_valid,
wrong_usage, untrusted, ...). Without --ca only the leaf's validity window
and key usage are checked; with --ca the chain must also verify to that
pool. Allow lists, the deny list and revocation are not consulted. The exit
status is non-zero unless the verdict is ok.

--profile
    The producer profile: ` + strings.Join(decoder.Profiles(), ", ") + `.
    Default auto, which recognises the encoding by its shape.

--chain
    A file holding the chain header captured with it (RFC 9440
    Client-Cert-Chain, GCP, Cloudflare, HAProxy), bare or as a
    "Header-Name: value" line.

--ca
    A PEM file of CA certificates: the trust pool to verify the chain to.

--json
    Print a JSON object: profile, verdict, detail, and the certificates,
    leaf first.

--xfcc-element
    For x-forwarded-client-cert values: first, last (default) or a position
    (1 is the first, -1 the last).

--xfcc-proxies
    For x-forwarded-client-cert values: select the element as xfcc_proxies
    does (comma-separated URIs, e.g. an Istio gateway's SPIFFE ID).

Example:
    echo "$HEADER" | caddy mtls-auth decode --profile nginx --ca /etc/mtls/ca.pem
`,
				Args: cobra.NoArgs,
				RunE: func(cmd *cobra.Command, _ []string) error {
					profile, _ := cmd.Flags().GetString("profile")
					asJSON, _ := cmd.Flags().GetBool("json")
					element, _ := cmd.Flags().GetString("xfcc-element")
					proxies, _ := cmd.Flags().GetStringSlice("xfcc-proxies")
					chain, _ := cmd.Flags().GetString("chain")
					ca, _ := cmd.Flags().GetString("ca")
					err := runDecode(os.Stdin, cmd.OutOrStdout(), decodeFlags{profile: profile, json: asJSON, xfccElement: element,
						xfccProxies: proxies, chainFile: chain, caFile: ca})
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "mtls-auth decode:", err)
						cmd.SilenceErrors = true
					}
					return err
				},
			}
			decode.Flags().StringP("profile", "p", decoder.ProfileAuto, "producer profile (auto, aws_alb, nginx, envoy_xfcc, ...)")
			decode.Flags().Bool("json", false, "print a JSON object")
			decode.Flags().String("xfcc-element", "", "XFCC element: first, last (default) or a position")
			decode.Flags().StringSlice("xfcc-proxies", nil, "XFCC: step back over elements whose URI is one of these")
			decode.Flags().String("chain", "", "file holding the chain header")
			decode.Flags().String("ca", "", "PEM file of CA certificates to verify the chain to")
			cmd.AddCommand(decode)
		},
	})
}

// decodeFlags are the options of `caddy mtls-auth decode`.
type decodeFlags struct {
	profile     string
	json        bool
	xfccElement string
	xfccProxies []string
	chainFile   string
	caFile      string
}

// maxDecodeInput bounds what the command reads from stdin.
const maxDecodeInput = 1 << 20

// runDecode reads a header value from in, decodes it, checks it as the
// handler would, and writes the report to out. It fails when the value
// does not decode, or when the verdict is not ok (after the report).
func runDecode(in io.Reader, out io.Writer, f decodeFlags) error {
	raw, err := readCapped(in, "stdin")
	if err != nil {
		return err
	}
	name, value := splitHeaderLine(string(raw))
	var chain []string
	if f.chainFile != "" {
		data, err := readFile(f.chainFile)
		if err != nil {
			return err
		}
		_, v := splitHeaderLine(string(data))
		chain = []string{v}
	}
	var element int
	if f.xfccElement != "" {
		var ok bool
		if element, ok = parseXFCCElement(f.xfccElement); !ok {
			return fmt.Errorf("invalid --xfcc-element %q: %s", f.xfccElement, xfccElementWant)
		}
	}
	opts := decoder.Options{
		Profile:        f.profile,
		MaxHeaderBytes: 2 * maxDecodeInput,
		MaxChain:       64,
		XFCCElement:    element,
		XFCCProxies:    f.xfccProxies,
	}
	if strings.EqualFold(name, decoder.XFCCHeader) {
		opts.Header = name // auto reads it as a list header
	}
	if chain != nil {
		opts.ChainHeader = decodeChainHeader
	}
	d, err := decoder.New(opts)
	if err != nil {
		return err
	}
	res, err := d.Decode([]string{value}, chain)
	if errors.Is(err, decoder.ErrAbsent) {
		return errors.New("the input holds no certificate (empty, or a \"no certificate\" value such as (null))")
	}
	if err != nil {
		return fmt.Errorf("%v (the handler's reason: %s)", err, decodeReason(err))
	}
	v, err := cliVerifier(f.caFile, opts.MaxChain)
	if err != nil {
		return err
	}
	vd := v.verify(context.Background(), res.Certs, store.FingerprintOf(res.Certs[0]), time.Now())
	if err := writeCertReport(out, res, vd, f); err != nil {
		return err
	}
	if vd.reason != "" {
		return fmt.Errorf("the handler would reject this certificate: %s", vd.reason)
	}
	return nil
}

// decodeChainHeader names the chain header the command decodes --chain
// as; any name different from the certificate header's would do.
const decodeChainHeader = "X-Mtls-Auth-Decode-Chain"

// cliVerifier is the handler's verifier over the --ca pool (none: validity
// and key usage only), with no allow list, deny list or revocation, and
// the decoder's chain limit.
func cliVerifier(caFile string, maxChain int) (*verifier, error) {
	v := &verifier{limits: pathverify.Limits{MaxChain: maxChain}}
	ts := &trustSet{}
	if caFile != "" {
		certs, err := store.ReadCertificates(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		ts.pool = pathverify.NewAnchors(pool, true)
	}
	v.static.Store(ts)
	return v, nil
}

// readCapped reads all of r, up to maxDecodeInput bytes.
func readCapped(r io.Reader, what string) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxDecodeInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", what, err)
	}
	if len(raw) > maxDecodeInput {
		return nil, fmt.Errorf("%s is over %d bytes", what, maxDecodeInput)
	}
	return raw, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, path)
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
		Subject:   decoder.SubjectName(c),
		Issuer:    decoder.IssuerName(c),
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

// decodeReport is what `caddy mtls-auth decode --json` prints.
type decodeReport struct {
	Profile string `json:"profile"`
	// Verdict is "ok" or the handler's reason code.
	Verdict string `json:"verdict"`
	Detail  string `json:"detail,omitempty"`
	// ChainVerified: --ca was given and the chain verified to it.
	ChainVerified bool         `json:"chain_verified"`
	Certificates  []certReport `json:"certificates"`
}

// writeCertReport prints res and its verdict as text or as JSON.
func writeCertReport(w io.Writer, res decoder.Result, vd verdict, f decodeFlags) error {
	rep := decodeReport{Profile: res.Profile, Verdict: "ok", Detail: vd.detail, Certificates: make([]certReport, 0, len(res.Certs))}
	if vd.reason != "" {
		rep.Verdict = string(vd.reason)
	} else {
		rep.ChainVerified = f.caFile != ""
	}
	for i, c := range res.Certs {
		rep.Certificates = append(rep.Certificates, newCertReport(i, res.Profile, c))
	}
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "profile: %s\n", res.Profile)
	fmt.Fprintf(&b, "certificates: %d\n", len(rep.Certificates))
	list := func(v []string) string {
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	}
	for _, r := range rep.Certificates {
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
	fmt.Fprintf(&b, "\nverdict: %s\n", rep.Verdict)
	if rep.Detail != "" {
		fmt.Fprintf(&b, "  %s\n", rep.Detail)
	}
	switch {
	case f.caFile == "":
		b.WriteString("  (validity and key usage only: give --ca to verify the chain)\n")
	case rep.ChainVerified:
		fmt.Fprintf(&b, "  chain verified to %s\n", f.caFile)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
