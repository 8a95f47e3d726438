package throttle

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// redisServer is a real redis-server started by a test on a free loopback
// port, without persistence, and stopped by t.Cleanup.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string // extra redis-server arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startRedis starts redis-server with extra arguments args. A missing binary
// skips the test, so that a plain `go test ./...` passes on a machine
// without Redis, except under MTLS_REQUIRE_REDIS=1, which scripts/test.sh
// (and so CI) sets: there a missing binary fails (scripts/deps.sh installs
// the Debian packages).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin := lookRedisTool(t, "redis-server")
	s := &redisServer{t: t, bin: bin, port: freePort(t), dir: t.TempDir(), args: args}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// lookRedisTool finds a binary of the redis-server package.
func lookRedisTool(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("MTLS_REQUIRE_REDIS") == "1" {
			t.Fatalf("%s not found and MTLS_REQUIRE_REDIS=1 (install the redis-server and redis-tools packages, e.g. scripts/deps.sh): %v", name, err)
		}
		t.Skipf("%s not installed (scripts/deps.sh installs it; MTLS_REQUIRE_REDIS=1 makes this a failure)", name)
	}
	return bin
}

func (s *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// start runs the server on s.port and waits until it answers PING.
func (s *redisServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--loglevel", "warning",
	}, s.args...)...)
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr()); err == nil {
			return
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.cmd = nil
			logs, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on port %d did not answer: %v\n%s", s.port, err, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server (SIGKILL: like a crash) and waits for it to exit.
func (s *redisServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// signal sends sig to the running server.
func (s *redisServer) signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.NotNil(s.t, s.cmd, "server not running")
	require.NoError(s.t, s.cmd.Process.Signal(sig))
}

// ping sends a raw PING so the helper does not depend on the code under test.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// blackhole listens on loopback, accepts connections and never answers.
func blackhole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or written
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
