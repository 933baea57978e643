package redistopo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// AllowSkipEnv is the environment variable that lets tests skip, rather
// than fail, when redis-server is not installed.
const AllowSkipEnv = "RAPPORT_TEST_ALLOW_SKIP"

// installCommand installs redis-server (with redis-cli and Sentinel mode).
const installCommand = "sudo apt-get install -y redis-server"

// startTimeout bounds the wait for a process to say it is ready; it is a
// safety net on a loaded machine, not a pace.
const startTimeout = 20 * time.Second

// redisVersion is redis-server's version, read once per test binary.
var redisVersion = sync.OnceValues(func() ([2]int, error) {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return [2]int{}, err
	}
	m := regexp.MustCompile(`v=(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		return [2]int{}, fmt.Errorf("no version in %q", out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return [2]int{major, minor}, nil
})

// requireRedis stops the test unless redis-server, at least major.minor, is
// on PATH: a skip when RAPPORT_TEST_ALLOW_SKIP=1, else a failure naming the
// install command.
func requireRedis(t testing.TB, major, minor int) {
	t.Helper()
	stop := func(msg string) {
		if os.Getenv(AllowSkipEnv) == "1" {
			t.Skipf("redistopo: %s; skipped because %s=1", msg, AllowSkipEnv)
		}
		t.Fatalf("redistopo: %s; install it with `%s` (or set %s=1 to skip these tests)", msg, installCommand, AllowSkipEnv)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		stop("redis-server is not on PATH")
		return
	}
	v, err := redisVersion()
	if err != nil {
		t.Fatalf("redistopo: redis-server --version: %v", err)
	}
	if v[0] < major || v[0] == major && v[1] < minor {
		stop(fmt.Sprintf("redis-server %d.%d is too old, %d.%d or newer is needed", v[0], v[1], major, minor))
	}
}

// proc is one redis-server process.
type proc struct {
	name string
	addr string // 127.0.0.1:port, or the socket path
	port int
	bus  int // cluster bus port, 0 outside a cluster
	cmd  *exec.Cmd
	log  *logTail

	done    chan struct{} // closed when the process has exited
	waitErr error
}

// procSpec says how to start a process.
type procSpec struct {
	name     string
	sentinel bool // run with --sentinel
	cluster  bool // reserve a cluster bus port too
	// conf returns the configuration file's lines besides port and dir.
	conf func(p *proc) []string
	// ready is the log line that says the process serves clients.
	ready string
}

// start runs a process on a free loopback port and waits until it is ready.
// A port taken between choosing and binding it is retried on another. The
// process is killed when the test ends.
func start(t testing.TB, spec procSpec) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, err := tryStart(t, spec)
		if err == nil {
			return p
		}
		if errors.Is(err, errAddrInUse) && attempt < 5 {
			t.Logf("redistopo: %s: %v; retrying on another port", spec.name, err)
			continue
		}
		t.Fatalf("redistopo: start %s: %v", spec.name, err)
	}
}

var errAddrInUse = errors.New("address already in use")

func tryStart(t testing.TB, spec procSpec) (*proc, error) {
	dir := t.TempDir()
	p := &proc{name: spec.name, port: freePort(t), log: &logTail{eof: make(chan struct{})}, done: make(chan struct{})}
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	if spec.cluster {
		p.bus = freePort(t)
	}
	lines := []string{
		"port " + strconv.Itoa(p.port),
		"bind 127.0.0.1",
		"dir " + dir,
		`logfile ""`,
		"daemonize no",
	}
	if !spec.sentinel {
		lines = append(lines, `save ""`, "appendonly no")
	}
	lines = append(lines, spec.conf(p)...)
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	args := []string{confPath}
	if spec.sentinel {
		args = append(args, "--sentinel")
	}
	p.cmd = exec.Command("redis-server", args...)
	p.cmd.Dir = dir
	dieWithParent(p.cmd)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	ready := p.log.watch(spec.ready)
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("redistopo: %s (%s) log, last lines:\n%s", p.name, p.addr, p.log.tail(40))
		}
	})
	go p.log.read(r)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		<-p.log.eof
		if p.log.contains("Address already in use") {
			return nil, errAddrInUse
		}
		return nil, fmt.Errorf("redis-server exited (%v) before it was ready:\n%s", p.waitErr, p.log.tail(20))
	case <-timer.C:
		return nil, fmt.Errorf("not ready after %s:\n%s", startTimeout, p.log.tail(20))
	}
}

// kill stops the process at once (SIGKILL: nothing of it is worth saving)
// and waits until it has exited.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// freePort is a TCP port on the loopback interface nobody listened on a
// moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistopo: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logTail keeps a process's log and tells watchers when a line they wait
// for appears.
type logTail struct {
	mu       sync.Mutex
	lines    []string
	watchers []watcher
	eof      chan struct{} // closed when the log's pipe is drained
}

type watcher struct {
	substr string
	ch     chan string
}

// maxLogLines bounds the memory a chatty process takes.
const maxLogLines = 2000

func (l *logTail) read(r *os.File) {
	defer r.Close()
	defer close(l.eof)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.add(sc.Text())
	}
}

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > maxLogLines {
		l.lines = l.lines[len(l.lines)-maxLogLines/2:]
	}
	kept := l.watchers[:0]
	for _, w := range l.watchers {
		if strings.Contains(line, w.substr) {
			w.ch <- line
			continue
		}
		kept = append(kept, w)
	}
	l.watchers = kept
}

// watch returns a channel that receives the first line containing substr,
// whether already logged or still to come.
func (l *logTail) watch(substr string) <-chan string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan string, 1)
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			ch <- line
			return ch
		}
	}
	l.watchers = append(l.watchers, watcher{substr, ch})
	return ch
}

func (l *logTail) contains(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			return true
		}
	}
	return false
}

func (l *logTail) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// awaitLine waits for a log line containing substr, up to timeout.
func (p *proc) awaitLine(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	ch := p.log.watch(substr)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-ch:
		return line
	case <-p.done:
		t.Fatalf("redistopo: %s exited while waiting for %q in its log:\n%s", p.name, substr, p.log.tail(20))
	case <-timer.C:
		t.Fatalf("redistopo: %s did not log %q within %s:\n%s", p.name, substr, timeout, p.log.tail(20))
	}
	return ""
}

// poll calls check every 50 ms until it reports done, and fails the test
// with check's last detail after timeout. It is for the conditions Redis
// announces by no event or log line.
func poll(t testing.TB, what string, timeout time.Duration, check func(ctx context.Context) (done bool, detail string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done, detail := check(ctx)
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistopo: %s: not so after %s: %s", what, timeout, detail)
		case <-tick.C:
		}
	}
}
