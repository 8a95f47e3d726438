package decoder

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// rdnAVA is one attribute of an RDN of a hand-made name: attribute OIDs, string tags and
// value bytes.
type rdnAVA struct {
	oid asn1.ObjectIdentifier
	tag cbasn1.Tag
	val string
}

// rawName encodes a Name from RDNs exactly as given (x509 and pkix would
// pick the string types and order themselves).
func rawName(rdns ...[]rdnAVA) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, rdn := range rdns {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, a := range rdn {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(a.oid)
						b.AddASN1(a.tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.val)) })
					})
				}
			})
		}
	})
	return b.BytesOrPanic()
}

var (
	oidCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU    = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC     = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidDC    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidJurC  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3}
	oidOrgID = asn1.ObjectIdentifier{2, 5, 4, 97}
	oidOdd   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
)

func attr(oid asn1.ObjectIdentifier, tag cbasn1.Tag, val string) []rdnAVA {
	return []rdnAVA{{oid, tag, val}}
}

func bmp(s string) string {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>8), byte(r))
	}
	return string(b)
}

// nameCases are the names TestFormatName and TestFormatNameAgainstOpenSSL
// render: what OpenSSL prints, and what BoringSSL (Envoy) prints.
var nameCases = []struct {
	name            string
	der             []byte
	openssl, boring string
}{
	{"CN and O", rawName(attr(oidO, cbasn1.PrintableString, "Example"), attr(oidCN, cbasn1.UTF8String, "client1")),
		"CN=client1,O=Example", ""},
	{"emailAddress like OpenSSL, not the OID", rawName(attr(oidCN, cbasn1.UTF8String, "c"), attr(oidEmail, cbasn1.IA5String, "ops@example.com")),
		"emailAddress=ops@example.com,CN=c", ""},
	{"DC, C", rawName(attr(oidDC, cbasn1.IA5String, "com"), attr(oidDC, cbasn1.IA5String, "example"), attr(oidC, cbasn1.PrintableString, "FR")),
		"C=FR,DC=example,DC=com", ""},
	{"multi-valued RDN, reversed", rawName(attr(oidO, cbasn1.UTF8String, "Widget"), []rdnAVA{{oidOU, cbasn1.UTF8String, "Sales"}, {oidCN, cbasn1.UTF8String, "J. Smith"}}),
		"CN=J. Smith+OU=Sales,O=Widget", ""},
	{"RFC 2253 specials", rawName(attr(oidCN, cbasn1.UTF8String, `a,b+c"d\e<f>g;h=i`)),
		`CN=a\,b\+c\"d\\e\<f\>g\;h=i`, ""},
	{"leading and trailing spaces, leading #", rawName(attr(oidCN, cbasn1.UTF8String, " #x "), attr(oidO, cbasn1.UTF8String, "#a#")),
		`O=\#a#,CN=\ #x\ `, ""},
	{"a lone #", rawName(attr(oidCN, cbasn1.UTF8String, "#")), `CN=#`, `CN=\#`},
	{"a lone space", rawName(attr(oidCN, cbasn1.UTF8String, " ")), `CN=\ `, ""},
	{"UTF-8 bytes escaped", rawName(attr(oidCN, cbasn1.UTF8String, "Ünï")), `CN=\C3\9Cn\C3\AF`, ""},
	{"T61String read as Latin-1", rawName(attr(oidCN, cbasn1.T61String, "caf\xe9")), `CN=caf\C3\A9`, ""},
	{"BMPString", rawName(attr(oidCN, cbasn1.Tag(30), bmp("Zoë"))), `CN=Zo\C3\AB`, ""},
	{"control characters", rawName(attr(oidCN, cbasn1.UTF8String, "a\nb\x7f")), `CN=a\0Ab\7F`, ""},
	{"unknown attribute as hex", rawName(attr(oidOdd, cbasn1.UTF8String, "x")), "1.3.6.1.4.1.99999.1=#0C0178", ""},
	{"known attribute, non-string value", rawName(attr(oidCN, cbasn1.INTEGER, "\x05")), "CN=#020105", ""},
	{"jurisdictionC: OpenSSL names it, BoringSSL does not", rawName(attr(oidJurC, cbasn1.PrintableString, "US"), attr(oidCN, cbasn1.UTF8String, "ev")),
		"CN=ev,jurisdictionC=US", "CN=ev,1.3.6.1.4.1.311.60.2.1.3=#13025553"},
	{"organizationIdentifier", rawName(attr(oidOrgID, cbasn1.UTF8String, "VATFR-1")),
		"organizationIdentifier=VATFR-1", "2.5.4.97=#0C0756415446522D31"},
	{"empty name", rawName(), "", ""},
}

func TestFormatName(t *testing.T) {
	t.Parallel()
	for _, tc := range nameCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := FormatName(tc.der)
			require.NoError(t, err)
			assert.Equal(t, tc.openssl, got, "OpenSSL flavour")
			want := tc.boring
			if want == "" {
				want = tc.openssl
			}
			got, err = formatName(tc.der, flavorBoringSSL)
			require.NoError(t, err)
			assert.Equal(t, want, got, "BoringSSL flavour")
		})
	}
}

func TestFormatNameErrors(t *testing.T) {
	t.Parallel()
	for name, der := range map[string][]byte{
		"empty":           nil,
		"not a sequence":  {0x31, 0x00},
		"trailing data":   append(rawName(attr(oidCN, cbasn1.UTF8String, "x")), 0),
		"truncated":       rawName(attr(oidCN, cbasn1.UTF8String, "x"))[:8],
		"no value":        {0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03, 0x55, 0x04, 0x03},
		"empty OID":       {0x30, 0x08, 0x31, 0x06, 0x30, 0x04, 0x06, 0x00, 0x0c, 0x00},
		"OID cut mid-arc": {0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x01, 0x88, 0x0c, 0x00},
	} {
		_, err := FormatName(der)
		assert.Error(t, err, name)
	}
}

// TestFormatNameAgainstOpenSSL prints the same names with the openssl
// command (scripts/deps.sh installs it), in certificates.
func TestFormatNameAgainstOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	t.Parallel()
	p := pki(t)
	for _, tc := range nameCases {
		if len(tc.der) == 2 || strings.Contains(tc.name, "non-string") {
			// OpenSSL prints an empty subject as "" and cannot parse a
			// name whose value is not a string.
			continue
		}
		// Not parsed by x509 (which refuses some of these names).
		tmpl := &x509.Certificate{RawSubject: tc.der, SerialNumber: big.NewInt(1)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter.Cert, p.inter.Key.Public(), p.inter.Key)
		require.NoError(t, err)
		cmd := exec.Command("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253")
		cmd.Stdin = strings.NewReader(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		out, err := cmd.Output()
		require.NoError(t, err, tc.name)
		got, err := FormatName(tc.der)
		require.NoError(t, err)
		assert.Equal(t, strings.TrimSuffix(strings.TrimPrefix(string(out), "subject="), "\n"), got, tc.name)
	}
}

func TestSubjectAndIssuerName(t *testing.T) {
	t.Parallel()
	p := pki(t)
	c := issue(t, &x509.Certificate{RawSubject: rawName(attr(oidO, cbasn1.PrintableString, "Example"),
		attr(oidCN, cbasn1.UTF8String, "c"), attr(oidEmail, cbasn1.IA5String, "ops@example.com"))}, p.inter, nil)
	assert.Equal(t, "emailAddress=ops@example.com,CN=c,O=Example", SubjectName(c))
	assert.Contains(t, c.Subject.String(), "1.2.840.113549.1.9.1=#", "what Go prints instead")
	assert.Equal(t, "CN=Test Intermediate CA", IssuerName(c))
	// Not parsed by x509: the fallback.
	assert.Equal(t, "CN=x", SubjectName(&x509.Certificate{Subject: pkix.Name{CommonName: "x"}}))
	assert.Equal(t, "CN=y", IssuerName(&x509.Certificate{Issuer: pkix.Name{CommonName: "y"}}))
}

// TestFormatNameReadsLikeX509: what x509.ParseCertificate tolerates in a
// name (data after an attribute value, an empty RDN) prints too.
func TestFormatNameReadsLikeX509(t *testing.T) {
	t.Parallel()
	// SEQUENCE { SET { SEQUENCE { OID CN, UTF8String "x", NULL } }, SET {} }
	der := []byte{0x30, 0x10, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 'x', 0x05, 0x00, 0x31, 0x00}
	c := issue(t, &x509.Certificate{RawSubject: der}, pki(t).inter, nil)
	assert.Equal(t, der, c.RawSubject)
	got, err := FormatName(der)
	require.NoError(t, err)
	assert.Equal(t, "CN=x", got)
}
