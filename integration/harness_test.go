//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// caddyBin is the Caddy binary under test: $MTLS_CADDY_BIN, else ../bin/caddy.
func caddyBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("MTLS_CADDY_BIN")
	if p == "" {
		p = filepath.Join("..", "bin", "caddy")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatalf("caddy binary path %q: %v", p, err)
	}
	st, err := os.Stat(abs)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("caddy binary not found at %s (set MTLS_CADDY_BIN, or run scripts/build.sh first): %v", abs, err)
	}
	return abs
}

// lookTool finds a tool in PATH or in the Debian locations, failing the
// test with install advice when it is missing.
func lookTool(t *testing.T, name, debPkg string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found: install it (apt-get install -y %s, or run scripts/deps.sh)", name, debPkg)
	return ""
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatal("no free port found")
	return 0
}

// waitPort waits until something accepts TCP connections on 127.0.0.1:port.
// alive, when not nil, reports an error once the server process has exited.
func waitPort(port int, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return aerr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a started server process: it is stopped on cleanup, and its
// output is shown when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set when done is closed
}

func startProc(t *testing.T, name, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	// Own process group, so that stopping it stops its workers too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s---- end of %s output ----", name, p.out.String(), name)
		}
	})
	return p
}

// exited returns an error once the process has exited.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (%v); output:\n%s", p.name, p.err, p.out.String())
	default:
		return nil
	}
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// ---------------------------------------------------------------- Caddy

// caddyProc is a running Caddy.
type caddyProc struct {
	t         *testing.T
	proc      *proc
	Dir       string // the working directory: relative paths in the config resolve here
	AdminPort int
	HTTPPort  int // the http_port global option (no site uses it unless asked)
	HTTPSPort int // the https_port global option
	tls       bool
}

// caddyOpts changes how startCaddy sets up the global options.
type caddyOpts struct {
	// TLS leaves auto_https on (for sites that serve HTTPS); by default the
	// harness sets auto_https off.
	TLS bool
}

// startCaddy writes extraFiles (paths relative to a fresh temp dir, which is
// also Caddy's working directory) and caddyfile there, merges the harness's
// global options into the caddyfile's global block (adding one when it has
// none), runs `caddy run`, and waits until the admin endpoint answers and
// every site port accepts connections. The log (stdout and stderr, at debug
// level) is kept for Log. Caddy is stopped on cleanup.
func startCaddy(t *testing.T, caddyfile string, extraFiles map[string][]byte) *caddyProc {
	return startCaddyOpts(t, caddyfile, extraFiles, caddyOpts{})
}

func startCaddyOpts(t *testing.T, caddyfile string, extraFiles map[string][]byte, o caddyOpts) *caddyProc {
	t.Helper()
	bin := caddyBin(t)
	dir := t.TempDir()
	for name, data := range extraFiles {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &caddyProc{
		t:         t,
		Dir:       dir,
		AdminPort: freePort(t),
		HTTPPort:  freePort(t),
		HTTPSPort: freePort(t),
		tls:       o.TLS,
	}
	full := c.withGlobals(caddyfile)
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"XDG_DATA_HOME=" + filepath.Join(dir, "xdg-data"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg-config"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "xdg-cache"),
		"TMPDIR=" + dir,
	}
	c.proc = startProc(t, "caddy", dir, env, bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	if err := waitPort(c.AdminPort, startTimeout, c.proc.exited); err != nil {
		t.Fatalf("caddy did not start: %v\nconfig:\n%s", err, numbered(full))
	}
	if err := c.waitAdmin(); err != nil {
		t.Fatalf("caddy's admin endpoint does not answer: %v\nconfig:\n%s", err, numbered(full))
	}
	c.waitReady(full)
	return c
}

// globalOptions are the options the harness needs; a test's own global block
// may set any of them itself (the test's value wins).
func (c *caddyProc) globalOptions() [][2]string {
	opts := [][2]string{
		{"admin", fmt.Sprintf("127.0.0.1:%d", c.AdminPort)},
		{"default_bind", "127.0.0.1"},
		{"storage", "file_system " + filepath.Join(c.Dir, "storage")},
		{"skip_install_trust", ""},
		{"http_port", strconv.Itoa(c.HTTPPort)},
		{"https_port", strconv.Itoa(c.HTTPSPort)},
		{"persist_config", "off"},
		{"debug", ""},
	}
	if !c.tls {
		opts = append(opts, [2]string{"auto_https", "off"})
	} else {
		opts = append(opts, [2]string{"local_certs", ""})
	}
	return opts
}

var globalBlockRE = regexp.MustCompile(`^\s*\{\s*\n`)

// withGlobals returns caddyfile with the harness's global options merged
// into its global block: options the block already sets are left alone.
func (c *caddyProc) withGlobals(caddyfile string) string {
	var body, rest string
	if loc := globalBlockRE.FindStringIndex(caddyfile); loc != nil {
		// The global block ends at the first line that is a lone "}" at
		// column 0 (the Caddyfile convention; nested blocks are indented).
		after := caddyfile[loc[1]:]
		end := regexp.MustCompile(`(?m)^\}[ \t]*$`).FindStringIndex(after)
		if end == nil {
			c.t.Fatalf("caddyfile: global block has no closing brace at column 0:\n%s", caddyfile)
		}
		body, rest = after[:end[0]], after[end[1]:]
	} else {
		rest = caddyfile
	}
	present := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			present[f[0]] = true
		}
	}
	var b strings.Builder
	b.WriteString("{\n")
	for _, kv := range c.globalOptions() {
		if present[kv[0]] {
			continue
		}
		b.WriteString("\t" + strings.TrimSpace(kv[0]+" "+kv[1]) + "\n")
	}
	b.WriteString(body)
	b.WriteString("}\n")
	b.WriteString(rest)
	return b.String()
}

var siteAddrRE = regexp.MustCompile(`^(?:https?://)?[^\s{/]*:(\d+)`)

// sitePorts finds the ports of the site blocks: lines at column 0 that open
// a block and carry :port addresses.
func sitePorts(caddyfile string) []int {
	var ports []int
	for _, line := range strings.Split(caddyfile, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || !strings.HasSuffix(strings.TrimSpace(line), "{") {
			continue
		}
		for _, addr := range strings.FieldsFunc(strings.TrimSuffix(strings.TrimSpace(line), "{"), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t'
		}) {
			if m := siteAddrRE.FindStringSubmatch(addr); m != nil {
				if p, err := strconv.Atoi(m[1]); err == nil {
					ports = append(ports, p)
				}
			}
		}
	}
	return ports
}

func (c *caddyProc) waitReady(full string) {
	c.t.Helper()
	for _, p := range sitePorts(full) {
		if err := waitPort(p, startTimeout, c.proc.exited); err != nil {
			c.t.Fatalf("caddy site port %d: %v\nconfig:\n%s\nlog:\n%s", p, err, numbered(full), c.Log())
		}
	}
}

// waitAdmin waits until GET /config/ on the admin endpoint answers 200.
func (c *caddyProc) waitAdmin() error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(c.Admin() + "/config/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /config/: %s", resp.Status)
		}
		if perr := c.proc.exited(); perr != nil {
			return perr
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is everything Caddy has written so far (its log, at debug level).
func (c *caddyProc) Log() string { return c.proc.out.String() }

// Admin is the base URL of the admin endpoint.
func (c *caddyProc) Admin() string { return fmt.Sprintf("http://127.0.0.1:%d", c.AdminPort) }

// Reload loads a new Caddyfile (global options merged as in startCaddy)
// through the admin API's POST /load, fails the test when Caddy refuses it,
// and waits until the new site ports accept connections.
func (c *caddyProc) Reload(caddyfile string) {
	c.t.Helper()
	if err := c.TryReload(caddyfile); err != nil {
		c.t.Fatal(err)
	}
}

// TryReload is Reload returning Caddy's refusal instead of failing.
func (c *caddyProc) TryReload(caddyfile string) error {
	c.t.Helper()
	full := c.withGlobals(caddyfile)
	req, err := http.NewRequest(http.MethodPost, c.Admin()+"/load", strings.NewReader(full))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("POST /load: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: %s: %s\nconfig:\n%s", resp.Status, body, numbered(full))
	}
	c.waitReady(full)
	return nil
}

func numbered(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}

// ---------------------------------------------------------------- nginx

var listenRE = regexp.MustCompile(`(?m)^\s*(?:listen|bind)\s+127\.0\.0\.1:(\d+)`)

// startNginx runs nginx in the foreground with the given http-level
// configuration (server blocks; what goes inside `http { }`), with its pid,
// temp and log files in a temp dir, waits until every `listen
// 127.0.0.1:PORT` accepts connections, and stops it on cleanup.
func startNginx(t *testing.T, conf string) {
	t.Helper()
	bin := lookTool(t, "nginx", "nginx")
	dir := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody and could not use the temp dir.
		user = "user root;\n"
	}
	full := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log info;
events { worker_connections 256; }
http {
	access_log %[2]s/logs/access.log;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	uwsgi_temp_path %[2]s/tmp/uwsgi;
	scgi_temp_path %[2]s/tmp/scgi;
%[3]s
}
`, user, dir, conf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "nginx", dir, os.Environ(), bin,
		"-p", dir, "-c", confPath, "-e", filepath.Join(dir, "logs", "error.log"), "-g", "daemon off;")
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Logf("---- nginx error.log ----\n%s", logs)
		}
	})
	waitListeners(t, "nginx", full, p)
}

// ---------------------------------------------------------------- HAProxy

// startHAProxy runs HAProxy in the foreground (-db) with a `global` and
// `defaults` section written by the harness followed by conf (frontends and
// backends), waits until every `bind 127.0.0.1:PORT` accepts connections,
// and stops it on cleanup.
func startHAProxy(t *testing.T, conf string) {
	t.Helper()
	bin := lookTool(t, "haproxy", "haproxy")
	dir := t.TempDir()
	full := `global
	maxconn 256
	tune.ssl.default-dh-param 2048

defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s

` + conf + "\n"
	confPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(confPath, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "haproxy", dir, os.Environ(), bin, "-f", confPath, "-db")
	waitListeners(t, "haproxy", full, p)
}

func waitListeners(t *testing.T, name, conf string, p *proc) {
	t.Helper()
	ms := listenRE.FindAllStringSubmatch(conf, -1)
	if len(ms) == 0 {
		t.Fatalf("%s config listens on no 127.0.0.1:PORT address:\n%s", name, numbered(conf))
	}
	for _, m := range ms {
		port, _ := strconv.Atoi(m[1])
		if err := waitPort(port, startTimeout, p.exited); err != nil {
			t.Fatalf("%s did not start: %v\nconfig:\n%s", name, err, numbered(conf))
		}
	}
}

// ---------------------------------------------------------------- curl

// curlResult is one curl request's outcome.
type curlResult struct {
	Status  int
	Body    string
	Header  http.Header
	Stderr  string
	ExitErr error // curl's own failure (connection, TLS handshake, ...)
}

// curl runs the real curl with args (plus -sS and a time limit) and returns
// the final response's status, body and headers. A curl failure (exit
// status not zero: connection refused, handshake failure...) fails the test.
func curl(t *testing.T, args ...string) (status int, body string, headers http.Header) {
	t.Helper()
	r := curlRun(t, args...)
	if r.ExitErr != nil {
		t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), r.ExitErr, r.Stderr)
	}
	return r.Status, r.Body, r.Header
}

// curlRun is curl that reports curl's own failure instead of failing.
func curlRun(t *testing.T, args ...string) curlResult {
	t.Helper()
	bin := lookTool(t, "curl", "curl")
	dir := t.TempDir()
	hdrFile := filepath.Join(dir, "headers")
	bodyFile := filepath.Join(dir, "body")
	full := append([]string{"-sS", "--max-time", "20", "-D", hdrFile, "-o", bodyFile, "-w", "%{http_code}"}, args...)
	cmd := exec.Command(bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := curlResult{Stderr: stderr.String(), ExitErr: err}
	res.Status, _ = strconv.Atoi(strings.TrimSpace(stdout.String()))
	b, _ := os.ReadFile(bodyFile)
	res.Body = string(b)
	h, _ := os.ReadFile(hdrFile)
	res.Header = parseLastHeaderBlock(h)
	return res
}

// parseLastHeaderBlock parses the last response's header block of a curl
// -D dump (there are several with 100 Continue or redirects).
func parseLastHeaderBlock(dump []byte) http.Header {
	blocks := strings.Split(strings.ReplaceAll(string(dump), "\r\n", "\n"), "\n\n")
	var last string
	for _, b := range blocks {
		if strings.TrimSpace(b) != "" {
			last = b
		}
	}
	h := http.Header{}
	sc := bufio.NewScanner(strings.NewReader(last))
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			continue // status line
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	return h
}
