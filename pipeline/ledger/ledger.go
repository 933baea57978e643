package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors the ledger returns; callers map them to answers.
var (
	// ErrNotFound: no such row (workspace, calendar, meeting, run, …).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row is in a state that forbids the change.
	ErrConflict = errors.New("conflict")
)

// Store is the ledger on a connection pool.
type Store struct {
	db *pgxpool.Pool
	// crms names the providers that are CRMs: a workspace's CRM connection
	// is its connection to one of them.
	crms []string
}

// New returns the ledger on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{db: pool} }

// WithCRMs returns the ledger knowing which providers are CRMs.
func (s *Store) WithCRMs(names []string) *Store {
	c := *s
	c.crms = names
	return &c
}

// Pool is the ledger's pool, for readiness checks.
func (s *Store) Pool() *pgxpool.Pool { return s.db }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// querier is a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Tx is a ledger transaction: the statements of one sync page or one write
// batch start, committed together.
type Tx struct {
	tx pgx.Tx
}

// Begin starts a transaction.
func (s *Store) Begin(ctx context.Context) (*Tx, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{tx: tx}, nil
}

// Commit commits the transaction.
func (t *Tx) Commit(ctx context.Context) error {
	if err := t.tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Rollback rolls back the transaction unless it was committed; it is safe
// to defer.
func (t *Tx) Rollback(ctx context.Context) {
	_ = t.tx.Rollback(context.WithoutCancel(ctx))
}

// ids reads a single text column.
func ids(ctx context.Context, q querier, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Truncate cuts s to at most n bytes on a rune boundary: error texts stored
// in the ledger are bounded.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// isInvalidText reports a malformed id (a text that is no uuid, say): the
// row cannot exist.
func isInvalidText(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "22P02" || pe.Code == "22021")
}

// Capacity is how many connections the database server allows and has in
// use.
type Capacity struct {
	MaxConnections, Reserved, InUse int
	// Superuser: this role may use the reserved connections.
	Superuser bool
}

// Capacity reads the server's connection limits and the client
// connections open now, other than this one.
func (s *Store) Capacity(ctx context.Context) (Capacity, error) {
	var c Capacity
	err := s.db.QueryRow(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int,
		(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`).Scan(&c.MaxConnections, &c.Reserved, &c.InUse, &c.Superuser)
	return c, err
}
