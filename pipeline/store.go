package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// calRow is a calendar with what a sync needs of its connection and
// workspace.
type calRow struct {
	ID, WorkspaceID, ConnectionID, CalendarID string
	Cursor                                    string
	Dirty                                     int64
	Status                                    string
	Owner                                     string // the connection's account e-mail
	ConnStatus                                string
	WorkspaceName                             string
	Internal                                  []string
	ChannelID, ChannelResourceID              string
	ChannelExpiresAt                          *time.Time
}

const calSelect = `SELECT c.id, c.workspace_id, c.connection_id, c.calendar_id, coalesce(c.cursor, ''), c.dirty, c.status,
	k.account, k.status, w.name, w.internal_domains, coalesce(c.channel_id, ''), coalesce(c.channel_resource_id, ''), c.channel_expires_at
	FROM calendars c JOIN connections k ON k.id = c.connection_id JOIN workspaces w ON w.id = c.workspace_id`

func scanCal(row pgx.Row) (calRow, error) {
	var c calRow
	err := row.Scan(&c.ID, &c.WorkspaceID, &c.ConnectionID, &c.CalendarID, &c.Cursor, &c.Dirty, &c.Status,
		&c.Owner, &c.ConnStatus, &c.WorkspaceName, &c.Internal, &c.ChannelID, &c.ChannelResourceID, &c.ChannelExpiresAt)
	return c, err
}

func (p *Pipeline) calendarRow(ctx context.Context, id string) (calRow, error) {
	c, err := scanCal(p.db.QueryRow(ctx, calSelect+` WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("calendar %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read calendar %s: %w", id, err)
	}
	return c, nil
}

// markDirty records that a calendar changed and queues its sync. The
// counter it bumps names the sync task, so no notification is ever folded
// into a task that already ran its last check; a running sync sees the
// counter move and goes round again, and the tasks it covered find nothing
// to do.
func (p *Pipeline) markDirty(ctx context.Context, calID string, full bool, seenAt time.Time) error {
	var dirty int64
	err := p.db.QueryRow(ctx, `UPDATE calendars SET dirty = dirty + 1 WHERE id = $1 RETURNING dirty`, calID).Scan(&dirty)
	if err != nil {
		return fmt.Errorf("mark calendar %s dirty: %w", calID, err)
	}
	if !full {
		// A sync of this calendar that has not taken the calendar's lease
		// yet reads the counter after taking it, so it covers this change:
		// a burst of notifications (the echoes of write-backs) queues one
		// task, not one each.
		queued, err := p.rdb.SetNX(ctx, syncQueuedKey(calID), dirty, time.Minute).Result()
		if err != nil {
			return fmt.Errorf("mark calendar %s queued: %w", calID, err)
		}
		if !queued {
			return nil
		}
	}
	return p.enqueueSync(ctx, calID, dirty, full, seenAt)
}

// syncQueuedKey marks a calendar whose queued sync has not started.
func syncQueuedKey(calID string) string { return "rapport:syncqueued:" + calID }

// connRow is a CRM connection.
type connRow struct {
	ID, Account, Status string
	UniqueKey           bool
}

// crmConnection returns the workspace's CRM connection.
func (p *Pipeline) crmConnection(ctx context.Context, ws string) (connRow, error) {
	var c connRow
	var unique *bool
	err := p.db.QueryRow(ctx, `SELECT id, account, status, crm_unique_key FROM connections
		WHERE workspace_id = $1 AND provider = 'hubspot' AND status <> 'revoked' ORDER BY (status = 'active') DESC, created_at DESC LIMIT 1`, ws).
		Scan(&c.ID, &c.Account, &c.Status, &unique)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("workspace %s has no HubSpot connection: %w", ws, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read CRM connection: %w", err)
	}
	c.UniqueKey = unique != nil && *unique
	return c, nil
}

// ledgerRow is one meetings row.
type ledgerRow struct {
	ID          int64
	Key         string
	State       string
	Action      string
	Rule        string
	CRMID       string
	OwnedHash   string
	DesiredHash string
	CompanyIDs  []string
	ContactIDs  []string
	AttemptID   *string
	UpdatedAt   time.Time
}

const ledgerSelect = `SELECT id, meeting_key, state, action, rule, coalesce(crm_meeting_id, ''), coalesce(owned_hash, ''), coalesce(desired_hash, ''),
	company_ids, contact_ids, attempt_id::text, updated_at FROM meetings`

func scanLedger(rows pgx.Rows) (ledgerRow, error) {
	var r ledgerRow
	err := rows.Scan(&r.ID, &r.Key, &r.State, &r.Action, &r.Rule, &r.CRMID, &r.OwnedHash, &r.DesiredHash, &r.CompanyIDs, &r.ContactIDs, &r.AttemptID, &r.UpdatedAt)
	return r, err
}

// lockLedger inserts placeholder rows for keys not yet in the ledger and
// locks all of them, in key order so concurrent syncs never deadlock.
func lockLedger(ctx context.Context, tx pgx.Tx, ws string, keys []string, version string) (map[string]ledgerRow, error) {
	_, err := tx.Exec(ctx, `INSERT INTO meetings (workspace_id, meeting_key, state, action, rule, rules_version)
		SELECT $1, k, 'skipped', 'skip', '', $3 FROM unnest($2::text[]) AS k ORDER BY k
		ON CONFLICT (workspace_id, meeting_key) DO NOTHING`, ws, keys, version)
	if err != nil {
		return nil, fmt.Errorf("insert ledger rows: %w", err)
	}
	rows, err := tx.Query(ctx, ledgerSelect+` WHERE workspace_id = $1 AND meeting_key = ANY($2) ORDER BY meeting_key FOR UPDATE`, ws, keys)
	if err != nil {
		return nil, fmt.Errorf("lock ledger rows: %w", err)
	}
	m := make(map[string]ledgerRow, len(keys))
	defer rows.Close()
	for rows.Next() {
		r, err := scanLedger(rows)
		if err != nil {
			return nil, fmt.Errorf("read ledger rows: %w", err)
		}
		m[r.Key] = r
	}
	return m, rows.Err()
}
