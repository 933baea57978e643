package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// Worker runs the Asynq servers, one per queue so each queue has its own
// concurrency, and the periodic schedules.
type Worker struct {
	p       *Pipeline
	servers []*asynq.Server
	mux     *asynq.ServeMux
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewWorker builds the worker. Start runs it; Shutdown stops it, letting
// running tasks finish.
func (p *Pipeline) NewWorker() *Worker {
	w := &Worker{p: p}
	mux := asynq.NewServeMux()
	mux.Use(scrubErrors)
	mux.HandleFunc(TaskSync, p.sync.handle)
	mux.HandleFunc(TaskWriteBatch, p.write.handle)
	mux.HandleFunc(TaskWrite, p.handleWriteSingle)
	mux.HandleFunc(TaskLink, p.link.handle)
	mux.HandleFunc(TaskRenew, p.handleRenew)
	mux.HandleFunc(TaskIndex, p.handleIndex)
	mux.HandleFunc(TaskReconcile, p.rec.handle)
	mux.HandleFunc(TaskRefresh, p.handleRefresh)
	mux.HandleFunc(TaskSchedule, p.handleSchedule)
	mux.HandleFunc(TaskSetup, p.handleSetup)
	mux.Use(forgetCrashed)
	logger := &asynqLogger{p.log}
	for _, q := range []string{QueueSync, QueueCRM, QueueLink, QueueMaintenance} {
		cfg := asynq.Config{
			Queues:            map[string]int{q: 1},
			Concurrency:       p.cfg.Concurrency[q],
			RetryDelayFunc:    retryDelay,
			IsFailure:         isFailure,
			ErrorHandler:      asynq.ErrorHandlerFunc(p.taskFailed),
			Logger:            logger,
			LogLevel:          asynq.WarnLevel,
			TaskCheckInterval: 100 * time.Millisecond,
			// Retries (a busy calendar, a rate limit) are due within a second
			// or two; Asynq looks for due ones every 5 s by default.
			DelayedTaskCheckInterval: 250 * time.Millisecond,
			ShutdownTimeout:          20 * time.Second,
		}
		if q == QueueCRM {
			cfg.GroupAggregator = asynq.GroupAggregatorFunc(aggregate)
			cfg.GroupMaxSize = 100
			cfg.GroupGracePeriod = p.cfg.BatchDelay
			cfg.GroupMaxDelay = p.cfg.BatchMaxDelay
		}
		srv := asynq.NewServerFromRedisClient(p.rdb, cfg)
		w.servers = append(w.servers, srv)
	}
	w.mux = mux
	return w
}

// Start starts the servers and the schedules.
func (w *Worker) Start(ctx context.Context) error {
	for _, s := range w.servers {
		if err := s.Start(w.mux); err != nil {
			w.Shutdown()
			return fmt.Errorf("start worker: %w", err)
		}
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		w.p.runSchedules(ctx)
	}()
	return nil
}

// Shutdown stops taking tasks, waits for running ones (up to the shutdown
// timeout; unfinished ones return to the queue), and stops the schedules.
func (w *Worker) Shutdown() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
	for _, s := range w.servers {
		s.Stop()
	}
	// In parallel: each server waits up to its shutdown timeout for its
	// running tasks, then hands them back to the queue; one after the
	// other they could take four times that.
	var wg sync.WaitGroup
	for _, s := range w.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Shutdown()
		}()
	}
	wg.Wait()
}

// taskFailed writes a dead letter when a task has used its last retry.
func (p *Pipeline) taskFailed(ctx context.Context, t *asynq.Task, err error) {
	if errors.Is(err, asynq.SkipRetry) {
		return // already recorded by permanent or reauth
	}
	n, _ := asynq.GetRetryCount(ctx)
	max, _ := asynq.GetMaxRetry(ctx)
	taskID, _ := asynq.GetTaskID(ctx)
	level := slog.LevelWarn
	if !isFailure(err) {
		level = slog.LevelDebug // a wait (busy calendar, rate limit), not a failure
	}
	p.log.Log(ctx, level, "task failed", slog.String("task", t.Type()), slog.String("task_id", taskID), slog.Int("retry", n), slog.String("class", classLabel(err)), slog.String("error", scrub(err.Error())))
	if n >= max {
		p.deadLetter(ctx, "", t, plan.DeadExhausted, refOf(t), err)
	}
}

// handleWriteSingle handles a crm:write that reached a handler without
// being aggregated (it cannot normally happen: writes are grouped).
func (p *Pipeline) handleWriteSingle(ctx context.Context, t *asynq.Task) error {
	b, _ := json.Marshal([]json.RawMessage{t.Payload()})
	return p.write.handle(ctx, asynq.NewTask(TaskWriteBatch, b))
}

// schedule is one periodic job.
type schedule struct {
	name  string
	every time.Duration
}

func (p *Pipeline) schedules() []schedule {
	return []schedule{
		{"sync", p.cfg.SyncEvery},
		{"index", p.cfg.IndexEvery},
		{"renew", p.cfg.RenewEvery},
		{"reconcile", p.cfg.ReconcileEvery},
		{"refresh", 30 * time.Second}, // inside the vault's 60–180 s window
		{"sweep", p.cfg.SweepEvery},
	}
}

// runSchedules ticks in every worker; a schedule's task id is its name plus
// its period's bucket, kept for the whole period (Retention, which Asynq
// counts in whole seconds: one more second keeps a sub-second period's), so
// N workers produce one run per period, not N.
func (p *Pipeline) runSchedules(ctx context.Context) {
	every := 10 * time.Second
	for _, s := range p.schedules() {
		every = min(every, s.every/4)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		p.scheduleTick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scheduleTick enqueues each schedule's task of the current period; a
// period's task is enqueued once whoever ticks, however often.
func (p *Pipeline) scheduleTick(ctx context.Context) {
	now := p.now()
	for _, s := range p.schedules() {
		id := "sched:" + s.name + ":" + bucket(now, s.every)
		err := p.enqueue(ctx, TaskSchedule, map[string]string{"name": s.name}, asynq.Queue(QueueMaintenance),
			asynq.TaskID(id), asynq.Retention(s.every+time.Second), asynq.MaxRetry(2))
		if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "enqueue schedule", slog.String("schedule", s.name), slog.Any("error", err))
		}
	}
}

func (p *Pipeline) handleSchedule(ctx context.Context, t *asynq.Task) error {
	var pl map[string]string
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return p.permanent(ctx, t, "", err)
	}
	switch pl["name"] {
	case "sync":
		cals, err := p.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{})
		if err != nil {
			return err
		}
		for _, id := range cals {
			if err := p.markDirty(ctx, id, false, time.Time{}); err != nil {
				return err
			}
		}
	case "index":
		wss, err := p.ledger.CRMWorkspaces(ctx, "")
		if err != nil {
			return err
		}
		for _, ws := range wss {
			if err := p.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws}, asynq.Queue(QueueMaintenance), asynq.TaskID("index:"+ws+":"+bucket(p.now(), time.Minute))); err != nil {
				return err
			}
		}
	case "renew":
		return p.enqueue(ctx, TaskRenew, renewPayload{}, asynq.Queue(QueueMaintenance), asynq.TaskID("renew:"+bucket(p.now(), time.Minute)))
	case "reconcile":
		wss, err := p.ledger.CalendarWorkspaces(ctx)
		if err != nil {
			return err
		}
		for _, ws := range wss {
			if _, err := p.StartReconcile(ctx, ReconcileRequest{WorkspaceID: ws}); err != nil {
				return err
			}
		}
	case "refresh":
		return p.enqueue(ctx, TaskRefresh, struct{}{}, asynq.Queue(QueueMaintenance), asynq.TaskID("refresh:"+bucket(p.now(), time.Minute)))
	case "sweep":
		_, err := p.sweep(ctx)
		return err
	}
	return nil
}

// handleRefresh refreshes tokens that expire soon, when the vault can.
func (p *Pipeline) handleRefresh(ctx context.Context, t *asynq.Task) error {
	r, ok := p.cfg.Vault.(interface {
		RefreshExpiring(ctx context.Context) (int, error)
	})
	if !ok {
		return nil
	}
	_, err := r.RefreshExpiring(ctx)
	return err
}

// refOf extracts the ids of a task's payload for a dead letter: never the
// event content a write payload carries.
func refOf(t *asynq.Task) map[string]any {
	ref := map[string]any{}
	switch t.Type() {
	case TaskSync:
		var pl syncPayload
		if json.Unmarshal(t.Payload(), &pl) == nil {
			ref["calendar_id"] = pl.CalendarID
		}
	case TaskLink:
		var pl linkPayload
		if json.Unmarshal(t.Payload(), &pl) == nil {
			ref["calendar_id"] = pl.CalendarID
			var keys []string
			for _, l := range pl.Links {
				keys = append(keys, l.Key)
			}
			ref["meeting_keys"] = keys
		}
	case TaskWrite, TaskWriteBatch:
		// The ids of sealed writes are in the clear.
		// Decoded into a fresh slice: json.RawMessage reuses the memory
		// of an element it decodes into, and the payload's own memory is
		// what Asynq archives and re-runs.
		var raws []json.RawMessage
		if t.Type() == TaskWrite {
			raws = []json.RawMessage{t.Payload()}
		} else if json.Unmarshal(t.Payload(), &raws) != nil {
			raws = nil
		}
		{
			var keys []string
			for _, r := range raws {
				var w writePayload
				if json.Unmarshal(r, &w) == nil {
					keys = append(keys, w.Key)
					ref["crm_connection_id"] = w.ConnectionID
				}
			}
			ref["meeting_keys"] = keys
		}
	case TaskIndex:
		var pl indexPayload
		if json.Unmarshal(t.Payload(), &pl) == nil {
			ref["workspace_id"] = pl.WorkspaceID
		}
	case TaskSetup:
		var pl setupPayload
		if json.Unmarshal(t.Payload(), &pl) == nil {
			ref["workspace_id"], ref["connection_id"] = pl.WorkspaceID, pl.ConnectionID
		}
	case TaskRenew:
		var pl renewPayload
		if json.Unmarshal(t.Payload(), &pl) == nil && pl.CalendarID != "" {
			ref["calendar_id"] = pl.CalendarID
		}
	}
	return ref
}

// asynqLogger sends Asynq's own logs to slog.
type asynqLogger struct{ l *slog.Logger }

func (a *asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a *asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a *asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a *asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a *asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
