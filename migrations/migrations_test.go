package migrations_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/migrations"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestUpCreatesDatabaseAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.NewDatabaseURL(t)
	n, err := migrations.Up(ctx, dsn, quiet)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if n == 0 {
		t.Fatal("first migrate applied nothing")
	}
	// pgxpool settings in the URL (as `serve` uses it) are accepted.
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	n, err = migrations.Up(ctx, dsn+sep+"pool_max_conns=5", quiet)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if n != 0 {
		t.Fatalf("second migrate applied %d migrations, want 0", n)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := openSQL(t, dsn)
	pending, err := migrations.Pending(ctx, db)
	if err != nil || pending {
		t.Fatalf("Pending = %v, %v; want false, nil", pending, err)
	}
}

func TestConcurrentUp(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.NewDatabaseURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	applied := make([]int, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = migrations.Up(ctx, dsn, quiet)
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
		total += applied[i]
	}
	files := len(migrationFiles(t))
	if total != files {
		t.Errorf("concurrent runs applied %d migrations in all, want %d (each exactly once)", total, files)
	}
}

func TestSchemaInvariants(t *testing.T) {
	ctx := context.Background()
	pool := testenv.DB(t)
	var ws string
	if err := pool.QueryRow(ctx, `INSERT INTO workspaces (name, internal_domains) VALUES ('Northwind', '{northwind.test}') RETURNING id`).Scan(&ws); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	insert := `INSERT INTO meetings (workspace_id, meeting_key, state, action, rule, rules_version) VALUES ($1, $2, $3, 'log', 'customer-meeting', 'v1')`
	if _, err := pool.Exec(ctx, insert, ws, key, "pending"); err != nil {
		t.Fatalf("first meeting: %v", err)
	}
	cases := []struct {
		name, sql, code string
		args            []any
	}{
		{"duplicate meeting key", insert, "23505", []any{ws, key, "pending"}},
		{"unknown state", insert, "23514", []any{ws, strings.Repeat("cd", 32), "exploded"}},
		{"malformed key", insert, "23514", []any{ws, "not-a-key", "pending"}},
		{"logged without crm id", insert, "23514", []any{ws, strings.Repeat("ef", 32), "logged"}},
		{"unknown workspace", insert, "23503", []any{"00000000-0000-0000-0000-000000000000", strings.Repeat("01", 32), "pending"}},
		{"unknown connection status", `INSERT INTO connections (workspace_id, provider, account, token_key_id, token_ciphertext, status) VALUES ($1, 'google', 'a', 'k1', '\x00', 'sleepy')`, "23514", []any{ws}},
		{"unknown provider", `INSERT INTO connections (workspace_id, provider, account, token_key_id, token_ciphertext) VALUES ($1, 'myspace', 'a', 'k1', '\x00')`, "23514", []any{ws}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, c.sql, c.args...)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != c.code {
				t.Fatalf("got %v, want SQLSTATE %s", err, c.code)
			}
		})
	}
}

// TestNoContentColumns guards ARCHITECTURE section 6: no column may hold
// calendar content.
func TestNoContentColumns(t *testing.T) {
	ctx := context.Background()
	pool := testenv.DB(t)
	rows, err := pool.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			t.Fatal(err)
		}
		for _, banned := range []string{"title", "summary", "description", "body", "email", "location", "attendee"} {
			if strings.Contains(column, banned) {
				t.Errorf("%s.%s looks like calendar content", table, column)
			}
		}
	}
}
