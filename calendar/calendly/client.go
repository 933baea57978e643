package calendly

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
)

// Operation names, as they appear in calendar.Error.Op.
const (
	opListEvents     = "scheduled_events.list"
	opGetEvent       = "scheduled_events.get"
	opListInvitees   = "invitees.list"
	opGetInvitee     = "invitees.get"
	opGetEventType   = "event_types.get"
	opMe             = "users.me"
	opMemberships    = "organization_memberships.list"
	opCreateWebhook  = "webhook_subscriptions.create"
	opListWebhooks   = "webhook_subscriptions.list"
	opGetWebhook     = "webhook_subscriptions.get"
	opDeleteWebhook  = "webhook_subscriptions.delete"
	maxResponseBytes = 8 << 20
)

// client sends Calendly API requests for one token source: it paces them
// through the limiter, retries rate limits and transient failures, and
// returns every failure as a *calendar.Error.
type client struct {
	cfg      Config
	http     *http.Client
	limiter  provider.Limiter
	limitKey string
}

func newClient(cfg Config, ts oauth2.TokenSource, limiter provider.Limiter, limitKey string) *client {
	base := cfg.HTTPClient
	return &client{
		cfg: cfg,
		http: &http.Client{
			Transport:     &oauth2.Transport{Source: ts, Base: base.Transport},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Jar:           base.Jar,
			Timeout:       base.Timeout,
		},
		limiter:  limiter,
		limitKey: limitKey,
	}
}

// httpError is an answer other than 2xx. Its text holds the status, the
// operation's path (never a query) and Calendly's error title, or a
// sentence of ours; never Calendly's message, which may echo input.
type httpError struct {
	Status int
	Title  string
	// Reason says why a 403 was refused: reasonScope, reasonPlan or
	// reasonRole; "" otherwise.
	Reason string
	detail string
}

// Reasons of a 403.
const (
	reasonScope = "scope" // the token lacks a scope
	reasonPlan  = "plan"  // the Calendly plan does not include the feature
	reasonRole  = "role"  // the user's role does not allow it
)

func (e *httpError) Error() string {
	s := "HTTP " + strconv.Itoa(e.Status)
	if e.Title != "" {
		s += " " + e.Title
	}
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// statusOf returns the HTTP status an error carries, or 0.
func statusOf(err error) int {
	var h *httpError
	if errors.As(err, &h) {
		return h.Status
	}
	return 0
}

// reasonOf returns the reason of a 403 an error carries, or "".
func reasonOf(err error) string {
	var h *httpError
	if errors.As(err, &h) {
		return h.Reason
	}
	return ""
}

// safeError shows a sanitised text while keeping the original error in
// the chain (errors.As still finds an *oauth2.RetrieveError in it).
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// do sends one request and decodes a 2xx JSON answer into out (if not
// nil). path is relative to BaseURL.
func (c *client) do(ctx context.Context, op, method, path string, query url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return &calendar.Error{Class: calendar.Permanent, Op: op, Err: err}
		}
	}
	u := c.cfg.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		if err := c.throttle(ctx, op); err != nil {
			return err
		}
		data, status, err := c.roundTrip(ctx, method, u, path, body)
		if c.cfg.OnRequest != nil {
			c.cfg.OnRequest(op, status)
		}
		if err == nil {
			if out == nil || len(data) == 0 {
				return nil
			}
			if err := json.Unmarshal(data, out); err != nil {
				return &calendar.Error{Class: calendar.Permanent, Op: op,
					Err: fmt.Errorf("%s %s: answer is not the JSON expected: %w", method, path, err)}
			}
			return nil
		}
		cerr := err.(*calendar.Error)
		cerr.Op = op
		if ctx.Err() != nil {
			return cerr
		}
		retryable := cerr.Class == calendar.Transient || cerr.Class == calendar.RateLimited
		ceiling := c.backoffCeiling(attempt)
		if !retryable || attempt >= c.cfg.MaxRetries || cerr.Wait > c.cfg.MaxWait {
			if cerr.Class == calendar.RateLimited && cerr.Wait == 0 {
				// Give the caller a wait to schedule by: where our own
				// backoff would have gone next.
				cerr.Wait = ceiling
			}
			return cerr
		}
		wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
		if cerr.Wait > 0 {
			// The server said how long; add a little jitter so that many
			// workers told the same do not return at once.
			wait = cerr.Wait + time.Duration(rand.Int64N(int64(c.cfg.BaseBackoff)+1))
		}
		c.cfg.Logger.DebugContext(ctx, "calendly: retrying",
			slog.String("op", op),
			slog.Int("attempt", attempt+1),
			slog.String("class", cerr.Class.String()),
			slog.Duration("wait", wait))
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			cerr.Err = errors.Join(cerr.Err, err)
			return cerr
		}
	}
}

// throttle takes one request from the connection's budget, waiting up to
// MaxWait for it.
func (c *client) throttle(ctx context.Context, op string) error {
	if c.limiter == nil {
		return nil
	}
	for {
		wait, err := c.limiter.Allow(ctx, c.limitKey, c.cfg.Limit)
		if err != nil {
			return &calendar.Error{Class: calendar.Transient, Op: op, Err: fmt.Errorf("rate limiter: %w", err)}
		}
		if wait <= 0 {
			return nil
		}
		if wait > c.cfg.MaxWait {
			return &calendar.Error{Class: calendar.RateLimited, Wait: wait, Op: op,
				Err: errors.New("client-side rate limit for this Calendly connection")}
		}
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return &calendar.Error{Class: calendar.Transient, Op: op, Err: err}
		}
	}
}

// roundTrip sends one request and returns the body of a 2xx answer, or a
// classified *calendar.Error.
func (c *client) roundTrip(ctx context.Context, method, u, path string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, &calendar.Error{Class: calendar.Permanent, Err: &safeError{msg: method + " " + path + ": bad request", err: err}}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, transportError(method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, resp.StatusCode, transportError(method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		if len(data) > maxResponseBytes {
			return nil, resp.StatusCode, &calendar.Error{Class: calendar.Permanent,
				Err: fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponseBytes)}
		}
		return data, resp.StatusCode, nil
	}
	class, wait, herr := classifyAnswer(resp.StatusCode, resp.Header, data, c.cfg.Clock())
	return nil, resp.StatusCode, &calendar.Error{Class: class, Wait: wait, Err: fmt.Errorf("%s %s: %w", method, path, herr)}
}

// transportError classifies a failure to get an answer: the token source
// refusing (found through *url.Error), a cancelled context, the network.
// Its text carries neither the URL's query nor the token.
func transportError(method, path string, err error) *calendar.Error {
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) {
		class := retrieveClass(rerr)
		msg := "token refresh failed"
		if rerr.ErrorCode != "" {
			msg += ": " + rerr.ErrorCode
		} else if rerr.Response != nil {
			msg += ": HTTP " + strconv.Itoa(rerr.Response.StatusCode)
		}
		if class == calendar.Auth {
			msg += " (the Calendly connection must be authorised again)"
		}
		return &calendar.Error{Class: class, Err: &safeError{msg: msg, err: err}}
	}
	inner := err
	var uerr *url.Error
	if errors.As(err, &uerr) {
		inner = uerr.Err
	}
	return &calendar.Error{Class: calendar.Transient, Err: &safeError{msg: fmt.Sprintf("%s %s: %v", method, path, inner), err: err}}
}

func retrieveClass(e *oauth2.RetrieveError) calendar.Class {
	if e.ErrorCode == "invalid_grant" {
		return calendar.Auth
	}
	if e.Response == nil {
		return calendar.Transient
	}
	switch code := e.Response.StatusCode; {
	case code == http.StatusTooManyRequests:
		return calendar.RateLimited
	case code >= 500 || code == http.StatusRequestTimeout:
		return calendar.Transient
	case code >= 400:
		// invalid_client, unauthorized_client, ...: the credentials do not
		// work and retrying will not change that.
		return calendar.Auth
	}
	return calendar.Transient
}

// classifyAnswer is the one table mapping Calendly's answers to classes:
//
//	429                                     RateLimited, Wait from Retry-After, else X-RateLimit-Reset
//	401                                     Auth
//	403 Insufficient scope                  Auth (the token lacks a scope: authorise again)
//	403 Permission Denied, plan upgrade     Permanent (webhooks need a paid plan)
//	403 Permission Denied, other            Permanent (the user's role does not allow it)
//	404                                     NotFound
//	409                                     Permanent (Watch adopts the existing subscription)
//	408, 5xx                                Transient
//	other 4xx                               Permanent
//
// Failures to get an answer at all are Transient, except the token
// endpoint refusing the refresh token (invalid_grant, other 4xx), which is
// Auth.
func classifyAnswer(status int, h http.Header, body []byte, now time.Time) (calendar.Class, time.Duration, *httpError) {
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	herr := &httpError{Status: status, Title: printable(eb.Title, 64)}
	switch {
	case status == http.StatusTooManyRequests:
		return calendar.RateLimited, rateLimitWait(h, now), herr
	case status == http.StatusUnauthorized:
		herr.detail = "the token was refused; the Calendly connection must be authorised again"
		return calendar.Auth, 0, herr
	case status == http.StatusForbidden:
		switch {
		case len(eb.RequiredScopes) > 0 || strings.EqualFold(eb.Title, "Insufficient scope"):
			herr.Reason = reasonScope
			herr.detail = "the token lacks a scope Rapport needs (" + strings.Join(Scopes, " ") + "); authorise the connection again with them"
			return calendar.Auth, 0, herr
		case strings.Contains(strings.ToLower(eb.Message), "upgrade"):
			herr.Reason = reasonPlan
			herr.detail = "the Calendly plan does not allow this; webhook subscriptions need a paid plan (Standard or above)"
			return calendar.Permanent, 0, herr
		}
		herr.Reason = reasonRole
		herr.detail = "the Calendly user's role does not allow this"
		return calendar.Permanent, 0, herr
	case status == http.StatusNotFound:
		return calendar.NotFound, 0, herr
	case status == http.StatusRequestTimeout || status >= 500:
		return calendar.Transient, 0, herr
	}
	return calendar.Permanent, 0, herr
}

// rateLimitWait reads Retry-After (seconds or an HTTP date), else
// Calendly's X-RateLimit-Reset (seconds until the window resets).
func rateLimitWait(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	if v := h.Get("X-RateLimit-Reset"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs >= 0 && secs <= 3600 {
			return time.Duration(secs) * time.Second
		}
	}
	return 0
}

// backoffCeiling is BaseBackoff·2^attempt, capped at MaxBackoff.
func (c *client) backoffCeiling(attempt int) time.Duration {
	d := c.cfg.BaseBackoff
	for i := 0; i < attempt && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}

// printable returns s cut to max bytes with anything but printable ASCII
// replaced, for error texts built from answers.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
