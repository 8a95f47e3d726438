package mtlsauth

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
)

// adaptExample adapts an example Caddyfile to indented JSON.
func adaptExample(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, map[string]any{"filename": file})
	require.NoError(t, err)
	require.Empty(t, warnings)
	// Re-encoded without HTML escaping, so request>headers>... reads as
	// written.
	var v any
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&v))
	var pretty bytes.Buffer
	enc := json.NewEncoder(&pretty)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "\t")
	require.NoError(t, enc.Encode(v))
	return pretty.Bytes()
}

// TestExamplesGolden compares every example's JSON with
// testdata/examples/<name>.json (go test -run TestExamplesGolden -update
// rewrites them), so a change to what an example configures is seen in
// review.
func TestExamplesGolden(t *testing.T) {
	files, err := filepath.Glob("examples/*Caddyfile")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			got := adaptExample(t, f)
			golden := filepath.Join("testdata", "examples", strings.TrimSuffix(filepath.Base(f), ".Caddyfile")+".json")
			if *updateGolden {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, got, 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test -run TestExamplesGolden -update")
			assert.JSONEq(t, string(want), string(got))
		})
	}
}

// TestExamplesFilterCertificateHeader checks that every example keeps the
// certificate headers its mtls_auth handlers read out of every log Caddy
// writes: Caddy's access log and its error log at debug record request
// headers from a copy taken before any handler runs, so only a log filter
// can. Header names are compared in the canonical form Caddy logs them in.
func TestExamplesFilterCertificateHeader(t *testing.T) {
	files, err := filepath.Glob("examples/*Caddyfile")
	require.NoError(t, err)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var cfg struct {
				Logging struct {
					Logs map[string]struct {
						Encoder struct {
							Format string                       `json:"format"`
							Fields map[string]map[string]string `json:"fields"`
						} `json:"encoder"`
					} `json:"logs"`
				} `json:"logging"`
			}
			out := adaptExample(t, f)
			require.NoError(t, json.Unmarshal(out, &cfg))

			headers := map[string]bool{}
			for _, h := range mtlsHandlers(t, out) {
				dec, err := decoder.New(decoder.Options{Profile: h.Profile, Header: h.Header, ChainHeader: h.ChainHeader})
				require.NoError(t, err)
				headers[dec.Header()] = true
				if ch := dec.ChainHeader(); ch != "" {
					headers[ch] = true
				}
			}
			require.NotEmpty(t, headers)

			logs := cfg.Logging.Logs
			require.Contains(t, logs, "default", "Caddy's own log (its error log at debug) is filtered")
			require.Greater(t, len(logs), 1, "the site has an access log, filtered too")
			for name, l := range logs {
				assert.Equal(t, "filter", l.Encoder.Format, "log %s", name)
				for h := range headers {
					assert.Equal(t, "delete", l.Encoder.Fields["request>headers>"+h]["filter"], "log %s must delete %s", name, h)
				}
			}
		})
	}
}

// mtlsHandlers finds every mtls_auth handler in an adapted config.
func mtlsHandlers(t *testing.T, cfgJSON []byte) []Handler {
	t.Helper()
	var found []Handler
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "mtls_auth" {
				b, err := json.Marshal(x)
				require.NoError(t, err)
				var h Handler
				require.NoError(t, json.Unmarshal(b, &h))
				found = append(found, h)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var root any
	require.NoError(t, json.Unmarshal(cfgJSON, &root))
	walk(root)
	return found
}
