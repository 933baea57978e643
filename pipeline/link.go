package pipeline

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/calendar"
)

// handleLink writes the CRM id and meeting key into the private extended
// properties of copies on one calendar. Each patch makes the calendar
// notify us; that sync finds no calendar-owned field changed and makes no
// CRM call. Copies already linked (a retry) are skipped.
func (p *Pipeline) handleLink(ctx context.Context, t *asynq.Task) error {
	var pl linkPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return p.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	cal, err := p.calendarRow(ctx, pl.CalendarID)
	if err != nil {
		return nil // calendar removed
	}
	if cal.ConnStatus != "active" {
		return p.reauth(ctx, t, cal.WorkspaceID, cal.ConnectionID, fmt.Errorf("calendar connection %s is %s", cal.ConnectionID, cal.ConnStatus))
	}
	src, err := p.source(ctx, cal.ConnectionID)
	if err != nil {
		return err
	}
	ids := make([]string, len(pl.Links))
	for i, l := range pl.Links {
		ids[i] = l.EventID
	}
	rows, err := p.db.Query(ctx, `SELECT event_id, coalesce(linked_crm_id, '') FROM meeting_copies WHERE calendar_id = $1 AND event_id = ANY($2)`, cal.ID, ids)
	if err != nil {
		return fmt.Errorf("read copies: %w", err)
	}
	linked := map[string]string{}
	var id, crmID string
	if _, err := pgx.ForEachRow(rows, []any{&id, &crmID}, func() error { linked[id] = crmID; return nil }); err != nil {
		return fmt.Errorf("read copies: %w", err)
	}
	batch := &pgx.Batch{}
	defer func() {
		if batch.Len() > 0 {
			p.db.SendBatch(context.WithoutCancel(ctx), batch).Close()
		}
	}()
	for _, l := range pl.Links {
		if linked[l.EventID] == l.CRMID {
			continue
		}
		err := src.(calendar.Linker).PatchPrivate(ctx, cal.CalendarID, l.EventID, map[string]string{
			calendar.PropMeetingID: l.CRMID,
			calendar.PropKey:       l.Key,
		})
		p.metrics.googleCalls.WithLabelValues("events.patch", classLabel(err)).Inc()
		switch {
		case err == nil:
			batch.Queue(`UPDATE meeting_copies SET linked_crm_id = $3 WHERE calendar_id = $1 AND event_id = $2`, cal.ID, l.EventID, l.CRMID)
		case calendar.ClassOf(err) == calendar.NotFound:
			// The event is gone; the next sync cancels the copy.
		case calendar.ClassOf(err) == calendar.Auth:
			return p.reauth(ctx, t, cal.WorkspaceID, cal.ConnectionID, err)
		case calendar.ClassOf(err) == calendar.Permanent:
			return p.permanent(ctx, t, cal.WorkspaceID, err)
		case calendar.ClassOf(err) == calendar.RateLimited:
			return &retryAfter{wait: calendar.WaitOf(err), err: err}
		default:
			return err
		}
	}
	return nil
}
