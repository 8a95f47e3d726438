package mtlsauth

import (
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// observe replaces h's logger with one that records everything.
func observe(h *Handler) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	return logs
}

// rejections are the rejection lines logged so far.
func rejections(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterMessage("client certificate rejected").All()
}

// TestRejectionLogFields checks what a rejection line carries: the
// fingerprint whenever a certificate was decoded (throttled included), the
// alias when an allow entry admitted it, the subject CN, never the header.
func TestRejectionLogFields(t *testing.T) {
	p := newPKI(t)
	app := newTestApp(t, tiers()...)
	revokedCRL := p.write(t, "root.crl", crl(t, p.root, p.alice))
	tests := []struct {
		name   string
		h      *Handler
		req    request
		reason string
		want   map[string]string // fields; "" means absent
	}{
		{
			name:   "not allowed",
			h:      &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}},
			req:    request{headers: header(rfc9440(p.bob))},
			reason: "not_allowed",
			want:   map[string]string{"fingerprint": p.bob.Fingerprint(), "subject_cn": "bob", "alias": "", "source": "header"},
		},
		{
			name:   "revoked after its allow entry admitted it",
			h:      &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile), Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}, Revocation: &Revocation{CRL: []string{revokedCRL}}},
			req:    request{headers: header(rfc9440(p.alice))},
			reason: "revoked",
			want:   map[string]string{"fingerprint": p.alice.Fingerprint(), "subject_cn": "alice", "alias": "alice"},
		},
		{
			name:   "throttled",
			h:      &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile, Tier: "bronze"}}},
			req:    request{headers: header(rfc9440(p.alice))},
			reason: "throttled",
			want:   map[string]string{"fingerprint": p.alice.Fingerprint(), "subject_cn": "alice", "alias": "alice"},
		},
		{
			name:   "malformed: no certificate to name",
			h:      &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, TrustPoolRaw: trustPool(p.rootFile)},
			req:    request{headers: header(":bm90IGEgY2VydGlmaWNhdGU=:")},
			reason: "malformed",
			want:   map[string]string{"fingerprint": "", "subject_cn": "", "alias": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.h.app = app
			require.NoError(t, provision(t, tt.h))
			t.Cleanup(func() { _ = tt.h.Cleanup() })
			logs := observe(tt.h)
			var resp response
			for range 4 { // the bronze tier allows 3
				resp = serve(t, tt.h, tt.req)
			}
			require.Equal(t, tt.reason, resp.ph("http.mtls.error"))
			lines := rejections(logs)
			require.NotEmpty(t, lines)
			fields := lines[len(lines)-1].ContextMap()
			assert.Equal(t, tt.reason, fields["reason"])
			for k, v := range tt.want {
				if v == "" {
					if k == "fingerprint" {
						assert.Equal(t, "", fields[k])
					} else {
						assert.NotContains(t, fields, k)
					}
					continue
				}
				assert.Equal(t, v, fields[k], k)
			}
			for _, v := range fields {
				assert.NotContains(t, fmt.Sprint(v), "BEGIN", "never PEM")
				assert.NotContains(t, fmt.Sprint(v), rfc9440(p.alice)[1:40], "never the header")
			}
		})
	}
}

// TestLogRejectionsLevel checks the global option log_rejections: the level
// of every rejection line, with forged sources at info at least.
func TestLogRejectionsLevel(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		option           string
		notAllowed, from zapcore.Level // the level of a not_allowed line, and of an untrusted_source one
	}{
		{"", zapcore.DebugLevel, zapcore.InfoLevel},
		{"debug", zapcore.DebugLevel, zapcore.InfoLevel},
		{"info", zapcore.InfoLevel, zapcore.InfoLevel},
		{"warn", zapcore.WarnLevel, zapcore.WarnLevel},
	}
	for _, tt := range tests {
		t.Run("log_rejections "+tt.option, func(t *testing.T) {
			app := newTestApp(t)
			app.LogRejections = tt.option
			require.NoError(t, app.Validate())
			h := &Handler{Profile: "rfc9440", TrustedSources: []string{"10.0.0.0/8"}, Allow: []AllowEntry{{Alias: "alice", File: p.aliceFile}}, app: app}
			require.NoError(t, provision(t, h))
			logs := observe(h)
			serve(t, h, request{headers: header(rfc9440(p.bob))})
			serve(t, h, request{headers: header(rfc9440(p.alice)), remote: "192.0.2.1:4444"})
			lines := rejections(logs)
			require.Len(t, lines, 2)
			assert.Equal(t, tt.notAllowed, lines[0].Level)
			assert.Equal(t, tt.from, lines[1].Level)
			assert.Equal(t, "untrusted_source", lines[1].ContextMap()["reason"])
		})
	}
	bad := newTestApp(t)
	bad.LogRejections = "error"
	assert.ErrorContains(t, bad.Validate(), "log_rejections: 'error' is not one of debug, info, warn")
}

func TestLogRejectionsCaddyfile(t *testing.T) {
	t.Parallel()
	input := "{\n\tmtls_auth {\n\t\tlog_rejections loud\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid log_rejections 'loud'")
	assert.Contains(t, err.Error(), "Caddyfile:3")
}
