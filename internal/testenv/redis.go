package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis for tests never touches anyone's data:
//
//   - With redis-server on PATH (and no TEST_REDIS_ADDR), each test binary
//     starts a private redis-server on a free loopback port, without
//     persistence, and stops it when its tests finish.
//   - Otherwise tests share the server at TEST_REDIS_ADDR (default
//     127.0.0.1:6379) and use only database indexes 2 to 13 — never 0 and
//     1 (Rapport's and anyone's defaults), 14 (rapport bench) or 15
//     (rapport demo). A database is used only when it is empty or holds
//     the marker key testenv writes into every database it uses: one that
//     holds anything else belongs to someone else and is left alone.

// Database indexes tests may use on a shared server.
const (
	FirstTestDB = 2
	LastTestDB  = 13
)

// Keys testenv keeps in a test database: the marker says the database is
// the tests' (so it may be emptied); the lease says which test binary uses
// it now.
const (
	markerKey = "rapport:testenv:marker"
	leaseKey  = "rapport:testenv:lease"
	leaseTTL  = 30 * time.Minute
)

var redisServer struct {
	sync.Mutex
	addr string
}

// RedisAddr is the Redis server tests use: TEST_REDIS_ADDR when set, else
// a private redis-server started for this test binary when redis-server is
// on PATH, else the local one at 127.0.0.1:6379.
func RedisAddr() string {
	redisServer.Lock()
	defer redisServer.Unlock()
	if redisServer.addr != "" {
		return redisServer.addr
	}
	switch a := os.Getenv("TEST_REDIS_ADDR"); {
	case a != "":
		redisServer.addr = a
	default:
		addr, err := startPrivateRedis()
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v; using the shared Redis at 127.0.0.1:6379 (databases %d-%d only)\n", err, FirstTestDB, LastTestDB)
			addr = "127.0.0.1:6379"
		}
		redisServer.addr = addr
	}
	return redisServer.addr
}

var redisOnce struct {
	sync.Mutex
	db  int
	err error
}

// RedisDB returns a Redis database index reserved for this test binary and
// emptied, so packages tested in parallel never see each other's keys. The
// reservation is released when the binary's tests finish (it also expires
// after 30 minutes in case the process dies).
func RedisDB(t testing.TB) int {
	t.Helper()
	redisOnce.Lock()
	defer redisOnce.Unlock()
	if redisOnce.db == 0 && redisOnce.err == nil {
		redisOnce.db, redisOnce.err = reserveRedisDB(RedisAddr())
	}
	if redisOnce.err != nil {
		t.Fatalf("testenv: %v", redisOnce.err)
	}
	return redisOnce.db
}

// Redis returns a client on this binary's reserved database. Each call
// empties that database (keeping testenv's own keys), so call it once per
// test that needs an empty one.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	db := RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
	if err := emptyTestDB(context.Background(), c, owner); err != nil {
		t.Fatalf("testenv: empty redis db %d: %v", db, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// owner identifies this test binary in the leases it holds.
var owner = strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)

// errForeign: a database holds keys testenv did not create.
var errForeign = errors.New("holds keys that are not the tests'")

// emptyTestDB empties a test database in one transaction that also writes
// the marker and the lease back, so no other binary can claim it between.
func emptyTestDB(ctx context.Context, c *redis.Client, owner string) error {
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, markerKey, "Rapport's tests use this database and empty it; see internal/testenv", 0)
		p.Set(ctx, leaseKey, owner, leaseTTL)
		return nil
	})
	return err
}

// claim takes database db for owner when it is the tests' or empty and
// nobody holds its lease. It reports errForeign for a database that holds
// other keys, and false when another test binary holds it.
func claim(ctx context.Context, c *redis.Client, owner string) (bool, error) {
	// ours: the database holds nothing but testenv's keys; leased says the
	// lease may be among them.
	ours := func(leased bool) (bool, error) {
		n, err := c.DBSize(ctx).Result()
		if err != nil {
			return false, err
		}
		if n == 0 || (leased && n == 1) {
			return true, nil
		}
		marked, err := c.Exists(ctx, markerKey).Result()
		return marked == 1, err
	}
	ok, err := ours(false)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, errForeign
	}
	took, err := c.SetNX(ctx, leaseKey, owner, leaseTTL).Result()
	if err != nil || !took {
		return false, err
	}
	// Keys written between the check and the lease are someone else's too.
	if ok, err = ours(true); err != nil || !ok {
		c.Del(ctx, leaseKey)
		if err == nil {
			err = errForeign
		}
		return false, err
	}
	return true, emptyTestDB(ctx, c, owner)
}

func reserveRedisDB(addr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		var foreign []int
		for db := FirstTestDB; db <= LastTestDB; db++ {
			c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
			ok, err := claim(ctx, c, owner)
			c.Close()
			switch {
			case errors.Is(err, errForeign):
				foreign = append(foreign, db)
				continue
			case err != nil:
				return 0, fmt.Errorf("reserve a redis database at %s: %w", addr, err)
			case ok:
				registerRelease(func() { releaseRedisDB(addr, db) })
				return db, nil
			}
		}
		if len(foreign) == LastTestDB-FirstTestDB+1 {
			return 0, fmt.Errorf("every test database (%d-%d) at %s holds keys Rapport's tests did not write; empty them (redis-cli -n N flushdb) if they are not yours, or set TEST_REDIS_ADDR to another server", FirstTestDB, LastTestDB, addr)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no free test database (%d-%d) at %s: other test binaries hold them", FirstTestDB, LastTestDB, addr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// releaseRedisDB empties the database (marker kept) and drops the lease,
// if this binary still holds it.
func releaseRedisDB(addr string, db int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer c.Close()
	if v, _ := c.Get(ctx, leaseKey).Result(); v != owner {
		return
	}
	c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, markerKey, "Rapport's tests use this database and empty it; see internal/testenv", 0)
		return nil
	})
}

// startPrivateRedis starts redis-server on a free loopback port for this
// test binary, stopped by Main (and, on Linux, by the kernel should the
// binary die first).
func startPrivateRedis() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not on PATH")
	}
	dir, err := os.MkdirTemp("", "rapport-testenv-redis-")
	if err != nil {
		return "", err
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", "")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		exited, err := startChild(cmd)
		if err != nil {
			return "", fmt.Errorf("start redis-server: %w", err)
		}
		if err := waitRedis(addr, exited); err != nil {
			cmd.Process.Kill()
			<-exited
			lastErr = err
			continue // most likely the port was taken in between: try another
		}
		registerRelease(func() {
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				io.WriteString(conn, "SHUTDOWN NOSAVE\r\n") // answered by closing the connection
				conn.Close()
			}
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			os.RemoveAll(dir)
		})
		return addr, nil
	}
	os.RemoveAll(dir)
	return "", fmt.Errorf("start redis-server: %w", lastErr)
}

// waitRedis waits until the server answers PING, or fails when it exits
// first; the 10 s deadline is only a safety net. It speaks the protocol
// itself: go-redis would log every refused dial.
func waitRedis(addr string, exited <-chan struct{}) error {
	deadline := time.After(10 * time.Second)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited: %w", addr, err)
		case <-deadline:
			return fmt.Errorf("redis-server on %s did not answer: %w", addr, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	b := make([]byte, 7)
	if _, err := io.ReadFull(conn, b); err != nil {
		return err
	}
	if string(b) != "+PONG\r\n" {
		return fmt.Errorf("answered %q to PING", b)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
