package hubspot

import (
	"context"
	"sync"
	"time"

	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/internal/ratelimit"
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
func gcraLimit(l Limit) provider.Limit {
	budget := int(float64(l.Requests) * safetyShare)
	if budget >= l.Requests {
		budget = l.Requests - 1
	}
	if budget < 2 {
		// Too small a limit to keep a margin: one request per window.
		return provider.Limit{Rate: 1, Burst: 1, Period: l.Window}
	}
	burst := max(1, budget/10)
	return provider.Limit{Rate: budget - burst, Burst: burst, Period: l.Window}
}

// limiter paces requests: through the shared limiter when the client has
// one (every process shares the portal's budget), else in memory; and it
// pauses keys after a 429.
type limiter struct {
	shared provider.Limiter

	mu     sync.Mutex
	paused map[string]time.Time // no request on the key before this time
}

func newLimiter(shared provider.Limiter) *limiter {
	if shared == nil {
		shared = ratelimit.NewMemory(nil)
	}
	return &limiter{shared: shared, paused: map[string]time.Time{}}
}

// allow takes one request from key's budget, or says how long to wait
// before asking again.
func (l *limiter) allow(ctx context.Context, key string, lim provider.Limit) (time.Duration, error) {
	return l.shared.Allow(ctx, key, lim)
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
