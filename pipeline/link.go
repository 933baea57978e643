package pipeline

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/calendar"
)

// handleLink writes the CRM id and meeting key into one copy's private
// extended properties. The patch makes the calendar notify us; that sync
// finds no calendar-owned field changed and makes no CRM call.
func (p *Pipeline) handleLink(ctx context.Context, t *asynq.Task) error {
	var l linkPayload
	if err := json.Unmarshal(t.Payload(), &l); err != nil {
		return p.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	cal, err := p.calendarRow(ctx, l.CalendarID)
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
	err = src.PatchPrivate(ctx, cal.CalendarID, l.EventID, map[string]string{
		calendar.PropMeetingID: l.CRMID,
		calendar.PropKey:       l.Key,
	})
	p.metrics.googleCalls.WithLabelValues("events.patch", classLabel(err)).Inc()
	switch {
	case err == nil:
	case calendar.ClassOf(err) == calendar.NotFound:
		return nil // the event is gone; the next sync cancels the copy
	case calendar.ClassOf(err) == calendar.Auth:
		return p.reauth(ctx, t, cal.WorkspaceID, cal.ConnectionID, err)
	case calendar.ClassOf(err) == calendar.Permanent:
		return p.permanent(ctx, t, cal.WorkspaceID, err)
	case calendar.ClassOf(err) == calendar.RateLimited:
		return &retryAfter{wait: calendar.WaitOf(err), err: err}
	default:
		return err
	}
	_, err = p.db.Exec(ctx, `UPDATE meeting_copies SET linked_crm_id = $3 WHERE calendar_id = $1 AND event_id = $2`, l.CalendarID, l.EventID, l.CRMID)
	if err != nil {
		return fmt.Errorf("record link: %w", err)
	}
	return nil
}
