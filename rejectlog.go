package mtlsauth

import (
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// rejectionLevels maps the global option log_rejections to a level; ""
// is the default, debug: bad client input is not a server error, and a
// busy API would flood the log.
var rejectionLevels = map[string]zapcore.Level{
	"":      zapcore.DebugLevel,
	"debug": zapcore.DebugLevel,
	"info":  zapcore.InfoLevel,
	"warn":  zapcore.WarnLevel,
}

// rejectionLevel is the level of a rejection line for reason r: the
// configured one, and at least info for a header from an untrusted peer
// (a forged source, which an operator wants to see).
func (h *Handler) rejectionLevel(r reason) zapcore.Level {
	level := zapcore.DebugLevel
	if h.app != nil {
		level = rejectionLevels[h.app.LogRejections]
	}
	if r == reasonUntrustedSource && level < zapcore.InfoLevel {
		level = zapcore.InfoLevel
	}
	return level
}

// logReject logs a rejected request: the reason and detail, and what is
// known of the certificate: its fingerprint for every reason that got as
// far as a certificate (throttled included), the alias of the allow entry
// that admitted it and its subject CN. Never the header or PEM.
func (h *Handler) logReject(r *http.Request, o *outcome) {
	c := h.logger.Check(h.rejectionLevel(o.reason), "client certificate rejected")
	if c == nil {
		return
	}
	fp, alias, cn := o.rejectedFP, o.rejectedAlias, o.rejectedCN
	if o.id != nil {
		fp, alias, cn = o.id.fp.String(), o.id.alias, o.names().cn
	}
	fields := make([]zap.Field, 0, 7)
	fields = append(fields,
		zap.String("reason", string(o.reason)),
		zap.String("detail", o.detail),
		zap.String("fingerprint", fp),
	)
	if alias != "" {
		fields = append(fields, zap.String("alias", alias))
	}
	if cn != "" {
		fields = append(fields, zap.String("subject_cn", cn))
	}
	fields = append(fields, zap.String("source", o.source), zap.String("remote_addr", r.RemoteAddr))
	c.Write(fields...)
}
