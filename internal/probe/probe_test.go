package probe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/internal/testenv"
)

var binary string // the rapport binary TestMain builds

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rapport-probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "rapport")
	if b := os.Getenv("RAPPORT_PROBE_BINARY"); b != "" {
		binary = b // probe another build, e.g. an older one
	} else if out, err := exec.Command("go", "build", "-o", binary, "github.com/rapportsync/rapport/cmd/rapport").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rapport: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

const (
	adminToken = "probe-admin-token-0123456789abcdef"
	encKey     = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	hubSecret  = "probe-hubspot-client-secret"
)

// environ is the configuration of a probed process: every provider's API
// at an address nothing listens on, so no request leaves the machine.
func environ(t *testing.T, over map[string]string) []string {
	t.Helper()
	env := map[string]string{
		"RAPPORT_DATABASE_URL":       testenv.DSN(t),
		"RAPPORT_REDIS_URL":          fmt.Sprintf("redis://%s/%d", testenv.RedisAddr(), testenv.RedisDB(t)),
		"RAPPORT_HTTP_ADDR":          "127.0.0.1:0",
		"RAPPORT_PUBLIC_URL":         "https://rapport.example",
		"RAPPORT_ADMIN_TOKEN":        adminToken,
		"RAPPORT_ENCRYPTION_KEYS":    encKey,
		"RAPPORT_WORKER_CONCURRENCY": "sync=1,crm=1,link=1,maintenance=1",
		"RAPPORT_LOG_FORMAT":         "json",
		"RAPPORT_LOG_LEVEL":          "info",
	}
	for _, p := range []string{"GOOGLE", "HUBSPOT", "MICROSOFT", "CALENDLY"} {
		env["RAPPORT_"+p+"_API_URL"] = "http://127.0.0.1:1/"
		env["RAPPORT_"+p+"_AUTH_URL"] = "http://127.0.0.1:1/auth"
		env["RAPPORT_"+p+"_TOKEN_URL"] = "http://127.0.0.1:1/token"
		env["RAPPORT_"+p+"_CLIENT_ID"] = strings.ToLower(p) + "-client"
		env["RAPPORT_"+p+"_CLIENT_SECRET"] = strings.ToLower(p) + "-secret"
	}
	env["RAPPORT_HUBSPOT_CLIENT_SECRET"] = hubSecret
	for k, v := range over {
		env[k] = v
	}
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// process is a running `rapport run`.
type process struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// start runs `rapport run` and waits until it serves HTTP.
func start(t *testing.T) *process {
	t.Helper()
	testenv.Redis(t) // an empty Redis database
	p := &process{cmd: exec.Command(binary, "run"), done: make(chan struct{})}
	p.cmd.Env = environ(t, nil)
	r, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving HTTP" {
				addr <- rec.Addr
			}
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		<-p.done
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("rapport run logged:\n%s", p.logs())
		}
	})
	select {
	case a := <-addr:
		p.base = "http://" + a
	case <-p.done:
		t.Fatalf("rapport run exited before serving:\n%s", p.logs())
	case <-time.After(2 * time.Minute):
		t.Fatalf("rapport run did not serve within 2 minutes:\n%s", p.logs())
	}
	return p
}

// call sends one request to the process.
func (p *process) call(t *testing.T, method, path string, body io.Reader, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, body)
	if err != nil {
		// A path Go refuses to send (a raw control character) is refused
		// by any client: send it by hand.
		return p.raw(t, method+" "+path+" HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// raw sends a request as bytes on a connection.
func (p *process) raw(t *testing.T, request string) (int, http.Header, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	io.WriteString(c, request)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("raw request %q: %v", request, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (p *process) admin(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	code, _, b := p.call(t, method, path, r, "Authorization", "Bearer "+adminToken, "Content-Type", "application/json")
	return code, b
}
