package google_test

import (
	"context"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/internal/ratelimit"
	"github.com/rapportsync/rapport/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestThrottle: a connection's requests are paced at its per-minute limit
// after a burst; a long wait fails the request as RateLimited with the
// wait, for the caller to reschedule. The clock is the limiter's own, so
// nothing here waits.
func TestThrottle(t *testing.T) {
	c := newClock(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC))
	lim := ratelimit.NewMemory(c.Now)
	throttle := google.Throttle(lim, "conn-1", 3)
	ctx := context.Background()
	for i := range 3 {
		if err := throttle(ctx); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	err := throttle(ctx)
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) < 10*time.Second {
		t.Fatalf("4th request in a minute at 3/min: %v (wait %v), want RateLimited with a long wait", err, calendar.WaitOf(err))
	}
	if err := google.Throttle(lim, "conn-2", 3)(ctx); err != nil {
		t.Errorf("another connection shares the limit: %v", err)
	}
	c.Advance(21 * time.Second)
	if err := throttle(ctx); err != nil {
		t.Errorf("a request a third of a minute later: %v", err)
	}
}

// TestThrottleSharedThroughRedis: two processes share one budget.
func TestThrottleSharedThroughRedis(t *testing.T) {
	rdb := testenv.Redis(t)
	ctx := context.Background()
	a, b := ratelimit.NewRedis(rdb), ratelimit.NewRedis(rdb)
	for i := range 3 {
		if err := google.Throttle(a, "conn-1", 3)(ctx); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := google.Throttle(b, "conn-1", 3)(ctx); calendar.ClassOf(err) != calendar.RateLimited {
		t.Errorf("another process ignored the shared limit: %v", err)
	}
}
