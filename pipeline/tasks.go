package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// Task types (ARCHITECTURE section 7).
const (
	TaskSync         = "calendar:sync"
	TaskWrite        = "crm:write"
	TaskWriteBatch   = "crm:write:batch"
	TaskLink         = "calendar:link"
	TaskRenew        = "calendar:renew"
	TaskIndex        = "crm:index"
	TaskReconcile    = "reconcile"
	TaskRefresh      = "credentials:refresh"
	TaskSchedule     = "schedule:tick"
	QueueSync        = "sync"
	QueueCRM         = "crm"
	QueueLink        = "link"
	QueueMaintenance = "maintenance"
)

// syncPayload names the calendar (row id) to sync.
type syncPayload struct {
	CalendarID string `json:"calendar_id"`
	// Dirty is the calendar's dirty counter when the change was noticed.
	Dirty int64 `json:"dirty"`
	// Full forces a full listing (reconciliation of a calendar).
	Full bool `json:"full,omitempty"`
	// SeenAt is when the change was first noticed (webhook), for the
	// webhook-to-CRM latency.
	SeenAt time.Time `json:"seen_at,omitzero"`
	// EventIDs, when set, asks for just these events (a notification that
	// names them, a write whose content was lost): fetched and decided,
	// without touching the calendar's cursor.
	EventIDs []string `json:"event_ids,omitempty"`
	// Sweep marks a sync the sweep queued again (or a re-read of events
	// whose write was lost): the tasks it queues get ids of their own (see
	// withSwept), and a provider that cannot fetch events by id is listed
	// in full instead.
	Sweep bool `json:"sweep,omitempty"`
}

// writePayload is one meeting's CRM write. It carries the normalised event
// transiently, sealed on the queue (sealed.go); PostgreSQL only ever sees
// its hash.
type writePayload struct {
	WorkspaceID  string       `json:"workspace_id"`
	ConnectionID string       `json:"connection_id"`
	Key          string       `json:"key"`
	Hash         string       `json:"hash"`
	Desired      plan.Desired `json:"desired"`
	SeenAt       time.Time    `json:"seen_at,omitzero"`
	// DecidedAt is when the sync recorded the decision (the ledger row's
	// updated_at once it commits): the write is queued before the commit,
	// so a handler that sees an older row waits for it.
	DecidedAt time.Time `json:"decided_at"`
}

func (w *writePayload) write() plan.Write {
	return plan.Write{Key: w.Key, Hash: w.Hash, Desired: w.Desired, DecidedAt: w.DecidedAt}
}

// linkPayload writes CRM ids back into copies on one calendar.
type linkPayload struct {
	CalendarID string        `json:"calendar_id"` // row id
	Links      []ledger.Link `json:"links"`
}

// indexPayload refreshes a workspace's company index.
type indexPayload struct {
	WorkspaceID string `json:"workspace_id"`
	Full        bool   `json:"full,omitempty"`
}

// reconcilePayload runs a reconciliation recorded in reconciliation_runs.
type reconcilePayload struct {
	RunID string `json:"run_id"`
}

// bucket is the time bucket in task ids: an archived task blocks its id for
// good, so ids are business key plus bucket.
func bucket(t time.Time, d time.Duration) string {
	return strconv.FormatInt(t.UnixNano()/int64(d), 10)
}

// enqueue adds a task; a task id already taken means the same work is
// queued or running, which is what we want, so it is not an error.
func (c *core) enqueue(ctx context.Context, typ string, payload any, opts ...asynq.Option) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s payload: %w", typ, err)
	}
	_, err = c.queue.EnqueueContext(ctx, asynq.NewTask(typ, b), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", typ, err)
	}
	return nil
}

// enqueueSync queues a sync of one calendar for one bump of its dirty
// counter (see markDirty, the only caller).
func (c *core) enqueueSync(ctx context.Context, calID string, dirty int64, full bool, seenAt time.Time) error {
	id := "sync:" + calID + ":" + strconv.FormatInt(dirty, 10)
	return c.enqueue(ctx, TaskSync, syncPayload{CalendarID: calID, Dirty: dirty, Full: full, SeenAt: seenAt},
		asynq.Queue(QueueSync), asynq.TaskID(id), asynq.MaxRetry(10), asynq.Timeout(30*time.Minute))
}

// enqueueFetch queues a sync of just some events of a calendar.
func (c *core) enqueueFetch(ctx context.Context, calID string, eventIDs []string, seenAt time.Time) error {
	h := sha256.New()
	for _, id := range eventIDs {
		h.Write([]byte(id + "\x00"))
	}
	id := "fetch:" + calID + ":" + hex.EncodeToString(h.Sum(nil))[:24] + ":" + strconv.FormatInt(c.now().UnixNano(), 36)
	return c.enqueue(ctx, TaskSync, syncPayload{CalendarID: calID, EventIDs: eventIDs, SeenAt: seenAt},
		asynq.Queue(QueueSync), asynq.TaskID(id), asynq.MaxRetry(10), asynq.Timeout(10*time.Minute))
}

// enqueueFetchSweep queues a re-read of events whose write is owed: a
// provider that cannot fetch them by id is listed in full instead.
func (c *core) enqueueFetchSweep(ctx context.Context, calID string, eventIDs []string) error {
	id := "refetch:" + calID + ":" + strconv.FormatInt(c.now().UnixNano(), 36)
	return c.enqueue(ctx, TaskSync, syncPayload{CalendarID: calID, EventIDs: eventIDs, Sweep: true},
		asynq.Queue(QueueSync), asynq.TaskID(id), asynq.MaxRetry(10), asynq.Timeout(10*time.Minute))
}

// enqueueWrite adds one meeting's write to its CRM connection's group; the
// group is handed to crm:write:batch up to 100 at a time.
func (c *core) enqueueWrite(ctx context.Context, w writePayload) error {
	raw, err := c.sealWrite(w)
	if err != nil {
		return err
	}
	id := "write:" + w.Key + ":" + w.Hash[:12] + ":" + bucket(c.now(), time.Hour) + sweptSuffix(ctx)
	return c.enqueue(ctx, TaskWrite, json.RawMessage(raw), asynq.Queue(QueueCRM), asynq.Group(w.ConnectionID), asynq.TaskID(id))
}

// enqueueLinks queues the write-backs of one calendar's copies as one task
// (per 100), named by its content so a repeat is queued once.
func (c *core) enqueueLinks(ctx context.Context, calID string, links []ledger.Link) error {
	return c.enqueueLinksAs(ctx, calID, links, "")
}

// enqueueLinksAs is enqueueLinks with a suffix to the task ids: the sweep's
// time bucket.
func (c *core) enqueueLinksAs(ctx context.Context, calID string, links []ledger.Link, suffix string) error {
	for len(links) > 0 {
		n := min(len(links), batchSize)
		h := sha256.New()
		for _, l := range links[:n] {
			h.Write([]byte(l.EventID + "\x00" + l.CRMID + "\x00"))
		}
		id := "link:" + calID + ":" + hex.EncodeToString(h.Sum(nil))[:32] + suffix + sweptSuffix(ctx)
		if err := c.enqueue(ctx, TaskLink, linkPayload{CalendarID: calID, Links: links[:n]}, asynq.Queue(QueueLink), asynq.TaskID(id), asynq.MaxRetry(10)); err != nil {
			return err
		}
		links = links[n:]
	}
	return nil
}

// batchSize is the most meetings one crm:write:batch writes: HubSpot's
// batch limit.
const batchSize = 100

// enqueueBatch queues a full batch of writes directly. Its id is derived
// from the writes, so the same page applied twice queues it once.
func (c *core) enqueueBatch(ctx context.Context, ws []writePayload) error {
	raws := make([]json.RawMessage, len(ws))
	h := sha256.New()
	for i, w := range ws {
		b, err := c.sealWrite(w)
		if err != nil {
			return err
		}
		raws[i] = b
		h.Write([]byte(w.Key + w.Hash))
	}
	id := "batch:" + hex.EncodeToString(h.Sum(nil))[:32] + ":" + bucket(c.now(), time.Hour) + sweptSuffix(ctx)
	return c.enqueue(ctx, TaskWriteBatch, raws, asynq.Queue(QueueCRM), asynq.TaskID(id), asynq.MaxRetry(20), asynq.Timeout(10*time.Minute))
}

// aggregate combines a group's crm:write tasks into one crm:write:batch.
func aggregate(group string, tasks []*asynq.Task) *asynq.Task {
	batch := make([]json.RawMessage, 0, len(tasks))
	for _, t := range tasks {
		batch = append(batch, t.Payload())
	}
	b, _ := json.Marshal(batch)
	return asynq.NewTask(TaskWriteBatch, b, asynq.MaxRetry(20), asynq.Timeout(10*time.Minute))
}
