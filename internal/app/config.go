package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/pipeline/credentials"
)

// Config is Rapport's configuration, read from the environment; a flag of the
// same name (e.g. --database-url for RAPPORT_DATABASE_URL) overrides it.
type Config struct {
	DatabaseURL           string        // RAPPORT_DATABASE_URL
	RedisURL              string        // RAPPORT_REDIS_URL
	HTTPAddr              string        // RAPPORT_HTTP_ADDR
	PublicURL             string        // RAPPORT_PUBLIC_URL
	AdminToken            string        // RAPPORT_ADMIN_TOKEN
	EncryptionKeys        string        // RAPPORT_ENCRYPTION_KEYS
	RulesDir              string        // RAPPORT_RULES_DIR
	GoogleAPIURL          string        // RAPPORT_GOOGLE_API_URL
	GoogleAuthURL         string        // RAPPORT_GOOGLE_AUTH_URL
	GoogleTokenURL        string        // RAPPORT_GOOGLE_TOKEN_URL
	GoogleClientID        string        // RAPPORT_GOOGLE_CLIENT_ID
	GoogleClientSecret    string        // RAPPORT_GOOGLE_CLIENT_SECRET
	HubSpotAPIURL         string        // RAPPORT_HUBSPOT_API_URL
	HubSpotAuthURL        string        // RAPPORT_HUBSPOT_AUTH_URL
	HubSpotTokenURL       string        // RAPPORT_HUBSPOT_TOKEN_URL
	HubSpotClientID       string        // RAPPORT_HUBSPOT_CLIENT_ID
	HubSpotClientSecret   string        // RAPPORT_HUBSPOT_CLIENT_SECRET
	HubSpotRateLimit      string        // RAPPORT_HUBSPOT_RATE_LIMIT
	MicrosoftAPIURL       string        // RAPPORT_MICROSOFT_API_URL
	MicrosoftAuthURL      string        // RAPPORT_MICROSOFT_AUTH_URL
	MicrosoftTokenURL     string        // RAPPORT_MICROSOFT_TOKEN_URL
	MicrosoftClientID     string        // RAPPORT_MICROSOFT_CLIENT_ID
	MicrosoftClientSecret string        // RAPPORT_MICROSOFT_CLIENT_SECRET
	CalendlyAPIURL        string        // RAPPORT_CALENDLY_API_URL
	CalendlyAuthURL       string        // RAPPORT_CALENDLY_AUTH_URL
	CalendlyTokenURL      string        // RAPPORT_CALENDLY_TOKEN_URL
	CalendlyClientID      string        // RAPPORT_CALENDLY_CLIENT_ID
	CalendlyClientSecret  string        // RAPPORT_CALENDLY_CLIENT_SECRET
	CalendlySigningKey    string        // RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY
	Backfill              time.Duration // RAPPORT_BACKFILL
	Lookahead             time.Duration // RAPPORT_LOOKAHEAD
	LogFormat             string        // RAPPORT_LOG_FORMAT
	LogLevel              string        // RAPPORT_LOG_LEVEL
	WorkerConcurrency     string        // RAPPORT_WORKER_CONCURRENCY
	SyncEvery             time.Duration // RAPPORT_SYNC_EVERY
	SweepEvery            time.Duration // RAPPORT_SWEEP_EVERY
	SweepGrace            time.Duration // RAPPORT_SWEEP_GRACE
	CRMSearchLag          time.Duration // RAPPORT_CRM_SEARCH_LAG

	// Keys are the parsed EncryptionKeys.
	Keys []credentials.Key
	// Concurrency is the parsed WorkerConcurrency: workers per queue.
	Concurrency map[string]int
	// RateLimit and RateWindow are the parsed HubSpotRateLimit.
	RateLimit  int
	RateWindow time.Duration
}

// setting is one configuration variable.
type setting struct {
	env, def, help string
	str            *string
	dur            *time.Duration
	secret         bool
}

func (c *Config) settings() []setting {
	return []setting{
		{env: "RAPPORT_DATABASE_URL", def: "postgres://127.0.0.1:5432/rapport?sslmode=disable", help: "PostgreSQL URL (user from the environment / PGUSER)", str: &c.DatabaseURL},
		{env: "RAPPORT_REDIS_URL", def: "redis://127.0.0.1:6379/0", help: "Redis URL for the work queue and shared rate limits", str: &c.RedisURL},
		{env: "RAPPORT_HTTP_ADDR", def: "127.0.0.1:8080", help: "address the HTTP server listens on", str: &c.HTTPAddr},
		{env: "RAPPORT_PUBLIC_URL", def: "http://127.0.0.1:8080", help: "public base URL of the webhook addresses given to providers", str: &c.PublicURL},
		{env: "RAPPORT_ADMIN_TOKEN", help: "bearer token of the admin API (unset: the admin API refuses all requests)", str: &c.AdminToken, secret: true},
		{env: "RAPPORT_ENCRYPTION_KEYS", help: "token encryption keys, kid:base64key[,kid:base64key…], 32-byte keys, the first encrypts", str: &c.EncryptionKeys, secret: true},
		{env: "RAPPORT_RULES_DIR", help: "directory of rule files (unset: the built-in default rules)", str: &c.RulesDir},
		{env: "RAPPORT_GOOGLE_API_URL", def: "https://www.googleapis.com/calendar/v3/", help: "Google Calendar API base URL", str: &c.GoogleAPIURL},
		{env: "RAPPORT_GOOGLE_AUTH_URL", def: "https://accounts.google.com/o/oauth2/auth", help: "Google OAuth authorize URL", str: &c.GoogleAuthURL},
		{env: "RAPPORT_GOOGLE_TOKEN_URL", def: "https://oauth2.googleapis.com/token", help: "Google OAuth token URL", str: &c.GoogleTokenURL},
		{env: "RAPPORT_GOOGLE_CLIENT_ID", help: "Google OAuth client id", str: &c.GoogleClientID},
		{env: "RAPPORT_GOOGLE_CLIENT_SECRET", help: "Google OAuth client secret", str: &c.GoogleClientSecret, secret: true},
		{env: "RAPPORT_HUBSPOT_API_URL", def: "https://api.hubapi.com", help: "HubSpot API base URL", str: &c.HubSpotAPIURL},
		{env: "RAPPORT_HUBSPOT_AUTH_URL", def: "https://app.hubspot.com/oauth/authorize", help: "HubSpot OAuth authorize URL", str: &c.HubSpotAuthURL},
		{env: "RAPPORT_HUBSPOT_TOKEN_URL", def: "https://api.hubapi.com/oauth/v1/token", help: "HubSpot OAuth token URL", str: &c.HubSpotTokenURL},
		{env: "RAPPORT_HUBSPOT_CLIENT_ID", help: "HubSpot OAuth client id", str: &c.HubSpotClientID},
		{env: "RAPPORT_HUBSPOT_CLIENT_SECRET", help: "HubSpot OAuth client secret (also verifies HubSpot webhook signatures)", str: &c.HubSpotClientSecret, secret: true},
		{env: "RAPPORT_HUBSPOT_RATE_LIMIT", def: "100/10s", help: "HubSpot requests per window (190/10s for Professional/Enterprise portals)", str: &c.HubSpotRateLimit},
		{env: "RAPPORT_MICROSOFT_API_URL", def: "https://graph.microsoft.com/v1.0/", help: "Microsoft Graph API base URL", str: &c.MicrosoftAPIURL},
		{env: "RAPPORT_MICROSOFT_AUTH_URL", def: "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize", help: "Microsoft identity platform authorize URL", str: &c.MicrosoftAuthURL},
		{env: "RAPPORT_MICROSOFT_TOKEN_URL", def: "https://login.microsoftonline.com/organizations/oauth2/v2.0/token", help: "Microsoft identity platform token URL", str: &c.MicrosoftTokenURL},
		{env: "RAPPORT_MICROSOFT_CLIENT_ID", help: "Microsoft OAuth client (application) id", str: &c.MicrosoftClientID},
		{env: "RAPPORT_MICROSOFT_CLIENT_SECRET", help: "Microsoft OAuth client secret", str: &c.MicrosoftClientSecret, secret: true},
		{env: "RAPPORT_CALENDLY_API_URL", def: "https://api.calendly.com/", help: "Calendly API base URL", str: &c.CalendlyAPIURL},
		{env: "RAPPORT_CALENDLY_AUTH_URL", def: "https://auth.calendly.com/oauth/authorize", help: "Calendly OAuth authorize URL", str: &c.CalendlyAuthURL},
		{env: "RAPPORT_CALENDLY_TOKEN_URL", def: "https://auth.calendly.com/oauth/token", help: "Calendly OAuth token URL", str: &c.CalendlyTokenURL},
		{env: "RAPPORT_CALENDLY_CLIENT_ID", help: "Calendly OAuth client id", str: &c.CalendlyClientID},
		{env: "RAPPORT_CALENDLY_CLIENT_SECRET", help: "Calendly OAuth client secret", str: &c.CalendlyClientSecret, secret: true},
		{env: "RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY", help: "the Calendly OAuth app's webhook signing key, for subscriptions Calendly signs with the app's key", str: &c.CalendlySigningKey, secret: true},
		{env: "RAPPORT_BACKFILL", def: "2160h", help: "how far back the initial sync reaches", dur: &c.Backfill},
		{env: "RAPPORT_LOOKAHEAD", def: "720h", help: "how far ahead meetings are logged", dur: &c.Lookahead},
		{env: "RAPPORT_LOG_FORMAT", def: "json", help: "log format: json or text", str: &c.LogFormat},
		{env: "RAPPORT_LOG_LEVEL", def: "info", help: "log level: debug, info, warn or error", str: &c.LogLevel},
		{env: "RAPPORT_WORKER_CONCURRENCY", def: "sync=4,crm=2,link=64,maintenance=1", help: "workers per queue of `worker` and `run`", str: &c.WorkerConcurrency},
		{env: "RAPPORT_SYNC_EVERY", def: "15m", help: "period of the incremental sync of every calendar (webhooks are the fast path)", dur: &c.SyncEvery},
		{env: "RAPPORT_SWEEP_EVERY", def: "30s", help: "period of the sweep that re-queues work the database says is pending (lost tasks)", dur: &c.SweepEvery},
		{env: "RAPPORT_SWEEP_GRACE", def: "1m", help: "how long pending work may wait before the sweep queues it again", dur: &c.SweepGrace},
		{env: "RAPPORT_CRM_SEARCH_LAG", def: "30s", help: "how long a record created in the CRM may stay invisible to its search: a create of unknown outcome is searched for only after it", dur: &c.CRMSearchLag},
	}
}

// flagName turns RAPPORT_DATABASE_URL into database-url.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "RAPPORT_")), "_", "-")
}

// configError is a bad configuration value; it names the variable.
type configError struct {
	Var string
	Msg string
}

func (e *configError) Error() string { return e.Var + ": " + e.Msg }

// BindConfig registers the configuration flags on fs. Call load after
// fs.Parse to fill and validate the Config.
func BindConfig(fs *flag.FlagSet) func(getenv func(string) string) (*Config, error) {
	return BindConfigFor(fs, nil)
}

// BindConfigFor is BindConfig for a command that uses only the variables
// named in vars (nil: every variable). Only their flags are registered, so
// the command's --help lists what it reads, and only they are read from the
// environment; every other setting keeps its default, which is valid.
func BindConfigFor(fs *flag.FlagSet, vars []string) func(getenv func(string) string) (*Config, error) {
	c := &Config{}
	used := func(env string) bool { return vars == nil || slices.Contains(vars, env) }
	raw := map[string]*string{}
	for _, s := range c.settings() {
		v := new(string)
		raw[s.env] = v
		if !used(s.env) {
			continue
		}
		def := s.def
		help := s.help + " (env " + s.env
		if def != "" {
			help += ", default " + def
		}
		help += ")"
		fs.StringVar(v, flagName(s.env), "", help)
		fs.StringVar(v, s.env, "", "same as --"+flagName(s.env))
	}
	return func(getenv func(string) string) (*Config, error) {
		var errs []error
		for _, s := range c.settings() {
			val := *raw[s.env]
			if val == "" && used(s.env) {
				val = getenv(s.env)
			}
			if val == "" {
				val = s.def
			}
			switch {
			case s.str != nil:
				*s.str = val
			case s.dur != nil:
				d, err := time.ParseDuration(val)
				if err != nil || d <= 0 {
					errs = append(errs, &configError{s.env, fmt.Sprintf("%q is not a positive duration (e.g. 2160h)", val)})
				}
				*s.dur = d
			}
		}
		errs = append(errs, c.validate()...)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return c, nil
	}
}

// Variables lists every configuration variable with its default ("" for
// none) and its help, in the order of the reference.
func Variables() []Variable {
	var out []Variable
	for _, s := range (&Config{}).settings() {
		out = append(out, Variable{Name: s.env, Default: s.def, Help: s.help, Secret: s.secret})
	}
	return out
}

// Variable is one configuration variable.
type Variable struct {
	Name, Default, Help string
	// Secret values are never printed.
	Secret bool
}

var rateLimitRE = regexp.MustCompile(`^([0-9]+)/([0-9]+(?:ms|s|m))$`)

func (c *Config) validate() []error {
	var errs []error
	bad := func(env, format string, args ...any) {
		errs = append(errs, &configError{env, fmt.Sprintf(format, args...)})
	}
	checkURL := func(env, val string, schemes ...string) {
		u, err := url.Parse(val)
		if err != nil || u.Host == "" {
			bad(env, "%q is not a URL", val)
			return
		}
		for _, s := range schemes {
			if u.Scheme == s {
				return
			}
		}
		bad(env, "%q: scheme must be %s", val, strings.Join(schemes, " or "))
	}
	checkURL("RAPPORT_DATABASE_URL", c.DatabaseURL, "postgres", "postgresql")
	if _, err := redisconn.Parse(c.RedisURL); err != nil {
		bad("RAPPORT_REDIS_URL", "%s", strings.TrimPrefix(err.Error(), "redis url: "))
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("RAPPORT_HTTP_ADDR", "%q is not host:port", c.HTTPAddr)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("RAPPORT_HTTP_ADDR", "%q has an invalid port", c.HTTPAddr)
	}
	checkURL("RAPPORT_PUBLIC_URL", c.PublicURL, "http", "https")
	for _, u := range []struct{ env, val string }{
		{"RAPPORT_GOOGLE_API_URL", c.GoogleAPIURL}, {"RAPPORT_GOOGLE_AUTH_URL", c.GoogleAuthURL}, {"RAPPORT_GOOGLE_TOKEN_URL", c.GoogleTokenURL},
		{"RAPPORT_HUBSPOT_API_URL", c.HubSpotAPIURL}, {"RAPPORT_HUBSPOT_AUTH_URL", c.HubSpotAuthURL}, {"RAPPORT_HUBSPOT_TOKEN_URL", c.HubSpotTokenURL},
		{"RAPPORT_MICROSOFT_API_URL", c.MicrosoftAPIURL}, {"RAPPORT_MICROSOFT_AUTH_URL", c.MicrosoftAuthURL}, {"RAPPORT_MICROSOFT_TOKEN_URL", c.MicrosoftTokenURL},
		{"RAPPORT_CALENDLY_API_URL", c.CalendlyAPIURL}, {"RAPPORT_CALENDLY_AUTH_URL", c.CalendlyAuthURL}, {"RAPPORT_CALENDLY_TOKEN_URL", c.CalendlyTokenURL},
	} {
		checkURL(u.env, u.val, "http", "https")
	}
	if c.EncryptionKeys != "" {
		keys, err := credentials.ParseKeys(c.EncryptionKeys)
		if err != nil {
			bad("RAPPORT_ENCRYPTION_KEYS", "%v", err) // never echo the value: it is a secret
		}
		c.Keys = keys
	}
	switch {
	case c.AdminToken != strings.TrimSpace(c.AdminToken):
		// A token read from a file often ends in a newline; the bearer
		// credential a client sends never does, so it would never match.
		bad("RAPPORT_ADMIN_TOKEN", "has leading or trailing whitespace (a newline from a file?), which no request can send: remove it")
	case c.AdminToken != "" && len(c.AdminToken) < 16:
		bad("RAPPORT_ADMIN_TOKEN", "too short: use at least 16 characters")
	}
	if c.RulesDir != "" {
		if st, err := os.Stat(c.RulesDir); err != nil || !st.IsDir() {
			bad("RAPPORT_RULES_DIR", "%q is not a directory", c.RulesDir)
		}
	}
	if m := rateLimitRE.FindStringSubmatch(c.HubSpotRateLimit); m == nil {
		bad("RAPPORT_HUBSPOT_RATE_LIMIT", "%q: want requests/window, e.g. 100/10s", c.HubSpotRateLimit)
	} else {
		n, _ := strconv.Atoi(m[1])
		w, _ := time.ParseDuration(m[2])
		if n <= 0 || w <= 0 {
			bad("RAPPORT_HUBSPOT_RATE_LIMIT", "%q: requests and window must be positive", c.HubSpotRateLimit)
		}
		c.RateLimit, c.RateWindow = n, w
	}
	c.Concurrency = map[string]int{}
	for _, part := range strings.Split(c.WorkerConcurrency, ",") {
		q, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v < 1 || v > 1000 || !slices.Contains([]string{"sync", "crm", "link", "maintenance"}, q) {
			bad("RAPPORT_WORKER_CONCURRENCY", "%q: want queue=n pairs for sync, crm, link, maintenance (n from 1 to 1000)", part)
			break
		}
		c.Concurrency[q] = v
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("RAPPORT_LOG_FORMAT", "%q: want json or text", c.LogFormat)
	}
	if _, ok := LogLevels[c.LogLevel]; !ok {
		bad("RAPPORT_LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	return errs
}

// RequireService checks what serving and working need beyond the defaults.
func (c *Config) RequireService() error {
	if len(c.Keys) == 0 {
		return &configError{"RAPPORT_ENCRYPTION_KEYS", "required: set kid:base64key with a 32-byte key (e.g. k1:$(openssl rand -base64 32))"}
	}
	return nil
}

// LogLevels maps RAPPORT_LOG_LEVEL values to levels.
var LogLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// Logger is the configured logger writing to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: LogLevels[c.LogLevel]}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
