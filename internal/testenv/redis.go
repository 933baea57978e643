package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisAddr is the Redis server tests use: TEST_REDIS_ADDR, else the local one.
func RedisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

var redisOnce struct {
	sync.Mutex
	db  int
	err error
}

// RedisDB returns a Redis database index reserved for this test binary and
// emptied, so packages tested in parallel never see each other's keys. DB 0
// holds only the reservations. The reservation is released when the binary's
// tests finish (it also expires after 30 minutes in case the process dies).
func RedisDB(t testing.TB) int {
	t.Helper()
	redisOnce.Lock()
	defer redisOnce.Unlock()
	if redisOnce.db == 0 && redisOnce.err == nil {
		redisOnce.db, redisOnce.err = reserveRedisDB()
	}
	if redisOnce.err != nil {
		t.Fatalf("testenv: %v", redisOnce.err)
	}
	return redisOnce.db
}

// Redis returns a client on this binary's reserved database. Each call
// flushes that database, so call it once per test that needs an empty one.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	db := RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("testenv: flush redis db %d: %v", db, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func reserveRedisDB() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: 0})
	defer c.Close()
	owner := strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
	for {
		for db := 1; db < 16; db++ {
			ok, err := c.SetNX(ctx, fmt.Sprintf("rapport:test:redisdb:%d", db), owner, 30*time.Minute).Result()
			if err != nil {
				return 0, fmt.Errorf("reserve redis db at %s: %w", RedisAddr(), err)
			}
			if ok {
				registerRelease(func() {
					rc := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: 0})
					defer rc.Close()
					key := fmt.Sprintf("rapport:test:redisdb:%d", db)
					if v, _ := rc.Get(context.Background(), key).Result(); v == owner {
						rc.Del(context.Background(), key)
					}
				})
				return db, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no free redis db index (1-15) at %s", RedisAddr())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
