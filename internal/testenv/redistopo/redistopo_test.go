package redistopo

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartServerKillsOnCleanup(t *testing.T) {
	var pid int
	t.Run("server", func(t *testing.T) {
		addr := StartServer(t)
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("ping %s: %v", addr, err)
		}
		info, err := c.Info(context.Background(), "server").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "process_id:"); ok {
				for _, r := range v {
					pid = pid*10 + int(r-'0')
				}
			}
		}
	})
	if pid == 0 {
		t.Fatal("no process_id in INFO server")
	}
	// The subtest's cleanup has run: the process must be gone (and reaped,
	// so not even a zombie answers signal 0).
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("redis-server pid %d still exists after the test ended (kill 0: %v)", pid, err)
	}
}

func TestStartUnixServer(t *testing.T) {
	sock := StartUnixServer(t)
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping %s: %v", sock, err)
	}
}

// fakeTB records how requireRedis stops a test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = format
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	runtime.Goexit()
}

func TestRequireRedisWithoutServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	run := func(allowSkip string) *fakeTB {
		t.Setenv(AllowSkipEnv, allowSkip)
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			requireRedis(f, 6, 0)
		}()
		<-done
		return f
	}
	if f := run(""); f.failed == "" || !strings.Contains(f.failed, "install it with") {
		t.Errorf("without %s: want a failure naming the install command, got failed=%q skipped=%q", AllowSkipEnv, f.failed, f.skipped)
	}
	if f := run("1"); f.skipped == "" || f.failed != "" {
		t.Errorf("with %s=1: want a skip, got failed=%q skipped=%q", AllowSkipEnv, f.failed, f.skipped)
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 3 {
		t.Errorf("CLUSTER SLOTS: %d ranges, want 3", len(slots))
	}
}

func TestSentinelKillMaster(t *testing.T) {
	s := StartSentinel(t)
	old := s.MasterAddr(t)
	start := time.Now()
	addr := s.KillMaster(t)
	t.Logf("master %s killed; sentinel switched to %s after %s", old, addr, time.Since(start).Round(time.Millisecond))
	if addr == old {
		t.Fatalf("new master %s is the killed one", addr)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if role[0] != "master" {
		t.Errorf("ROLE of %s: %v, want master", addr, role[0])
	}
	if got := s.MasterAddr(t); got != addr {
		t.Errorf("sentinel reports master %s, want %s", got, addr)
	}
}
