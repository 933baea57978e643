package redisconn_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/internal/redisconn"
)

func TestMain(m *testing.M) {
	// As the binary does: go-redis's retry chatter during the failover
	// tests must not reach stderr.
	redisconn.SetLogger(nil)
	os.Exit(m.Run())
}

// asynqLogger sends an asynq.Server's log to the test's log, so that it is
// shown only when the test fails (or with -v).
type asynqLogger struct{ t testing.TB }

func (l asynqLogger) Debug(args ...any) {}
func (l asynqLogger) Info(args ...any)  {}
func (l asynqLogger) Warn(args ...any)  { l.t.Log(append([]any{"asynq warn:"}, args...)...) }
func (l asynqLogger) Error(args ...any) { l.t.Log(append([]any{"asynq error:"}, args...)...) }
func (l asynqLogger) Fatal(args ...any) { l.t.Log(append([]any{"asynq fatal:"}, args...)...) }

// seenSet counts the task ids a handler processed and lets a test wait for
// a set of them: an event, not a sleep.
type seenSet struct {
	mu      sync.Mutex
	count   map[string]int
	changed chan struct{} // closed and replaced on every add
	last    time.Time
	maxGap  time.Duration // longest time between two handler runs
}

func newSeenSet() *seenSet {
	return &seenSet{count: map[string]int{}, changed: make(chan struct{})}
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) > s.maxGap {
		s.maxGap = now.Sub(s.last)
	}
	s.last = now
	s.count[id]++
	close(s.changed)
	s.changed = make(chan struct{})
}

// missing returns the ids not yet seen and a channel closed at the next add.
func (s *seenSet) missing(ids []string) ([]string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if s.count[id] == 0 {
			out = append(out, id)
		}
	}
	return out, s.changed
}

// wait returns once every id was seen, or fails the test after timeout (a
// safety net: a healthy run finishes far sooner).
func (s *seenSet) wait(t testing.TB, ids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		miss, changed := s.missing(ids)
		if len(miss) == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d of %d tasks not processed within %s, e.g. %v", len(miss), len(ids), timeout, miss[:min(5, len(miss))])
		}
	}
}

func (s *seenSet) stats() (unique, runs int, maxGap time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.count {
		unique++
		runs += n
	}
	return unique, runs, s.maxGap
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}
