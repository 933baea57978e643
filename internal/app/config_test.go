package app

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func loadConfig(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	load := BindConfig(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return load(func(k string) string { return env[k] })
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"RAPPORT_DATABASE_URL":       "postgres://127.0.0.1:5432/rapport?sslmode=disable",
		"RAPPORT_REDIS_URL":          "redis://127.0.0.1:6379/0",
		"RAPPORT_HTTP_ADDR":          "127.0.0.1:8080",
		"RAPPORT_PUBLIC_URL":         "http://127.0.0.1:8080",
		"RAPPORT_ADMIN_TOKEN":        "",
		"RAPPORT_ENCRYPTION_KEYS":    "",
		"RAPPORT_RULES_DIR":          "",
		"RAPPORT_GOOGLE_API_URL":     "https://www.googleapis.com/calendar/v3/",
		"RAPPORT_HUBSPOT_API_URL":    "https://api.hubapi.com",
		"RAPPORT_HUBSPOT_RATE_LIMIT": "100/10s",
		"RAPPORT_LOG_FORMAT":         "json",
		"RAPPORT_LOG_LEVEL":          "info",
	}
	for _, s := range c.settings() {
		if w, ok := want[s.env]; ok && s.str != nil && *s.str != w {
			t.Errorf("%s = %q, want %q", s.env, *s.str, w)
		}
	}
	if c.Backfill != 2160*time.Hour || c.Lookahead != 720*time.Hour {
		t.Errorf("backfill/lookahead = %v/%v", c.Backfill, c.Lookahead)
	}
	if c.RateLimit != 100 || c.RateWindow != 10*time.Second {
		t.Errorf("rate limit = %d/%v", c.RateLimit, c.RateWindow)
	}
	if err := c.RequireService(); err == nil || !strings.Contains(err.Error(), "RAPPORT_ENCRYPTION_KEYS") {
		t.Errorf("requireService without keys = %v, want an error naming RAPPORT_ENCRYPTION_KEYS", err)
	}
}

const goodKey = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// TestConfigEveryVariable sets each variable to a good and a bad value.
func TestConfigEveryVariable(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		env, good, bad string
	}{
		{"RAPPORT_DATABASE_URL", "postgresql://db.internal:5433/rapport", "mysql://x/y"},
		{"RAPPORT_REDIS_URL", "rediss://cache:6380/2", "not a url"},
		{"RAPPORT_HTTP_ADDR", ":9090", "localhost"},
		{"RAPPORT_PUBLIC_URL", "https://rapport.example.com", "ftp://x"},
		{"RAPPORT_ADMIN_TOKEN", "0123456789abcdef0123", "short"},
		{"RAPPORT_ENCRYPTION_KEYS", goodKey + ",old:" + strings.Repeat("A", 43) + "=", "k1:c2hvcnQ="},
		{"RAPPORT_RULES_DIR", dir, dir + "/missing"},
		{"RAPPORT_GOOGLE_API_URL", "http://127.0.0.1:9/calendar/v3/", "::"},
		{"RAPPORT_GOOGLE_AUTH_URL", "http://127.0.0.1:9/auth", "no-scheme"},
		{"RAPPORT_GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token", "//"},
		{"RAPPORT_GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com", ""},
		{"RAPPORT_GOOGLE_CLIENT_SECRET", "s3cret", ""},
		{"RAPPORT_HUBSPOT_API_URL", "http://127.0.0.1:9", "api.hubapi.com"},
		{"RAPPORT_HUBSPOT_AUTH_URL", "http://127.0.0.1:9/oauth/authorize", "x"},
		{"RAPPORT_HUBSPOT_TOKEN_URL", "http://127.0.0.1:9/oauth/v1/token", "x"},
		{"RAPPORT_HUBSPOT_CLIENT_ID", "abc", ""},
		{"RAPPORT_HUBSPOT_CLIENT_SECRET", "def", ""},
		{"RAPPORT_HUBSPOT_RATE_LIMIT", "190/10s", "fast"},
		{"RAPPORT_BACKFILL", "720h", "-1h"},
		{"RAPPORT_LOOKAHEAD", "48h", "soon"},
		{"RAPPORT_LOG_FORMAT", "text", "xml"},
		{"RAPPORT_LOG_LEVEL", "debug", "loud"},
		{"RAPPORT_WORKER_CONCURRENCY", "sync=8,crm=1", "sync=0"},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			c, err := loadConfig(t, map[string]string{tc.env: tc.good})
			if err != nil {
				t.Fatalf("good value %q: %v", tc.good, err)
			}
			var got string
			for _, s := range c.settings() {
				if s.env == tc.env {
					if s.str != nil {
						got = *s.str
					} else {
						got = s.dur.String()
					}
				}
			}
			if s := tc.good; !strings.HasSuffix(s, "h") && got != s {
				t.Errorf("value = %q, want %q", got, s)
			}
			if tc.bad == "" {
				return // free-form value
			}
			_, err = loadConfig(t, map[string]string{tc.env: tc.bad})
			if err == nil || !strings.Contains(err.Error(), tc.env) {
				t.Fatalf("bad value %q: err = %v, want one naming %s", tc.bad, err, tc.env)
			}
			if strings.Contains(tc.env, "KEYS") && strings.Contains(err.Error(), tc.bad) {
				t.Errorf("error echoes the secret: %v", err)
			}
		})
	}
}

func TestFlagOverridesEnvironment(t *testing.T) {
	env := map[string]string{"RAPPORT_HTTP_ADDR": "127.0.0.1:1111", "RAPPORT_LOG_LEVEL": "warn"}
	c, err := loadConfig(t, env, "--http-addr", "127.0.0.1:2222", "--RAPPORT_LOG_LEVEL=error")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:2222" || c.LogLevel != "error" {
		t.Errorf("HTTPAddr=%q LogLevel=%q; flags should override the environment", c.HTTPAddr, c.LogLevel)
	}
}

func TestEncryptionKeysParsed(t *testing.T) {
	c, err := loadConfig(t, map[string]string{"RAPPORT_ENCRYPTION_KEYS": goodKey + ",k0:" + strings.Repeat("B", 43) + "="})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Keys) != 2 || c.Keys[0].ID != "k1" || len(c.Keys[0].Secret) != 32 {
		t.Fatalf("keys = %+v", c.Keys)
	}
	for _, bad := range []string{"k1", "k1:" + goodKey[3:] + ",k1:" + goodKey[3:], "k 1:" + goodKey[3:], ":" + goodKey[3:]} {
		if _, err := loadConfig(t, map[string]string{"RAPPORT_ENCRYPTION_KEYS": bad}); err == nil {
			t.Errorf("keys %q accepted", bad)
		}
	}
}
