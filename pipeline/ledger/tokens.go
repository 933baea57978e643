package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sealed is a connection as the token vault reads it: its sealed tokens
// and what identifies it.
type Sealed struct {
	ID, WorkspaceID, Provider, Status string
	// KeyID names the encryption key that sealed Ciphertext.
	KeyID      string
	Ciphertext []byte
}

const sealedSelect = `SELECT id::text, workspace_id::text, provider, status, token_key_id, token_ciphertext FROM connections`

func scanSealed(row pgx.Row, id string) (Sealed, error) {
	var r Sealed
	err := row.Scan(&r.ID, &r.WorkspaceID, &r.Provider, &r.Status, &r.KeyID, &r.Ciphertext)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return r, fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("load connection %s: %w", id, err)
	}
	return r, nil
}

// SealedConnection reads a connection's sealed tokens.
func (s *Store) SealedConnection(ctx context.Context, id string) (Sealed, error) {
	return scanSealed(s.db.QueryRow(ctx, sealedSelect+` WHERE id::text = $1`, id), id)
}

// LockConnection reads a connection's sealed tokens and locks its row for
// the transaction.
func (t *Tx) LockConnection(ctx context.Context, id string) (Sealed, error) {
	return scanSealed(t.tx.QueryRow(ctx, sealedSelect+` WHERE id::text = $1 FOR UPDATE`, id), id)
}

// LockConnectionOf locks the connection of a workspace's provider account.
func (t *Tx) LockConnectionOf(ctx context.Context, ws, provider, account string) (Sealed, error) {
	return scanSealed(t.tx.QueryRow(ctx, sealedSelect+` WHERE workspace_id = $1 AND provider = $2 AND account = $3 FOR UPDATE`, ws, provider, account), account)
}

// NewConnection is a connection to insert with its sealed tokens.
type NewConnection struct {
	ID, WorkspaceID, Provider, Account, KeyID string
	Ciphertext                                []byte
	ExpiresAt                                 *time.Time
}

// InsertConnection inserts a connection unless the workspace already has
// one for the provider account; it reports whether it did.
func (t *Tx) InsertConnection(ctx context.Context, c NewConnection) (bool, error) {
	var inserted string
	err := t.tx.QueryRow(ctx, `
		INSERT INTO connections (id, workspace_id, provider, account, token_key_id, token_ciphertext, token_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (workspace_id, provider, account) DO NOTHING
		RETURNING id::text`,
		c.ID, c.WorkspaceID, c.Provider, c.Account, c.KeyID, c.Ciphertext, c.ExpiresAt).Scan(&inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// StoreToken stores a connection's newly sealed tokens; reactivate also
// makes it active again (a re-authorisation).
func (t *Tx) StoreToken(ctx context.Context, id, keyID string, ciphertext []byte, expires *time.Time, reactivate bool) error {
	_, err := t.tx.Exec(ctx, `UPDATE connections SET token_key_id = $2, token_ciphertext = $3, token_expires_at = $4, last_error = NULL,
		status = CASE WHEN $5 THEN 'active' ELSE status END, replaced_by = CASE WHEN $5 THEN NULL ELSE replaced_by END, updated_at = now()
		WHERE id = $1`, id, keyID, ciphertext, expires, reactivate)
	if err != nil {
		return fmt.Errorf("store token of connection %s: %w", id, err)
	}
	return nil
}

// Reseal stores a connection's tokens sealed with another key.
func (t *Tx) Reseal(ctx context.Context, id, keyID string, ciphertext []byte) error {
	if _, err := t.tx.Exec(ctx, `UPDATE connections SET token_key_id = $2, token_ciphertext = $3, updated_at = now() WHERE id = $1`, id, keyID, ciphertext); err != nil {
		return fmt.Errorf("connection %s: %w", id, err)
	}
	return nil
}

// AdvisoryLock takes a transaction-scoped advisory lock on key: one
// process at a time works under it.
func (t *Tx) AdvisoryLock(ctx context.Context, key string) error {
	_, err := t.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, key)
	return err
}

// ConnRef names a connection.
type ConnRef struct{ ID, WorkspaceID, Provider string }

// MarkNeedsReauth sets an active connection needs_reauth with the reason
// and returns it; nil when it was not active.
func (s *Store) MarkNeedsReauth(ctx context.Context, id, reason string) (*ConnRef, error) {
	return markNeedsReauth(ctx, s.db, id, reason)
}

// MarkNeedsReauth is Store.MarkNeedsReauth in the transaction.
func (t *Tx) MarkNeedsReauth(ctx context.Context, id, reason string) (*ConnRef, error) {
	return markNeedsReauth(ctx, t.tx, id, reason)
}

func markNeedsReauth(ctx context.Context, q querier, id, reason string) (*ConnRef, error) {
	var r ConnRef
	err := q.QueryRow(ctx, `
		UPDATE connections SET status = 'needs_reauth', last_error = $2, updated_at = now()
		WHERE id::text = $1 AND status = 'active'
		RETURNING id::text, workspace_id::text, provider`, id, Truncate(reason, 500)).
		Scan(&r.ID, &r.WorkspaceID, &r.Provider)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mark connection %s needs_reauth: %w", id, err)
	}
	return &r, nil
}

// ConnectionsSealedWithout lists connections sealed with a key other than
// keyID.
func (s *Store) ConnectionsSealedWithout(ctx context.Context, keyID string) ([]string, error) {
	return ids(ctx, s.db, `SELECT id::text FROM connections WHERE token_key_id <> $1 ORDER BY id`, keyID)
}

// Expiring is an active connection whose token expires soon.
type Expiring struct {
	ID        string
	ExpiresAt time.Time
}

// ExpiringTokens lists active connections whose token expires before t,
// soonest first.
func (s *Store) ExpiringTokens(ctx context.Context, before time.Time) ([]Expiring, error) {
	rows, err := s.db.Query(ctx, `SELECT id::text, token_expires_at FROM connections
		WHERE status = 'active' AND token_expires_at IS NOT NULL AND token_expires_at <= $1 ORDER BY token_expires_at`, before)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Expiring])
}
