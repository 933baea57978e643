package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

var errLinkBusy = errors.New("another write-back task of this calendar is running")

// linker handles calendar:link: it writes the CRM id and meeting key into
// the private properties of copies on one calendar. Each patch makes the
// calendar notify us; that sync finds no calendar-owned field changed and
// makes no CRM call. Copies already linked (a retry) are skipped.
type linker struct{ *core }

func (l *linker) handle(ctx context.Context, t *asynq.Task) (err error) {
	var pl linkPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return l.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	cal, err := l.ledger.Calendar(ctx, pl.CalendarID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil // calendar removed
	}
	if err != nil {
		return err
	}
	s := subject{cal.WorkspaceID, cal.ConnectionID}
	if cal.ConnStatus != plan.ConnActive {
		return l.reauth(ctx, t, s, fmt.Errorf("calendar connection %s is %s", cal.ConnectionID, cal.ConnStatus))
	}
	src, err := l.source(ctx, cal)
	if err != nil {
		return l.fail(ctx, t, s, err)
	}
	lk, ok := src.(calendar.Linker)
	if !ok {
		// The provider keeps no ids (Calendly): nothing to write back.
		// Recorded as done, so that neither a sync nor the sweep asks again.
		return l.ledger.RecordLinks(ctx, cal.ID, pl.Links)
	}
	// One write-back task per calendar at a time, across processes: the
	// calendar user's rate limit is the bottleneck anyway, and a task
	// queued twice (the sweep's re-queue of one still running) then finds
	// its copies linked instead of patching them again.
	lease, ok, err := l.tryLease(ctx, "link:"+cal.ID)
	if err != nil {
		return fmt.Errorf("lease write-backs of %s: %w", cal.ID, err)
	}
	if !ok {
		return &retryAfter{wait: time.Second, err: errLinkBusy}
	}
	defer func() { lease.releaseUnlessCrashed(ctx, err) }()
	ids := make([]string, len(pl.Links))
	for i, k := range pl.Links {
		ids[i] = k.EventID
	}
	linked, err := l.ledger.LinkedIDs(ctx, cal.ID, ids)
	if err != nil {
		return err
	}
	var done []ledger.Link
	defer func() {
		if crashed(err) {
			return // a dead process records nothing
		}
		if err := l.ledger.RecordLinks(context.WithoutCancel(ctx), cal.ID, done); err != nil {
			l.log.ErrorContext(ctx, "record write-backs: "+err.Error())
		}
	}()
	for _, k := range pl.Links {
		if linked[k.EventID] == k.CRMID {
			continue
		}
		err := lk.PatchPrivate(ctx, cal.CalendarID, k.EventID, map[string]string{
			calendar.PropMeetingID: k.CRMID,
			calendar.PropKey:       k.Key,
		})
		l.metrics.calendarOps.WithLabelValues(cal.Provider, "link", classLabel(err)).Inc()
		switch {
		case err == nil:
			done = append(done, k)
			if err := l.crashAt("link.patched"); err != nil {
				return err
			}
		case calendar.ClassOf(err) == calendar.NotFound:
			// The event is gone; the next sync cancels the copy.
		default:
			return l.fail(ctx, t, s, err)
		}
	}
	return nil
}
