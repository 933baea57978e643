package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/pipeline/plan"
)

// The sweep makes losing the queue cost latency, never data. PostgreSQL is
// the only truth: every kind of pending work is one indexed query on the
// ledger (ledger/sweep.go), and the sweep — a schedule, so one run per
// SweepEvery across all workers — queues again what has waited longer than
// SweepGrace. Asynq tasks are hints that make things fast; a process killed
// at any line, a Redis restarted without persistence, a FLUSHDB, an evicted
// or archived task delay the work by at most the grace period plus the
// sweep period.
//
// Its tasks are named by kind, subject and the grace period's time bucket:
// the sweeps of one grace period (and of every worker) queue a subject once.
// Work that is still live when it is queued again is a no-op by the ledger's
// own checks: a sync finds its dirty counter covered, a write finds its hash
// written or its create in flight, a write-back finds its copy linked.
//
// A queue with a backlog (a backfill in progress) is not second-guessed:
// syncs and CRM writes wait ten grace periods before the sweep re-reads
// them from the calendar, so that a long backfill is not re-read while it
// runs (a task of a process that died comes back by Asynq's recoverer
// meanwhile, within two minutes).

const (
	// Bounds of one sweep (ids only); the next one takes the rest. Large
	// enough that one sweep sees everything a lost Redis left pending.
	sweepMeetings  = 50_000
	sweepLinks     = 50_000
	sweepCalendars = 10_000
	// fetchChunk is how many events one re-read fetches by id; past
	// fetchMax on one calendar, the calendar is listed in full instead: a
	// fetch costs a call per event, a listing a call per 2,500.
	fetchChunk = 100
	fetchMax   = 20
	// linkHorizon: copies of meetings written longer ago than this are
	// linked by the next sync that sees them, or the periodic
	// reconciliation's full listing.
	linkHorizon = 24 * time.Hour
	// backlogFactor stretches the grace of work whose queue has a backlog.
	backlogFactor = 10
	// refreshAhead: tokens expiring this soon are refreshed (the vault
	// refreshes 60-180 s before expiry).
	refreshAhead = 3 * time.Minute
)

// SweepReport is what one sweep queued again.
type SweepReport struct {
	Calendars, Fetches, FullListings, Writes, Links int
	Renewals, Refreshes                             int
}

// Total is everything the sweep queued.
func (r SweepReport) Total() int {
	return r.Calendars + r.Fetches + r.FullListings + r.Writes + r.Links + r.Renewals + r.Refreshes
}

// sweep queues again every kind of work the ledger says is pending past
// the grace period.
func (c *core) sweep(ctx context.Context) (SweepReport, error) {
	var r SweepReport
	now := c.now()
	grace := c.cfg.SweepGrace
	bk := bucket(now, grace)
	backlog, err := c.backlogs(ctx)
	if err != nil {
		return r, err
	}
	wait := func(queues ...string) time.Duration {
		for _, q := range queues {
			if backlog[q] > 0 {
				return grace * backlogFactor
			}
		}
		return grace
	}
	var errs []error
	if err := c.sweepCalendars(ctx, wait(QueueSync), bk, &r); err != nil {
		errs = append(errs, err)
	}
	if err := c.sweepMeetings(ctx, now.Add(-wait(QueueSync, QueueCRM)), bk, &r); err != nil {
		errs = append(errs, err)
	}
	// Write-backs need no gate: one queued twice finds its copies linked
	// (one write-back task per calendar runs at a time).
	if err := c.sweepLinks(ctx, now.Add(-linkHorizon), now.Add(-grace), bk, &r); err != nil {
		errs = append(errs, err)
	}
	if err := c.sweepMaintenance(ctx, now, &r); err != nil {
		errs = append(errs, err)
	}
	if n := r.Total(); n > 0 {
		c.log.InfoContext(ctx, "sweep queued pending work again", slog.Int("calendars", r.Calendars), slog.Int("fetches", r.Fetches),
			slog.Int("full_listings", r.FullListings), slog.Int("writes", r.Writes), slog.Int("links", r.Links),
			slog.Int("renewals", r.Renewals), slog.Int("refreshes", r.Refreshes))
		c.metrics.swept.Add(float64(n))
	}
	return r, errors.Join(errs...)
}

// backlogs counts each queue's tasks waiting to run (pending, scheduled,
// retrying, being aggregated). Active ones do not count: those of a
// process that died stay active until Asynq's recoverer notices.
func (c *core) backlogs(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	queues, err := c.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	for _, q := range queues {
		info, err := c.inspector.GetQueueInfo(q)
		if errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		out[q] = info.Pending + info.Scheduled + info.Retry + info.Aggregating
	}
	return out, nil
}

// sweepCalendars queues a sync of every calendar with notifications no
// finished sync covered (or never synced).
func (c *core) sweepCalendars(ctx context.Context, grace time.Duration, bk string, r *SweepReport) error {
	cals, err := c.ledger.Unsynced(ctx, grace, sweepCalendars)
	if err != nil {
		return err
	}
	for _, cal := range cals {
		pl := syncPayload{CalendarID: cal.ID, Dirty: cal.Dirty, Full: cal.NeverSynced, Sweep: true}
		if err := c.enqueue(ctx, TaskSync, pl, asynq.Queue(QueueSync), asynq.TaskID("sweep:sync:"+cal.ID+":"+bk),
			asynq.MaxRetry(10), asynq.Timeout(30*time.Minute)); err != nil {
			return err
		}
		r.Calendars++
	}
	return nil
}

// sweepMeetings recovers the CRM writes the ledger owes. The ledger keeps
// no content, so a write is recovered by re-reading one copy of its
// meeting: deciding it again queues the write again. A cancellation
// carries no content and is queued as it is.
func (c *core) sweepMeetings(ctx context.Context, before time.Time, bk string, r *SweepReport) error {
	ms, err := c.ledger.Unwritten(ctx, before, sweepMeetings)
	if err != nil || len(ms) == 0 {
		return err
	}
	cancel := plan.Desired{Cancel: true}
	cancelHash := cancel.Hash(c.ownership())
	conns := map[string]string{}
	var cancels []writePayload
	byCal := map[string][]string{}
	unreadable := 0
	for _, m := range ms {
		if m.DesiredHash == cancelHash && m.CRMID != "" {
			conn, ok := conns[m.WorkspaceID]
			if !ok {
				cc, err := c.ledger.CRMConnection(ctx, m.WorkspaceID)
				if err != nil {
					return err
				}
				conn, conns[m.WorkspaceID] = cc.ID, cc.ID
			}
			cancels = append(cancels, writePayload{WorkspaceID: m.WorkspaceID, ConnectionID: conn, Key: m.Key, Hash: m.DesiredHash,
				Desired: plan.Desired{Cancel: true}, DecidedAt: c.now()})
			continue
		}
		if m.CalendarID == "" {
			unreadable++ // its calendars are paused, gone or need re-authorisation
			continue
		}
		byCal[m.CalendarID] = append(byCal[m.CalendarID], m.EventID)
	}
	if unreadable > 0 {
		c.log.InfoContext(ctx, "meetings owed a write have no copy to re-read until their calendars sync again (paused, gone or needing re-authorisation)",
			slog.Int("meetings", unreadable))
	}
	for calID, ids := range byCal {
		if len(ids) > fetchMax {
			pl := syncPayload{CalendarID: calID, Full: true, Sweep: true}
			if err := c.enqueue(ctx, TaskSync, pl, asynq.Queue(QueueSync), asynq.TaskID("sweep:full:"+calID+":"+bk),
				asynq.MaxRetry(10), asynq.Timeout(30*time.Minute)); err != nil {
				return err
			}
			r.FullListings++
			continue
		}
		for i := 0; len(ids) > 0; i++ {
			n := min(len(ids), fetchChunk)
			pl := syncPayload{CalendarID: calID, EventIDs: ids[:n], Sweep: true}
			if err := c.enqueue(ctx, TaskSync, pl, asynq.Queue(QueueSync), asynq.TaskID("sweep:fetch:"+calID+":"+strconv.Itoa(i)+":"+bk),
				asynq.MaxRetry(10), asynq.Timeout(10*time.Minute)); err != nil {
				return err
			}
			ids = ids[n:]
			r.Fetches++
		}
	}
	if len(cancels) > 0 {
		if err := c.enqueueAll(ctx, cancels, nil); err != nil {
			return err
		}
		r.Writes += len(cancels)
	}
	return nil
}

// sweepLinks queues the write-backs of copies that do not carry their
// meeting's CRM id. They need ids only.
func (c *core) sweepLinks(ctx context.Context, since, before time.Time, bk string, r *SweepReport) error {
	links, err := c.ledger.Unlinked(ctx, since, before, sweepLinks)
	if err != nil {
		return err
	}
	for calID, ls := range links {
		if err := c.enqueueLinksAs(ctx, calID, ls, ":"+bk); err != nil {
			return err
		}
		r.Links += len(ls)
	}
	return nil
}

// sweepMaintenance renews channels the hourly renewal missed and refreshes
// tokens about to expire. Both have schedules of their own, which survive
// a lost queue; the sweep only shortens the wait.
func (c *core) sweepMaintenance(ctx context.Context, now time.Time, r *SweepReport) error {
	n, err := c.ledger.ExpiringChannels(ctx, now.Add(renewWithin-c.cfg.RenewEvery))
	if err != nil {
		return err
	}
	if n > 0 {
		if err := c.enqueue(ctx, TaskRenew, renewPayload{}, asynq.Queue(QueueMaintenance),
			asynq.TaskID("sweep:renew:"+bucket(now, max(c.cfg.SweepGrace, c.cfg.RenewEvery)))); err != nil {
			return err
		}
		r.Renewals = n
	}
	toks, err := c.ledger.ExpiringTokens(ctx, now.Add(refreshAhead))
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		if err := c.enqueue(ctx, TaskRefresh, struct{}{}, asynq.Queue(QueueMaintenance),
			asynq.TaskID("sweep:refresh:"+bucket(now, 30*time.Second))); err != nil {
			return err
		}
		r.Refreshes = len(toks)
	}
	return nil
}

// sweptKey marks the context of a task the sweep queued again.
type sweptKey struct{}

// withSwept marks ctx as the sweep's re-run of work, in the sweep's time
// bucket: the tasks it queues in turn get ids of their own. The work they
// redo may still be held by a task of a process that died, which keeps its
// id until Asynq's recoverer notices (a minute or two); the same id would
// make the re-queue a no-op for that long.
func withSwept(ctx context.Context, bk string) context.Context {
	return context.WithValue(ctx, sweptKey{}, bk)
}

// sweptSuffix is the suffix of task ids queued under withSwept.
func sweptSuffix(ctx context.Context) string {
	if bk, _ := ctx.Value(sweptKey{}).(string); bk != "" {
		return ":s" + bk
	}
	return ""
}

// Sweep runs one sweep now (the schedule runs it every SweepEvery).
func (p *Pipeline) Sweep(ctx context.Context) (SweepReport, error) { return p.sweep(ctx) }
