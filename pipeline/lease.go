package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// lease is a lock on one calendar's sync shared by every process through
// Redis. It holds no database connection, and it expires if its holder dies.
type lease struct {
	rdb   redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
}

// leaseTTL is how long a lease lives without renewal; syncs renew it on
// every page.
const leaseTTL = time.Minute

// tryLease takes the lease on key, or reports that someone holds it.
func (c *core) tryLease(ctx context.Context, key string) (*lease, bool, error) {
	b := make([]byte, 16)
	rand.Read(b)
	l := &lease{rdb: c.rdb, key: "rapport:lease:" + key, token: hex.EncodeToString(b), ttl: leaseTTL}
	ok, err := c.rdb.SetNX(ctx, l.key, l.token, l.ttl).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	return l, true, nil
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
	releaseScript.Run(context.WithoutCancel(ctx), l.rdb, []string{l.key}, l.token)
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
