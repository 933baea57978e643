package calendly

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/internal/provider"
)

// ProviderName is the provider's name in connections and webhook paths.
const ProviderName = "calendly"

// Calendly's endpoints (RAPPORT_CALENDLY_API_URL, RAPPORT_CALENDLY_AUTH_URL,
// RAPPORT_CALENDLY_TOKEN_URL).
const (
	DefaultBaseURL  = "https://api.calendly.com/"
	DefaultAuthURL  = "https://auth.calendly.com/oauth/authorize"
	DefaultTokenURL = "https://auth.calendly.com/oauth/token"
)

// Scopes are the OAuth scopes Rapport asks for: who the user is and its
// role (users:read, organizations:read), event type names
// (event_types:read), scheduled events and their invitees
// (scheduled_events:read, which is also what invitee.* webhooks need), and
// creating, reading and deleting webhook subscriptions (webhooks:write,
// which includes webhooks:read). A personal access token needs the same.
// Tokens issued before Calendly introduced scopes (March 2026) have full
// access.
var Scopes = []string{"users:read", "organizations:read", "event_types:read", "scheduled_events:read", "webhooks:write"}

// Connection scopes: which scheduled events a connection covers.
const (
	// ScopeOrganization covers every member's events; it needs a token of
	// an owner or admin of the organization.
	ScopeOrganization = "organization"
	// ScopeUser covers the events the token's user hosts.
	ScopeUser = "user"
)

// Webhook subscription states (SubscriptionState).
const (
	SubscriptionActive   = "active"
	SubscriptionDisabled = "disabled"
)

// ListingCursor is the cursor the last page of a listing carries. Calendly
// has no sync token: a List with this cursor is a full listing of the
// window again (see the package documentation).
const ListingCursor = "listing"

// DefaultLimit paces one connection's requests: 240 a minute after a burst
// of 20. Calendly allows 500 requests a minute per user on paid plans (50 on
// the free plan, which has no webhooks and so cannot be connected) and
// counts every integration of the user against it; half leaves room for the
// others.
var DefaultLimit = provider.Limit{Rate: 240, Burst: 20, Period: time.Minute}

// Endpoint returns Calendly's OAuth endpoint; empty URLs mean Calendly's
// own. The token endpoint takes the client credentials in HTTP Basic auth
// (Calendly's "web clients"). Refresh tokens are single-use: every refresh
// answers a new one, which must replace the stored one (the vault does).
func Endpoint(authURL, tokenURL string) oauth2.Endpoint {
	if authURL == "" {
		authURL = DefaultAuthURL
	}
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	return oauth2.Endpoint{AuthURL: authURL, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
}

// OAuthConfig returns the authorization-code flow's configuration with
// Scopes. Access tokens last two hours; a personal access token needs no
// flow at all (it neither expires nor refreshes).
func OAuthConfig(clientID, clientSecret, redirectURL, authURL, tokenURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  redirectURL,
		Endpoint:     Endpoint(authURL, tokenURL),
		Scopes:       slices.Clone(Scopes),
	}
}

// Config configures the Provider and its Sources. The zero value of every
// field means its default.
type Config struct {
	// BaseURL is the API root (RAPPORT_CALENDLY_API_URL). Default
	// DefaultBaseURL; a missing trailing slash is added.
	BaseURL string
	// HTTPClient sends the requests; its Transport is wrapped to add the
	// OAuth token. Default: a client with a 30-second timeout.
	HTTPClient *http.Client
	// PageSize is how many scheduled events one List page holds (Calendly's
	// count, at most 100). Each event costs at least one more request for
	// its invitees, so a page is kept small. Default 25.
	PageSize int
	// MaxRetries is how often one request is retried after a rate limit or
	// a transient failure before the classified error is returned.
	// Default 3; negative disables retries.
	MaxRetries int
	// BaseBackoff is the backoff ceiling of the first retry, doubled on
	// each further one; each wait is drawn from [0, ceiling] (full
	// jitter). Default 200ms.
	BaseBackoff time.Duration
	// MaxBackoff caps the backoff ceiling. Default 10s.
	MaxBackoff time.Duration
	// MaxWait is the longest wait (Retry-After, X-RateLimit-Reset, the
	// limiter) slept inside a call; a longer one is returned at once as a
	// RateLimited error with that Wait, for the caller to schedule.
	// Default 30s.
	MaxWait time.Duration
	// Limit is the client-side rate applied through calendar.Conn.Limiter
	// under the key "calendly:"+Conn.ID. Default DefaultLimit.
	Limit provider.Limit
	// Clock reads the time (rate-limit dates, cache ages). Default
	// time.Now.
	Clock func() time.Time
	// Sleep waits d or until ctx is done (backoff, rate limits). Default a
	// timer; tests inject one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives retry diagnostics at debug level. Default discards.
	Logger *slog.Logger
	// AppSigningKey is the OAuth app's webhook signing key
	// (RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY): deliveries that do not verify
	// with their subscription's key are tried with it.
	AppSigningKey []byte
	// OnRequest, if set, is told of every HTTP request by endpoint name and
	// status (0: no response): the metrics hook.
	OnRequest func(endpoint string, status int)
}

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
		c.PageSize = 25
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
	if c.Limit == (provider.Limit{}) {
		c.Limit = DefaultLimit
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
		return fmt.Errorf("calendly: base URL %q (RAPPORT_CALENDLY_API_URL) must be an absolute http(s) URL without a query", c.BaseURL)
	}
	if c.PageSize < 1 || c.PageSize > 100 {
		return fmt.Errorf("calendly: page size %d must be between 1 and 100", c.PageSize)
	}
	if c.BaseBackoff < 0 || c.MaxBackoff < c.BaseBackoff || c.MaxWait < 0 {
		return errors.New("calendly: backoff settings must be positive with MaxBackoff ≥ BaseBackoff")
	}
	if c.Limit.Rate < 1 || c.Limit.Period <= 0 || c.Limit.Burst < 0 {
		return errors.New("calendly: rate limit needs a positive rate and period")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
