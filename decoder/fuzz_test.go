package decoder

// Fuzz targets, one per family, seeded with the committed fixtures. Run one
// with, e.g.:
//
//	go test ./decoder -run '^$' -fuzz '^FuzzXFCC$' -fuzztime 10s -fuzzminimizetime 0
//
// Every target asserts: no panic; a failure is ErrAbsent or an *Error with a
// Kind, whose message does not echo the value; a success has between 1 and
// MaxChain certificates whose DER is no longer than the input; and one
// Decode allocates a bounded amount of memory for its input size.

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fuzzSeeds adds every fixture value (and its chain value) plus extra seeds.
func fuzzSeeds(f *testing.F, extra ...string) {
	for _, v := range fixtureHeaders(f) {
		f.Add(v)
	}
	for _, v := range extra {
		f.Add(v)
	}
}

// allocBound is the most one Decode may allocate for n input bytes: the
// DER buffer, the certificates x509 builds from it, and small fixed costs.
func allocBound(n int) uint64 { return 256<<10 + 64*uint64(n) }

func checkDecode(t *testing.T, d *Decoder, values, chain []string) {
	t.Helper()
	n := 0
	for _, v := range append(slices.Clone(values), chain...) {
		n += len(v)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := d.Decode(values, chain)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > allocBound(n) {
		t.Fatalf("Decode of %d bytes allocated %d bytes (bound %d)", n, alloc, allocBound(n))
	}
	if err != nil {
		if res.Certs != nil || res.Profile != "" {
			t.Fatalf("a failed Decode returned a result")
		}
		if errors.Is(err, ErrAbsent) {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind == 0 {
			t.Fatalf("error is not a *Error with a Kind: %T %v", err, err)
		}
		for _, v := range append(slices.Clone(values), chain...) {
			noEcho(t, err.Error(), v)
		}
		return
	}
	if len(res.Certs) == 0 || len(res.Certs) > d.Options().MaxChain {
		t.Fatalf("%d certificates", len(res.Certs))
	}
	raw := 0
	for _, c := range res.Certs {
		if c == nil {
			t.Fatalf("nil certificate")
		}
		raw += len(c.Raw)
	}
	if raw > n {
		t.Fatalf("%d bytes of DER from %d bytes of input", raw, n)
	}
	if !slices.Contains(Profiles(), res.Profile) || res.Profile == "auto" {
		t.Fatalf("result profile %q", res.Profile)
	}
}

// noEcho fails when msg holds 16 base64 characters of value in a row.
func noEcho(t *testing.T, msg, value string) {
	const n = 16
	run := 0
	for i := 0; i < len(value); i++ {
		if b64Table[value[i]] < 64 {
			run++
		} else {
			run = 0
		}
		if run >= n && strings.Contains(msg, value[i-n+1:i+1]) {
			t.Fatalf("error message echoes the value")
		}
	}
}

func fuzzProfiles(f *testing.F, profiles []string, extra ...string) {
	fuzzSeeds(f, extra...)
	ds := make([]*Decoder, 0, len(profiles))
	for _, p := range profiles {
		ds = append(ds, mustNew(f, Options{Profile: p, MaxChain: 4}))
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, d := range ds {
			checkDecode(t, d, []string{v}, nil)
		}
	})
}

func FuzzURLPEM(f *testing.F) {
	fuzzProfiles(f, []string{"aws_alb", "nginx"},
		"-----BEGIN%20CERTIFICATE-----%0AMIIB%2B%2F%3D%0A-----END%20CERTIFICATE-----%0A",
		"%", "%4", "%zz", "-----BEGIN+CERTIFICATE-----MA==-----END+CERTIFICATE-----")
}

func FuzzPEM(f *testing.F) {
	fuzzProfiles(f, []string{"pem", "apache"},
		"-----BEGIN CERTIFICATE----- MIIB -----END CERTIFICATE----- ",
		"-----BEGIN CERTIFICATE-----\n\tMA==\n\t-----END CERTIFICATE-----",
		"-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----MA==-----END CERTIFICATE-----[\\r][\\n]-----BEGIN")
}

func FuzzBase64DER(f *testing.F) {
	fuzzProfiles(f, []string{"der_base64", "traefik", "haproxy"},
		"MA==", `"MA=="`, "MAA,MAA", "MIIB%2B", ",,,", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
}

func FuzzRFC9440(f *testing.F) {
	fuzzSeeds(f, ":MA==:", ":MA:, :MA:", "::", ":", ":MA==:;a=1", ": :", `:MA:;n="a,b", :MA:`, "(:MA: :MA:)", `:MA:;t=a:b/c;s="\"";d=%"x";e=@1;f=?1;g=1.5`)
	d := mustNew(f, Options{Profile: "rfc9440", MaxChain: 4})
	g := mustNew(f, Options{Profile: "gcp", MaxChain: 4})
	f.Fuzz(func(t *testing.T, v string) {
		checkDecode(t, d, []string{v}, nil)
		// The same value as a chain header behind a valid leaf.
		if leaf := fixtureLeaf; leaf != "" {
			checkDecode(t, g, []string{leaf}, []string{v})
		}
	})
}

// fixtureLeaf is the RFC 9440 leaf fixture, read once for FuzzRFC9440.
var fixtureLeaf = func() string {
	b, err := readFileString("testdata/headers/gcp_leaf.txt")
	if err != nil {
		return ""
	}
	return b
}()

func FuzzWSO2(f *testing.F) {
	fuzzProfiles(f, []string{"wso2"},
		"-----BEGIN CERTIFICATE-----LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t-----END CERTIFICATE-----",
		"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t")
}

func FuzzXFCC(f *testing.F) {
	fuzzSeeds(f, `By=a;Cert="x"`, `Chain="";Cert=""`, `By=a;b,c=d;URI=`, `Subject="\"\\\,"`, `,`, `By=a,By=b`,
		`Hash=00;Subject="";URI=`+gatewayURI, `By=x;URI=`+gatewayURI+`,By=y;URI=`+gatewayURI)
	if gw, err := readFileString("testdata/headers/envoy_xfcc.txt"); err == nil {
		f.Add(gw + `,By=spiffe://w;Hash=00;Subject="";URI=` + gatewayURI)
		f.Add(strings.Replace(gw, "DNS=client1.example", "DNS=client1.example,By=x;Cert=", 1) + gw[strings.Index(gw, "Cert="):])
	}
	ds := []*Decoder{
		mustNew(f, Options{Profile: "envoy_xfcc", MaxChain: 4}),
		mustNew(f, Options{Profile: "envoy_xfcc", XFCCElement: 1, XFCCBy: "spiffe://cluster.local/ns/edge/sa/gateway"}),
		mustNew(f, Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI, "spiffe://w"}, MaxXFCCElements: 4}),
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, d := range ds {
			checkDecode(t, d, []string{v}, nil)
			checkDecode(t, d, []string{v, v}, nil)
		}
	})
}

func FuzzParseXFCC(f *testing.F) {
	fuzzSeeds(f, `By=a;Cert="x"`, `a="`, `By=a;b,c=d;URI=`, `Subject="\"\\\,"`, `,`, `x=y,`)
	f.Fuzz(func(t *testing.T, v string) {
		els, err := ParseXFCC(v)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindMalformed || els != nil {
				t.Fatalf("bad error %T %v", err, err)
			}
			noEcho(t, err.Error(), v)
			return
		}
		if len(els) == 0 || len(els) > len(v) {
			t.Fatalf("%d elements from %d bytes", len(els), len(v))
		}
		for _, el := range els {
			for _, s := range append(append(append([]string{el.Hash, el.Cert, el.Chain, el.Subject}, el.By...), el.URI...), el.DNS...) {
				if len(s) > len(v) {
					t.Fatalf("a value longer than the input")
				}
			}
		}
	})
}

// FuzzCertFacts checks the light certificate walk against
// x509.ParseCertificate (whatever x509 accepts, the walk reads the same
// subject and SANs), feeds the same bytes to the name printer, and writes
// every certificate x509 accepts as an XFCC element that must read back.
func FuzzCertFacts(f *testing.F) {
	for _, name := range []string{"leaf", "intermediate", "root", "other"} {
		f.Add(readPKI(f, name))
	}
	for _, tc := range nameCases {
		f.Add(tc.der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, flavor := range []nameFlavor{flavorOpenSSL, flavorBoringSSL} {
			if s, err := formatName(der, flavor); err != nil && s != "" {
				t.Fatalf("output with an error")
			}
		}
		facts, ok := readCertFacts(der)
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		if !ok {
			t.Fatalf("x509 parses a certificate the walk does not")
		}
		if !bytes.Equal(facts.subject, c.RawSubject) || len(facts.dns) != len(c.DNSNames) || len(facts.uris) != len(c.URIs) {
			t.Fatalf("the walk reads another subject or other SANs than x509")
		}
		for i, d := range facts.dns {
			if string(d) != c.DNSNames[i] {
				t.Fatalf("DNS SAN %d differs", i)
			}
		}
		if _, err := formatName(c.RawSubject, flavorBoringSSL); err != nil {
			t.Fatalf("a subject x509 accepts does not print: %v", err)
		}
		// The XFCC writer's element reads back as this certificate, and
		// consistent (unless its keys are refused anyway).
		el, ok := EncodeXFCC(c)
		if !ok || CheckKeys([]*x509.Certificate{c}) != nil {
			return
		}
		res, err := fuzzXFCCDecoder.Decode([]string{el}, nil)
		if err != nil {
			t.Fatalf("EncodeXFCC's element does not decode: %v", err)
		}
		if !bytes.Equal(res.Certs[0].Raw, der) {
			t.Fatalf("EncodeXFCC's element decodes to another certificate")
		}
	})
}

var fuzzXFCCDecoder = func() *Decoder {
	d, err := New(Options{Profile: ProfileEnvoyXFCC})
	if err != nil {
		panic(err)
	}
	return d
}()

func FuzzAuto(f *testing.F) {
	fuzzSeeds(f, "(null)", `""`, "NONE", "By=", ":", "%", "-----BEGIN")
	d := mustNew(f, Options{MaxChain: 4})
	f.Fuzz(func(t *testing.T, v string) {
		checkDecode(t, d, []string{v}, nil)
	})
}

func readFileString(name string) (string, error) {
	b, err := os.ReadFile(name)
	return string(b), err
}
