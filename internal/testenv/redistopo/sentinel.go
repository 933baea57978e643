package redistopo

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels monitor the master under.
const MasterName = "rapport"

// failoverTimeout bounds the wait for a failover to complete; Sentinel's
// own timers make one take a few seconds.
const failoverTimeout = 45 * time.Second

// SentinelOptions shape StartSentinelWith's topology.
type SentinelOptions struct {
	// Sentinels is how many sentinels watch the master. Default 1. With
	// more, each must see the others before the topology is returned, which
	// takes Sentinel's hello period (2 s).
	Sentinels int
	// MinReplicasToWrite sets min-replicas-to-write on the initial master:
	// with 1, it refuses writes while its replica is gone, so that the
	// writes a failover would lose fail instead. Default 0 (Redis's).
	MinReplicasToWrite int
}

// Sentinel is a master, one replica and the sentinels that watch them, the
// quorum at 1 so that a single sentinel may fail over. Its methods may be
// called from one goroutine at a time.
type Sentinel struct {
	sentinels []*proc

	mu     sync.Mutex
	nodes  []*proc // the master and the replica, in no particular order
	master string  // address of the current master, as of the last switch
}

// StartSentinel starts a master, a replica and one sentinel.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return StartSentinelWith(t, SentinelOptions{})
}

// StartSentinelWith starts a master, a replica and opts.Sentinels
// sentinels, and returns once the sentinels could fail over: the replica is
// in sync and every sentinel knows it and the other sentinels.
func StartSentinelWith(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	requireRedis(t, 6, 2)
	if opts.Sentinels <= 0 {
		opts.Sentinels = 1
	}
	s := &Sentinel{}
	master := start(t, procSpec{
		name: "master",
		conf: func(*proc) []string {
			return []string{
				"min-replicas-to-write " + strconv.Itoa(opts.MinReplicasToWrite), "min-replicas-max-lag 10",
				// Sync a replica at once, not after the default 5 s wait for more.
				"repl-diskless-sync-delay 0",
			}
		},
		ready: readyLine,
	})
	replica := start(t, procSpec{
		name: "replica",
		conf: func(*proc) []string {
			return []string{"replicaof 127.0.0.1 " + strconv.Itoa(master.port), "repl-diskless-sync-delay 0"}
		},
		ready: readyLine,
	})
	replica.awaitLine(t, "MASTER <-> REPLICA sync: Finished with success", startTimeout)
	// After a diskless sync the master streams writes to the replica only
	// once the replica first acknowledges (up to a second later); until
	// then a dead master takes them all along. WAIT returns when the
	// replica has a write: then it is streaming.
	waitStreaming(t, master.addr)
	s.nodes = []*proc{master, replica}
	s.master = master.addr

	for i := range opts.Sentinels {
		s.sentinels = append(s.sentinels, start(t, procSpec{
			name:     fmt.Sprintf("sentinel-%d", i+1),
			sentinel: true,
			conf: func(*proc) []string {
				return []string{
					fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", MasterName, master.port),
					// Short, so that a killed master is noticed in a second.
					"sentinel down-after-milliseconds " + MasterName + " 1000",
					"sentinel failover-timeout " + MasterName + " 10000",
					"sentinel parallel-syncs " + MasterName + " 1",
				}
			},
			ready: "+monitor master " + MasterName,
		}))
	}
	for _, sp := range s.sentinels {
		sp.awaitLine(t, "+slave slave "+replica.addr, startTimeout)
		for _, other := range s.sentinels {
			if other != sp {
				// "+sentinel sentinel <id> 127.0.0.1 <port> @ <master> …"
				sp.awaitLine(t, fmt.Sprintf(" 127.0.0.1 %d @ %s ", other.port, MasterName), startTimeout)
			}
		}
	}
	// Sentinel promotes only a replica it has had INFO from recently, and
	// logs nothing when it first has: poll for it.
	for _, sp := range s.sentinels {
		s.waitGoodReplica(t, sp)
	}
	return s
}

// Addrs are the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	var a []string
	for _, p := range s.sentinels {
		a = append(a, p.addr)
	}
	return a
}

// URL is the redis-sentinel:// URL of the topology, database 0.
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.Addrs(), ",") + "/0?master=" + MasterName
}

// MasterAddr asks the first sentinel where the master is.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := s.masterAddr(ctx, s.sentinels[0])
	if err != nil {
		t.Fatalf("redistopo: SENTINEL get-master-addr-by-name: %v", err)
	}
	return a
}

func (s *Sentinel) masterAddr(ctx context.Context, sp *proc) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: sp.addr})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover has the first sentinel fail the master over to the replica
// (SENTINEL FAILOVER) and returns the new master's address once the sentinel
// has announced the switch. The old master becomes a replica of the new one.
func (s *Sentinel) Failover(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	sp := s.sentinels[0]
	w := s.watchSwitch(t, ctx, sp)
	c := redis.NewSentinelClient(&redis.Options{Addr: sp.addr})
	defer c.Close()
	for {
		err := c.Failover(ctx, MasterName).Err()
		if err == nil {
			break
		}
		// A replica the sentinel has not yet heard from (after a previous
		// failover) is not "good": try again until it is.
		if !redis.HasErrorPrefix(err, "NOGOODSLAVE") && !redis.HasErrorPrefix(err, "INPROG") {
			t.Fatalf("redistopo: SENTINEL FAILOVER: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistopo: SENTINEL FAILOVER still refused after %s: %v", failoverTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return w.wait(t)
}

// KillMaster kills the master's process (SIGKILL, as a crash) and returns
// the new master's address once a sentinel has announced the switch, which
// takes down-after-milliseconds (1 s) and an election. The dead master
// stays dead: the topology has no replica left.
func (s *Sentinel) KillMaster(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	w := s.watchSwitch(t, ctx, s.sentinels[0])
	s.mu.Lock()
	var victim *proc
	for _, p := range s.nodes {
		if p.addr == s.master {
			victim = p
		}
	}
	s.mu.Unlock()
	if victim == nil || !victim.alive() {
		t.Fatalf("redistopo: no live master to kill")
	}
	victim.kill()
	return w.wait(t)
}

// switchWatch waits for a sentinel to announce a new master.
type switchWatch struct {
	s      *Sentinel
	sp     *proc
	ctx    context.Context
	old    string
	client *redis.SentinelClient
	sub    *redis.PubSub
}

// watchSwitch subscribes to the sentinel's +switch-master channel; the
// subscription is confirmed before it returns, so a switch triggered after
// it cannot be missed.
func (s *Sentinel) watchSwitch(t testing.TB, ctx context.Context, sp *proc) *switchWatch {
	t.Helper()
	s.mu.Lock()
	old := s.master
	s.mu.Unlock()
	c := redis.NewSentinelClient(&redis.Options{Addr: sp.addr})
	sub := c.Subscribe(ctx, "+switch-master")
	if _, err := sub.Receive(ctx); err != nil {
		sub.Close()
		c.Close()
		t.Fatalf("redistopo: subscribe to +switch-master on %s: %v", sp.addr, err)
	}
	return &switchWatch{s: s, sp: sp, ctx: ctx, old: old, client: c, sub: sub}
}

// wait returns the new master's address. The +switch-master message
// decides; SENTINEL get-master-addr-by-name is polled only as a safety net
// in case the subscription's connection drops.
func (w *switchWatch) wait(t testing.TB) string {
	t.Helper()
	defer w.client.Close()
	defer w.sub.Close()
	msgs := w.sub.Channel()
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	var addr string
	for addr == "" {
		select {
		case m := <-msgs:
			// "<name> <old-ip> <old-port> <new-ip> <new-port>"
			f := strings.Fields(m.Payload)
			if len(f) == 5 && f[0] == MasterName {
				addr = net.JoinHostPort(f[3], f[4])
			}
		case <-poll.C:
			if a, err := w.s.masterAddr(w.ctx, w.sp); err == nil && a != w.old {
				addr = a
			}
		case <-w.ctx.Done():
			t.Fatalf("redistopo: no new master within %s (master was %s)", failoverTimeout, w.old)
		}
	}
	w.s.mu.Lock()
	w.s.master = addr
	w.s.mu.Unlock()
	return addr
}

// waitStreaming writes a key on the master at addr and waits (WAIT 1) until
// a replica has it.
func waitStreaming(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: -1})
	defer c.Close()
	const key = "redistopo:streaming"
	for {
		// min-replicas-to-write may refuse the write for a moment.
		err := c.Set(ctx, key, "1", 0).Err()
		if err == nil {
			break
		}
		if !redis.HasErrorPrefix(err, "NOREPLICAS") || ctx.Err() != nil {
			t.Fatalf("redistopo: SET on master %s: %v", addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if n, err := c.Wait(ctx, 1, startTimeout).Result(); err != nil || n < 1 {
		t.Fatalf("redistopo: no replica of %s acknowledged a write within %s: %d, %v", addr, startTimeout, n, err)
	}
	if err := c.Del(ctx, key).Err(); err != nil {
		t.Fatalf("redistopo: DEL on master %s: %v", addr, err)
	}
}

// waitGoodReplica polls sp until it would promote the replica: linked to
// the master, not down, and with a fresh INFO.
func (s *Sentinel) waitGoodReplica(t testing.TB, sp *proc) {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: sp.addr})
	defer c.Close()
	poll(t, sp.name+" has a promotable replica", startTimeout, func(ctx context.Context) (bool, string) {
		reps, err := c.Replicas(ctx, MasterName).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, r := range reps {
			refresh, _ := strconv.Atoi(r["info-refresh"])
			if r["flags"] == "slave" && r["master-link-status"] == "ok" && refresh < 5000 {
				return true, ""
			}
		}
		return false, fmt.Sprint(reps)
	})
}
