package rules

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Holder holds the Set in force. Readers call Get for every decision; a
// reload replaces the Set atomically, so a decision sees one Set throughout.
type Holder struct {
	p      atomic.Pointer[Set]
	status atomic.Pointer[HolderStatus]
}

// HolderStatus says when the Set in force was loaded and why the last
// reload, if it failed, was refused.
type HolderStatus struct {
	LoadedAt time.Time
	// LastError is the last refused reload's error, cleared by the next
	// load; ErrorAt is when it was refused.
	LastError string
	ErrorAt   time.Time
}

// NewHolder returns a Holder of s.
func NewHolder(s *Set) *Holder {
	h := &Holder{}
	h.Store(s)
	return h
}

// Get returns the Set in force.
func (h *Holder) Get() *Set { return h.p.Load() }

// Store puts s in force.
func (h *Holder) Store(s *Set) {
	h.p.Store(s)
	h.status.Store(&HolderStatus{LoadedAt: time.Now()})
}

// Status returns when the Set in force was loaded and the last refused
// reload's error.
func (h *Holder) Status() HolderStatus {
	if st := h.status.Load(); st != nil {
		return *st
	}
	return HolderStatus{}
}

// refused records a refused reload; the Set in force stays.
func (h *Holder) refused(err error) {
	st := h.Status()
	st.LastError, st.ErrorAt = err.Error(), time.Now()
	h.status.Store(&st)
}

// Reload loads dir and puts it in force. When the new files are broken, the
// Set in force is kept and the error says so; the caller logs it. An empty
// dir puts the built-in rules in force.
func (h *Holder) Reload(dir string) error {
	if dir == "" {
		h.Store(Default())
		return nil
	}
	s, err := Load(dir)
	if err != nil {
		keep := "none"
		if cur := h.Get(); cur != nil {
			keep = cur.Version()
		}
		err = fmt.Errorf("reload rules from %s refused, keeping version %s: %w", dir, keep, err)
		h.refused(err)
		return err
	}
	h.Store(s)
	return nil
}

// Watch runs Watch with h.Store as the callback, and records refused
// reloads in h's Status.
func (h *Holder) Watch(ctx context.Context, dir string, logger *slog.Logger) error {
	w, err := newWatcher(dir, logger, h.Store)
	if err != nil {
		return err
	}
	w.onRefused = h.refused
	w.run(ctx, watchInterval)
	return nil
}

// watchInterval is how often Watch looks at the directory.
const watchInterval = 2 * time.Second

// Watch polls dir every two seconds until ctx is done and calls onChange with
// the new Set when the rule files' content (or the git commit) changed, held
// still for one poll, and loads cleanly. A broken change is refused and logged at Error level, once
// per change; the caller keeps its Set. Polling needs no file-notification
// dependency and works on every file system, mounted volumes included.
func Watch(ctx context.Context, dir string, logger *slog.Logger, onChange func(*Set)) error {
	return watch(ctx, dir, logger, watchInterval, onChange)
}

func watch(ctx context.Context, dir string, logger *slog.Logger, every time.Duration, onChange func(*Set)) error {
	w, err := newWatcher(dir, logger, onChange)
	if err != nil {
		return err
	}
	w.run(ctx, every)
	return nil
}

// run polls every interval until ctx is done.
func (w *watcher) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll(ctx)
		}
	}
}

// watcher is the state of Watch between polls.
type watcher struct {
	dir      string
	logger   *slog.Logger
	onChange func(*Set)
	// last is the fingerprint last loaded (or refused); seen is the one of
	// the previous poll. A change is loaded once it holds still for one
	// poll, so a file caught half-written by an editor is not refused.
	last, seen string
	version    string // of the Set last handed to onChange, or loaded at start
	cur        *Set   // that Set, for the reload's Diff; nil when none loaded
	lastErr    string
	onRefused  func(error) // optional: told of each refused change
}

func newWatcher(dir string, logger *slog.Logger, onChange func(*Set)) (*watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fp, err := fingerprint(dir)
	if err != nil {
		return nil, fmt.Errorf("watch rules: %w", err)
	}
	w := &watcher{dir: dir, logger: logger, onChange: onChange, last: fp, seen: fp}
	if s, err := Load(dir); err == nil {
		w.version, w.cur = s.Version(), s
	}
	return w, nil
}

func (w *watcher) poll(ctx context.Context) {
	fp, err := fingerprint(w.dir)
	if err != nil {
		if err.Error() != w.lastErr {
			w.lastErr = err.Error()
			w.logger.ErrorContext(ctx, "rules directory unreadable; keeping the rules in force",
				slog.String("dir", w.dir), slog.String("error", w.lastErr))
		}
		return
	}
	w.lastErr = ""
	if fp != w.seen {
		w.seen = fp
		return
	}
	if fp == w.last {
		return
	}
	w.last = fp
	s, err := Load(w.dir)
	if err != nil {
		w.logger.ErrorContext(ctx, "rules reload refused; keeping the rules in force",
			slog.String("dir", w.dir), slog.String("version_in_force", w.version), slog.String("error", err.Error()))
		if w.onRefused != nil {
			w.onRefused(err)
		}
		return
	}
	if s.Version() == w.version {
		return // back to the content in force
	}
	changes := Diff(w.cur, s)
	w.version, w.cur = s.Version(), s
	w.onChange(s)
	w.logger.InfoContext(ctx, "rules reloaded", slog.String("dir", w.dir), slog.String("version", w.version),
		slog.Int("rules", len(s.rules)), slog.String("changes", changes))
}

// fingerprint summarises the rule files' names and content and the git
// commit; any change to it triggers a load. Rule files are small, so hashing
// them every poll is cheaper than trusting modification times, which a
// copy or a coarse file system may leave unchanged.
func fingerprint(dir string) (string, error) {
	files, err := readDir(dir, isRuleFile)
	if err != nil {
		return "", err
	}
	return contentHash(files) + gitCommit(dir), nil
}
