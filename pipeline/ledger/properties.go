package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/pipeline/plan"
)

// This file is the ledger's side of the CRM properties the rules read:
// the declared company properties stored with the company index, the
// upcoming meetings of companies whose properties changed, and the
// read-only view of the ledger a rules plan compares against.

// propertiesJSON is the stored form of a company's property values: null
// when none is set.
func propertiesJSON(props map[string]string) []byte {
	n := 0
	for _, v := range props {
		if v != "" {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for k, v := range props {
		if v != "" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}

// CompanyProperties returns the stored property values of some companies
// of a workspace, by company id; a company without values is absent.
func (s *Store) CompanyProperties(ctx context.Context, ws string, companyIDs []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	if len(companyIDs) == 0 {
		return out, nil
	}
	err := s.eachProperties(ctx, `SELECT company_id, properties FROM crm_companies
		WHERE workspace_id = $1 AND company_id = ANY($2) AND properties IS NOT NULL`, []any{ws, companyIDs},
		func(id string, props map[string]string) { out[id] = props })
	return out, err
}

// EachCompanyProperties calls fn for every company of a workspace that has
// stored property values.
func (s *Store) EachCompanyProperties(ctx context.Context, ws string, fn func(id string, props map[string]string)) error {
	return s.eachProperties(ctx, `SELECT company_id, properties FROM crm_companies WHERE workspace_id = $1 AND properties IS NOT NULL`, []any{ws}, fn)
}

func (s *Store) eachProperties(ctx context.Context, sql string, args []any, fn func(string, map[string]string)) error {
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("read company properties: %w", err)
	}
	var id string
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		var props map[string]string
		if err := json.Unmarshal(raw, &props); err != nil {
			return fmt.Errorf("company %s: %w", id, err)
		}
		fn(id, props)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read company properties: %w", err)
	}
	return nil
}

// UpcomingCopies lists, by calendar row id, the event ids of the live
// copies of a workspace's meetings starting at or after from whose last
// decision matched one of the companies: the meetings a change of those
// companies' properties may decide otherwise. Copies on calendars that do
// not sync (paused, gone, or of a connection needing re-authorisation) are
// left out.
func (s *Store) UpcomingCopies(ctx context.Context, ws string, companyIDs []string, from time.Time) (map[string][]string, error) {
	out := map[string][]string{}
	if len(companyIDs) == 0 {
		return out, nil
	}
	// The trace's companies are matching.CompanyRef values: {"ID": ...}.
	probes := make([]string, len(companyIDs))
	for i, id := range companyIDs {
		b, _ := json.Marshal(map[string]any{"companies": []map[string]string{{"ID": id}}})
		probes[i] = string(b)
	}
	rows, err := s.db.Query(ctx, `SELECT c.calendar_id::text, c.event_id FROM meetings m
		JOIN meeting_copies c ON c.meeting_id = m.id
		JOIN calendars k ON k.id = c.calendar_id JOIN connections n ON n.id = k.connection_id
		WHERE m.workspace_id = $1 AND m.starts_at >= $2 AND m.trace @> ANY($3::jsonb[])
			AND c.status <> 'cancelled' AND k.status IN ('active', 'error') AND n.status = 'active'
		ORDER BY c.calendar_id, c.event_id`, ws, from, probes)
	if err != nil {
		return nil, fmt.Errorf("find upcoming meetings of companies: %w", err)
	}
	var cal, ev string
	if _, err := pgx.ForEachRow(rows, []any{&cal, &ev}, func() error {
		out[cal] = append(out[cal], ev)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("find upcoming meetings of companies: %w", err)
	}
	return out, nil
}

// PlanView is what a rules plan reads of the ledger for a page of events:
// the meetings of their keys (absent when not in the ledger) and their
// copies. It takes no lock and writes nothing.
type PlanView struct {
	Meetings map[string]plan.Meeting
	Copies   map[int64][]plan.Copy
}

// ReadForPlan reads the meetings of keys and their copies, for a plan.
func (s *Store) ReadForPlan(ctx context.Context, ws string, keys []string) (PlanView, error) {
	v := PlanView{Meetings: map[string]plan.Meeting{}, Copies: map[int64][]plan.Copy{}}
	if len(keys) == 0 {
		return v, nil
	}
	m, err := collectMeetings(s.db.Query(ctx, meetingSelect+` WHERE workspace_id = $1 AND meeting_key = ANY($2)`, ws, keys))
	if err != nil {
		return v, fmt.Errorf("read ledger: %w", err)
	}
	v.Meetings = m
	ids := make([]int64, 0, len(m))
	for _, r := range m {
		ids = append(ids, r.ID)
	}
	if v.Copies, err = readCopies(ctx, s.db, ids); err != nil {
		return v, err
	}
	return v, nil
}
