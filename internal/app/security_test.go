package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/rapportsync/rapport/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAdminTokenWhitespaceRefused: a token with surrounding whitespace
// (a newline from a secrets file) never matches a bearer credential, so
// start-up refuses it in one sentence naming the variable.
func TestAdminTokenWhitespaceRefused(t *testing.T) {
	for _, tok := range []string{"0123456789abcdef0123\n", " 0123456789abcdef0123", "0123456789abcdef0123\t"} {
		_, err := loadConfig(t, map[string]string{"RAPPORT_ADMIN_TOKEN": tok})
		if err == nil {
			t.Errorf("token %q accepted", tok)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "RAPPORT_ADMIN_TOKEN") || !strings.Contains(msg, "whitespace") || strings.Contains(msg, "\n") {
			t.Errorf("token %q: %q, want one line naming RAPPORT_ADMIN_TOKEN and its whitespace", tok, msg)
		}
		if strings.Contains(msg, "0123456789abcdef") {
			t.Errorf("the error echoes the token: %q", msg)
		}
	}
}

// TestPoolSize: the pool is sized from what the process runs.
func TestPoolSize(t *testing.T) {
	def := map[string]int{}
	for _, c := range []struct {
		role Role
		conc map[string]int
		want int32
	}{
		{RoleServe, def, 10},
		{RoleWorker, def, 2*4 + 2*2 + 16 + 2*1 + 4},
		{RoleRun, def, 10 + 2*4 + 2*2 + 16 + 2*1 + 4},
		{RoleServe, map[string]int{"sync": 500}, 10}, // serve runs no worker
		{RoleWorker, map[string]int{"sync": 1, "crm": 1, "link": 2, "maintenance": 1}, 2 + 2 + 2 + 2 + 4},
		{RoleWorker, map[string]int{"link": 500}, 8 + 4 + 16 + 2 + 4},
	} {
		if got := PoolSize(c.role, c.conc, nil); got != c.want {
			t.Errorf("PoolSize(%v, %v) = %d, want %d", c.role, c.conc, got, c.want)
		}
	}
}

// TestPoolRefusedAboveMaxConnections starts an App against the real
// PostgreSQL with pools that cannot fit its max_connections (and one that
// can): the refusal is one sentence naming the setting to lower.
func TestPoolRefusedAboveMaxConnections(t *testing.T) {
	dsn := testenv.DSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	redisURL := fmt.Sprintf("redis://%s/%d", testenv.RedisAddr(), testenv.RedisDB(t))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name string
		env  map[string]string
		role Role
		want []string // substrings of the refusal; nil: starts
	}{
		{"pool_max_conns over the server", map[string]string{"RAPPORT_DATABASE_URL": dsn + sep + "pool_max_conns=100000"}, RoleRun,
			[]string{"pool_max_conns in RAPPORT_DATABASE_URL", "max_connections"}},
		{"worker concurrency over the server", map[string]string{"RAPPORT_DATABASE_URL": dsn, "RAPPORT_WORKER_CONCURRENCY": "sync=1000"}, RoleWorker,
			[]string{"RAPPORT_WORKER_CONCURRENCY", "max_connections"}},
		{"serve ignores worker concurrency", map[string]string{"RAPPORT_DATABASE_URL": dsn, "RAPPORT_WORKER_CONCURRENCY": "sync=1000"}, RoleServe, nil},
		{"tiny pool", map[string]string{"RAPPORT_DATABASE_URL": dsn + sep + "pool_max_conns=2"}, RoleRun, nil},
		{"tiny concurrency", map[string]string{"RAPPORT_DATABASE_URL": dsn, "RAPPORT_WORKER_CONCURRENCY": "sync=1,crm=1,link=1,maintenance=1"}, RoleRun, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.env["RAPPORT_REDIS_URL"] = redisURL
			c.env["RAPPORT_ENCRYPTION_KEYS"] = goodKey
			cfg, err := loadConfig(t, c.env)
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(context.Background(), cfg, logger, Options{Role: c.role})
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				a.Close()
				return
			}
			if err == nil {
				a.Close()
				t.Fatalf("started; want a refusal naming %v", c.want)
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("refusal %q does not say %q", msg, w)
				}
			}
			if strings.Count(msg, ". ") > 0 || strings.Contains(msg, "\n") {
				t.Errorf("refusal is more than one sentence: %q", msg)
			}
		})
	}
}

// TestRedisDownOneSentence: with Redis unreachable, New says so in one
// sentence naming the address and the variable.
func TestRedisDownOneSentence(t *testing.T) {
	cfg, err := loadConfig(t, map[string]string{"RAPPORT_DATABASE_URL": testenv.DSN(t), "RAPPORT_REDIS_URL": "redis://127.0.0.1:1/0",
		"RAPPORT_ENCRYPTION_KEYS": goodKey})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	if err == nil {
		a.Close()
		t.Fatal("started without Redis")
	}
	if msg := err.Error(); !strings.Contains(msg, "Redis at 127.0.0.1:1") || !strings.Contains(msg, "RAPPORT_REDIS_URL") || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one sentence naming Redis's address and RAPPORT_REDIS_URL", msg)
	}
}
