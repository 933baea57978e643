package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/pipeline/plan"
)

// Workspace is a customer team: its internal domains and name.
type Workspace struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	InternalDomains []string  `json:"internal_domains"`
	CreatedAt       time.Time `json:"created_at"`
}

// ConnectionStatus describes a connection without its tokens.
type ConnectionStatus struct {
	ID        string    `json:"id"`
	Provider  string    `json:"provider"`
	Account   string    `json:"account"`
	Status    string    `json:"status"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ReplacedBy names the connection that replaced this one (a CRM portal
	// replaced by the admin).
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// IndexStatus describes a workspace's company domain index.
type IndexStatus struct {
	Companies       int        `json:"companies"`
	FreeMailSkipped int        `json:"free_mail_skipped"`
	LoadedAt        *time.Time `json:"loaded_at"`
}

// CreateWorkspace stores a workspace.
func (s *Store) CreateWorkspace(ctx context.Context, name string, domains []string) (Workspace, error) {
	w := Workspace{Name: name, InternalDomains: domains}
	err := s.db.QueryRow(ctx, `INSERT INTO workspaces (name, internal_domains) VALUES ($1, $2) RETURNING id, created_at`, name, domains).Scan(&w.ID, &w.CreatedAt)
	if err != nil {
		return Workspace{}, fmt.Errorf("create workspace: %w", err)
	}
	return w, nil
}

// Workspace reads a workspace.
func (s *Store) Workspace(ctx context.Context, id string) (Workspace, error) {
	var w Workspace
	err := s.db.QueryRow(ctx, `SELECT id, name, internal_domains, created_at FROM workspaces WHERE id::text = $1`, id).Scan(&w.ID, &w.Name, &w.InternalDomains, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("workspace %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("read workspace: %w", err)
	}
	return w, nil
}

// Connections lists a workspace's connections, oldest first.
func (s *Store) Connections(ctx context.Context, ws string) ([]ConnectionStatus, error) {
	rows, err := s.db.Query(ctx, `SELECT id, provider, account, status, coalesce(last_error, ''), created_at, coalesce(replaced_by::text, '')
		FROM connections WHERE workspace_id = $1 ORDER BY created_at`, ws)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ConnectionStatus])
	if cs == nil {
		cs = []ConnectionStatus{}
	}
	return cs, err
}

// IndexStatus reads the state of a workspace's company index.
func (s *Store) IndexStatus(ctx context.Context, ws string) (IndexStatus, error) {
	var st IndexStatus
	err := s.db.QueryRow(ctx, `SELECT companies, free_mail_skipped, loaded_at FROM crm_index_state WHERE workspace_id = $1`, ws).
		Scan(&st.Companies, &st.FreeMailSkipped, &st.LoadedAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("read company index state: %w", err)
	}
	return st, nil
}

// CRMConn is a workspace's CRM connection.
type CRMConn struct {
	ID, Provider, Account string
	Status                plan.ConnStatus
	// UniqueKey: the portal's meeting-key property has unique values, so
	// writes upsert by it.
	UniqueKey bool
}

// CRMConnection returns the workspace's CRM connection: the active one, or
// the newest that is not revoked.
func (s *Store) CRMConnection(ctx context.Context, ws string) (CRMConn, error) {
	var c CRMConn
	var unique *bool
	err := s.db.QueryRow(ctx, `SELECT id, provider, account, status, crm_unique_key FROM connections
		WHERE workspace_id = $1 AND provider = ANY($2) AND status <> 'revoked' ORDER BY (status = 'active') DESC, created_at DESC LIMIT 1`, ws, s.crms).
		Scan(&c.ID, &c.Provider, &c.Account, &c.Status, &unique)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("workspace %s has no CRM connection: %w", ws, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read CRM connection: %w", err)
	}
	c.UniqueKey = unique != nil && *unique
	return c, nil
}

// OtherCRM returns the workspace's CRM connection to an account other than
// account, if any (empty when none).
func (s *Store) OtherCRM(ctx context.Context, ws, account string) (CRMConn, error) {
	var c CRMConn
	err := s.db.QueryRow(ctx, `SELECT id, provider, account, status FROM connections WHERE workspace_id = $1 AND provider = ANY($2)
		AND status <> 'revoked' AND account <> $3 ORDER BY created_at DESC LIMIT 1`, ws, s.crms, account).Scan(&c.ID, &c.Provider, &c.Account, &c.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return CRMConn{}, nil
	}
	if err != nil {
		return c, fmt.Errorf("read CRM connection: %w", err)
	}
	return c, nil
}

// RetireCRM marks the workspace's other CRM connections revoked, replaced
// by connID, with the reason.
func (s *Store) RetireCRM(ctx context.Context, ws, connID, reason string, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE connections SET status = 'revoked', replaced_by = $2, last_error = $3, updated_at = $4
		WHERE workspace_id = $1 AND provider = ANY($5) AND id <> $2 AND status <> 'revoked'`, ws, connID, reason, now, s.crms)
	if err != nil {
		return fmt.Errorf("retire the replaced CRM connection: %w", err)
	}
	return nil
}

// SetCRMUniqueKey records whether the portal's key property is unique.
func (s *Store) SetCRMUniqueKey(ctx context.Context, connID string, unique bool) error {
	if _, err := s.db.Exec(ctx, `UPDATE connections SET crm_unique_key = $2 WHERE id = $1`, connID, unique); err != nil {
		return fmt.Errorf("record CRM portal: %w", err)
	}
	return nil
}

// ConnStatus returns a connection's status.
func (s *Store) ConnStatus(ctx context.Context, connID string) (plan.ConnStatus, error) {
	var st plan.ConnStatus
	err := s.db.QueryRow(ctx, `SELECT status FROM connections WHERE id::text = $1`, connID).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return "", fmt.Errorf("connection %s: %w", connID, ErrNotFound)
	}
	return st, err
}

// CRMWorkspaces lists the workspaces with an active CRM connection
// (optionally of one portal).
func (s *Store) CRMWorkspaces(ctx context.Context, portal string) ([]string, error) {
	return ids(ctx, s.db, `SELECT DISTINCT workspace_id::text FROM connections WHERE provider = ANY($1) AND status = 'active' AND ($2 = '' OR account = $2)`,
		s.crms, portal)
}

// ConnectLink is an issued connect link.
type ConnectLink struct {
	ID                   string
	WorkspaceID          string
	Provider             string
	Account              string
	AllowExternalAccount bool
	Replace              bool
	ExpiresAt            time.Time
}

// CreateConnectLink stores a connect link and fills in its id.
func (s *Store) CreateConnectLink(ctx context.Context, l *ConnectLink) error {
	err := s.db.QueryRow(ctx, `INSERT INTO connect_links (workspace_id, provider, account, allow_external, replace_crm, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, l.WorkspaceID, l.Provider, l.Account, l.AllowExternalAccount, l.Replace, l.ExpiresAt).Scan(&l.ID)
	if err != nil {
		return fmt.Errorf("record connect link: %w", err)
	}
	return nil
}

// UseConnectLink marks a link used and returns it; ErrConflict when it was
// used already, has expired or does not exist.
func (s *Store) UseConnectLink(ctx context.Context, id string, now time.Time) (ConnectLink, error) {
	l := ConnectLink{ID: id}
	err := s.db.QueryRow(ctx, `UPDATE connect_links SET used_at = $2 WHERE id::text = $1 AND used_at IS NULL AND expires_at > $2
		RETURNING workspace_id, provider, account, allow_external, replace_crm, expires_at`, id, now).
		Scan(&l.WorkspaceID, &l.Provider, &l.Account, &l.AllowExternalAccount, &l.Replace, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, ErrConflict
	}
	if err != nil {
		return l, fmt.Errorf("use connect link: %w", err)
	}
	return l, nil
}
