package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/rapportsync/rapport/calendar"
)

// maxThrottleSleep is the longest a request waits for the limit in place;
// a longer wait fails the call as rate limited, so the task is retried
// later and its worker slot goes to other work.
const maxThrottleSleep = 250 * time.Millisecond

// googleThrottle returns the client-side limit of one Google connection,
// shared by every process through Redis.
func (p *Pipeline) googleThrottle(connID string) func(context.Context) error {
	key := "google:" + connID
	perMinute := p.cfg.GooglePerMinute
	limit := redis_rate.Limit{Rate: perMinute, Burst: min(20, perMinute), Period: time.Minute}
	return func(ctx context.Context) error {
		for {
			res, err := p.limiter.Allow(ctx, key, limit)
			if err != nil {
				return &calendar.Error{Class: calendar.Transient, Op: "ratelimit", Err: fmt.Errorf("rate limiter: %w", err)}
			}
			if res.Allowed > 0 {
				return nil
			}
			if res.RetryAfter > maxThrottleSleep {
				return &calendar.Error{Class: calendar.RateLimited, Wait: res.RetryAfter, Op: "ratelimit",
					Err: fmt.Errorf("Google limit of %d requests a minute for connection %s", perMinute, connID)}
			}
			p.metrics.RateLimitWait.WithLabelValues("google").Add(res.RetryAfter.Seconds())
			t := time.NewTimer(res.RetryAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}
