package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/pipeline/plan"
)

// Calendar is a calendar with what a sync needs of its connection and
// workspace.
type Calendar struct {
	ID, WorkspaceID, ConnectionID, CalendarID string
	// Provider is the connection's provider ("google", "microsoft", …).
	Provider      string
	Cursor        string
	Dirty         int64
	Status        plan.CalendarStatus
	Owner         string // the connection's account
	ConnStatus    plan.ConnStatus
	WorkspaceName string
	Internal      []string
	// The push channel, when one is open.
	ChannelID, ChannelResourceID string
	ChannelExpiresAt             *time.Time
}

const calSelect = `SELECT c.id, c.workspace_id, c.connection_id, c.calendar_id, k.provider, coalesce(c.cursor, ''), c.dirty, c.status,
	k.account, k.status, w.name, w.internal_domains, coalesce(c.channel_id, ''), coalesce(c.channel_resource_id, ''), c.channel_expires_at
	FROM calendars c JOIN connections k ON k.id = c.connection_id JOIN workspaces w ON w.id = c.workspace_id`

func scanCal(row pgx.Row) (Calendar, error) {
	var c Calendar
	err := row.Scan(&c.ID, &c.WorkspaceID, &c.ConnectionID, &c.CalendarID, &c.Provider, &c.Cursor, &c.Dirty, &c.Status,
		&c.Owner, &c.ConnStatus, &c.WorkspaceName, &c.Internal, &c.ChannelID, &c.ChannelResourceID, &c.ChannelExpiresAt)
	return c, err
}

// Calendar reads one calendar.
func (s *Store) Calendar(ctx context.Context, id string) (Calendar, error) {
	c, err := scanCal(s.db.QueryRow(ctx, calSelect+` WHERE c.id::text = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return c, fmt.Errorf("calendar %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read calendar %s: %w", id, err)
	}
	return c, nil
}

// CalendarStatus is one calendar's sync status, as the admin API shows it.
type CalendarStatus struct {
	ID               string     `json:"id"`
	ConnectionID     string     `json:"connection_id"`
	CalendarID       string     `json:"calendar_id"`
	Status           string     `json:"status"`
	LastSyncedAt     *time.Time `json:"last_synced_at"`
	ChannelExpiresAt *time.Time `json:"channel_expires_at"`
	LastError        string     `json:"last_error"`
}

// Calendars lists a workspace's calendars with their sync status.
func (s *Store) Calendars(ctx context.Context, ws string) ([]CalendarStatus, error) {
	rows, err := s.db.Query(ctx, `SELECT id, connection_id, calendar_id, status, last_synced_at, channel_expires_at, coalesce(last_error, '')
		FROM calendars WHERE workspace_id = $1 ORDER BY created_at, id`, ws)
	if err != nil {
		return nil, fmt.Errorf("list calendars: %w", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[CalendarStatus])
	if cs == nil {
		cs = []CalendarStatus{}
	}
	return cs, err
}

// CalendarInWorkspace reports whether calendar id belongs to workspace ws.
func (s *Store) CalendarInWorkspace(ctx context.Context, ws, id string) (bool, error) {
	var found bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM calendars WHERE id::text = $1 AND workspace_id::text = $2)`, id, ws).Scan(&found)
	return found, err
}

// RegisterCalendar adds a connection's calendar, or makes a known one
// active again (a re-import resumes a vanished calendar), and returns its
// row id.
func (s *Store) RegisterCalendar(ctx context.Context, ws, connID, calendarID string) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, `INSERT INTO calendars (workspace_id, connection_id, calendar_id) VALUES ($1, $2, $3)
		ON CONFLICT (connection_id, calendar_id) DO UPDATE SET status = 'active' RETURNING id`, ws, connID, calendarID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("register calendar: %w", err)
	}
	return id, nil
}

// RegisterCalendars adds a connection's calendars in one statement, or
// makes known ones active again, inside the transaction that stores the
// connection: an import registers all of its calendars or none. It returns
// the row ids in the order of calendarIDs (which must be distinct).
func (t *Tx) RegisterCalendars(ctx context.Context, ws, connID string, calendarIDs []string) ([]string, error) {
	rows, err := t.tx.Query(ctx, `WITH registered AS (
		INSERT INTO calendars (workspace_id, connection_id, calendar_id) SELECT $1, $2, unnest($3::text[])
		ON CONFLICT (connection_id, calendar_id) DO UPDATE SET status = 'active' RETURNING id::text, calendar_id)
		SELECT r.id FROM registered r JOIN unnest($3::text[]) WITH ORDINALITY AS want(calendar_id, n) ON want.calendar_id = r.calendar_id ORDER BY want.n`,
		ws, connID, calendarIDs)
	if err != nil {
		return nil, fmt.Errorf("register calendars: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("register calendars: %w", err)
	}
	return out, nil
}

// CalendarFilter narrows a list of calendars to sync.
type CalendarFilter struct {
	WorkspaceID  string
	ConnectionID string
	// All includes calendars of connections that are not active.
	All bool
}

// SyncableCalendars lists the ids of calendars that sync: of active
// connections, neither paused nor gone.
func (s *Store) SyncableCalendars(ctx context.Context, f CalendarFilter) ([]string, error) {
	return ids(ctx, s.db, `SELECT c.id::text FROM calendars c JOIN connections k ON k.id = c.connection_id
		WHERE ($3 OR k.status = 'active') AND c.status NOT IN ('paused', 'gone')
		AND ($1 = '' OR c.workspace_id::text = $1) AND ($2 = '' OR c.connection_id::text = $2) ORDER BY c.id`,
		f.WorkspaceID, f.ConnectionID, f.All)
}

// CalendarWorkspaces lists the workspaces that have calendars.
func (s *Store) CalendarWorkspaces(ctx context.Context) ([]string, error) {
	return ids(ctx, s.db, `SELECT DISTINCT workspace_id::text FROM calendars`)
}

// MarkDirty bumps a calendar's dirty counter and returns it.
func (s *Store) MarkDirty(ctx context.Context, id string) (int64, error) {
	var dirty int64
	err := s.db.QueryRow(ctx, `UPDATE calendars SET dirty = dirty + 1, dirty_at = now() WHERE id = $1 RETURNING dirty`, id).Scan(&dirty)
	if err != nil {
		return 0, fmt.Errorf("mark calendar %s dirty: %w", id, err)
	}
	return dirty, nil
}

// SyncState is where a calendar's sync stands.
type SyncState struct {
	Dirty, SyncedDirty int64
	Cursor             string
}

// SyncState reads a calendar's dirty counters and cursor.
func (s *Store) SyncState(ctx context.Context, id string) (SyncState, error) {
	var st SyncState
	err := s.db.QueryRow(ctx, `SELECT dirty, synced_dirty, coalesce(cursor, '') FROM calendars WHERE id = $1`, id).Scan(&st.Dirty, &st.SyncedDirty, &st.Cursor)
	if err != nil {
		return st, fmt.Errorf("read calendar %s: %w", id, err)
	}
	return st, nil
}

// FinishSync records a finished sync that covered the dirty counter up to
// dirty.
func (s *Store) FinishSync(ctx context.Context, id string, dirty int64, started time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE calendars SET synced_dirty = greatest(synced_dirty, $2), last_synced_at = $3, last_error = NULL,
		status = CASE WHEN status = 'error' THEN 'active' ELSE status END WHERE id = $1`, id, dirty, started)
	if err != nil {
		return fmt.Errorf("finish sync of %s: %w", id, err)
	}
	return nil
}

// RecordSyncError stores a calendar's last sync error (already scrubbed of
// addresses and tokens).
func (s *Store) RecordSyncError(ctx context.Context, id, msg string) error {
	_, err := s.db.Exec(ctx, `UPDATE calendars SET last_error = $2 WHERE id = $1`, id, Truncate(msg, 500))
	return err
}

// SetCalendarStatus sets a calendar's status.
func (s *Store) SetCalendarStatus(ctx context.Context, id string, st plan.CalendarStatus) error {
	_, err := s.db.Exec(ctx, `UPDATE calendars SET status = $2 WHERE id = $1`, id, st)
	return err
}

// MarkGone marks a calendar gone (the provider answered it no longer
// exists) and reports whether it was not gone before: the caller records
// one dead letter, not one per sync. Its push channel and cursor went with
// the calendar: they are cleared, so a re-import opens a new channel and
// lists the calendar afresh.
func (s *Store) MarkGone(ctx context.Context, id, msg string) (bool, error) {
	tag, err := s.db.Exec(ctx, `UPDATE calendars SET status = 'gone', last_error = $2, cursor = NULL,
		channel_id = NULL, channel_resource_id = NULL, channel_token_hash = NULL, channel_expires_at = NULL
		WHERE id = $1 AND status <> 'gone'`, id, Truncate(msg, 500))
	if err != nil {
		return false, fmt.Errorf("mark calendar %s gone: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// StoreChannel stores a calendar's new push channel: its id, resource,
// the hash (or sealed form) of its secret, and expiry.
func (s *Store) StoreChannel(ctx context.Context, id, channelID, resourceID string, secret []byte, expires time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE calendars SET channel_id = $2, channel_resource_id = $3, channel_token_hash = $4, channel_expires_at = $5 WHERE id = $1`,
		id, channelID, resourceID, secret, nullTime(expires))
	if err != nil {
		return fmt.Errorf("store channel of %s: %w", id, err)
	}
	return nil
}

// RenewChannel stores a channel's new expiry (renewed in place).
func (s *Store) RenewChannel(ctx context.Context, id string, expires time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE calendars SET channel_expires_at = $2 WHERE id = $1`, id, nullTime(expires))
	return err
}

// Channel is a stored push channel.
type Channel struct {
	CalendarID, Provider, ResourceID string
	// Secret is the hash of the channel's token, or a sealed signing key.
	Secret []byte
}

// ChannelByID finds the calendar of a push channel.
func (s *Store) ChannelByID(ctx context.Context, channelID string) (Channel, error) {
	var ch Channel
	err := s.db.QueryRow(ctx, `SELECT c.id, k.provider, coalesce(c.channel_resource_id, ''), c.channel_token_hash
		FROM calendars c JOIN connections k ON k.id = c.connection_id WHERE c.channel_id = $1`, channelID).
		Scan(&ch.CalendarID, &ch.Provider, &ch.ResourceID, &ch.Secret)
	if errors.Is(err, pgx.ErrNoRows) {
		return ch, fmt.Errorf("channel %q: %w", channelID, ErrNotFound)
	}
	if err != nil {
		return ch, fmt.Errorf("find channel: %w", err)
	}
	return ch, nil
}

// ChannelOfCalendar reads the push channel of a calendar, by the
// calendar's id.
func (s *Store) ChannelOfCalendar(ctx context.Context, calID string) (Channel, error) {
	var ch Channel
	err := s.db.QueryRow(ctx, `SELECT c.id, k.provider, coalesce(c.channel_resource_id, ''), c.channel_token_hash
		FROM calendars c JOIN connections k ON k.id = c.connection_id WHERE c.id::text = $1 AND c.channel_id IS NOT NULL`, calID).
		Scan(&ch.CalendarID, &ch.Provider, &ch.ResourceID, &ch.Secret)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return ch, fmt.Errorf("channel of calendar %q: %w", calID, ErrNotFound)
	}
	if err != nil {
		return ch, fmt.Errorf("find channel: %w", err)
	}
	return ch, nil
}

// ChannelsToRenew lists the calendars of active connections whose channel
// is missing or expires before t.
func (s *Store) ChannelsToRenew(ctx context.Context, before time.Time) ([]Calendar, error) {
	rows, err := s.db.Query(ctx, calSelect+` WHERE k.status = 'active' AND c.status NOT IN ('paused', 'gone')
		AND (c.channel_expires_at IS NULL OR c.channel_expires_at < $1) ORDER BY c.id`, before)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Calendar, error) { return scanCal(r) })
}

// StoreCursor stores a calendar's sync cursor in the page's transaction.
func (t *Tx) StoreCursor(ctx context.Context, calID, cursor string) error {
	if _, err := t.tx.Exec(ctx, `UPDATE calendars SET cursor = $2 WHERE id = $1`, calID, cursor); err != nil {
		return fmt.Errorf("store cursor: %w", err)
	}
	return nil
}
