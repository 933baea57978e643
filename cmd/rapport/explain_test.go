package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// serviceEnv is a complete, valid configuration for serve/worker/run on
// the test servers, with overrides.
func serviceEnv(t *testing.T, over map[string]string) func(string) string {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	env := map[string]string{
		"RAPPORT_ENCRYPTION_KEYS": "k1:" + base64.StdEncoding.EncodeToString(key),
		"RAPPORT_HTTP_ADDR":       "127.0.0.1:0",
		"RAPPORT_LOG_LEVEL":       "error",
	}
	for k, v := range over {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

// unusedAddr is a loopback address nothing listens on: a port the kernel
// handed out and took back.
func unusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runFailing runs a command that must fail with exit 1 and one line on
// stderr containing every want.
func runFailing(t *testing.T, args []string, getenv func(string) string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr, getenv)
	msg := stderr.String()
	if code != 1 {
		t.Fatalf("rapport %s exited %d, want 1\nstderr:\n%s", strings.Join(args, " "), code, msg)
	}
	if n := strings.Count(strings.TrimRight(msg, "\n"), "\n"); n != 0 {
		t.Errorf("rapport %s printed %d lines on stderr, want one sentence:\n%s", strings.Join(args, " "), n+1, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("rapport %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, msg)
		}
	}
}

func withDatabase(t *testing.T, dsn, user, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

func TestStartupErrorsSayTheFix(t *testing.T) {
	t.Run("PostgreSQL unreachable", func(t *testing.T) {
		addr := unusedAddr(t)
		runFailing(t, []string{"worker"}, serviceEnv(t, map[string]string{"RAPPORT_DATABASE_URL": "postgres://" + addr + "/rapport?sslmode=disable"}),
			"cannot reach PostgreSQL at "+addr, "connection refused", "RAPPORT_DATABASE_URL")
	})
	t.Run("PostgreSQL unreachable, migrate", func(t *testing.T) {
		addr := unusedAddr(t)
		runFailing(t, []string{"migrate"}, serviceEnv(t, map[string]string{"RAPPORT_DATABASE_URL": "postgres://" + addr + "/rapport?sslmode=disable"}),
			"cannot reach PostgreSQL at "+addr, "make services")
	})
	t.Run("database missing", func(t *testing.T) {
		dsn := testenv.NewDatabaseURL(t) // a name nobody created
		runFailing(t, []string{"run"}, serviceEnv(t, map[string]string{"RAPPORT_DATABASE_URL": dsn}),
			"does not exist", "run `rapport migrate`")
	})
	t.Run("Redis unreachable", func(t *testing.T) {
		addr := unusedAddr(t)
		runFailing(t, []string{"worker"}, serviceEnv(t, map[string]string{
			"RAPPORT_DATABASE_URL": testenv.DSN(t), "RAPPORT_REDIS_URL": "redis://" + addr + "/0"}),
			"cannot reach Redis at "+addr, "RAPPORT_REDIS_URL")
	})
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		runFailing(t, []string{"serve"}, serviceEnv(t, map[string]string{"RAPPORT_HTTP_ADDR": ln.Addr().String()}),
			"cannot listen on "+ln.Addr().String(), "another program uses that port", "RAPPORT_HTTP_ADDR")
	})
	t.Run("too many connections", func(t *testing.T) {
		dsn := testenv.DSN(t)
		role, password := limitedRole(t)
		runFailing(t, []string{"worker"}, serviceEnv(t, map[string]string{"RAPPORT_DATABASE_URL": withDatabase(t, dsn, role, password)}),
			"has no connection left", "pool_max_conns", "this process opens up to", "max_connections")
	})
}

// limitedRole creates a role that may log in but never open a connection
// (CONNECTION LIMIT 0): PostgreSQL then refuses it with too_many_connections,
// as it refuses anyone once max_connections is reached.
func limitedRole(t *testing.T) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	role, password := "rapport_test_"+hex.EncodeToString(b), hex.EncodeToString(b)+"pw"
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN CONNECTION LIMIT 0 PASSWORD '"+password+"'"); err != nil {
		if os.Getenv("RAPPORT_TEST_ALLOW_SKIP") == "1" {
			t.Skipf("cannot create a role on the test server: %v", err)
		}
		t.Fatalf("create a role on the test server (the test user needs CREATEROLE; RAPPORT_TEST_ALLOW_SKIP=1 skips): %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, testenv.DatabaseURL()); err == nil {
			c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
			c.Close(ctx)
		}
	})
	return role, password
}

func TestMigrateSaysWhatItDid(t *testing.T) {
	dsn := testenv.NewDatabaseURL(t)
	env := func(k string) string {
		return map[string]string{"RAPPORT_DATABASE_URL": dsn, "RAPPORT_LOG_FORMAT": "text"}[k]
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"migrate"}, &stdout, &stderr, env); code != 0 {
		t.Fatalf("migrate exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "database is current: applied") {
		t.Errorf("first migrate printed %q, want it to say what it applied", stdout.String())
	}
	if !strings.Contains(stderr.String(), `msg="applied migration 1 (initial) in `) {
		t.Errorf("migrate's log does not say which migration it applied:\n%s", stderr.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"migrate"}, &stdout, &stderr, env); code != 0 {
		t.Fatalf("second migrate exited %d: %s", code, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "database is current: no migration to apply" {
		t.Errorf("second migrate printed %q", got)
	}
}
