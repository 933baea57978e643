package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
)

// This file maps error classes to what the queue does, once:
//
//	transient, rate limited → retry with exponential backoff and jitter,
//	                          honouring the provider's wait
//	auth                    → connection needs_reauth; the task is parked
//	                          (archived, dead letter of class auth) and
//	                          re-driven when the connection is re-authorised
//	permanent               → archived, dead letter with the reason
//	retries exhausted       → dead letter of class exhausted

// retryAfter asks the queue to retry no sooner than wait.
type retryAfter struct {
	wait time.Duration
	err  error
}

func (e *retryAfter) Error() string { return fmt.Sprintf("retry after %v: %v", e.wait, e.err) }
func (e *retryAfter) Unwrap() error { return e.err }

// retryDelay is the queue's RetryDelayFunc: exponential backoff with full
// jitter (1 s doubling to 10 min), or the provider's wait plus jitter.
func retryDelay(n int, err error, t *asynq.Task) time.Duration {
	var ra *retryAfter
	wait := calendar.WaitOf(err)
	if w := crm.WaitOf(err); w > wait {
		wait = w
	}
	if errors.As(err, &ra) && ra.wait > wait {
		wait = ra.wait
	}
	if wait > 0 {
		return wait + time.Duration(rand.Int64N(int64(wait/4)+int64(time.Second)))
	}
	backoff := time.Second << min(n, 10)
	if backoff > 10*time.Minute {
		backoff = 10 * time.Minute
	}
	return backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
}

// isFailure tells the queue whether an error uses up a retry: waiting for a
// rate limit, a busy calendar or a lagging CRM search does not.
func isFailure(err error) bool {
	var ra *retryAfter
	return !errors.As(err, &ra)
}

// permanent archives the task with a dead letter.
func (p *Pipeline) permanent(ctx context.Context, t *asynq.Task, ws string, err error) error {
	p.deadLetter(ctx, ws, t, "permanent", refOf(t), err)
	return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
}

// reauth marks a connection needs_reauth and parks the task: archived with
// a dead letter of class auth, re-driven by Resume once re-authorised. No
// retry storm: nothing of that connection runs until then.
func (p *Pipeline) reauth(ctx context.Context, t *asynq.Task, ws, connID string, err error) error {
	if mErr := p.cfg.Vault.MarkNeedsReauth(ctx, connID, truncate(err.Error(), 300)); mErr != nil {
		p.log.ErrorContext(ctx, "mark connection needs_reauth", slog.String("connection_id", connID), slog.Any("error", mErr))
	}
	ref := refOf(t)
	ref["connection_id"] = connID
	p.deadLetter(ctx, ws, t, "auth", ref, err)
	p.log.WarnContext(ctx, "connection needs re-authorisation; its work is parked", slog.String("connection_id", connID), slog.String("task", t.Type()))
	return fmt.Errorf("%w: connection %s needs re-authorisation: %v", asynq.SkipRetry, connID, err)
}

// deadLetter records a terminal failure without content: ids and reason.
func (p *Pipeline) deadLetter(ctx context.Context, ws string, t *asynq.Task, class string, ref map[string]any, err error) {
	taskID, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	refJSON, _ := json.Marshal(ref)
	var wsArg any
	if ws != "" {
		wsArg = ws
	}
	_, dbErr := p.db.Exec(context.WithoutCancel(ctx), `INSERT INTO dead_letters (workspace_id, task_type, task_id, queue, ref, class, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		wsArg, t.Type(), taskID, queue, refJSON, class, truncate(err.Error(), 1000))
	if dbErr != nil {
		p.log.ErrorContext(ctx, "write dead letter", slog.String("task_id", taskID), slog.Any("error", dbErr))
		return
	}
	p.metrics.deadLetters.WithLabelValues(t.Type(), class).Inc()
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
	case TaskWriteBatch:
		var raws []json.RawMessage
		if json.Unmarshal(t.Payload(), &raws) == nil {
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
	}
	return ref
}

// classLabel is an error's class for metrics labels.
func classLabel(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *calendar.Error
	if errors.As(err, &ce) {
		return ce.Class.String()
	}
	var me *crm.Error
	if errors.As(err, &me) {
		return me.Class.String()
	}
	return "error"
}

func (p *Pipeline) countCRM(endpoint string, err error) {
	p.metrics.crmCalls.WithLabelValues(endpoint, classLabel(err)).Inc()
}
