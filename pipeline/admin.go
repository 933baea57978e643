package pipeline

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/migrations"
)

// CreateWorkspace creates a workspace with its internal domains.
func (p *Pipeline) CreateWorkspace(ctx context.Context, name string, internal []string) (Workspace, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return Workspace{}, fmt.Errorf("name is required: %w", ErrInvalid)
	}
	var domains []string
	for _, d := range internal {
		n, err := matching.NormalizeDomain(d)
		if err != nil {
			return Workspace{}, fmt.Errorf("internal domain %q: %v: %w", d, err, ErrInvalid)
		}
		domains = append(domains, n)
	}
	if len(domains) == 0 {
		return Workspace{}, fmt.Errorf("at least one internal domain is required: %w", ErrInvalid)
	}
	w := Workspace{Name: name, InternalDomains: domains}
	err := p.db.QueryRow(ctx, `INSERT INTO workspaces (name, internal_domains) VALUES ($1, $2) RETURNING id, created_at`, name, domains).Scan(&w.ID, &w.CreatedAt)
	if err != nil {
		return Workspace{}, fmt.Errorf("create workspace: %w", err)
	}
	return w, nil
}

func (p *Pipeline) workspace(ctx context.Context, id string) (Workspace, error) {
	var w Workspace
	err := p.db.QueryRow(ctx, `SELECT id, name, internal_domains, created_at FROM workspaces WHERE id::text = $1`, id).Scan(&w.ID, &w.Name, &w.InternalDomains, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("workspace %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("read workspace: %w", err)
	}
	return w, nil
}

// WorkspaceStatus returns a workspace with its connections, calendars and
// company index.
func (p *Pipeline) WorkspaceStatus(ctx context.Context, id string) (WorkspaceStatus, error) {
	w, err := p.workspace(ctx, id)
	if err != nil {
		return WorkspaceStatus{}, err
	}
	st := WorkspaceStatus{Workspace: w, Connections: []ConnectionStatus{}}
	rows, err := p.db.Query(ctx, `SELECT id, provider, account, status, coalesce(last_error, ''), created_at, coalesce(replaced_by::text, '') FROM connections WHERE workspace_id = $1 ORDER BY created_at`, w.ID)
	if err != nil {
		return st, err
	}
	st.Connections, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ConnectionStatus])
	if err != nil {
		return st, err
	}
	if st.Calendars, err = p.Calendars(ctx, w.ID); err != nil {
		return st, err
	}
	err = p.db.QueryRow(ctx, `SELECT companies, free_mail_skipped, loaded_at FROM crm_index_state WHERE workspace_id = $1`, w.ID).
		Scan(&st.Index.Companies, &st.Index.FreeMailSkipped, &st.Index.LoadedAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, err
	}
	return st, nil
}

// Calendars lists a workspace's calendars with their sync status.
func (p *Pipeline) Calendars(ctx context.Context, ws string) ([]CalendarStatus, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return nil, err
	}
	rows, err := p.db.Query(ctx, `SELECT id, connection_id, calendar_id, status, last_synced_at, channel_expires_at, coalesce(last_error, '')
		FROM calendars WHERE workspace_id = $1 ORDER BY created_at, id`, ws)
	if err != nil {
		return nil, err
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[CalendarStatus])
	if cs == nil {
		cs = []CalendarStatus{}
	}
	return cs, err
}

// AddConnection imports credentials. A Google connection registers its
// calendars, opens a watch channel for each and starts the initial sync; a
// HubSpot connection prepares the portal and loads the company index.
// Connecting an account again re-authorises it and resumes its parked work.
func (p *Pipeline) AddConnection(ctx context.Context, ws string, in ConnectionInput) (Connection, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return Connection{}, err
	}
	if in.AccessToken == "" && in.RefreshToken == "" {
		return Connection{}, fmt.Errorf("access_token or refresh_token is required: %w", ErrInvalid)
	}
	tok := &oauth2.Token{AccessToken: in.AccessToken, RefreshToken: in.RefreshToken, TokenType: "Bearer", Expiry: in.ExpiresAt}
	switch in.Provider {
	case "google":
		return p.addGoogle(ctx, ws, in, tok)
	case "hubspot":
		return p.addHubSpot(ctx, ws, in, tok)
	}
	return Connection{}, fmt.Errorf("provider %q: want google or hubspot: %w", in.Provider, ErrInvalid)
}

func (p *Pipeline) addGoogle(ctx context.Context, ws string, in ConnectionInput, tok *oauth2.Token) (Connection, error) {
	addr, err := matching.ParseAddress(in.AccountEmail)
	if err != nil {
		return Connection{}, fmt.Errorf("account_email: %v: %w", err, ErrInvalid)
	}
	if err := p.checkCalendarAccount(ctx, ws, addr, in); err != nil {
		return Connection{}, err
	}
	cals := in.CalendarIDs
	if len(cals) == 0 {
		cals = []string{"primary"}
	}
	connID, err := p.cfg.Vault.Put(ctx, ws, "google", addr.Email, tok)
	if err != nil {
		return Connection{}, fmt.Errorf("store credentials: %w", err)
	}
	p.clients.Delete(connID)
	c := Connection{ID: connID, Provider: "google", Account: addr.Email, Status: "active"}
	for _, calID := range cals {
		var id string
		err := p.db.QueryRow(ctx, `INSERT INTO calendars (workspace_id, connection_id, calendar_id) VALUES ($1, $2, $3)
			ON CONFLICT (connection_id, calendar_id) DO UPDATE SET status = 'active' RETURNING id`, ws, connID, calID).Scan(&id)
		if err != nil {
			return c, fmt.Errorf("register calendar: %w", err)
		}
		c.Calendars = append(c.Calendars, id)
		if err := p.openChannel(ctx, id); err != nil {
			// Syncing still works on the schedule; renewal retries.
			p.log.WarnContext(ctx, "open watch channel", slog.String("calendar_id", id), slog.Any("error", err))
		}
		if err := p.markDirty(ctx, id, false, time.Time{}); err != nil {
			return c, err
		}
	}
	return c, p.Resume(ctx, connID)
}

func (p *Pipeline) addHubSpot(ctx context.Context, ws string, in ConnectionInput, tok *oauth2.Token) (Connection, error) {
	sink, err := p.cfg.Providers.CRM(ctx, "", oauth2.StaticTokenSource(tok))
	if err != nil {
		return Connection{}, err
	}
	portal, err := sink.Prepare(ctx)
	p.countCRM("portal.prepare", err)
	if err != nil {
		return Connection{}, fmt.Errorf("prepare HubSpot portal: %w", err)
	}
	if in.ExpectAccount != "" && in.ExpectAccount != portal.ID {
		return Connection{}, fmt.Errorf("this connect link is for HubSpot portal %s, not portal %s: %w", in.ExpectAccount, portal.ID, ErrForbidden)
	}
	// A workspace writes to one CRM portal. Another portal replaces it only
	// when the admin says so.
	var current, currentID string
	err = p.db.QueryRow(ctx, `SELECT account, id FROM connections WHERE workspace_id = $1 AND provider = 'hubspot' AND status <> 'revoked' AND account <> $2
		ORDER BY created_at DESC LIMIT 1`, ws, portal.ID).Scan(&current, &currentID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, fmt.Errorf("read CRM connection: %w", err)
	}
	if current != "" && !in.Replace {
		return Connection{}, fmt.Errorf("workspace %s writes to HubSpot portal %s; connecting portal %s would replace it: an admin must ask for that explicitly (\"replace\": true): %w",
			ws, current, portal.ID, ErrConflict)
	}
	connID, err := p.cfg.Vault.Put(ctx, ws, "hubspot", portal.ID, tok)
	if err != nil {
		return Connection{}, fmt.Errorf("store credentials: %w", err)
	}
	p.clients.Delete(connID)
	if current != "" {
		if _, err := p.db.Exec(ctx, `UPDATE connections SET status = 'revoked', replaced_by = $2, last_error = $3, updated_at = $4
			WHERE workspace_id = $1 AND provider = 'hubspot' AND id <> $2 AND status <> 'revoked'`,
			ws, connID, "replaced by HubSpot portal "+portal.ID+" at "+p.now().UTC().Format(time.RFC3339), p.now()); err != nil {
			return Connection{}, fmt.Errorf("retire the replaced CRM connection: %w", err)
		}
		p.log.WarnContext(ctx, "CRM connection replaced by the admin", slog.String("workspace_id", ws),
			slog.String("old_connection_id", currentID), slog.String("old_portal", current),
			slog.String("connection_id", connID), slog.String("portal", portal.ID))
	}
	if _, err := p.db.Exec(ctx, `UPDATE connections SET crm_unique_key = $2 WHERE id = $1`, connID, portal.UniqueKey); err != nil {
		return Connection{}, err
	}
	if err := p.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws, Full: true}, asynq.Queue(QueueMaintenance),
		asynq.TaskID("index-full:"+ws+":"+bucket(p.now(), time.Minute))); err != nil {
		return Connection{}, err
	}
	return Connection{ID: connID, Provider: "hubspot", Account: portal.ID, Status: "active"}, p.Resume(ctx, connID)
}

// checkCalendarAccount refuses a calendar account other than the one a
// connect link was issued for, and one outside the workspace's internal
// domains unless the admin allowed it: a stranger's calendar must not feed
// a workspace's CRM.
func (p *Pipeline) checkCalendarAccount(ctx context.Context, ws string, addr matching.Address, in ConnectionInput) error {
	if in.ExpectAccount != "" && !strings.EqualFold(in.ExpectAccount, addr.Email) {
		return fmt.Errorf("this connect link is for %s, not for the account that signed in: %w", in.ExpectAccount, ErrForbidden)
	}
	if in.AllowExternalAccount {
		return nil
	}
	w, err := p.workspace(ctx, ws)
	if err != nil {
		return err
	}
	if !addr.Under(w.InternalDomains) {
		return fmt.Errorf("the account's domain %s is not one of the workspace's internal domains (%s); an admin may allow it with \"allow_external_account\": %w",
			addr.Host, strings.Join(w.InternalDomains, ", "), ErrForbidden)
	}
	return nil
}

// Resume re-drives the work parked while a connection needed
// re-authorisation, and syncs its calendars.
func (p *Pipeline) Resume(ctx context.Context, connID string) error {
	rows, err := p.db.Query(ctx, `SELECT id, queue, task_id, task_type, coalesce(ref->>'calendar_id', '') FROM dead_letters
		WHERE class = 'auth' AND retried_at IS NULL AND ref->>'connection_id' = $1`, connID)
	if err != nil {
		return fmt.Errorf("find parked work: %w", err)
	}
	type parked struct {
		id                 int64
		queue, taskID, typ string
		calID              string
	}
	var list []parked
	var x parked
	if _, err := pgx.ForEachRow(rows, []any{&x.id, &x.queue, &x.taskID, &x.typ, &x.calID}, func() error { list = append(list, x); return nil }); err != nil {
		return fmt.Errorf("find parked work: %w", err)
	}
	for _, d := range list {
		if err := p.redrive(ctx, d.queue, d.taskID, d.typ, d.calID); err != nil {
			return err
		}
		if _, err := p.db.Exec(ctx, `UPDATE dead_letters SET retried_at = $2 WHERE id = $1`, d.id, p.now()); err != nil {
			return err
		}
	}
	if len(list) > 0 {
		p.log.InfoContext(ctx, "resumed parked work", slog.String("connection_id", connID), slog.Int("tasks", len(list)))
	}
	return p.forEachCalendar(ctx, func(id string) error {
		return p.markDirty(ctx, id, false, time.Time{})
	}, "c.connection_id = $1", connID)
}

// redrive runs an archived task again; a sync whose task has expired from
// the archive is simply enqueued anew.
func (p *Pipeline) redrive(ctx context.Context, queue, taskID, typ, calID string) error {
	err := p.inspector.RunTask(queue, taskID)
	if err == nil {
		return nil
	}
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		if typ == TaskSync && calID != "" {
			return p.markDirty(ctx, calID, false, time.Time{})
		}
		return nil // the work is recomputed by the next sync or reconciliation
	}
	return fmt.Errorf("re-drive task %s: %w", taskID, err)
}

// RequestSync enqueues an incremental sync of one calendar.
func (p *Pipeline) RequestSync(ctx context.Context, ws, calID string) error {
	var found bool
	if err := p.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM calendars WHERE id::text = $1 AND workspace_id::text = $2)`, calID, ws).Scan(&found); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("calendar %q in workspace %q: %w", calID, ws, ErrNotFound)
	}
	return p.markDirty(ctx, calID, false, time.Time{})
}

// CRMChanged enqueues a company index refresh for the workspaces connected
// to a HubSpot portal.
func (p *Pipeline) CRMChanged(ctx context.Context, portalID string) error {
	return p.forEachID(ctx, func(ws string) error {
		return p.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws}, asynq.Queue(QueueMaintenance), asynq.TaskID("index:"+ws+":"+bucket(p.now(), 10*time.Second)))
	}, `SELECT DISTINCT workspace_id::text FROM connections WHERE provider = 'hubspot' AND account = $1`, portalID)
}

// Meetings lists ledger entries, newest decision first... in id order for
// stable cursors.
func (p *Pipeline) Meetings(ctx context.Context, ws, state string, pg Page) ([]MeetingEntry, string, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return nil, "", err
	}
	after, err := decodeCursor(pg.After)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(pg.Limit)
	rows, err := p.db.Query(ctx, `SELECT id, meeting_key, state, coalesce(crm_meeting_id, ''), rule, rules_version, decided_at, coalesce(last_error, '')
		FROM meetings WHERE workspace_id = $1 AND ($2 = '' OR state = $2) AND id > $3 AND rule <> '' ORDER BY id LIMIT $4`, ws, state, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	var out []MeetingEntry
	var last int64
	var id int64
	var e MeetingEntry
	if _, err := pgx.ForEachRow(rows, []any{&id, &e.Key, &e.State, &e.CRMMeetingID, &e.Rule, &e.RulesVersion, &e.DecidedAt, &e.LastError}, func() error {
		if len(out) < limit {
			out = append(out, e)
			last = id
		}
		return nil
	}); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) == limit && last != 0 {
		var more bool
		_ = p.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM meetings WHERE workspace_id = $1 AND ($2 = '' OR state = $2) AND id > $3 AND rule <> '')`, ws, state, last).Scan(&more)
		if more {
			next = encodeCursor(last)
		}
	}
	if out == nil {
		out = []MeetingEntry{}
	}
	return out, next, nil
}

// Meeting returns one ledger entry with its decision trace and copies.
func (p *Pipeline) Meeting(ctx context.Context, ws, key string) (MeetingDetail, error) {
	var d MeetingDetail
	var id int64
	err := p.db.QueryRow(ctx, `SELECT id, meeting_key, state, coalesce(crm_meeting_id, ''), rule, rules_version, decided_at, coalesce(last_error, ''), trace
		FROM meetings WHERE workspace_id::text = $1 AND meeting_key = $2`, ws, key).
		Scan(&id, &d.Key, &d.State, &d.CRMMeetingID, &d.Rule, &d.RulesVersion, &d.DecidedAt, &d.LastError, &d.Trace)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("meeting %q: %w", key, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return d, fmt.Errorf("meeting %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return d, err
	}
	rows, err := p.db.Query(ctx, `SELECT calendar_id::text, event_id, status, organizer_copy, action, rule, linked_crm_id IS NOT NULL FROM meeting_copies WHERE meeting_id = $1 ORDER BY calendar_id, event_id`, id)
	if err != nil {
		return d, err
	}
	d.Copies, err = pgx.CollectRows(rows, pgx.RowToStructByPos[MeetingCopy])
	if d.Copies == nil {
		d.Copies = []MeetingCopy{}
	}
	return d, err
}

// DeadLetters lists terminal failures, oldest first.
func (p *Pipeline) DeadLetters(ctx context.Context, pg Page) ([]DeadLetter, string, error) {
	after, err := decodeCursor(pg.After)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(pg.Limit)
	rows, err := p.db.Query(ctx, `SELECT id, coalesce(workspace_id::text, ''), task_type, task_id, queue, ref, class, reason, created_at, retried_at
		FROM dead_letters WHERE id > $1 ORDER BY id LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > limit {
		list = list[:limit]
		next = encodeCursor(list[limit-1].ID)
	}
	if list == nil {
		list = []DeadLetter{}
	}
	return list, next, nil
}

// RetryDeadLetter re-drives a terminal failure.
func (p *Pipeline) RetryDeadLetter(ctx context.Context, id int64) error {
	var queue, taskID, typ, calID, connID string
	var retried *time.Time
	err := p.db.QueryRow(ctx, `SELECT queue, task_id, task_type, coalesce(ref->>'calendar_id', ''), coalesce(ref->>'connection_id', ''), retried_at FROM dead_letters WHERE id = $1`, id).
		Scan(&queue, &taskID, &typ, &calID, &connID, &retried)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("dead letter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if retried != nil {
		return fmt.Errorf("dead letter %d was retried at %s: %w", id, retried.Format(time.RFC3339), ErrConflict)
	}
	if connID != "" {
		var status string
		if err := p.db.QueryRow(ctx, `SELECT status FROM connections WHERE id = $1`, connID).Scan(&status); err == nil && status != "active" {
			return fmt.Errorf("connection %s is %s: re-authorise it first: %w", connID, status, ErrConflict)
		}
	}
	if err := p.redrive(ctx, queue, taskID, typ, calID); err != nil {
		return err
	}
	_, err = p.db.Exec(ctx, `UPDATE dead_letters SET retried_at = $2 WHERE id = $1`, id, p.now())
	return err
}

// Ready checks PostgreSQL, Redis and that the schema is current.
func (p *Pipeline) Ready(ctx context.Context) error {
	if err := p.db.Ping(ctx); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	pending, err := migrations.PendingPool(ctx, p.db)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if pending {
		return errors.New("migrations are pending: run rapport migrate")
	}
	return nil
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("bad cursor %q: %w", s, ErrInvalid)
}
