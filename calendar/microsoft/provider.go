package microsoft

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
)

// Name is the provider's name in connections and webhook paths.
const Name = "microsoft"

// DefaultBaseURL is Graph's v1.0 API root (RAPPORT_MICROSOFT_API_URL).
const DefaultBaseURL = "https://graph.microsoft.com/v1.0/"

// The Microsoft identity platform's v2 endpoints for work and school
// accounts (the "organizations" tenant): RAPPORT_MICROSOFT_AUTH_URL and
// RAPPORT_MICROSOFT_TOKEN_URL default to these.
const (
	DefaultAuthURL  = "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
	DefaultTokenURL = "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
)

// Endpoint is the default OAuth endpoint. The token endpoint takes the
// client credentials in the form body.
var Endpoint = oauth2.Endpoint{AuthURL: DefaultAuthURL, TokenURL: DefaultTokenURL, AuthStyle: oauth2.AuthStyleInParams}

// Scopes are the OAuth scopes a connection asks for: a refresh token
// (offline_access), the signed-in account in the id_token (openid, profile
// for preferred_username, email), reading and patching events and
// subscribing to their changes (Calendars.ReadWrite), and signing in
// (User.Read).
var Scopes = []string{
	"offline_access", "openid", "profile", "email",
	"https://graph.microsoft.com/Calendars.ReadWrite",
	"https://graph.microsoft.com/User.Read",
}

// AccountFromToken returns the account of a token response: the id_token's
// email claim, else its preferred_username (the user principal name, which
// is the mailbox address in most tenants), lower-cased. The token came
// straight from the token endpoint over TLS, so its payload is trusted
// without checking the signature (OpenID Connect Core 3.1.3.7).
func AccountFromToken(tok *oauth2.Token) (string, error) {
	if tok == nil {
		return "", errors.New("microsoft: no token")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("microsoft: no id_token in the token response (the openid scope is needed)")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("microsoft: id_token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("microsoft: id_token payload is not base64url")
	}
	var claims struct {
		Email             string `json:"email"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("microsoft: id_token payload is not JSON")
	}
	for _, v := range []string{claims.Email, claims.PreferredUsername} {
		if v = strings.TrimSpace(v); strings.Count(v, "@") == 1 && !strings.HasPrefix(v, "@") && !strings.HasSuffix(v, "@") {
			return strings.ToLower(v), nil
		}
	}
	return "", errors.New("microsoft: id_token has neither an email nor a preferred_username address (the email and profile scopes are needed)")
}

// Config configures the provider and its sources. The zero value of every
// field means its default.
type Config struct {
	// BaseURL is Graph's API root (RAPPORT_MICROSOFT_API_URL). Default
	// DefaultBaseURL; a missing trailing slash is added. Cursors and page
	// tokens only ever follow links under it, so a stored link can never
	// send the mailbox's token elsewhere.
	BaseURL string
	// HTTPClient sends the requests. Default: a client with a 30-second
	// timeout.
	HTTPClient *http.Client
	// PageSize is asked for with Prefer: odata.maxpagesize. Default 100;
	// at most 1000.
	PageSize int
	// MaxRetries is how often one call is retried after a rate limit or a
	// transient failure before the classified error is returned. Default 3;
	// negative disables retries.
	MaxRetries int
	// BaseBackoff is the backoff ceiling of the first retry, doubled on each
	// further one; each wait is drawn from [0, ceiling] (full jitter).
	// Default 200ms.
	BaseBackoff time.Duration
	// MaxBackoff caps the backoff ceiling. Default 10s.
	MaxBackoff time.Duration
	// MaxWait is the longest wait (Retry-After, or the mailbox budget's)
	// slept inside a call; a longer one fails the call at once as
	// RateLimited with that Wait, for the caller to schedule. Default 30s.
	MaxWait time.Duration
	// PerMailbox is the connection's share of Graph's budget of 10,000
	// requests per 10 minutes per app and mailbox, taken through
	// calendar.Conn.Limiter (key "microsoft:" + connection id) when the
	// connection has one. Default 9,000 per 10 minutes with a burst of 500,
	// so at most 95% of the budget goes in any 10 minutes.
	PerMailbox provider.Limit
	// Concurrency is the most requests in flight per connection (Graph
	// allows 4 per mailbox). Default 4.
	Concurrency int
	// SubscriptionTTL is the subscription lifetime asked for; Graph refuses
	// more than 10,070 minutes for events and the answer's expiration is the
	// one used. Default 10,000 minutes.
	SubscriptionTTL time.Duration
	// Slide is how far the sync window may move before a cursor bound to it
	// expires: a listing asks Graph for [TimeMin, TimeMax+Slide), and a
	// cursor whose window starts more than Slide before the requested
	// TimeMin (or after it), or ends before the requested TimeMax, answers
	// CursorExpired.
	// Default 24h.
	Slide time.Duration
	// SkipPrivate stops reading Rapport's extended properties back into
	// Event.Private. Graph's calendarView delta cannot $expand them, so
	// reading them costs one GET per single event or exception listed.
	SkipPrivate bool
	// Clock reads Retry-After dates and times subscriptions. Default
	// time.Now.
	Clock func() time.Time
	// Sleep waits between retries and for the limiter; it returns ctx's
	// error when ctx ends first. Default: a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRequest, if set, is called after every HTTP request with its
	// endpoint name ("calendarView.delta", "events.get", "events.patch",
	// "subscriptions.create", ...) and status (0 when no answer came), for
	// metrics.
	OnRequest func(endpoint string, status int)
	// Logger receives retry diagnostics at debug level. Default discards.
	Logger *slog.Logger
}

const maxSubscriptionTTL = 10070 * time.Minute

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if !strings.HasSuffix(c.BaseURL, "/") {
		c.BaseURL += "/"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.PerMailbox == (provider.Limit{}) {
		c.PerMailbox = provider.Limit{Rate: 9000, Burst: 500, Period: 10 * time.Minute}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.SubscriptionTTL == 0 {
		c.SubscriptionTTL = 10000 * time.Minute
	}
	if c.Slide == 0 {
		c.Slide = 24 * time.Hour
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("microsoft: base URL %q (RAPPORT_MICROSOFT_API_URL) must be an absolute http(s) URL without a query", c.BaseURL)
	}
	switch {
	case c.PageSize < 1 || c.PageSize > 1000:
		return fmt.Errorf("microsoft: page size %d must be between 1 and 1000", c.PageSize)
	case c.BaseBackoff < 0 || c.MaxBackoff < c.BaseBackoff || c.MaxWait < 0:
		return errors.New("microsoft: backoff settings must be positive with MaxBackoff ≥ BaseBackoff")
	case c.PerMailbox.Rate < 1 || c.PerMailbox.Period <= 0 || c.PerMailbox.Burst < 0:
		return errors.New("microsoft: PerMailbox needs a positive rate and period")
	case c.Concurrency < 1:
		return fmt.Errorf("microsoft: concurrency %d must be at least 1", c.Concurrency)
	case c.SubscriptionTTL < time.Minute || c.SubscriptionTTL >= maxSubscriptionTTL:
		return fmt.Errorf("microsoft: subscription TTL %v must be under %v", c.SubscriptionTTL, maxSubscriptionTTL)
	case c.Slide < 0:
		return errors.New("microsoft: Slide must not be negative")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Provider is the Microsoft 365 calendar provider. Use it by pointer: it
// holds the per-connection request gates that every Source it opens for
// one connection shares. The zero Config is valid.
type Provider struct {
	Config

	mu    sync.Mutex
	gates map[string]chan struct{}
}

var _ calendar.Provider = (*Provider)(nil)

var (
	_ calendar.WebhookParser = (*Provider)(nil)
	_ calendar.Prober        = (*Provider)(nil)
)

// Probe implements calendar.Prober: one read of the calendar.
func (p *Provider) Probe(ctx context.Context, c calendar.Conn, calendarID string) error {
	if c.ID == "" {
		c.ID = "probe"
	}
	src, err := p.open(c)
	if err != nil {
		return err
	}
	path := "me/calendar"
	if calendarID != "" && calendarID != PrimaryCalendar {
		path = "me/calendars/" + url.PathEscape(calendarID)
	}
	return src.do(ctx, request{op: opCalendar, method: http.MethodGet, url: src.endpoint(path, nil), idempotent: true}, nil)
}

// ParseWebhook implements calendar.WebhookParser (see Parser).
func (p *Provider) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	return Parser{}.ParseWebhook(req)
}

// Name returns "microsoft".
func (p *Provider) Name() string { return Name }

// Open returns the Source of a connection. Sources of one connection
// opened by one Provider share its gate of Config.Concurrency requests in
// flight.
func (p *Provider) Open(ctx context.Context, c calendar.Conn) (calendar.Source, error) {
	return p.open(c)
}

func (p *Provider) open(c calendar.Conn) (*Source, error) {
	cfg := p.Config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, errors.New("microsoft: connection id required")
	}
	p.mu.Lock()
	if p.gates == nil {
		p.gates = make(map[string]chan struct{})
	}
	gate := p.gates[c.ID]
	if gate == nil {
		gate = make(chan struct{}, cfg.Concurrency)
		p.gates[c.ID] = gate
	}
	p.mu.Unlock()
	return newSource(cfg, c, gate)
}

// New returns a Source for one connection with a gate of its own; prefer
// Provider.Open, which shares the gate between the connection's Sources.
func New(cfg Config, c calendar.Conn) (*Source, error) {
	p := &Provider{Config: cfg}
	return p.open(c)
}
