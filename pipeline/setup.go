package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// This file is the background half of a calendar import: the import
// stores the connection and registers its calendars in one transaction and
// answers at once; connection:setup opens each calendar's push channel and
// starts its initial sync. An import of a thousand calendars no longer
// holds a request for minutes, nor leaves half of them behind when it is
// cut short: whatever this task has not done yet, its retry (or the
// hourly renewal and the sync schedule) does.

// TaskSetup opens the push channels of a connection's calendars and starts
// their syncs [sync queue: calendar work, seen by whoever waits for the
// sync queue to drain].
const TaskSetup = "connection:setup"

// MaxCalendarIDs bounds the calendars one import registers.
const MaxCalendarIDs = 500

// maxCalendarIDBytes bounds one calendar id (Google's are e-mail addresses
// or ~60-character group ids; Graph's ~150 characters).
const maxCalendarIDBytes = 1024

// setupConcurrency is how many channels one setup opens at once.
const setupConcurrency = 8

// setupPayload names the connection to set up.
type setupPayload struct {
	WorkspaceID  string `json:"workspace_id"`
	ConnectionID string `json:"connection_id"`
}

// calendarIDs checks an import's calendar ids: at most MaxCalendarIDs,
// each printable text, duplicates dropped; none means the primary one.
func calendarIDs(in []string) ([]string, error) {
	if len(in) > MaxCalendarIDs {
		return nil, fmt.Errorf("calendar_ids: %d ids, at most %d per import: import the rest in further requests: %w", len(in), MaxCalendarIDs, ErrInvalid)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for i, id := range in {
		if id == "" || len(id) > maxCalendarIDBytes || !printable(id) {
			return nil, fmt.Errorf("calendar_ids[%d]: want printable text of at most %d bytes: %w", i, maxCalendarIDBytes, ErrInvalid)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		out = []string{"primary"}
	}
	return out, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// enqueueSetup queues the setup of a connection's calendars. Every import
// queues its own: a setup already running may have listed the calendars
// before this import registered more.
func (c *core) enqueueSetup(ctx context.Context, ws, connID string) error {
	id := "setup:" + connID + ":" + strconv.FormatInt(c.now().UnixNano(), 36)
	return c.enqueue(ctx, TaskSetup, setupPayload{WorkspaceID: ws, ConnectionID: connID},
		asynq.Queue(QueueSync), asynq.TaskID(id), asynq.MaxRetry(10), asynq.Timeout(30*time.Minute))
}

// handleSetup opens the push channel of every calendar of a connection
// that lacks a current one, then marks them all dirty (their initial or
// next sync) and resumes the connection's parked work. A refusal of the
// credentials parks the task until the connection is imported again; an
// unreachable provider retries it, and the channels opened already are not
// opened again.
func (p *Pipeline) handleSetup(ctx context.Context, t *asynq.Task) error {
	var pl setupPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return p.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	st, err := p.ledger.ConnStatus(ctx, pl.ConnectionID)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st != plan.ConnActive {
		return nil // an import that re-authorises it queues a new setup
	}
	cals, err := p.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{ConnectionID: pl.ConnectionID})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	for _, id := range cals {
		g.Go(func() error {
			err := p.openChannel(gctx, id, renewIfDue)
			switch calendar.ClassOf(err) {
			case calendar.Auth, calendar.Transient, calendar.RateLimited:
				if err != nil {
					return err // park or retry the whole setup
				}
			}
			if err != nil {
				// Without a push channel the calendar still syncs on the
				// schedule; the hourly renewal tries again.
				p.log.WarnContext(ctx, "open push channel", slog.String("calendar_id", id), slog.String("error", scrub(err.Error())))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return p.fail(ctx, t, subject{pl.WorkspaceID, pl.ConnectionID}, err)
	}
	for _, id := range cals {
		if err := p.markDirty(ctx, id, false, time.Time{}); err != nil {
			return err
		}
	}
	p.log.InfoContext(ctx, "connection set up", slog.String("connection_id", pl.ConnectionID), slog.Int("calendars", len(cals)))
	return p.Resume(ctx, pl.ConnectionID)
}

// ignoreNotFound: the connection was removed meanwhile; nothing to do.
func ignoreNotFound(err error) error {
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	}
	return err
}
