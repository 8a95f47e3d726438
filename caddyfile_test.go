package mtlsauth

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

var updateGolden = flag.Bool("update", false, "rewrite the expected JSON of testdata/caddyfile_adapt")

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  Handler
	}{
		{name: "empty", input: `mtls_auth`, want: Handler{}},
		{
			name: "everything",
			input: `mtls_auth {
				source any
				header X-Client-Cert
				chain_header X-Client-Chain
				profile nginx
				trusted_sources 10.0.0.0/8 192.0.2.1
				trust_pool file /etc/mtls/ca.pem
				allow alice /etc/mtls/alice.pem meta team payments meta env prod
				allow partners /etc/mtls/partners.pem
				allow_ca corp /etc/mtls/corp-ca.pem tier gold meta team it
				allow_dir /etc/mtls/clients
				mode optional
				keep_header
				xfcc_element first
				xfcc_by spiffe://cluster.local/ns/edge/sa/gw
				max_header_bytes 16KiB
				max_chain 4
			}`,
			want: Handler{
				Source: "any", Header: "X-Client-Cert", ChainHeader: "X-Client-Chain", Profile: "nginx",
				TrustedSources: []string{"10.0.0.0/8", "192.0.2.1"},
				TrustPoolRaw:   json.RawMessage(`{"pem_files":["/etc/mtls/ca.pem"],"provider":"file"}`),
				Allow: []AllowEntry{
					{Alias: "alice", File: "/etc/mtls/alice.pem", Meta: map[string]string{"team": "payments", "env": "prod"}},
					{Alias: "partners", File: "/etc/mtls/partners.pem"},
				},
				AllowCA:        []AllowEntry{{Alias: "corp", File: "/etc/mtls/corp-ca.pem", Tier: "gold", Meta: map[string]string{"team": "it"}}},
				AllowDir:       []AllowDir{{Dir: "/etc/mtls/clients"}},
				Mode:           "optional",
				KeepHeader:     true,
				XFCCElement:    1,
				XFCCBy:         "spiffe://cluster.local/ns/edge/sa/gw",
				MaxHeaderBytes: 16384,
				MaxChain:       4,
			},
		},
		{name: "xfcc last", input: "mtls_auth {\nxfcc_element last\n}", want: Handler{XFCCElement: -1}},
		{name: "istio", input: "mtls_auth {\nprofile envoy_xfcc\nxfcc_proxies spiffe://cluster.local/ns/istio-system/sa/gw spiffe://cluster.local/ns/edge/sa/gw2\nmax_xfcc_elements 4\n}",
			want: Handler{Profile: "envoy_xfcc", XFCCProxies: []string{"spiffe://cluster.local/ns/istio-system/sa/gw", "spiffe://cluster.local/ns/edge/sa/gw2"}, MaxXFCCElements: 4}},
		{name: "user_id template", input: "mtls_auth {\nuser_id {http.mtls.spiffe_id}\n}", want: Handler{UserID: "{http.mtls.spiffe_id}"}},
		{name: "private_ranges expanded like trusted_proxies", input: "mtls_auth {\ntrusted_sources 192.0.2.1 private_ranges\n}",
			want: Handler{TrustedSources: append([]string{"192.0.2.1"}, caddyhttp.PrivateRangesCIDR()...)}},
		{name: "cache size", input: "mtls_auth {\ncache_size 500\n}", want: Handler{CacheSize: 500}},
		{name: "cache off", input: "mtls_auth {\ncache_size off\n}", want: Handler{CacheSize: -1}},
		{name: "xfcc from the end", input: "mtls_auth {\nxfcc_element -2\n}", want: Handler{XFCCElement: -2}},
		{name: "trust pool block", input: "mtls_auth {\ntrust_pool file {\npem_file a.pem b.pem\n}\n}", want: Handler{TrustPoolRaw: json.RawMessage(`{"pem_files":["a.pem","b.pem"],"provider":"file"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h Handler
			require.NoError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)))
			assert.JSONEq(t, string(caddyconfig.JSON(tt.want, nil)), string(caddyconfig.JSON(h, nil)))
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{name: "argument on directive line", input: `mtls_auth foo`, want: "wrong argument count"},
		{name: "unknown subdirective", input: "mtls_auth {\n\tsauce header\n}", want: "unrecognized subdirective 'sauce'"},
		{name: "duplicate", input: "mtls_auth {\nmode optional\nmode mandatory\n}", want: "mode already specified"},
		{name: "bad mode", input: "mtls_auth {\nmode sometimes\n}", want: "invalid mode 'sometimes'"},
		{name: "bad source", input: "mtls_auth {\nsource udp\n}", want: "invalid source 'udp'"},
		{name: "source without value", input: "mtls_auth {\nsource\n}", want: "wrong argument count"},
		{name: "header with two values", input: "mtls_auth {\nheader a b\n}", want: "wrong argument count"},
		{name: "trusted_sources empty", input: "mtls_auth {\ntrusted_sources\n}", want: "wrong argument count"},
		{name: "trusted_sources bad cidr", input: "mtls_auth {\ntrusted_sources 10.0.0.0/99\n}", want: "invalid CIDR"},
		{name: "trusted_sources mixed", input: "mtls_auth {\ntrusted_sources server 10.0.0.0/8\n}", want: "cannot be combined"},
		{name: "trust_pool without module", input: "mtls_auth {\ntrust_pool\n}", want: "wrong argument count"},
		{name: "trust_pool unknown module", input: "mtls_auth {\ntrust_pool nosuch x\n}", want: "nosuch"},
		{name: "allow without file", input: "mtls_auth {\nallow alice\n}", want: "wrong argument count"},
		{name: "allow with junk", input: "mtls_auth {\nallow alice a.pem colour blue\n}", want: "unexpected 'colour'"},
		{name: "allow meta without value", input: "mtls_auth {\nallow alice a.pem meta team\n}", want: "meta needs a key and a value"},
		{name: "allow meta key twice", input: "mtls_auth {\nallow alice a.pem meta k 1 meta k 2\n}", want: "meta key 'k' given twice"},
		{name: "allow alias twice", input: "mtls_auth {\nallow alice a.pem\nallow alice b.pem\n}", want: "alias 'alice' already specified"},
		{name: "allow_ca without file", input: "mtls_auth {\nallow_ca corp\n}", want: "wrong argument count"},
		{name: "allow_ca with junk", input: "mtls_auth {\nallow_ca corp ca.pem colour blue\n}", want: "allow_ca corp: unexpected 'colour'"},
		{name: "allow_ca tier twice", input: "mtls_auth {\nallow_ca corp ca.pem tier a tier b\n}", want: "allow_ca corp: tier given twice"},
		{name: "alias in allow and allow_ca", input: "mtls_auth {\nallow corp a.pem\nallow_ca corp b.pem\n}", want: "allow_ca: alias 'corp' already specified"},
		{name: "keep_header with argument", input: "mtls_auth {\nkeep_header yes\n}", want: "wrong argument count"},
		{name: "xfcc_element zero", input: "mtls_auth {\nxfcc_element 0\n}", want: "invalid xfcc_element"},
		{name: "xfcc_element word", input: "mtls_auth {\nxfcc_element middle\n}", want: "invalid xfcc_element"},
		{name: "max_header_bytes junk", input: "mtls_auth {\nmax_header_bytes lots\n}", want: "invalid max_header_bytes"},
		{name: "max_chain zero", input: "mtls_auth {\nmax_chain 0\n}", want: "invalid max_chain"},
		{name: "max_chain not a number", input: "mtls_auth {\nmax_chain x\n}", want: "invalid max_chain"},
		{name: "cache_size zero", input: "mtls_auth {\ncache_size 0\n}", want: "invalid cache_size"},
		{name: "cache_size word", input: "mtls_auth {\ncache_size lots\n}", want: "invalid cache_size"},
		{name: "xfcc_proxies empty", input: "mtls_auth {\nxfcc_proxies\n}", want: "wrong argument count"},
		{name: "xfcc_proxies twice the same", input: "mtls_auth {\nxfcc_proxies spiffe://a spiffe://a\n}", want: "xfcc_proxies: 'spiffe://a' listed twice"},
		{name: "xfcc_proxies given twice", input: "mtls_auth {\nxfcc_proxies spiffe://a\nxfcc_proxies spiffe://b\n}", want: "xfcc_proxies already specified"},
		{name: "max_xfcc_elements zero", input: "mtls_auth {\nmax_xfcc_elements 0\n}", want: "invalid max_xfcc_elements"},
		{name: "user_id without template", input: "mtls_auth {\nuser_id\n}", want: "wrong argument count"},
		{name: "user_id refers to itself", input: "mtls_auth {\nuser_id x-{http.auth.user.id}\n}", want: "user_id: the template may not use {http.auth.user.id}"},
		{name: "private_ranges with server", input: "mtls_auth {\ntrusted_sources private_ranges server\n}", want: "cannot be combined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "Testfile:", "errors name the Caddyfile and line")
		})
	}
}

// TestCaddyfileAllowFilesCheckedAtTheirLine: a certificate file that can
// be read while adapting is loaded as Provision will load it, so a file that
// is not a CA given to allow_ca (or a private key given to allow) is an
// error naming its line; a file that is not there yet is left to Provision.
func TestCaddyfileAllowFilesCheckedAtTheirLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := testpki.NewRoot("corp")
	write := func(name string, data []byte) string {
		p, err := testpki.WriteFile(dir, name, data)
		require.NoError(t, err)
		return p
	}
	caFile := write("ca.pem", root.PEM())
	leafFile := write("leaf.pem", root.NewLeaf("alice").PEM())
	keyFile := write("key.pem", root.KeyPEM())
	tests := []struct {
		name, line, want string // want "" when it adapts
	}{
		{name: "allow_ca of a CA", line: "allow_ca corp " + caFile},
		{name: "allow of a CA (pinned)", line: "allow corp " + caFile},
		{name: "allow of a leaf", line: "allow alice " + leafFile},
		{name: "allow_ca of a file not there yet", line: "allow_ca corp " + filepath.Join(dir, "later.pem")},
		{name: "allow_ca of a leaf", line: "allow_ca alice " + leafFile, want: "allow_ca alice: " + leafFile + ": not a CA"},
		{name: "allow of a private key", line: "allow alice " + keyFile, want: "private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			input := ":8080 {\n\tmtls_auth {\n\t\tmode optional\n\t\t" + tt.line + "\n\t}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "Caddyfile:4")
		})
	}
}

// TestCaddyfileErrorNamesLine checks that a full adapt reports the line of
// the offending subdirective.
func TestCaddyfileErrorNamesLine(t *testing.T) {
	t.Parallel()
	input := ":8080 {\n\tmtls_auth {\n\t\tmode optional\n\t\tbogus on\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Caddyfile:4")
	assert.Contains(t, err.Error(), "bogus")
}

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, the expected JSON) and compares.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			parts := strings.SplitN(string(data), "----------", 2)
			require.Len(t, parts, 2, "want a Caddyfile, a line of dashes, then JSON")
			caddyfileText := strings.TrimSpace(parts[0]) + "\n"
			if *updateGolden {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
				require.NoError(t, err)
				var pretty bytes.Buffer
				require.NoError(t, json.Indent(&pretty, out, "", "\t"))
				require.NoError(t, os.WriteFile(f, []byte(caddyfileText+"----------\n"+pretty.String()+"\n"), 0o644))
				return
			}
			assert.True(t, caddytest.CompareAdapt(t, f, caddyfileText, "caddyfile", strings.TrimSpace(parts[1])))
		})
	}
}

// TestExamplesAdapt adapts every Caddyfile in examples/, so the docs cannot rot.
func TestExamplesAdapt(t *testing.T) {
	files, err := filepath.Glob("examples/*Caddyfile")
	require.NoError(t, err)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, map[string]any{"filename": f})
			require.NoError(t, err)
			assert.Empty(t, warnings)
			assert.Contains(t, string(out), `"handler":"mtls_auth"`)
		})
	}
}
