package google

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
)

// providerName is Google's name in connections and webhook paths.
const providerName = "google"

// DefaultPerMinute is the client-side limit of requests per user: 90% of
// Google's 600 a minute.
const DefaultPerMinute = 540

// maxThrottleSleep is the longest a request waits for the limit in place;
// a longer wait fails the call as rate limited, so the task is retried
// later and its worker slot goes to other work.
const maxThrottleSleep = 250 * time.Millisecond

// Provider opens Google Calendar sources: the calendar.Provider of the
// registry.
type Provider struct {
	// Config is every source's configuration; its Throttle is set per
	// connection from the connection's limiter.
	Config Config
	// PerMinute is the limit of requests per connection (user) a minute,
	// shared by every process through the connection's limiter. Default
	// DefaultPerMinute.
	PerMinute int
}

var _ calendar.Provider = Provider{}

// Name implements calendar.Provider.
func (Provider) Name() string { return providerName }

// Open implements calendar.Provider.
func (p Provider) Open(ctx context.Context, c calendar.Conn) (calendar.Source, error) {
	cfg := p.Config
	if c.Limiter != nil {
		perMinute := p.PerMinute
		if perMinute == 0 {
			perMinute = DefaultPerMinute
		}
		cfg.Throttle = Throttle(c.Limiter, c.ID, perMinute)
	}
	return New(ctx, cfg, c.Tokens)
}

// Throttle paces one connection's requests at perMinute, a burst of up to
// 20, through lim. A wait longer than a quarter second fails the request
// as RateLimited with the wait, so the caller reschedules.
func Throttle(lim provider.Limiter, connID string, perMinute int) func(context.Context) error {
	key := "google:" + connID
	limit := provider.Limit{Rate: perMinute, Burst: min(20, perMinute), Period: time.Minute}
	return func(ctx context.Context) error {
		for {
			wait, err := lim.Allow(ctx, key, limit)
			if err != nil {
				return &calendar.Error{Class: calendar.Transient, Op: "ratelimit", Err: fmt.Errorf("rate limiter: %w", err)}
			}
			if wait == 0 {
				return nil
			}
			if wait > maxThrottleSleep {
				return &calendar.Error{Class: calendar.RateLimited, Wait: wait, Op: "ratelimit",
					Err: fmt.Errorf("Google limit of %d requests a minute for connection %s", perMinute, connID)}
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// counting wraps a transport to report each request's endpoint and status.
func counting(next http.RoundTripper, report func(endpoint string, status int)) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		report(endpoint(r), status)
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// endpoint names a Calendar API request without its ids.
func endpoint(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/channels/stop"):
		return opStop
	case strings.HasSuffix(p, "/events/watch"):
		return opWatch
	case strings.HasSuffix(p, "/events") && r.Method == http.MethodGet:
		return opList
	case strings.Contains(p, "/events/") && r.Method == http.MethodPatch:
		return opPatch
	case strings.Contains(p, "/events/") && r.Method == http.MethodGet:
		return opGet
	}
	return "other"
}

var _ calendar.WebhookParser = Provider{}

// ParseWebhook implements calendar.WebhookParser (Parser's).
func (Provider) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	return Parser{}.ParseWebhook(req)
}

// Scopes are the OAuth scopes Rapport asks of Google: the calendar's events
// (read and patch), and openid email so that the token response names the
// account.
var Scopes = []string{"openid", "email", "https://www.googleapis.com/auth/calendar.events"}

// AccountFromToken reads the "email" claim of the id_token in a Google
// token response: the account that signed in. The token came straight from
// Google's token endpoint over TLS, so its payload is trusted without
// checking the signature (OpenID Connect Core 3.1.3.7).
func AccountFromToken(tok *oauth2.Token) (string, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("no id_token in the token response: the openid and email scopes are needed")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("id_token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("id_token payload is not base64url")
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("id_token payload is not JSON")
	}
	if claims.Email == "" || !strings.Contains(claims.Email, "@") {
		return "", errors.New("id_token has no email claim")
	}
	return strings.ToLower(claims.Email), nil
}

var _ calendar.Prober = Provider{}

// Probe implements calendar.Prober: one events.list of at most one event
// of the calendar.
func (p Provider) Probe(ctx context.Context, c calendar.Conn, calendarID string) error {
	src, err := New(ctx, p.Config, c.Tokens)
	if err != nil {
		return err
	}
	return src.retry(ctx, opList, func(ctx context.Context) error {
		_, err := src.svc.Events.List(calendarID).MaxResults(1).TimeMin(time.Now().UTC().Format(time.RFC3339)).Context(ctx).Do()
		return err
	})
}
