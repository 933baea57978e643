package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/pipeline/plan"
)

const meetingSelect = `SELECT id, meeting_key, state, action, rule, coalesce(crm_meeting_id, ''), coalesce(owned_hash, ''), coalesce(desired_hash, ''),
	company_ids, contact_ids, coalesce(attempt_id::text, ''), attempts, updated_at, adopted FROM meetings`

func scanMeeting(row pgx.Row) (plan.Meeting, error) {
	var m plan.Meeting
	err := row.Scan(&m.ID, &m.Key, &m.State, &m.Action, &m.Rule, &m.CRMID, &m.OwnedHash, &m.DesiredHash,
		&m.CompanyIDs, &m.ContactIDs, &m.AttemptID, &m.Attempts, &m.UpdatedAt, &m.Adopted)
	return m, err
}

func collectMeetings(rows pgx.Rows, err error) (map[string]plan.Meeting, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]plan.Meeting{}
	for rows.Next() {
		m, err := scanMeeting(rows)
		if err != nil {
			return nil, err
		}
		out[m.Key] = m
	}
	return out, rows.Err()
}

// KeysOfCopies returns the meeting keys of known copies on a calendar, by
// event id: a minimal cancellation names only its event.
func (s *Store) KeysOfCopies(ctx context.Context, calID string, eventIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(eventIDs) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT c.event_id, m.meeting_key FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE c.calendar_id = $1 AND c.event_id = ANY($2)`, calID, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("find copies: %w", err)
	}
	var id, key string
	if _, err := pgx.ForEachRow(rows, []any{&id, &key}, func() error { out[id] = key; return nil }); err != nil {
		return nil, fmt.Errorf("find copies: %w", err)
	}
	return out, nil
}

// LiveCopy is a copy the ledger holds as not cancelled, with its meeting's
// start.
type LiveCopy struct {
	EventID  string
	StartsAt *time.Time
}

// LiveCopies lists a calendar's copies that are not cancelled.
func (s *Store) LiveCopies(ctx context.Context, calID string) ([]LiveCopy, error) {
	rows, err := s.db.Query(ctx, `SELECT c.event_id, m.starts_at FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE c.calendar_id = $1 AND c.status <> 'cancelled'`, calID)
	if err != nil {
		return nil, fmt.Errorf("list copies: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LiveCopy])
	if err != nil {
		return nil, fmt.Errorf("list copies: %w", err)
	}
	return out, nil
}

// LockMeetings inserts placeholder rows for keys not yet in the ledger and
// locks all of them, in key order so that concurrent syncs never deadlock.
func (t *Tx) LockMeetings(ctx context.Context, ws string, keys []string, version string) (map[string]plan.Meeting, error) {
	_, err := t.tx.Exec(ctx, `INSERT INTO meetings (workspace_id, meeting_key, state, action, rule, rules_version)
		SELECT $1, k, 'skipped', 'skip', '', $3 FROM unnest($2::text[]) AS k ORDER BY k
		ON CONFLICT (workspace_id, meeting_key) DO NOTHING`, ws, keys, version)
	if err != nil {
		return nil, fmt.Errorf("insert ledger rows: %w", err)
	}
	m, err := collectMeetings(t.tx.Query(ctx, meetingSelect+` WHERE workspace_id = $1 AND meeting_key = ANY($2) ORDER BY meeting_key FOR UPDATE`, ws, keys))
	if err != nil {
		return nil, fmt.Errorf("lock ledger rows: %w", err)
	}
	return m, nil
}

// LockExisting locks the ledger rows of keys that exist, in key order.
func (t *Tx) LockExisting(ctx context.Context, ws string, keys []string) (map[string]plan.Meeting, error) {
	m, err := collectMeetings(t.tx.Query(ctx, meetingSelect+` WHERE workspace_id = $1 AND meeting_key = ANY($2) ORDER BY meeting_key FOR UPDATE`, ws, keys))
	if err != nil {
		return nil, fmt.Errorf("lock ledger: %w", err)
	}
	return m, nil
}

// Copies reads the copies of meetings, by meeting id.
func (t *Tx) Copies(ctx context.Context, meetingIDs []int64) (map[int64][]plan.Copy, error) {
	return readCopies(ctx, t.tx, meetingIDs)
}

func readCopies(ctx context.Context, q querier, meetingIDs []int64) (map[int64][]plan.Copy, error) {
	rows, err := q.Query(ctx, `SELECT meeting_id, calendar_id, event_id, status, organizer_copy, action, rule, coalesce(etag, ''), coalesce(linked_crm_id, ''), rescheduled,
		booking, coalesce(external_event_id, ''), coalesce(match_hash, '')
		FROM meeting_copies WHERE meeting_id = ANY($1)`, meetingIDs)
	if err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	out := map[int64][]plan.Copy{}
	var mid int64
	var c plan.Copy
	_, err = pgx.ForEachRow(rows, []any{&mid, &c.CalendarID, &c.EventID, &c.Status, &c.Organizer, &c.Action, &c.Rule, &c.ETag, &c.LinkedCRMID, &c.Rescheduled,
		&c.Booking, &c.ExternalEventID, &c.MatchHash}, func() error {
		out[mid] = append(out[mid], c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	return out, nil
}

// Decision is what one event's plan records: its copy and its meeting.
type Decision struct {
	MeetingID int64
	Copy      plan.Copy
	Meeting   plan.Meeting
	// RecordDecision replaces the stored rule and trace with Trace.
	RecordDecision bool
	Trace          any
	RulesVersion   string
	StartsAt       *time.Time
}

// RecordDecisions stores the decisions of one page in its transaction.
func (t *Tx) RecordDecisions(ctx context.Context, ds []Decision, now time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, d := range ds {
		c := d.Copy
		b.Queue(`INSERT INTO meeting_copies (calendar_id, event_id, meeting_id, status, organizer_copy, action, rule, etag, linked_crm_id, rescheduled,
				booking, external_event_id, match_hash, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, ''), $10, $11, nullif($12, ''), nullif($13, ''), $14)
			ON CONFLICT (calendar_id, event_id) DO UPDATE SET meeting_id = EXCLUDED.meeting_id, status = EXCLUDED.status,
				organizer_copy = EXCLUDED.organizer_copy, action = EXCLUDED.action, rule = EXCLUDED.rule,
				etag = coalesce(EXCLUDED.etag, meeting_copies.etag), linked_crm_id = coalesce(EXCLUDED.linked_crm_id, meeting_copies.linked_crm_id),
				rescheduled = EXCLUDED.rescheduled, booking = EXCLUDED.booking,
				external_event_id = coalesce(EXCLUDED.external_event_id, meeting_copies.external_event_id),
				match_hash = coalesce(EXCLUDED.match_hash, meeting_copies.match_hash), updated_at = EXCLUDED.updated_at`,
			c.CalendarID, c.EventID, d.MeetingID, c.Status, c.Organizer, c.Action, c.Rule, nullString(c.ETag), c.LinkedCRMID, c.Rescheduled,
			c.Booking, c.ExternalEventID, c.MatchHash, now)
		var trace []byte
		if d.RecordDecision {
			trace, _ = json.Marshal(d.Trace)
		}
		m := d.Meeting
		b.Queue(`UPDATE meetings SET state = $2, action = $3,
				rule = CASE WHEN $4 THEN $5 ELSE rule END, rules_version = $6,
				trace = CASE WHEN $4 THEN $7::jsonb ELSE trace END,
				desired_hash = nullif($8, ''), starts_at = coalesce($9, starts_at), decided_at = $10,
				-- A decision that changes nothing (a re-read) does not move the
				-- row: a create of unknown outcome keeps its search lag, the
				-- sweep its grace.
				updated_at = CASE WHEN state = $2 AND desired_hash IS NOT DISTINCT FROM nullif($8, '') THEN updated_at ELSE $10 END
			WHERE id = $1`,
			d.MeetingID, m.State, m.Action, d.RecordDecision, m.Rule, d.RulesVersion, trace, m.DesiredHash, d.StartsAt, now)
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record decisions: %w", err)
	}
	return nil
}

// MarkCreating marks meetings whose create is about to be sent, with the
// attempt's id.
func (t *Tx) MarkCreating(ctx context.Context, ids []int64, attempt string, now time.Time) error {
	if _, err := t.tx.Exec(ctx, `UPDATE meetings SET state = 'creating', attempt_id = $2, attempts = attempts + 1, updated_at = $3 WHERE id = ANY($1)`, ids, attempt, now); err != nil {
		return fmt.Errorf("mark creating: %w", err)
	}
	return nil
}

// Written is one meeting write's recorded outcome.
type Written struct {
	MeetingID  int64
	CRMID      string
	Hash       string
	CompanyIDs []string
	ContactIDs []string
	Cancelled  bool
}

// Failure is one meeting write's failure.
type Failure struct {
	MeetingID int64
	Reason    string
	// Permanent parks the meeting in state failed; otherwise a meeting
	// never created goes back to pending for the retry.
	Permanent bool
}

// WriteOutcome is what a write batch records.
type WriteOutcome struct {
	Written []Written
	Failed  []Failure
	// Deleted are meetings a person deleted in the CRM.
	Deleted []int64
	// Adopted maps meetings to the existing CRM records found for them.
	Adopted map[int64]string
}

// RecordWrites stores the outcome of a write batch.
func (s *Store) RecordWrites(ctx context.Context, o WriteOutcome, now time.Time) error {
	b := &pgx.Batch{}
	queueHistory(b, o, now) // the console's write history (console.go)
	for id, crmID := range o.Adopted {
		b.Queue(`UPDATE meetings SET crm_meeting_id = $2, state = 'logged', attempt_id = NULL, owned_hash = NULL, adopted = true, updated_at = $3 WHERE id = $1`, id, crmID, now)
	}
	for _, w := range o.Written {
		b.Queue(`UPDATE meetings SET crm_meeting_id = $2, state = CASE WHEN $6 THEN 'cancelled' ELSE 'logged' END, owned_hash = $3,
				company_ids = coalesce($4::text[], '{}'), contact_ids = coalesce($5::text[], '{}'), attempt_id = NULL, attempts = 0, last_error = NULL, written_at = $7, updated_at = $7
			WHERE id = $1`, w.MeetingID, w.CRMID, w.Hash, w.CompanyIDs, w.ContactIDs, w.Cancelled, now)
	}
	for _, f := range o.Failed {
		// A refused update parks its meeting too: otherwise the sweep would
		// find its write owed and send it again forever.
		b.Queue(`UPDATE meetings SET state = CASE WHEN $4 THEN 'failed' WHEN crm_meeting_id IS NULL THEN 'pending' ELSE state END,
				attempt_id = NULL, last_error = $2, updated_at = $3 WHERE id = $1`,
			f.MeetingID, Truncate(f.Reason, 500), now, f.Permanent)
	}
	for _, id := range o.Deleted {
		b.Queue(`UPDATE meetings SET state = 'deleted_in_crm', last_error = 'deleted in the CRM', updated_at = $2 WHERE id = $1`, id, now)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record writes: %w", err)
	}
	return nil
}

// MarkDeletedInCRM marks meetings a person deleted in the CRM, by key.
func (s *Store) MarkDeletedInCRM(ctx context.Context, ws string, keys []string, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE meetings SET state = 'deleted_in_crm', last_error = 'deleted in the CRM', updated_at = $3 WHERE workspace_id = $1 AND meeting_key = ANY($2)`,
		ws, keys, now)
	return err
}

// ForgetWritten forgets the hash last written of a meeting whose CRM
// record drifted, so the next write goes through.
func (s *Store) ForgetWritten(ctx context.Context, ws, key, desiredHash string) error {
	_, err := s.db.Exec(ctx, `UPDATE meetings SET owned_hash = NULL, desired_hash = $3 WHERE workspace_id = $1 AND meeting_key = $2`, ws, key, desiredHash)
	return err
}

// Link is one copy's write-back of its meeting's CRM id.
type Link struct {
	EventID string `json:"event_id"`
	Key     string `json:"key"`
	CRMID   string `json:"crm_id"`
}

// CopiesToLink lists, by calendar, the live copies of meetings whose
// written-back id differs from their meeting's CRM id.
func (s *Store) CopiesToLink(ctx context.Context, meetingIDs []int64) (map[string][]Link, error) {
	rows, err := s.db.Query(ctx, `SELECT c.calendar_id, c.event_id, m.meeting_key, m.crm_meeting_id FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE c.meeting_id = ANY($1) AND c.status <> 'cancelled' AND m.crm_meeting_id IS NOT NULL AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id`, meetingIDs)
	if err != nil {
		return nil, fmt.Errorf("find copies to link: %w", err)
	}
	links := map[string][]Link{}
	var calID string
	var l Link
	if _, err := pgx.ForEachRow(rows, []any{&calID, &l.EventID, &l.Key, &l.CRMID}, func() error {
		links[calID] = append(links[calID], l)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("find copies to link: %w", err)
	}
	return links, nil
}

// LinkedIDs returns the CRM ids written back into copies on a calendar, by
// event id.
func (s *Store) LinkedIDs(ctx context.Context, calID string, eventIDs []string) (map[string]string, error) {
	rows, err := s.db.Query(ctx, `SELECT event_id, coalesce(linked_crm_id, '') FROM meeting_copies WHERE calendar_id = $1 AND event_id = ANY($2)`, calID, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	linked := map[string]string{}
	var id, crmID string
	if _, err := pgx.ForEachRow(rows, []any{&id, &crmID}, func() error { linked[id] = crmID; return nil }); err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	return linked, nil
}

// RecordLinks records copies whose CRM id was written back.
func (s *Store) RecordLinks(ctx context.Context, calID string, links []Link) error {
	if len(links) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, l := range links {
		b.Queue(`UPDATE meeting_copies SET linked_crm_id = $3 WHERE calendar_id = $1 AND event_id = $2`, calID, l.EventID, l.CRMID)
	}
	return s.db.SendBatch(ctx, b).Close()
}

// MeetingEntry is one row of the ledger, as the admin API shows it.
type MeetingEntry struct {
	Key          string    `json:"meeting_key"`
	State        string    `json:"state"`
	CRMMeetingID string    `json:"crm_meeting_id,omitempty"`
	Rule         string    `json:"rule"`
	RulesVersion string    `json:"rules_version"`
	DecidedAt    time.Time `json:"decided_at"`
	LastError    string    `json:"last_error,omitempty"`
}

// MeetingDetail is a ledger entry with its decision trace and copies.
type MeetingDetail struct {
	MeetingEntry
	Trace  json.RawMessage `json:"trace"`
	Copies []MeetingCopy   `json:"copies"`
}

// MeetingCopy is one calendar's copy of a meeting.
type MeetingCopy struct {
	CalendarID  string `json:"calendar_id"`
	EventID     string `json:"event_id"`
	Status      string `json:"status"`
	Organizer   bool   `json:"organizer_copy"`
	Action      string `json:"action"`
	Rule        string `json:"rule"`
	LinkWritten bool   `json:"link_written"`
}

// Meetings lists a workspace's decided meetings in id order after the
// cursor id, limit+1 of them (the extra one says more follow).
func (s *Store) Meetings(ctx context.Context, ws, state string, after int64, limit int) ([]MeetingEntry, []int64, error) {
	rows, err := s.db.Query(ctx, `SELECT id, meeting_key, state, coalesce(crm_meeting_id, ''), rule, rules_version, decided_at, coalesce(last_error, '')
		FROM meetings WHERE workspace_id = $1 AND ($2 = '' OR state = $2) AND id > $3 AND rule <> '' ORDER BY id LIMIT $4`, ws, state, after, limit+1)
	if err != nil {
		return nil, nil, fmt.Errorf("list meetings: %w", err)
	}
	var out []MeetingEntry
	var idList []int64
	var id int64
	var e MeetingEntry
	if _, err := pgx.ForEachRow(rows, []any{&id, &e.Key, &e.State, &e.CRMMeetingID, &e.Rule, &e.RulesVersion, &e.DecidedAt, &e.LastError}, func() error {
		out = append(out, e)
		idList = append(idList, id)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list meetings: %w", err)
	}
	return out, idList, nil
}

// Meeting returns one ledger entry with its decision trace and copies.
func (s *Store) Meeting(ctx context.Context, ws, key string) (MeetingDetail, error) {
	var d MeetingDetail
	var id int64
	err := s.db.QueryRow(ctx, `SELECT id, meeting_key, state, coalesce(crm_meeting_id, ''), rule, rules_version, decided_at, coalesce(last_error, ''), trace
		FROM meetings WHERE workspace_id::text = $1 AND meeting_key = $2`, ws, key).
		Scan(&id, &d.Key, &d.State, &d.CRMMeetingID, &d.Rule, &d.RulesVersion, &d.DecidedAt, &d.LastError, &d.Trace)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return d, fmt.Errorf("meeting %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("read meeting: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT calendar_id::text, event_id, status, organizer_copy, action, rule, linked_crm_id IS NOT NULL FROM meeting_copies WHERE meeting_id = $1 ORDER BY calendar_id, event_id`, id)
	if err != nil {
		return d, fmt.Errorf("read copies: %w", err)
	}
	d.Copies, err = pgx.CollectRows(rows, pgx.RowToStructByPos[MeetingCopy])
	if d.Copies == nil {
		d.Copies = []MeetingCopy{}
	}
	return d, err
}
