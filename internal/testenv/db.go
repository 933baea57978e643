package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportsync/rapport/migrations"
)

// DatabaseURL is the server tests use: TEST_DATABASE_URL, else the local one.
func DatabaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://127.0.0.1:5432/postgres?sslmode=disable"
}

var dbOnce struct {
	sync.Mutex
	dsn string
	err error
}

// DSN returns the URL of a fresh, migrated database for this test binary,
// created on first use and dropped when the binary's tests finish (see Main).
func DSN(t testing.TB) string {
	t.Helper()
	dbOnce.Lock()
	defer dbOnce.Unlock()
	if dbOnce.dsn == "" && dbOnce.err == nil {
		dbOnce.dsn, dbOnce.err = createDatabase()
	}
	if dbOnce.err != nil {
		t.Fatalf("testenv: %v", dbOnce.err)
	}
	return dbOnce.dsn
}

// DB returns a pool on this binary's migrated database, closed when the test
// ends. Tests share the database; give each test its own workspace.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), DSN(t))
	if err != nil {
		t.Fatalf("testenv: open database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewDatabaseURL returns the URL of a database name that does not exist yet
// on the test server, dropped (if created) when the binary finishes. Tests of
// `migrate` use it.
func NewDatabaseURL(t testing.TB) string {
	t.Helper()
	name := "rapport_test_" + randomHex(6)
	registerRelease(func() { dropDatabase(name) })
	return migrations.WithDatabase(DatabaseURL(), name)
}

func createDatabase() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "rapport_test_" + randomHex(6)
	dsn := migrations.WithDatabase(DatabaseURL(), name)
	registerRelease(func() { dropDatabase(name) })
	if _, err := migrations.Up(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return "", err
	}
	return dsn, nil
}

func dropDatabase(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = migrations.DropDatabase(ctx, DatabaseURL(), name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
