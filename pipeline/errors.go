package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// verdict is what the queue does with a failed task.
type verdict int

const (
	// retry: again, with exponential backoff and jitter; uses a retry.
	retry verdict = iota
	// wait: again after the provider's wait; not a failure.
	wait
	// park: the connection needs re-authorisation; the task waits, as a
	// dead letter of class auth, until it is re-authorised.
	park
	// dead: the provider refused for good; a dead letter with the reason.
	dead
	// drop: the thing is gone; nothing left to do.
	drop
)

// verdictOf is the one table from error classes to what the queue does.
// Every handler passes its provider errors through it (fail).
func verdictOf(err error) verdict {
	switch provider.ClassOf(err) {
	case provider.RateLimited:
		return wait
	case provider.Auth:
		return park
	case provider.Permanent:
		return dead
	case provider.NotFound:
		return drop
	}
	return retry // Transient, CursorExpired (the sync relists before), unclassified
}

// subject names what a task works for: its workspace and the connection
// whose credentials it uses.
type subject struct{ ws, conn string }

// fail carries out the verdict on a task's error and returns what the
// task returns to the queue.
func (c *core) fail(ctx context.Context, t *asynq.Task, s subject, err error) error {
	if err == nil {
		return nil
	}
	switch verdictOf(err) {
	case wait:
		return &retryAfter{wait: provider.WaitOf(err), err: err}
	case park:
		if s.conn != "" {
			return c.reauth(ctx, t, s, err)
		}
		return c.permanent(ctx, t, s.ws, err)
	case dead:
		return c.permanent(ctx, t, s.ws, err)
	case drop:
		c.log.InfoContext(ctx, "task dropped: its subject is gone", slog.String("task", t.Type()), slog.String("error", scrub(err.Error())))
		return nil
	}
	return err
}

// retryAfter asks the queue to retry no sooner than wait; it is not a
// failure (a rate limit, a busy calendar, a lagging search).
type retryAfter struct {
	wait time.Duration
	err  error
}

func (e *retryAfter) Error() string { return fmt.Sprintf("retry after %v: %v", e.wait, e.err) }
func (e *retryAfter) Unwrap() error { return e.err }

// retryDelay is the queue's RetryDelayFunc: exponential backoff with full
// jitter (1 s doubling to 10 min), or the wait asked for plus jitter.
func retryDelay(n int, err error, t *asynq.Task) time.Duration {
	wait := provider.WaitOf(err)
	var ra *retryAfter
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
func (c *core) permanent(ctx context.Context, t *asynq.Task, ws string, err error) error {
	c.deadLetter(ctx, ws, t, plan.DeadPermanent, refOf(t), err)
	return fmt.Errorf("%w: %s", asynq.SkipRetry, scrub(err.Error()))
}

// reauth marks a connection needs_reauth and parks the task: archived with
// a dead letter of class auth, re-driven by Resume once re-authorised. No
// retry storm: nothing of that connection runs until then.
func (c *core) reauth(ctx context.Context, t *asynq.Task, s subject, err error) error {
	if mErr := c.cfg.Vault.MarkNeedsReauth(ctx, s.conn, ledger.Truncate(scrub(err.Error()), 300)); mErr != nil {
		c.log.ErrorContext(ctx, "mark connection needs_reauth", slog.String("connection_id", s.conn), slog.Any("error", mErr))
	}
	ref := refOf(t)
	ref["connection_id"] = s.conn
	c.deadLetter(ctx, s.ws, t, plan.DeadAuth, ref, err)
	c.log.WarnContext(ctx, "connection needs re-authorisation; its work is parked", slog.String("connection_id", s.conn), slog.String("task", t.Type()))
	return fmt.Errorf("%w: connection %s needs re-authorisation: %s", asynq.SkipRetry, s.conn, scrub(err.Error()))
}

// deadLetter records a terminal failure without content: ids and reason.
func (c *core) deadLetter(ctx context.Context, ws string, t *asynq.Task, class plan.DeadLetterClass, ref map[string]any, err error) {
	taskID, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	dErr := c.ledger.AddDeadLetter(context.WithoutCancel(ctx), ledger.NewDeadLetter{
		WorkspaceID: ws, TaskType: t.Type(), TaskID: taskID, Queue: queue, Ref: ref, Class: class, Reason: scrub(err.Error()),
	})
	if dErr != nil {
		c.log.ErrorContext(ctx, "write dead letter", slog.String("task_id", taskID), slog.Any("error", dErr))
		return
	}
	c.metrics.deadLetters.WithLabelValues(t.Type(), string(class)).Inc()
}

// classLabel is an error's class for metrics labels.
func classLabel(err error) string { return provider.Label(err) }

// scrubErrors is the worker's middleware that scrubs what a task returns:
// Asynq stores the text of a retried or archived task's error in Redis,
// and its web UI shows it. The original still unwraps, for the retry
// policy (retryDelay, isFailure, SkipRetry).
func scrubErrors(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if err := next.ProcessTask(ctx, t); err != nil {
			return &scrubbedError{err}
		}
		return nil
	})
}

// scrubbedError is an error whose text is scrubbed.
type scrubbedError struct{ err error }

func (e *scrubbedError) Error() string { return scrub(e.err.Error()) }
func (e *scrubbedError) Unwrap() error { return e.err }
