package decoder

import (
	"crypto/x509"
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
