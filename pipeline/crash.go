package pipeline

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
)

// Crash points are the places a handler may be stopped as if its process
// died there, by the test hook Config.crash: between the steps whose order
// makes the pipeline safe. Tests stop the worker at each one and check that
// nothing is lost or doubled; this list is what they iterate over.
var CrashPoints = []string{
	// A sync page listed, nothing decided.
	"sync.listed",
	// Mid-page: decisions made in the page's transaction, nothing queued
	// or committed.
	"sync.page.decided",
	// The page's CRM writes and write-backs queued, its transaction not
	// committed (the tasks find decisions that never were).
	"sync.page.queued",
	// A page committed, the sync not recorded as finished.
	"sync.page.committed",
	// Creates marked creating with their attempt, nothing sent.
	"write.marked",
	// Between the CRM write and its ledger record: the creates are in the
	// CRM, the ledger says creating.
	"write.sent",
	// The same for updates and cancellations.
	"write.updated",
	// Between the ledger record and the write-back's enqueue.
	"write.recorded",
	// Mid-write-back: one copy patched, neither the others nor the record.
	"link.patched",
	// Mid-channel-renewal: the new channel open at the provider, not
	// stored.
	"renew.watched",
	// The new channel stored, the old one not stopped.
	"renew.stored",
}

// errCrashed is what a handler returns from a crash point: it unwinds
// without recording anything, and the queue forgets the task — the worst
// case, as if Redis had lost it with the process.
var errCrashed = errors.New("crashed at a test crash point")

// crashed reports whether err unwinds a crash: handlers skip their
// cleanup (lease release, error records) for it.
func crashed(err error) bool { return errors.Is(err, errCrashed) }

// crashAt stops the handler at a named point when the test hook says so.
func (c *core) crashAt(point string) error {
	if c.cfg.crash != nil && c.cfg.crash(point) {
		c.log.Warn("crash point reached: stopping as if the process died", "point", point)
		return errCrashed
	}
	return nil
}

// forgetCrashed is the worker's middleware: a task that stopped at a crash
// point is forgotten by the queue, as if it had been lost with the process
// and its Redis.
func forgetCrashed(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if err := h.ProcessTask(ctx, t); !crashed(err) {
			return err
		}
		return nil
	})
}
