package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file is the operator console's side of the ledger: the list of
// workspaces, the meeting search, and each meeting's write history.

// Workspaces lists every workspace, by name.
func (s *Store) Workspaces(ctx context.Context) ([]Workspace, error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, internal_domains, created_at FROM workspaces ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	ws, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Workspace])
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return ws, nil
}

// MeetingQuery narrows a meeting search. Zero fields match everything.
type MeetingQuery struct {
	// From and To bound the meeting's start: From <= start < To.
	From, To time.Time
	// Company is a CRM company id, or a part of a matched company's name
	// (case-insensitive).
	Company string
	// Domain is an attendee's domain, exactly (lower-case).
	Domain string
	State  string
	Rule   string
}

// CompanyMatch is a company a meeting's decision matched, as the trace
// stores it.
type CompanyMatch struct {
	ID     string `json:"ID"`
	Name   string `json:"Name"`
	Domain string `json:"Domain"`
}

// FoundMeeting is one meeting of a search: its ledger entry, start and
// matched companies.
type FoundMeeting struct {
	MeetingEntry
	StartsAt  *time.Time     `json:"starts_at"`
	Companies []CompanyMatch `json:"companies"`
}

// SearchMeetings lists a workspace's decided meetings matching q, the most
// recently recorded first, before the cursor id (0: from the newest);
// limit+1 of them (the extra one says more follow).
func (s *Store) SearchMeetings(ctx context.Context, ws string, q MeetingQuery, after int64, limit int) ([]FoundMeeting, []int64, error) {
	conds := []string{"workspace_id::text = $1", "rule <> ''", "($2 = 0 OR id < $2)"}
	args := []any{ws, after}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !q.From.IsZero() {
		conds = append(conds, "starts_at >= "+arg(q.From))
	}
	if !q.To.IsZero() {
		conds = append(conds, "starts_at < "+arg(q.To))
	}
	if q.State != "" {
		conds = append(conds, "state = "+arg(q.State))
	}
	if q.Rule != "" {
		conds = append(conds, "rule = "+arg(q.Rule))
	}
	if q.Domain != "" {
		b, _ := json.Marshal(map[string]any{"attendees": []map[string]string{{"domain": q.Domain}}})
		conds = append(conds, "trace @> "+arg(string(b))+"::jsonb")
	}
	if q.Company != "" {
		b, _ := json.Marshal(map[string]any{"companies": []map[string]string{{"ID": q.Company}}})
		name := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(q.Company) + "%"
		conds = append(conds, "(trace @> "+arg(string(b))+"::jsonb OR EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(trace->'companies') = 'array' THEN trace->'companies' ELSE '[]' END) c WHERE c->>'Name' ILIKE "+arg(name)+"))")
	}
	sql := `SELECT id, meeting_key, state, coalesce(crm_meeting_id, ''), rule, rules_version, decided_at, coalesce(last_error, ''), starts_at,
		CASE WHEN jsonb_typeof(trace->'companies') = 'array' THEN trace->'companies' ELSE '[]' END
		FROM meetings WHERE ` + strings.Join(conds, " AND ") + ` ORDER BY id DESC LIMIT ` + arg(limit+1)
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		if isInvalidText(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("search meetings: %w", err)
	}
	var out []FoundMeeting
	var idList []int64
	var id int64
	var m FoundMeeting
	var companies []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &m.Key, &m.State, &m.CRMMeetingID, &m.Rule, &m.RulesVersion, &m.DecidedAt, &m.LastError, &m.StartsAt, &companies}, func() error {
		f := m
		f.Companies = nil
		_ = json.Unmarshal(companies, &f.Companies)
		out = append(out, f)
		idList = append(idList, id)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("search meetings: %w", err)
	}
	return out, idList, nil
}

// MeetingEvent is one write of a meeting to the CRM.
type MeetingEvent struct {
	At time.Time `json:"at"`
	// Kind is created, updated, cancelled, adopted or deleted_in_crm.
	Kind         string `json:"kind"`
	CRMMeetingID string `json:"crm_meeting_id,omitempty"`
}

// MeetingHistory returns a meeting's writes, oldest first, and when it
// starts.
func (s *Store) MeetingHistory(ctx context.Context, ws, key string) ([]MeetingEvent, *time.Time, error) {
	var id int64
	var starts *time.Time
	err := s.db.QueryRow(ctx, `SELECT id, starts_at FROM meetings WHERE workspace_id::text = $1 AND meeting_key = $2`, ws, key).Scan(&id, &starts)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
			return nil, nil, fmt.Errorf("meeting %q: %w", key, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("read meeting: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT at, kind, coalesce(crm_meeting_id, '') FROM meeting_events WHERE meeting_id = $1 ORDER BY at, id`, id)
	if err != nil {
		return nil, nil, fmt.Errorf("read meeting history: %w", err)
	}
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[MeetingEvent])
	if err != nil {
		return nil, nil, fmt.Errorf("read meeting history: %w", err)
	}
	return evs, starts, nil
}

// queueHistory adds to a write batch the history rows of its outcome. It
// runs before the batch's updates, so a write tells a create (the meeting
// had no CRM id, or another one) from an update.
func queueHistory(b *pgx.Batch, o WriteOutcome, now time.Time) {
	for id, crmID := range o.Adopted {
		b.Queue(`INSERT INTO meeting_events (meeting_id, at, kind, crm_meeting_id) VALUES ($1, $2, 'adopted', $3)`, id, now, crmID)
	}
	for _, w := range o.Written {
		b.Queue(`INSERT INTO meeting_events (meeting_id, at, kind, crm_meeting_id)
			SELECT id, $2, CASE WHEN $4 THEN 'cancelled' WHEN crm_meeting_id IS DISTINCT FROM $3 THEN 'created' ELSE 'updated' END, $3
			FROM meetings WHERE id = $1`, w.MeetingID, now, w.CRMID, w.Cancelled)
	}
	for _, id := range o.Deleted {
		b.Queue(`INSERT INTO meeting_events (meeting_id, at, kind, crm_meeting_id)
			SELECT id, $2, 'deleted_in_crm', crm_meeting_id FROM meetings WHERE id = $1 AND state <> 'deleted_in_crm'`, id, now)
	}
}

// LiveCopyOf names a copy of a meeting to fetch from its calendar: one
// not cancelled, on a calendar that syncs, the organizer's first.
func (s *Store) LiveCopyOf(ctx context.Context, ws, key string) (calendarID, eventID string, err error) {
	err = s.db.QueryRow(ctx, `SELECT c.calendar_id::text, c.event_id FROM meeting_copies c
		JOIN meetings m ON m.id = c.meeting_id JOIN calendars k ON k.id = c.calendar_id JOIN connections n ON n.id = k.connection_id
		WHERE m.workspace_id::text = $1 AND m.meeting_key = $2 AND c.status <> 'cancelled' AND k.status = 'active' AND n.status = 'active'
		ORDER BY c.organizer_copy DESC, c.updated_at DESC LIMIT 1`, ws, key).Scan(&calendarID, &eventID)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return "", "", fmt.Errorf("a live copy of meeting %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("find a copy of meeting %q: %w", key, err)
	}
	return calendarID, eventID, nil
}
