// Package migrations holds Rapport's PostgreSQL schema as goose SQL files,
// embedded in the binary, and applies them with goose v3's Provider under a
// PostgreSQL advisory lock, so `rapport migrate` is safe to run twice or from
// several processes at once. It also creates the database when it is missing.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Up creates the database named by dsn when it is missing and applies every
// pending migration. It returns the number applied.
func Up(ctx context.Context, dsn string, logger *slog.Logger) (int, error) {
	if err := EnsureDatabase(ctx, dsn); err != nil {
		return 0, err
	}
	p, db, err := provider(dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	defer p.Close()
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		logger.InfoContext(ctx, fmt.Sprintf("applied migration %d (%s) in %d ms", r.Source.Version, describe(r.Source.Path), r.Duration.Milliseconds()),
			slog.Int64("version", r.Source.Version), slog.Duration("took", r.Duration))
	}
	return len(results), nil
}

// describe names a migration by its file: 00003_connect_links.sql is
// "connect links".
func describe(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if _, rest, ok := strings.Cut(base, "_"); ok {
		base = rest
	}
	return strings.ReplaceAll(base, "_", " ")
}

// Pending reports whether migrations remain to be applied (for /readyz).
func Pending(ctx context.Context, db *sql.DB) (bool, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, files)
	if err != nil {
		return false, fmt.Errorf("load migrations: %w", err)
	}
	return p.HasPending(ctx)
}

func provider(dsn string) (*goose.Provider, *sql.DB, error) {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDB(*cfg)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithSessionLocker(locker))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// EnsureDatabase creates the database named by dsn when it does not exist,
// connecting to the server's maintenance database ("postgres") to do so.
// Two processes racing to create it both succeed.
func EnsureDatabase(ctx context.Context, dsn string) error {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to database %q: %w", cfg.Database, err)
	}
	name := cfg.Database
	admin := cfg.Copy()
	admin.Database = "postgres"
	aconn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to create database %q: %w", name, err)
	}
	defer aconn.Close(ctx)
	_, err = aconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return nil // created by a concurrent migrate
	}
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// parseConfig parses a database URL, accepting (and dropping) pgxpool's
// pool_* settings, which the server would refuse as run-time parameters.
func parseConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	return cfg.ConnConfig, nil
}

// PendingPool is Pending over a pgx pool.
func PendingPool(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return Pending(ctx, db)
}

// WithDatabase swaps the database of a postgres URL or key=value DSN.
func WithDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path = "/" + name
			return u.String()
		}
	}
	return dsn + " dbname=" + name
}

// DropDatabase drops database name (and ends its sessions) on the server
// of dsn, connecting to the server's maintenance database to do so.
func DropDatabase(ctx context.Context, dsn, name string) error {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return err
	}
	var lastErr error
	for _, maint := range []string{"postgres", "template1"} {
		admin := cfg.Copy()
		admin.Database = maint
		conn, err := pgx.ConnectConfig(ctx, admin)
		if err != nil {
			lastErr = err
			continue
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("connect to PostgreSQL: %w", lastErr)
}
