package decoder

import (
	"crypto/x509"
	"strings"
	"testing"
)

// BenchmarkDecode decodes the committed fixtures, one sub-benchmark per
// family (and the auto profile on a few of them):
//
//	go test ./decoder -run '^$' -bench . -benchtime 2000x
func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name, profile, file, chainFile string
	}{
		{"urlpem_u1", "nginx", "nginx_ssl_client_escaped_cert.txt", ""},
		{"urlpem_u2_chain3", "aws_alb", "aws_alb_passthrough.txt", ""},
		{"pem", "apache", "apache.txt", ""},
		{"base64der", "haproxy", "haproxy.txt", ""},
		{"base64der_list2", "traefik", "traefik.txt", ""},
		{"base64der_blob_chain", "haproxy", "haproxy_quoted.txt", "haproxy_quoted_chain.txt"},
		{"rfc9440", "rfc9440", "gcp_leaf.txt", ""},
		{"rfc9440_chain", "gcp", "gcp_leaf.txt", "gcp_chain.txt"},
		{"wso2", "wso2", "wso2_choreo_connect.txt", ""},
		{"xfcc", "envoy_xfcc", "envoy_xfcc.txt", ""},
		{"xfcc_two_hops", "envoy_xfcc", "envoy_xfcc_two_hops.txt", ""},
		{"auto_urlpem", "auto", "nginx_ssl_client_escaped_cert.txt", ""},
		{"auto_base64der", "auto", "haproxy.txt", ""},
		{"auto_xfcc", "auto", "envoy_xfcc.txt", ""},
		{"absent", "apache", "apache_null.txt", ""},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			d := mustNew(b, Options{Profile: tc.profile})
			values := []string{readHeader(b, tc.file)}
			var chain []string
			if tc.chainFile != "" {
				chain = []string{readHeader(b, tc.chainFile)}
			}
			if _, err := d.Decode(values, chain); err != nil && tc.name != "absent" {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(values[0])))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, _ = d.Decode(values, chain)
			}
		})
	}
}

// BenchmarkParseXFCC measures the XFCC parser alone.
func BenchmarkParseXFCC(b *testing.B) {
	v := readHeader(b, "envoy_xfcc_two_hops.txt")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseXFCC(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCertificateOnly is the floor: x509.ParseCertificate of the
// leaf DER, which every decode pays.
func BenchmarkParseCertificateOnly(b *testing.B) {
	der := readPKI(b, "leaf")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := x509ParseCertificate(der); err != nil {
			b.Fatal(err)
		}
	}
}

var x509ParseCertificate = x509.ParseCertificate

// BenchmarkXFCCLarge decodes x-forwarded-client-cert values at the 64 KiB
// header limit (issue 12: every element used to be built before one was
// selected, 6.8 ms and 9.7 MB for tiny elements):
//
//		go test ./decoder -run '^$' -bench XFCCLarge -benchmem
//
//	  - tiny_elements_64KiB: thousands of "By=...;Hash=...;URI=..."
//	    elements; refused as too_large after max_xfcc_elements+1 of them.
//	  - cert_elements_64KiB: as many elements with a Cert (RSA-2048 leaf)
//	    and Chain as fit in 64 KiB, up to the limit of 16, the last one
//	    selected: every one is decoded and checked for consistency.
//	  - istio: the gateway's element and the sidecar's, with xfcc_proxies.
func BenchmarkXFCCLarge(b *testing.B) {
	p := pki(b)
	tiny := "By=spiffe://cluster.local/ns/a/sa/b;Hash=" + strings.Repeat("0", 64) + ";URI=spiffe://cluster.local/ns/c/sa/d,"
	var sb strings.Builder
	for sb.Len()+len(tiny) < DefaultMaxHeaderBytes-4096 {
		sb.WriteString(tiny)
	}
	sb.WriteString(xfccElement(nil, p.leaf, true, false, envoyPercentEncode))
	tinyValue := sb.String()

	el := xfccElement([]string{edgeURI}, p.leaf, true, true, envoyPercentEncode)
	var certs []string
	for len(certs) < DefaultMaxXFCCElements && (len(certs)+1)*(len(el)+1) <= DefaultMaxHeaderBytes {
		certs = append(certs, el)
	}
	certValue := strings.Join(certs, ",")

	gateway, sidecar := istio(p.leaf)
	cases := []struct {
		name  string
		opts  Options
		value string
		kind  Kind
	}{
		{"tiny_elements_64KiB", Options{Profile: "envoy_xfcc"}, tinyValue, KindTooLarge},
		{"cert_elements_64KiB", Options{Profile: "envoy_xfcc"}, certValue, 0},
		{"istio", Options{Profile: "envoy_xfcc", XFCCProxies: []string{gatewayURI}}, gateway + "," + sidecar, 0},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			d := mustNew(b, tc.opts)
			values := []string{tc.value}
			if _, err := d.Decode(values, nil); KindOf(err) != tc.kind {
				b.Fatalf("%d bytes: %v", len(tc.value), err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, _ = d.Decode(values, nil)
			}
			b.ReportMetric(float64(len(tc.value)), "header-bytes")
			b.ReportMetric(float64(strings.Count(tc.value, ",")+1), "elements")
		})
	}
}
