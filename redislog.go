package mtlsauth

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// go-redis reports its own events (a failed dial, a broken pool
// connection) through one process-wide logger that writes raw "redis: ..."
// lines to stderr, outside Caddy's logging: no level, no JSON, no log
// configuration sees them. When the throttle backend is Redis, the app
// routes that logger to zap. It is process-wide, so the latest app that
// uses Redis owns it; the throttle package, a plain library, leaves it
// alone.

// redisLogger receives go-redis' lines; nil until an app uses Redis.
var (
	redisLogger  atomic.Pointer[zap.Logger]
	redisLogOnce sync.Once
)

// zapRedisLogger is go-redis' Logging interface over redisLogger.
type zapRedisLogger struct{}

func (zapRedisLogger) Printf(_ context.Context, format string, v ...any) {
	l := redisLogger.Load()
	if l == nil {
		return
	}
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
	l.Warn("redis client", zap.String("event", msg))
}

// logRedisThroughZap makes go-redis log through logger from now on.
func logRedisThroughZap(logger *zap.Logger) {
	redisLogger.Store(logger)
	redisLogOnce.Do(func() { redis.SetLogger(zapRedisLogger{}) })
}
