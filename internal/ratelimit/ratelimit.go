// Package ratelimit implements provider.Limiter: in Redis, so that every
// Rapport process shares each provider budget (redis_rate's GCRA), and in
// memory, for a single process and tests.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/provider"
)

// Redis is a limiter shared through Redis.
type Redis struct{ rl *redis_rate.Limiter }

// NewRedis returns a limiter on rdb.
func NewRedis(rdb redis.UniversalClient) *Redis { return &Redis{rl: redis_rate.NewLimiter(rdb)} }

var _ provider.Limiter = (*Redis)(nil)

// Allow implements provider.Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l provider.Limit) (time.Duration, error) {
	res, err := r.rl.Allow(ctx, "rapport:limit:"+key, redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period})
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

// Memory is a limiter of one process.
type Memory struct {
	mu  sync.Mutex
	tat map[string]time.Time // GCRA theoretical arrival time per key
	now func() time.Time
}

// NewMemory returns an in-process limiter; clock nil means time.Now.
func NewMemory(clock func() time.Time) *Memory {
	if clock == nil {
		clock = time.Now
	}
	return &Memory{tat: map[string]time.Time{}, now: clock}
}

var _ provider.Limiter = (*Memory)(nil)

// Allow implements provider.Limiter with the same GCRA as Redis.
func (m *Memory) Allow(_ context.Context, key string, l provider.Limit) (time.Duration, error) {
	interval := l.Period / time.Duration(max(l.Rate, 1))
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	if allowAt := next.Add(-time.Duration(l.Burst) * interval); now.Before(allowAt) {
		return allowAt.Sub(now), nil
	}
	m.tat[key] = next
	return 0, nil
}
