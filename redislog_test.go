package mtlsauth

import (
	"net"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRedisLogsThroughZap checks that go-redis' own lines (here: a failed
// dial to a Redis that is not there) reach the app's logger, not stderr.
// Not parallel: go-redis' logger is process-wide.
func TestRedisLogsThroughZap(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	core, logs := observer.New(zapcore.DebugLevel)
	a := &App{Throttle: &ThrottleConfig{Backend: "redis", URL: "redis://" + addr + "/0", Timeout: caddy.Duration(50 * time.Millisecond)}}
	require.NoError(t, a.setup(zap.New(core).Named("mtls_auth"), storeFor(t)))
	t.Cleanup(func() { _ = a.Cleanup() })

	lines := logs.FilterMessage("redis client")
	require.NotZero(t, lines.Len(), "setup's ping dialled and failed; go-redis said so through zap")
	e := lines.All()[0]
	assert.Equal(t, "mtls_auth.redis", e.LoggerName)
	assert.Equal(t, zapcore.WarnLevel, e.Level)
	assert.Contains(t, e.ContextMap()["event"], "failed to dial")
	assert.NotContains(t, e.ContextMap()["event"], "redis: ", "the prefix is go-redis' stderr habit")

	// A client made anywhere else in the process logs the same way.
	before := lines.Len()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	assert.Error(t, c.Ping(t.Context()).Err())
	assert.Greater(t, logs.FilterMessage("redis client").Len(), before)
}
