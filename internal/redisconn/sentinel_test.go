package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/internal/testenv/redistopo"
)

// TestSentinelFailover runs Asynq (client on the shared failover client,
// server on AsynqConnOpt, as Rapport wires them) and a redis_rate limiter
// through Sentinel, fails the master over while tasks are being enqueued
// and processed, and checks that every task is processed at least once and
// that the clients follow the new master.
//
// With Redis's defaults the old master keeps taking writes until Sentinel
// demotes it, and those are lost; with min-replicas-to-write 1 it refuses
// them as soon as its replica is promoted, and the client retries them on
// the new master. A crash (the master killed) is noticed after Sentinel's
// down-after-milliseconds, 1 s here.
func TestSentinelFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  redistopo.SentinelOptions
		crash bool
	}{
		{"failover", redistopo.SentinelOptions{}, false},
		{"failover-min-replicas-to-write=1", redistopo.SentinelOptions{MinReplicasToWrite: 1}, false},
		{"master-killed", redistopo.SentinelOptions{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSentinelFailover(t, tc.opts, tc.crash)
		})
	}
}

func testSentinelFailover(t *testing.T, opts redistopo.SentinelOptions, crash bool) {
	topo := redistopo.StartSentinelWith(t, opts)
	cfg, err := redisconn.Parse(topo.URL())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kind() != redisconn.Sentinel {
		t.Fatalf("Kind() = %s, want sentinel", cfg.Kind())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rdb := cfg.Client()
	defer rdb.Close()
	if err := redisconn.Ping(ctx, rdb); err != nil {
		t.Fatal(err)
	}

	limiter := redis_rate.NewLimiter(rdb)
	limit := redis_rate.PerMinute(600)
	if res, err := limiter.Allow(ctx, "google:conn-1", limit); err != nil || res.Allowed != 1 {
		t.Fatalf("redis_rate before failover: %+v, %v", res, err)
	}

	seen := newSeenSet()
	mux := asynq.NewServeMux()
	mux.HandleFunc("calendar:sync", func(ctx context.Context, task *asynq.Task) error {
		seen.add(task.ResultWriter().TaskID())
		return nil
	})
	startServer := func() *asynq.Server {
		srv := asynq.NewServer(cfg.AsynqConnOpt(), asynq.Config{
			Concurrency:              4,
			Queues:                   map[string]int{"sync": 1},
			TaskCheckInterval:        20 * time.Millisecond,
			DelayedTaskCheckInterval: 100 * time.Millisecond,
			RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 0 },
			ShutdownTimeout:          5 * time.Second,
			Logger:                   asynqLogger{t},
			LogLevel:                 asynq.WarnLevel,
		})
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown) // a no-op once shut down
		return srv
	}
	srv := startServer()
	client := asynq.NewClientFromRedisClient(rdb)
	enqueue := func(id string) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("calendar:sync", nil), asynq.TaskID(id), asynq.Queue("sync"))
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			return nil // already there: at-least-once holds
		}
		return err
	}

	// Before: a steady state.
	before := ids("before", 0, 50)
	for _, id := range before {
		if err := enqueue(id); err != nil {
			t.Fatalf("enqueue %s: %v", id, err)
		}
	}
	seen.wait(t, before, 30*time.Second)

	// During: an enqueuer keeps going (retrying an id until Redis takes
	// it) while the master fails over.
	e := &enqueuer{enqueue: enqueue, progress: make(chan struct{}, 1)}
	stop := make(chan struct{})
	enqDone := make(chan struct{})
	go func() {
		defer close(enqDone)
		e.run(ctx, stop)
	}()
	e.waitAcked(t, 50, time.Time{}, 30*time.Second)

	oldMaster := topo.MasterAddr(t)
	failStart := time.Now()
	var newMaster string
	if crash {
		newMaster = topo.KillMaster(t)
	} else {
		newMaster = topo.Failover(t)
	}
	switched := time.Now()
	e.waitAcked(t, 50, switched, 30*time.Second) // the client recovered
	close(stop)
	<-enqDone

	// After: every acknowledged task is processed at least once. Two kinds
	// of task need help for that, both because replication is
	// asynchronous and the old master takes commands until Sentinel
	// demotes it (or dies):
	//
	//   - lost: enqueued (acknowledged) on the old master but never
	//     replicated. Rapport enqueues again under the same time-bucketed
	//     TaskID on its next schedule or reconcile; so does this test.
	//   - orphaned: its dequeue reached the new master but its reply never
	//     reached the worker (connection killed), so it sits in "active"
	//     with no worker. Asynq's recoverer moves it back once its lease
	//     has been expired for 30 s, checking every minute: it runs 1 to 2
	//     minutes late. The test ages those leases (the "clock" Asynq
	//     reads) and restarts the server, whose recoverer runs at start.
	acked := e.ackedIDs()
	all := append(slices.Clone(before), acked...)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	lost := 0
	miss, _ := seen.missing(all)
	for _, id := range miss {
		if _, err := insp.GetTaskInfo("sync", id); errors.Is(err, asynq.ErrTaskNotFound) {
			lost++
			if err := enqueue(id); err != nil {
				t.Fatalf("re-enqueue %s: %v", id, err)
			}
		}
	}
	waitOnlyActiveLeft(t, insp, seen, all, 30*time.Second)
	srv.Shutdown() // no handler runs past this: an active task left is an orphan
	orphans, _ := seen.missing(all)
	for _, id := range orphans {
		info, err := insp.GetTaskInfo("sync", id)
		if err != nil || info.State != asynq.TaskStateActive {
			t.Fatalf("unprocessed task %s after shutdown: %+v, %v; want an orphaned active task", id, info, err)
		}
		if err := rdb.ZAddXX(ctx, "asynq:{sync}:lease", redis.Z{Score: float64(time.Now().Add(-2 * time.Minute).Unix()), Member: id}).Err(); err != nil {
			t.Fatalf("age the lease of %s: %v", id, err)
		}
	}
	startServer()
	seen.wait(t, all, 30*time.Second)

	// The shared client now talks to the new master.
	info, err := rdb.Info(ctx, "server", "replication").Result()
	if err != nil {
		t.Fatalf("INFO after failover: %v", err)
	}
	_, newPort, _ := strings.Cut(newMaster, ":")
	if !strings.Contains(info, "tcp_port:"+newPort+"\r\n") || !strings.Contains(info, "role:master") {
		t.Errorf("after failover to %s the client talks to:\n%s", newMaster, info)
	}
	if res, err := limiter.Allow(ctx, "google:conn-1", limit); err != nil || res.Allowed != 1 {
		t.Errorf("redis_rate after failover: %+v, %v", res, err)
	}

	unique, runs, procGap := seen.stats()
	t.Logf("failover %s -> %s: trigger to +switch-master %s; longest gap between acknowledged enqueues %s (%d enqueue errors); longest gap between processed tasks %s",
		oldMaster, newMaster, switched.Sub(failStart).Round(time.Millisecond), e.maxGap().Round(time.Millisecond), e.errorCount(), procGap.Round(time.Millisecond))
	t.Logf("%d tasks acknowledged, %d lost by the failover and re-enqueued, %d orphaned in active and recovered; %d unique ids processed in %d runs",
		len(all), lost, len(orphans), unique, runs)
}

// waitOnlyActiveLeft returns once every id is processed or in state active,
// which, the queue being otherwise drained, means orphaned (or about to run).
func waitOnlyActiveLeft(t *testing.T, insp *asynq.Inspector, seen *seenSet, ids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// A task moving from pending to active fires no event: re-check on a
	// tick as well as on every processed task.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		miss, changed := seen.missing(ids)
		var waiting []string
		for _, id := range miss {
			info, err := insp.GetTaskInfo("sync", id)
			switch {
			case err != nil:
				waiting = append(waiting, id+": "+err.Error())
			case info.State != asynq.TaskStateActive:
				waiting = append(waiting, fmt.Sprintf("%s: %s next %s retried %d %s", id, info.State, info.NextProcessAt.Format(time.StampMilli), info.Retried, info.LastErr))
			}
		}
		if len(waiting) == 0 {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%d tasks neither processed nor active within %s, e.g. %v", len(waiting), timeout, waiting[:min(5, len(waiting))])
		}
	}
}

// enqueuer enqueues numbered tasks one after the other, retrying an id until
// it is acknowledged, and records when acknowledgements came.
type enqueuer struct {
	enqueue  func(id string) error
	progress chan struct{} // signalled on every acknowledgement

	mu     sync.Mutex
	acked  []string
	ackAt  []time.Time
	errs   int
	gap    time.Duration
	errLog []string
}

func (e *enqueuer) run(ctx context.Context, stop <-chan struct{}) {
	// Pace the load so a loaded machine keeps up; the pace decides nothing.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := "during-" + strconv.Itoa(i)
		err := e.enqueue(id)
		e.mu.Lock()
		if err != nil {
			e.errs++
			if len(e.errLog) < 5 {
				e.errLog = append(e.errLog, err.Error())
			}
		} else {
			now := time.Now()
			if n := len(e.ackAt); n > 0 && now.Sub(e.ackAt[n-1]) > e.gap {
				e.gap = now.Sub(e.ackAt[n-1])
			}
			e.acked = append(e.acked, id)
			e.ackAt = append(e.ackAt, now)
			i++
		}
		e.mu.Unlock()
		if err == nil {
			select {
			case e.progress <- struct{}{}:
			default:
			}
		}
	}
}

// waitAcked returns once n enqueues were acknowledged after since.
func (e *enqueuer) waitAcked(t testing.TB, n int, since time.Time, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		got := 0
		for _, at := range e.ackAt {
			if at.After(since) {
				got++
			}
		}
		errs, errLog := e.errs, e.errLog
		e.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-e.progress:
		case <-deadline.C:
			t.Fatalf("only %d of %d enqueues acknowledged within %s; %d errors, first: %v", got, n, timeout, errs, errLog)
		}
	}
}

func (e *enqueuer) ackedIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.acked...)
}

func (e *enqueuer) maxGap() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gap
}

func (e *enqueuer) errorCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errs
}
