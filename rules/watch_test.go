package rules

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHolderReloadKeepsOldSetOnBrokenFiles(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"a.yaml": okRule})
	s1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(s1)
	writeFile(t, dir, "a.yaml", "version: 1\nrules:\n  - name: r\n    when: evnt\n    action: log\n")
	err = h.Reload(dir)
	var list ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), "refused, keeping version "+s1.Version()) {
		t.Errorf("Reload of broken files: error = %v", err)
	}
	if h.Get() != s1 {
		t.Error("a broken reload replaced the set in force")
	}
	writeFile(t, dir, "a.yaml", okRule+"default: log\n")
	if err := h.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if h.Get() == s1 || h.Get().DefaultAction() != ActionLog {
		t.Error("a good reload did not replace the set")
	}
	if err := h.Reload(""); err != nil || h.Get() != Default() {
		t.Errorf("Reload(\"\") = %v; set in force %v, want the built-in rules", err, h.Get().Version())
	}
}

func writeFile(t testing.TB, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes a file atomically (a hidden temporary file renamed), as
// a git checkout does, so a watcher never sees it half-written.
func replaceFile(t testing.TB, dir, name, text string) {
	t.Helper()
	tmp := filepath.Join(dir, ".tmp-"+name)
	writeFile(t, dir, ".tmp-"+name, text)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink the test reads while Watch writes.
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

func TestWatchPolls(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"a.yaml": okRule})
	s1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(s1)
	var logs syncBuffer
	var changes []*Set
	w, err := newWatcher(dir, slog.New(slog.NewTextHandler(&logs, nil)), func(s *Set) {
		h.Store(s)
		changes = append(changes, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.poll(ctx)
	if len(changes) != 0 {
		t.Fatal("a poll without a change reloaded")
	}

	// A change is loaded on the second poll that sees it.
	writeFile(t, dir, "b.yaml", "version: 1\ndefault: log\n")
	w.poll(ctx)
	if len(changes) != 0 {
		t.Fatal("a change was loaded before it held still for one poll")
	}
	w.poll(ctx)
	if len(changes) != 1 {
		t.Fatalf("%d reloads after a good change, want 1", len(changes))
	}
	s2 := changes[0]
	if s2.Version() == s1.Version() || h.Get() != s2 || s2.DefaultAction() != ActionLog {
		t.Errorf("after a good change: version %s (was %s), default %s", s2.Version(), s1.Version(), s2.DefaultAction())
	}

	// A file caught half-written and completed before the next poll is
	// never loaded.
	writeFile(t, dir, "b.yaml", "version: 1\ndefa")
	w.poll(ctx)
	writeFile(t, dir, "b.yaml", "version: 1\ndefault: sometimes\n")
	w.poll(ctx)
	w.poll(ctx)
	w.poll(ctx)
	if !strings.Contains(logs.String(), `level=ERROR msg="rules reload refused; keeping the rules in force"`) {
		t.Fatalf("broken change not refused at Error level; logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `b.yaml:2:10: default must be \"log\" or \"skip\"`) || !strings.Contains(logs.String(), "version_in_force="+s2.Version()) {
		t.Errorf("refusal log lacks the position or the version in force:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "rules reload refused"); n != 1 {
		t.Errorf("refusal logged %d times, want once per broken change:\n%s", n, logs.String())
	}
	if h.Get() != s2 || len(changes) != 1 {
		t.Error("a broken change replaced the set in force")
	}

	// Going back to the content in force is no change.
	writeFile(t, dir, "b.yaml", "version: 1\ndefault: log\n")
	w.poll(ctx)
	w.poll(ctx)
	if len(changes) != 1 {
		t.Errorf("content equal to the set in force reloaded as %s", changes[len(changes)-1].Version())
	}

	// A directory that disappears is logged once and changes nothing.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	w.poll(ctx)
	w.poll(ctx)
	if n := strings.Count(logs.String(), "rules directory unreadable"); n != 1 {
		t.Errorf("unreadable directory logged %d times, want 1", n)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "b.yaml", "version: 1\ndefault: skip\n")
	w.poll(ctx)
	w.poll(ctx)
	if len(changes) != 2 || changes[1].DefaultAction() != ActionSkip || h.Get() != changes[1] {
		t.Errorf("%d reloads; want a second one with default skip", len(changes))
	}
	if n := strings.Count(logs.String(), "rules reloaded"); n != 2 {
		t.Errorf("reload logged %d times, want 2", n)
	}
	for _, want := range []string{`changes="default skip → log"`, `changes="default log → skip"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("reload log lacks %s:\n%s", want, logs.String())
		}
	}
}

func TestWatchLoop(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"a.yaml": okRule})
	changes := make(chan *Set, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w, err := newWatcher(dir, nil, func(s *Set) { changes <- s })
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.run(ctx, 5*time.Millisecond)
		done <- nil
	}()
	replaceFile(t, dir, "b.yaml", "version: 1\ndefault: log\n")
	select {
	case s := <-changes:
		if s.DefaultAction() != ActionLog {
			t.Errorf("default = %s, want log", s.DefaultAction())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}
	cancel()
	<-done

	// Watch itself returns nil once its context is done.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := Watch(ctx2, dir, nil, func(*Set) {}); err != nil {
		t.Errorf("Watch after cancellation = %v, want nil", err)
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	t.Parallel()
	if err := Watch(context.Background(), filepath.Join(t.TempDir(), "missing"), nil, func(*Set) {}); err == nil {
		t.Error("Watch of a missing directory returned nil")
	}
}
