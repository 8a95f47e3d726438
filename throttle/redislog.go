package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// go-redis has one logger per process (redis.SetLogger), not one per
// client. redisLogs is the adapter this package installs there the first
// time a limiter with RedisOptions.Log is created: it hands each line to the
// Log of the newest open limiter that has one, and drops it when none is
// open, so no line reaches stderr once the hook was used.
var redisLogs struct {
	mu        sync.Mutex
	installed bool
	hooks     []*func(string) // newest last
}

// redisLogger is the adapter installed with redis.SetLogger.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, args ...any) {
	redisLogs.mu.Lock()
	var hook func(string)
	if n := len(redisLogs.hooks); n > 0 {
		hook = *redisLogs.hooks[n-1]
	}
	redisLogs.mu.Unlock()
	if hook != nil {
		hook(strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: "))
	}
}

// addRedisLog registers log and returns the function that removes it.
func addRedisLog(log func(string)) (remove func()) {
	p := &log
	redisLogs.mu.Lock()
	defer redisLogs.mu.Unlock()
	if !redisLogs.installed {
		redis.SetLogger(redisLogger{})
		redisLogs.installed = true
	}
	redisLogs.hooks = append(redisLogs.hooks, p)
	return func() {
		redisLogs.mu.Lock()
		defer redisLogs.mu.Unlock()
		for i, h := range redisLogs.hooks {
			if h == p {
				redisLogs.hooks = append(redisLogs.hooks[:i], redisLogs.hooks[i+1:]...)
				return
			}
		}
	}
}
