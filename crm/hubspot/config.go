package hubspot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/internal/provider"
)

// DefaultBaseURL is HubSpot's API host.
const DefaultBaseURL = "https://api.hubapi.com"

// Limit is a request budget per rolling window, e.g. 100 requests per 10 s.
type Limit struct {
	Requests int
	Window   time.Duration
}

// ParseLimit parses a limit written as "REQUESTS/WINDOW", e.g. "100/10s" or
// "190/10s" (RAPPORT_HUBSPOT_RATE_LIMIT). A window without a number means
// one unit: "5/s" is "5/1s".
func ParseLimit(s string) (Limit, error) {
	n, w, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("rate limit %q: want REQUESTS/WINDOW, e.g. 100/10s", s)
	}
	reqs, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || reqs < 1 {
		return Limit{}, fmt.Errorf("rate limit %q: requests must be a positive integer", s)
	}
	w = strings.TrimSpace(w)
	if w != "" && (w[0] < '0' || w[0] > '9') {
		w = "1" + w
	}
	win, err := time.ParseDuration(w)
	if err != nil || win <= 0 {
		return Limit{}, fmt.Errorf("rate limit %q: window must be a positive duration such as 10s", s)
	}
	if win > 24*time.Hour {
		return Limit{}, fmt.Errorf("rate limit %q: window longer than a day", s)
	}
	return Limit{Requests: reqs, Window: win}, nil
}

func (l Limit) String() string { return fmt.Sprintf("%d/%s", l.Requests, l.Window) }

// Config configures a Client. The zero value of every field but the token
// source is usable.
type Config struct {
	// BaseURL is the API's base URL (RAPPORT_HUBSPOT_API_URL). Default
	// https://api.hubapi.com.
	BaseURL string
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	HTTPClient *http.Client
	// Limiter shares the portal's budget between processes (a Redis-backed
	// provider.Limiter). Nil: an in-process limiter only, which is right
	// for a single process.
	Limiter provider.Limiter
	// RateLimit is the portal's burst limit (RAPPORT_HUBSPOT_RATE_LIMIT).
	// Default 100/10s. The client spends at most 90% of it.
	RateLimit Limit
	// SearchPerSecond is the search API's separate limit. Default 5.
	SearchPerSecond int
	// PortalID is the HubSpot portal (hub id) the token belongs to; rate
	// limits are kept per portal. Empty: asked from the account-info API on
	// first use.
	PortalID string
	// Clock tells the wall time (for DAILY limit resets). Default time.Now.
	// Rate limiting and backoff use real elapsed time.
	Clock func() time.Time
	// MaxRetries is how many times a transient or rate-limited request is
	// retried inside the client before the classified error is returned.
	// Default 4; negative: no retries.
	MaxRetries int
	// RetryBase is the first backoff delay, doubled on each retry and
	// jittered. Default 500ms.
	RetryBase time.Duration
	// MaxWait is the longest wait the client sleeps through itself (a
	// rate-limit pause or a Retry-After); a longer one (HubSpot's daily
	// limit) is returned at once as a crm.RateLimited error with its Wait.
	// Default 30s.
	MaxWait time.Duration
	// Logger receives retries and rate-limit pauses. Default: discarded.
	Logger *slog.Logger
	// OnRequest, if set, is called after every HTTP exchange with the
	// endpoint name (e.g. "meetings.batch.create"), the status (0 when no
	// response arrived) and the duration, for metrics.
	OnRequest func(endpoint string, status int, d time.Duration)
	// OnRateLimitWait, if set, is called with every wait imposed by the
	// client-side limiter or by a 429, for metrics.
	OnRateLimitWait func(d time.Duration)
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.RateLimit == (Limit{}) {
		c.RateLimit = Limit{Requests: 100, Window: 10 * time.Second}
	}
	if c.SearchPerSecond == 0 {
		c.SearchPerSecond = 5
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryBase == 0 {
		c.RetryBase = 500 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("hubspot: base URL %q: want an absolute http(s) URL", c.BaseURL)
	}
	if c.RateLimit.Requests < 1 || c.RateLimit.Window <= 0 {
		return fmt.Errorf("hubspot: rate limit %s: want a positive number of requests per positive window", c.RateLimit)
	}
	if c.SearchPerSecond < 1 {
		return errors.New("hubspot: SearchPerSecond must be positive")
	}
	if c.RetryBase < 0 || c.MaxWait < 0 {
		return errors.New("hubspot: RetryBase and MaxWait must not be negative")
	}
	return nil
}
