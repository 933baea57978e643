package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// linker handles calendar:link: it writes the CRM id and meeting key into
// the private properties of copies on one calendar. Each patch makes the
// calendar notify us; that sync finds no calendar-owned field changed and
// makes no CRM call. Copies already linked (a retry) are skipped.
type linker struct{ *core }

func (l *linker) handle(ctx context.Context, t *asynq.Task) error {
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
		return nil // the provider keeps no ids (Calendly)
	}
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
		case calendar.ClassOf(err) == calendar.NotFound:
			// The event is gone; the next sync cancels the copy.
		default:
			return l.fail(ctx, t, s, err)
		}
	}
	return nil
}
