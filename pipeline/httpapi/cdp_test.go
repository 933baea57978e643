package httpapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// This file is a small Chrome DevTools Protocol client: enough of it to
// drive Debian's chromium from a test (navigate, type, press keys, read
// the page, take screenshots) without a dependency beyond x/net.

// chromiumBinary finds the browser: RAPPORT_CHROMIUM, else chromium on the
// PATH. Without one the test fails with the command that installs it, or
// skips when RAPPORT_TEST_ALLOW_SKIP=1.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RAPPORT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium binary: install it with `apt-get install -y chromium` (or set RAPPORT_CHROMIUM)"
	if os.Getenv("RAPPORT_TEST_ALLOW_SKIP") == "1" {
		t.Skip(msg)
	}
	t.Fatal(msg + "; set RAPPORT_TEST_ALLOW_SKIP=1 to skip instead")
	return ""
}

// browserProc is a running headless chromium and its DevTools connection.
type browserProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	conn *websocket.Conn

	mu      sync.Mutex
	nextID  int64
	waiting map[int64]chan cdpMessage
	subs    map[string][]chan cdpMessage // by method
	done    chan struct{}
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startChromium launches the browser and connects to it. It is stopped
// when the test ends.
func startChromium(t *testing.T) *browserProc {
	t.Helper()
	bin := chromiumBinary(t)
	dir, err := os.MkdirTemp("", "rapport-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+dir,
		"--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1", "about:blank")
	// Its own process group: the renderers and helpers it starts are
	// stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	// chromium says where DevTools listens on stderr; the rest of its
	// chatter is kept for a failure's log.
	found := make(chan string, 1)
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				found <- strings.TrimSpace(u)
			}
			logMu.Lock()
			if log.Len() < 64<<10 {
				log.WriteString(line + "\n")
			}
			logMu.Unlock()
		}
		io.Copy(io.Discard, stderr)
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(60 * time.Second):
		cancel()
		cmd.Wait()
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not start its DevTools endpoint within a minute:\n%s", log.String())
	}
	conn, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		cancel()
		cmd.Wait()
		t.Fatalf("connect to chromium's DevTools at %s: %v", wsURL, err)
	}
	conn.MaxPayloadBytes = 64 << 20
	b := &browserProc{t: t, cmd: cmd, conn: conn, waiting: map[int64]chan cdpMessage{}, subs: map[string][]chan cdpMessage{}, done: make(chan struct{})}
	go b.read()
	t.Cleanup(func() {
		// Close the browser; kill its process group if it lingers.
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		b.call("", "Browser.close", nil, nil)
		conn.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		cancel()
		<-exited
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
		os.RemoveAll(dir)
		if t.Failed() {
			logMu.Lock()
			t.Logf("chromium's log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	return b
}

// read dispatches answers to their callers and events to subscribers.
func (b *browserProc) read() {
	defer close(b.done)
	for {
		var raw []byte
		if err := websocket.Message.Receive(b.conn, &raw); err != nil {
			return
		}
		var m cdpMessage
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.waiting[m.ID]; ch != nil {
				ch <- m
				delete(b.waiting, m.ID)
			}
		} else {
			for _, ch := range b.subs[m.Method] {
				select {
				case ch <- m:
				default: // a subscriber that stopped listening
				}
			}
		}
		b.mu.Unlock()
	}
}

// subscribe returns a channel of the events of a method.
func (b *browserProc) subscribe(method string) chan cdpMessage {
	ch := make(chan cdpMessage, 64)
	b.mu.Lock()
	b.subs[method] = append(b.subs[method], ch)
	b.mu.Unlock()
	return ch
}

// call sends a command and waits for its answer.
func (b *browserProc) call(session, method string, params any, result any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	p, _ := json.Marshal(params)
	if params == nil {
		p = []byte("{}")
	}
	msg, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: p, SessionID: session})
	if err := websocket.Message.Send(b.conn, string(msg)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("%s: the browser closed the connection", method)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%s: no answer within a minute", method)
	}
}

// tab is one page of the browser.
type tab struct {
	b       *browserProc
	t       *testing.T
	session string
	loads   chan cdpMessage
	logs    chan cdpMessage
	dir     string
	shots   int
}

// newTab opens a page; screenshots go to dir.
func (b *browserProc) newTab(dir string) *tab {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	tb := &tab{b: b, t: b.t, session: att.SessionID, loads: b.subscribe("Page.loadEventFired"), logs: b.subscribe("Log.entryAdded"), dir: dir}
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		tb.must(m, nil, nil)
	}
	tb.viewport(1280, 900, false)
	return tb
}

func (tb *tab) must(method string, params, result any) {
	tb.t.Helper()
	if err := tb.b.call(tb.session, method, params, result); err != nil {
		tb.t.Fatal(err)
	}
}

// viewport sets the page's size: a desktop, or a phone (mobile).
func (tb *tab) viewport(w, h int, mobile bool) {
	tb.t.Helper()
	scale := 1.0
	if mobile {
		scale = 2
	}
	tb.must("Emulation.setDeviceMetricsOverride", map[string]any{"width": w, "height": h, "deviceScaleFactor": scale, "mobile": mobile}, nil)
}

// drainLoads forgets load events of earlier navigations.
func (tb *tab) drainLoads() {
	for {
		select {
		case <-tb.loads:
		default:
			return
		}
	}
}

// waitLoad waits for the next page load.
func (tb *tab) waitLoad(what string) {
	tb.t.Helper()
	select {
	case <-tb.loads:
	case <-time.After(30 * time.Second):
		tb.t.Fatalf("%s: the page did not load within 30 s (at %s)", what, tb.url())
	}
}

// navigate opens a URL and waits for it to load.
func (tb *tab) navigate(u string) {
	tb.t.Helper()
	tb.drainLoads()
	tb.must("Page.navigate", map[string]any{"url": u}, nil)
	tb.waitLoad("navigate to " + u)
}

// eval runs an expression in the page and decodes its value.
func (tb *tab) eval(expr string, out any) {
	tb.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	tb.must("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if res.Exception != nil {
		tb.t.Fatalf("evaluate %s: %s %s", expr, res.Exception.Text, res.Exception.Exception.Description)
	}
	if out != nil && len(res.Result.Value) > 0 {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			tb.t.Fatalf("evaluate %s: %v", expr, err)
		}
	}
}

func (tb *tab) text(selector string) string {
	tb.t.Helper()
	var s string
	tb.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : ""; })()`, selector), &s)
	return s
}

func (tb *tab) url() string {
	var s string
	tb.eval("location.href", &s)
	return s
}

// attr returns an attribute of the first element matching selector.
func (tb *tab) attr(selector, name string) string {
	tb.t.Helper()
	var s string
	tb.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? (e.getAttribute(%q) || "") : ""; })()`, selector, name), &s)
	return s
}

// fill types a value into a field, as a person would: focus, then text.
func (tb *tab) fill(selector, value string) {
	tb.t.Helper()
	var ok bool
	tb.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.focus(); e.value = ""; return true; })()`, selector), &ok)
	if !ok {
		tb.t.Fatalf("no field %s on %s", selector, tb.url())
	}
	if value != "" {
		tb.must("Input.insertText", map[string]any{"text": value}, nil)
	}
}

// setValue sets a select's or date field's value.
func (tb *tab) setValue(selector, value string) {
	tb.t.Helper()
	var ok bool
	tb.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.value = %q; return e.value === %q; })()`, selector, value, value), &ok)
	if !ok {
		tb.t.Fatalf("cannot set %s to %q on %s", selector, value, tb.url())
	}
}

// key presses a key on the focused element.
func (tb *tab) key(key string, code int) {
	tb.t.Helper()
	for _, typ := range []string{"keyDown", "keyUp"} {
		p := map[string]any{"type": typ, "key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
		if key == "Enter" && typ == "keyDown" {
			p["text"] = "\r"
		}
		tb.must("Input.dispatchKeyEvent", p, nil)
	}
}

// click clicks the first element matching selector and waits for the
// page it leads to.
func (tb *tab) click(selector string) {
	tb.t.Helper()
	tb.drainLoads()
	var ok bool
	tb.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, selector), &ok)
	if !ok {
		tb.t.Fatalf("nothing to click at %s on %s", selector, tb.url())
	}
	tb.waitLoad("click " + selector)
}

// pressEnter submits the focused field's form by keyboard and waits for
// the page it leads to.
func (tb *tab) pressEnter() {
	tb.t.Helper()
	tb.drainLoads()
	tb.key("Enter", 13)
	tb.waitLoad("Enter")
}

// screenshot saves the whole page as dir/NN-name.png.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	var m struct {
		CSSContentSize struct {
			Width, Height float64
		} `json:"cssContentSize"`
	}
	tb.must("Page.getLayoutMetrics", nil, &m)
	var shot struct {
		Data string `json:"data"`
	}
	tb.must("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": m.CSSContentSize.Width, "height": min(m.CSSContentSize.Height, 8000), "scale": 1}}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 100 {
		tb.t.Fatalf("screenshot %s: %v (%d bytes)", name, err, len(png))
	}
	tb.shots++
	path := filepath.Join(tb.dir, fmt.Sprintf("%02d-%s.png", tb.shots, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// securityErrors returns the browser's log entries about blocked content
// (Content-Security-Policy, mixed content) seen so far.
func (tb *tab) securityErrors() []string {
	var out []string
	for {
		select {
		case m := <-tb.logs:
			var e struct {
				Entry struct {
					Source, Level, Text, URL string
				} `json:"entry"`
			}
			if json.Unmarshal(m.Params, &e) == nil && (e.Entry.Source == "security" || strings.Contains(e.Entry.Text, "Content Security Policy")) {
				out = append(out, e.Entry.Text+" ("+e.Entry.URL+")")
			}
		default:
			return out
		}
	}
}
