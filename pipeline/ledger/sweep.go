package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file holds the sweep's queries: each kind of pending work is one
// query on a partial index of migration 00006, so that everything the
// queue should be doing can be derived from the ledger alone.

// Unwritten is a meeting whose CRM write is owed, with one copy to re-read
// it from: the ledger keeps no content, so the write is recovered by
// deciding the event again.
type Unwritten struct {
	ID                      int64
	WorkspaceID, Key, State string
	DesiredHash, CRMID      string
	CalendarID, EventID     string // empty when no copy can be read
	CopyCancelled           bool
}

// Unwritten lists up to limit meetings whose CRM write is owed and that
// have not moved since before: to create (pending), of unknown outcome
// (creating), to update or cancel (the calendar's state differs from the
// one written). Only meetings of workspaces with an active CRM connection
// count: the others are parked until it is re-authorised. Each comes with
// one copy on a calendar of an active connection, a live one and the
// organizer's first.
func (s *Store) Unwritten(ctx context.Context, before time.Time, limit int) ([]Unwritten, error) {
	rows, err := s.db.Query(ctx, `SELECT m.id, m.workspace_id::text, m.meeting_key, m.state, coalesce(m.desired_hash, ''), coalesce(m.crm_meeting_id, ''),
			coalesce(c.calendar_id::text, ''), coalesce(c.event_id, ''), coalesce(c.status = 'cancelled', false)
		FROM meetings m
		LEFT JOIN LATERAL (
			SELECT c.calendar_id, c.event_id, c.status FROM meeting_copies c
			JOIN calendars cal ON cal.id = c.calendar_id JOIN connections k ON k.id = cal.connection_id
			WHERE c.meeting_id = m.id AND k.status = 'active' AND cal.status NOT IN ('paused', 'gone')
			ORDER BY (c.status <> 'cancelled') DESC, c.organizer_copy DESC, c.updated_at DESC LIMIT 1) c ON true
		WHERE (m.state IN ('pending', 'creating') OR (m.state IN ('logged', 'cancelled') AND m.desired_hash IS DISTINCT FROM m.owned_hash))
			AND m.updated_at < $1 AND m.desired_hash IS NOT NULL
			AND EXISTS (SELECT 1 FROM connections k WHERE k.workspace_id = m.workspace_id AND k.provider = ANY($3) AND k.status = 'active')
		ORDER BY m.updated_at LIMIT $2`, before, limit, s.crms)
	if err != nil {
		return nil, fmt.Errorf("find unwritten meetings: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Unwritten])
	if err != nil {
		return nil, fmt.Errorf("find unwritten meetings: %w", err)
	}
	return out, nil
}

// Unlinked lists, by calendar, up to limit live copies whose meeting was
// written to the CRM between since and before but that do not carry its id
// yet. A copy older than since is linked by the next sync that sees its
// event, or by the periodic reconciliation's full listing; copies of
// calendars whose connection is not active wait for it.
func (s *Store) Unlinked(ctx context.Context, since, before time.Time, limit int) (map[string][]Link, error) {
	rows, err := s.db.Query(ctx, `SELECT c.calendar_id::text, c.event_id, m.meeting_key, m.crm_meeting_id
		FROM meetings m JOIN meeting_copies c ON c.meeting_id = m.id
		JOIN calendars cal ON cal.id = c.calendar_id JOIN connections k ON k.id = cal.connection_id
		WHERE m.crm_meeting_id IS NOT NULL AND m.written_at >= $1 AND m.written_at < $2 AND m.state = 'logged'
			AND c.status <> 'cancelled' AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id AND c.updated_at < $2
			AND k.status = 'active' AND cal.status NOT IN ('paused', 'gone')
		ORDER BY c.calendar_id, c.event_id LIMIT $3`, since, before, limit)
	if err != nil {
		return nil, fmt.Errorf("find unlinked copies: %w", err)
	}
	links := map[string][]Link{}
	var calID string
	var l Link
	if _, err := pgx.ForEachRow(rows, []any{&calID, &l.EventID, &l.Key, &l.CRMID}, func() error {
		links[calID] = append(links[calID], l)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("find unlinked copies: %w", err)
	}
	return links, nil
}

// Unsynced is a calendar with notifications no finished sync covered, or
// one never synced.
type Unsynced struct {
	ID          string
	Dirty       int64
	NeverSynced bool
}

// Unsynced lists up to limit calendars of active connections that are
// dirty (or were never synced) and have not been marked dirty for grace.
func (s *Store) Unsynced(ctx context.Context, grace time.Duration, limit int) ([]Unsynced, error) {
	rows, err := s.db.Query(ctx, `SELECT c.id::text, c.dirty, c.last_synced_at IS NULL FROM calendars c JOIN connections k ON k.id = c.connection_id
		WHERE (c.dirty > c.synced_dirty OR c.last_synced_at IS NULL) AND coalesce(c.dirty_at, c.created_at) < now() - make_interval(secs => $1)
			AND k.status = 'active' AND c.status NOT IN ('paused', 'gone')
		ORDER BY c.dirty_at NULLS FIRST LIMIT $2`, grace.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("find unsynced calendars: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Unsynced])
	if err != nil {
		return nil, fmt.Errorf("find unsynced calendars: %w", err)
	}
	return out, nil
}

// ExpiringChannels counts the open push channels of active connections'
// calendars that expire before t.
func (s *Store) ExpiringChannels(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM calendars c JOIN connections k ON k.id = c.connection_id
		WHERE c.channel_id IS NOT NULL AND c.channel_expires_at < $1 AND k.status = 'active' AND c.status NOT IN ('paused', 'gone')`, before).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count expiring channels: %w", err)
	}
	return n, nil
}

// CopyRef names one copy of a meeting.
type CopyRef struct {
	MeetingKey, CalendarID, EventID string
}

// ReleaseMeetings makes parked (failed) meetings of a workspace writable
// again, with a fresh attempt budget: back to pending, to logged when the
// CRM holds them, or to creating when a create of unknown outcome was sent
// (so that it is searched for before it is sent again). It returns one
// live copy of each meeting to re-read it from.
func (s *Store) ReleaseMeetings(ctx context.Context, ws string, keys []string, now time.Time) ([]CopyRef, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `UPDATE meetings SET state = CASE WHEN crm_meeting_id IS NOT NULL THEN 'logged' WHEN attempt_id IS NOT NULL THEN 'creating' ELSE 'pending' END,
			attempts = 0, last_error = NULL, updated_at = $3
		WHERE workspace_id::text = $1 AND meeting_key = ANY($2) AND state = 'failed'`, ws, keys, now); err != nil {
		return nil, fmt.Errorf("release meetings: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE meetings SET attempts = 0, last_error = NULL WHERE workspace_id::text = $1 AND meeting_key = ANY($2)`, ws, keys); err != nil {
		return nil, fmt.Errorf("release meetings: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT ON (m.id) m.meeting_key, c.calendar_id::text, c.event_id
		FROM meetings m JOIN meeting_copies c ON c.meeting_id = m.id
		JOIN calendars cal ON cal.id = c.calendar_id JOIN connections k ON k.id = cal.connection_id
		WHERE m.workspace_id::text = $1 AND m.meeting_key = ANY($2) AND k.status = 'active' AND cal.status NOT IN ('paused', 'gone')
		ORDER BY m.id, (c.status <> 'cancelled') DESC, c.organizer_copy DESC`, ws, keys)
	if err != nil {
		return nil, fmt.Errorf("find copies: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[CopyRef])
	if err != nil {
		return nil, fmt.Errorf("find copies: %w", err)
	}
	return refs, tx.Commit(ctx)
}

// CountAttempts counts one more write attempt of meetings (creates count
// theirs in MarkCreating).
func (t *Tx) CountAttempts(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := t.tx.Exec(ctx, `UPDATE meetings SET attempts = attempts + 1 WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("count attempts: %w", err)
	}
	return nil
}

// Park parks meetings that used up their write attempts in state failed,
// and returns the last error each met, for its dead letter (recorded by the
// caller). A create of unknown outcome keeps its attempt id, so that a
// retry searches before creating.
func (t *Tx) Park(ctx context.Context, ids []int64, now time.Time) (map[int64]string, error) {
	out := map[int64]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := t.tx.Query(ctx, `UPDATE meetings SET state = 'failed', updated_at = $2 WHERE id = ANY($1) RETURNING id, coalesce(last_error, '')`, ids, now)
	if err != nil {
		return nil, fmt.Errorf("park meetings: %w", err)
	}
	var id int64
	var msg string
	if _, err := pgx.ForEachRow(rows, []any{&id, &msg}, func() error { out[id] = msg; return nil }); err != nil {
		return nil, fmt.Errorf("park meetings: %w", err)
	}
	return out, nil
}

// RecordAttemptError stores why a write attempt of meetings failed as a
// whole (the CRM call failed), for those still owed a write: their dead
// letter says it if the attempts run out.
func (s *Store) RecordAttemptError(ctx context.Context, ids []int64, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.db.Exec(ctx, `UPDATE meetings SET last_error = $2 WHERE id = ANY($1) AND (crm_meeting_id IS NULL OR desired_hash IS DISTINCT FROM owned_hash)`,
		ids, Truncate(reason, 500))
	if err != nil {
		return fmt.Errorf("record attempt error: %w", err)
	}
	return nil
}

// Owed counts what a workspace still owes, whatever the queue holds: CRM
// writes (to create, of unknown outcome, to update or cancel), live copies
// of logged meetings without their CRM id, calendars with notifications no
// finished sync covered or never synced, and meetings parked as failed.
type Owed struct {
	Writes, Links, Calendars, Failed int
}

// Zero reports whether nothing is owed.
func (o Owed) Zero() bool { return o == Owed{} }

// Owed reads what a workspace owes.
func (s *Store) Owed(ctx context.Context, ws string) (Owed, error) {
	var o Owed
	err := s.db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM meetings WHERE workspace_id::text = $1
			AND (state IN ('pending', 'creating') OR (state IN ('logged', 'cancelled') AND desired_hash IS DISTINCT FROM owned_hash))),
		(SELECT count(*) FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id WHERE m.workspace_id::text = $1
			AND m.state = 'logged' AND c.status <> 'cancelled' AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id),
		(SELECT count(*) FROM calendars WHERE workspace_id::text = $1 AND status NOT IN ('paused', 'gone')
			AND (dirty > synced_dirty OR last_synced_at IS NULL)),
		(SELECT count(*) FROM meetings WHERE workspace_id::text = $1 AND state = 'failed')`, ws).
		Scan(&o.Writes, &o.Links, &o.Calendars, &o.Failed)
	if err != nil {
		return o, fmt.Errorf("count owed work: %w", err)
	}
	return o, nil
}
