package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// lease is a lock on one calendar's sync (or one channel's renewal) shared
// by every process through Redis. It holds no database connection. Its
// holder renews it in the background while it lives, so it can be short:
// a process that dies loses it within leaseTTL.
type lease struct {
	rdb   redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// leaseTTL is how long a lease outlives its holder; the holder renews it
// every third of that, and syncs also check it on every page.
const leaseTTL = 20 * time.Second

// tryLease takes the lease on key, or reports that someone holds it.
func (c *core) tryLease(ctx context.Context, key string) (*lease, bool, error) {
	b := make([]byte, 16)
	rand.Read(b)
	l := &lease{rdb: c.rdb, key: "rapport:lease:" + key, token: hex.EncodeToString(b), ttl: c.cfg.leaseTTL,
		stop: make(chan struct{}), done: make(chan struct{})}
	ok, err := c.rdb.SetNX(ctx, l.key, l.token, l.ttl).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	go l.keepAlive()
	return l, true, nil
}

// keepAlive renews the lease until it is released, abandoned or lost.
func (l *lease) keepAlive() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		ok, err := l.renew(ctx)
		cancel()
		if err == nil && !ok {
			return // lost: the holder finds out on its next check
		}
	}
}

var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// renew extends the lease; false means it was lost (expired and taken).
func (l *lease) renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

// release gives the lease up if it is still ours.
func (l *lease) release(ctx context.Context) {
	l.abandon()
	releaseScript.Run(context.WithoutCancel(ctx), l.rdb, []string{l.key}, l.token)
}

// abandon stops renewing the lease without giving it up, as a process that
// died would: it expires after its TTL.
func (l *lease) abandon() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// releaseUnlessCrashed releases the lease, or abandons it when the handler
// stopped at a crash point: a dead process cleans nothing up.
func (l *lease) releaseUnlessCrashed(ctx context.Context, err error) {
	if crashed(err) {
		l.abandon()
		return
	}
	l.release(ctx)
}

type leaseKey struct{}

func withLease(ctx context.Context, l *lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// renewLease renews the lease the context carries, if any, and fails when
// it was lost: another process may be syncing the same calendar.
func renewLease(ctx context.Context) error {
	l, _ := ctx.Value(leaseKey{}).(*lease)
	if l == nil {
		return nil
	}
	ok, err := l.renew(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errLeaseLost
	}
	return nil
}

var errLeaseLost = errors.New("the calendar's sync lease was lost")
