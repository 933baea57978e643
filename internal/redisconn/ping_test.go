package redisconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/internal/testenv/redistopo"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func pingURL(t *testing.T, url string) error {
	t.Helper()
	return pingURLWithin(t, url, 20*time.Second)
}

func pingURLWithin(t *testing.T, url string, timeout time.Duration) error {
	t.Helper()
	cfg, err := redisconn.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return redisconn.Ping(ctx, c)
}

func TestPingUnreachable(t *testing.T) {
	t.Parallel()
	a, b := closedAddr(t), closedAddr(t)
	for _, tt := range []struct {
		url  string
		want string
	}{
		{"redis://" + a + "/0", "cannot reach Redis at " + a + ": connection refused; is redis-server running?"},
		{"redis://:" + secret + "@" + a + "/0", "cannot reach Redis at " + a + ": connection refused; is redis-server running?"},
		{"unix://" + filepath.Join(t.TempDir(), "none.sock"), "no such socket; is redis-server running with this unixsocket?"},
		{"redis-sentinel://" + a + "," + b + "/0?master=m", ": connection refused; is redis-server running?"},
		{"redis-cluster://" + a + "," + b, ": connection refused; is redis-server running?"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			err := pingURL(t, tt.url)
			if err == nil {
				t.Fatal("Ping succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || strings.Count(msg, ";") > 1 || strings.Contains(msg, "\n") {
				t.Errorf("Ping: %q, want one sentence with %q", msg, tt.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("Ping error shows the password: %s", msg)
			}
			if strings.Contains(tt.want, "refused") && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
			}
			for _, addr := range []string{a, b} {
				if strings.Contains(tt.url, ","+addr) && !strings.Contains(msg, addr) {
					t.Errorf("Ping: %q does not name %s", msg, addr)
				}
			}
		})
	}
}

// TestPingServer runs against a real server: a working URL, and the
// mistakes an operator makes with one.
func TestPingServer(t *testing.T) {
	t.Parallel()
	addr := redistopo.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.ConfigSet(context.Background(), "requirepass", "right").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		url  string
		want string // "" for success
	}{
		{"redis://:right@" + addr + "/3", ""},
		{"redis://:" + secret + "@" + addr + "/0", "Redis at " + addr + " refused the user name or password; check the credentials in RAPPORT_REDIS_URL"},
		{"redis://" + addr + "/0", "Redis at " + addr + " refused the user name or password"},
		{"redis://:right@" + addr + "/99", "Redis at " + addr + " has no such database"},
		// A TLS client waits for a server hello that never comes.
		{"rediss://:right@" + addr + "/0", "cannot reach Redis at " + addr + ": no answer in time; check the address and port, whether it expects TLS (rediss://), and any firewall"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			err := pingURLWithin(t, tt.url, 2*time.Second)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Ping: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Ping succeeded, want %q", tt.want)
			case err != nil && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Ping: %q, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), secret):
				t.Errorf("Ping error shows the password: %v", err)
			}
			if err != nil {
				t.Logf("Ping: %v", err)
			}
		})
	}
}

// TestStandalone uses a plain server through both a Client and Asynq's
// option, on a database other than 0, and MGet's non-cluster path.
func TestStandalone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"tcp", func(t *testing.T) string { return "redis://" + redistopo.StartServer(t) + "/3" }},
		{"unix", func(t *testing.T) string { return "unix://" + redistopo.StartUnixServer(t) + "?db=3" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := redisconn.Parse(tt.url(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb := cfg.Client()
			defer rdb.Close()
			if err := redisconn.Ping(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			client := asynq.NewClient(cfg.AsynqConnOpt())
			defer client.Close()
			if _, err := client.EnqueueContext(ctx, asynq.NewTask("calendar:sync", nil), asynq.TaskID("t1"), asynq.Queue("sync")); err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			// Asynq's keys are on database 3, where the Client looks.
			if qs, err := rdb.SMembers(ctx, "asynq:queues").Result(); err != nil || len(qs) != 1 || qs[0] != "sync" {
				t.Errorf("asynq:queues on db 3 = %v, %v", qs, err)
			}
			if err := rdb.MSet(ctx, "a", "1", "c", "").Err(); err != nil {
				t.Fatal(err)
			}
			got, err := redisconn.MGet(ctx, rdb, "a", "b", "c")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{"1", nil, ""}, got); diff != "" {
				t.Errorf("MGet (-want +got):\n%s", diff)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSetLogger checks that go-redis's own lines go to the slog logger, at
// debug level, not to stderr. It changes go-redis's process-wide logger, so
// it does not run in parallel with the others.
func TestSetLogger(t *testing.T) {
	var buf syncBuffer
	redisconn.SetLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer redisconn.SetLogger(nil)
	// A failover client with no sentinel reachable logs its attempts.
	cfg, err := redisconn.Parse(fmt.Sprintf("redis-sentinel://%s/0?master=m", closedAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("Ping succeeded")
	}
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "component=go-redis") {
		t.Errorf("go-redis log lines did not reach the slog logger at debug level:\n%s", out)
	}
	t.Logf("go-redis logged:\n%s", out)
}
