package throttle

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// synDrop returns a loopback address whose connection attempts hang, as with
// a firewall that drops packets: a socket listening with a backlog of zero,
// never accepting, whose one queue slot is already taken.
func synDrop(t testing.TB) (string, bool) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = filler.Close() })
	// Check that the next attempt really hangs.
	c, err := net.DialTimeout("tcp", addr, 50*time.Millisecond)
	if err == nil {
		_ = c.Close()
		return "", false
	}
	return addr, true
}

// TestRedisPausedServer stops the server process (SIGSTOP: a hung server
// whose sockets stay open) under live pooled connections: Allow fails within
// the timeout, and works again once the process continues.
func TestRedisPausedServer(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	srv := startRedis(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{Timeout: timeout})
	tier := Tier{Requests: 1000, Window: time.Minute}
	for range 4 {
		_, err := r.Allow(context.Background(), "k", tier)
		require.NoError(t, err)
	}
	srv.signal(syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			srv.signal(syscall.SIGCONT)
		}
	}()
	slowest := measureFailures(t, r, 3, 8)
	t.Logf("slowest failing Allow while the server is paused: %s (timeout %s)", slowest, timeout)
	assert.Less(t, slowest, timeout+failSlack)

	srv.signal(syscall.SIGCONT)
	resumed = true
	require.Eventually(t, func() bool {
		_, err := r.Allow(context.Background(), "k", tier)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
}
