package hubspot

import (
	"context"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// The client-side limiter is a GCRA (redis_rate's algorithm), in Redis when
// the client has one so that every process shares it, else in memory.
//
// HubSpot counts requests in a rolling window; a GCRA with burst B and rate
// R per window W lets through at most B+R requests in any window of length
// W. gcraLimit therefore splits a budget of 90% of HubSpot's limit (keeping
// a margin for clock skew and network jitter) into a small burst and a
// steady rate: for 100/10s, a burst of 9 and 81 per 10 s, about one request
// every 123 ms, so never more than 90 in any 10 s.

// safetyShare is the share of HubSpot's limit the client spends.
const safetyShare = 0.9

// gcraLimit converts a rolling-window limit into a GCRA limit whose worst
// case in any window stays within safetyShare of it.
func gcraLimit(l Limit) redis_rate.Limit {
	budget := int(float64(l.Requests) * safetyShare)
	if budget >= l.Requests {
		budget = l.Requests - 1
	}
	if budget < 2 {
		// Too small a limit to keep a margin: one request per window.
		return redis_rate.Limit{Rate: 1, Burst: 1, Period: l.Window}
	}
	burst := max(1, budget/10)
	return redis_rate.Limit{Rate: budget - burst, Burst: burst, Period: l.Window}
}

type limiter struct {
	rl *redis_rate.Limiter // nil: in memory

	mu     sync.Mutex
	tat    map[string]time.Time // in-memory GCRA state per key
	paused map[string]time.Time // no request on the key before this time
}

func newLimiter(rdb redis.UniversalClient) *limiter {
	l := &limiter{tat: map[string]time.Time{}, paused: map[string]time.Time{}}
	if rdb != nil {
		l.rl = redis_rate.NewLimiter(rdb)
	}
	return l
}

// allow takes one request from key's budget, or says how long to wait
// before asking again.
func (l *limiter) allow(ctx context.Context, key string, lim redis_rate.Limit) (time.Duration, error) {
	if l.rl != nil {
		res, err := l.rl.Allow(ctx, key, lim)
		if err != nil {
			return 0, err
		}
		if res.Allowed > 0 {
			return 0, nil
		}
		return max(res.RetryAfter, time.Millisecond), nil
	}
	interval := lim.Period / time.Duration(lim.Rate)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := l.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	if allowAt := next.Add(-time.Duration(lim.Burst) * interval); now.Before(allowAt) {
		return allowAt.Sub(now), nil
	}
	l.tat[key] = next
	return 0, nil
}

// pause stops requests on key until now+d (or later, if already paused
// longer). Pauses are per process: every process learns of HubSpot's
// pressure from its own responses.
func (l *limiter) pause(key string, d time.Duration) {
	until := time.Now().Add(d)
	l.mu.Lock()
	if until.After(l.paused[key]) {
		l.paused[key] = until
	}
	l.mu.Unlock()
}

// pausedFor is how long key remains paused.
func (l *limiter) pausedFor(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.paused[key]
	if !ok {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		delete(l.paused, key)
		return 0
	}
	return d
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
