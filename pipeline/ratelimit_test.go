package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/testenv"
)

func TestGoogleThrottle(t *testing.T) {
	rdb := testenv.Redis(t)
	p, err := New(Config{Pool: testenv.DB(t), Redis: rdb, Vault: noVault{}, GooglePerMinute: 3, Providers: testProviders})
	if err != nil {
		t.Fatal(err)
	}
	throttle := p.googleThrottle("conn-1")
	ctx := context.Background()
	start := time.Now()
	for i := range 3 {
		if err := throttle(ctx); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the burst took %v", d)
	}
	err = throttle(ctx)
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) < 10*time.Second {
		t.Fatalf("4th request in a minute at 3/min: %v (wait %v), want RateLimited with a long wait", err, calendar.WaitOf(err))
	}
	if err := p.googleThrottle("conn-2")(ctx); err != nil {
		t.Errorf("another connection shares the limit: %v", err)
	}
	// A second pipeline (another process) sees the same budget.
	q, _ := New(Config{Pool: p.db, Redis: rdb, Vault: noVault{}, GooglePerMinute: 3, Providers: testProviders})
	if err := q.googleThrottle("conn-1")(ctx); calendar.ClassOf(err) != calendar.RateLimited {
		t.Errorf("another process ignored the shared limit: %v", err)
	}
}
