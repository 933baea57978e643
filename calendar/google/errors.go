package google

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/rapportsync/rapport/calendar"
)

// retry runs call, retrying rate limits and transient failures with
// exponential backoff and full jitter, and returns nil or a *calendar.Error.
func (s *Source) retry(ctx context.Context, op string, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		if s.cfg.Throttle != nil {
			if err := s.cfg.Throttle(ctx); err != nil {
				return s.classify(op, err)
			}
		}
		err := call(ctx)
		if err == nil {
			return nil
		}
		cerr := s.classify(op, err)
		if ctx.Err() != nil {
			return cerr
		}
		retryable := cerr.Class == calendar.Transient || cerr.Class == calendar.RateLimited
		ceiling := s.backoffCeiling(attempt)
		if !retryable || attempt >= s.cfg.MaxRetries || cerr.Wait > s.cfg.MaxWait {
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
			wait = cerr.Wait + time.Duration(rand.Int64N(int64(s.cfg.BaseBackoff)+1))
		}
		s.cfg.Logger.DebugContext(ctx, "google: retrying",
			slog.String("op", op),
			slog.Int("attempt", attempt+1),
			slog.String("class", cerr.Class.String()),
			slog.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			cerr.Err = errors.Join(cerr.Err, ctx.Err())
			return cerr
		case <-t.C:
		}
	}
}

// backoffCeiling is BaseBackoff·2^attempt, capped at MaxBackoff.
func (s *Source) backoffCeiling(attempt int) time.Duration {
	d := s.cfg.BaseBackoff
	for i := 0; i < attempt && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// classify translates an error of the Google client, the OAuth token source
// or the transport into a calendar.Error. This is the one table mapping
// Google's failures to classes:
//
//	410 (events.list)                        CursorExpired
//	410 (other calls: deleted resource)      NotFound
//	429, 403 rateLimitExceeded,
//	  userRateLimitExceeded, usageLimits     RateLimited, Wait from Retry-After
//	403 quotaExceeded, dailyLimitExceeded    RateLimited, Wait QuotaWait
//	403 insufficientPermissions              Auth (re-consent with the scope)
//	other 403                                Permanent
//	401; token refresh invalid_grant or 4xx  Auth
//	404                                      NotFound
//	408, 5xx, network errors, timeouts       Transient
//	other 4xx                                Permanent
func (s *Source) classify(op string, err error) *calendar.Error {
	var ce *calendar.Error
	if errors.As(err, &ce) {
		c := *ce
		return &c
	}
	out := &calendar.Error{Class: calendar.Transient, Op: op, Err: err}
	var rerr *oauth2.RetrieveError
	var gerr *googleapi.Error
	switch {
	case errors.As(err, &rerr):
		// The token endpoint refused or failed: found through *url.Error.
		out.Class = retrieveClass(rerr)
		if out.Class == calendar.RateLimited && rerr.Response != nil {
			out.Wait = retryAfter(rerr.Response.Header, s.cfg.Clock())
		}
	case errors.As(err, &gerr):
		out.Class, out.Wait = s.apiClass(op, gerr)
	}
	return out
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

func (s *Source) apiClass(op string, e *googleapi.Error) (calendar.Class, time.Duration) {
	reasons, domains := errorDetails(e)
	now := s.cfg.Clock()
	switch code := e.Code; {
	case code == http.StatusGone:
		if op == opList {
			return calendar.CursorExpired, 0
		}
		return calendar.NotFound, 0
	case code == http.StatusTooManyRequests:
		return calendar.RateLimited, retryAfter(e.Header, now)
	case code == http.StatusForbidden:
		switch {
		case reasons["quotaExceeded"] || reasons["dailyLimitExceeded"]:
			return calendar.RateLimited, max(retryAfter(e.Header, now), s.cfg.QuotaWait)
		case reasons["rateLimitExceeded"] || reasons["userRateLimitExceeded"] || domains["usageLimits"]:
			return calendar.RateLimited, retryAfter(e.Header, now)
		case reasons["insufficientPermissions"] || reasons["ACCESS_TOKEN_SCOPE_INSUFFICIENT"]:
			return calendar.Auth, 0
		}
		return calendar.Permanent, 0
	case code == http.StatusUnauthorized:
		return calendar.Auth, 0
	case code == http.StatusNotFound:
		return calendar.NotFound, 0
	case code == http.StatusRequestTimeout || code >= 500:
		return calendar.Transient, 0
	case code >= 400:
		return calendar.Permanent, 0
	}
	return calendar.Transient, 0
}

// errorDetails returns the reasons and domains of a Google error. The
// client keeps the reasons but drops the domains, so the body is read again.
func errorDetails(e *googleapi.Error) (reasons, domains map[string]bool) {
	reasons, domains = map[string]bool{}, map[string]bool{}
	for _, it := range e.Errors {
		reasons[it.Reason] = true
	}
	var body struct {
		Error struct {
			Errors []struct {
				Domain string `json:"domain"`
				Reason string `json:"reason"`
			} `json:"errors"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(e.Body), &body) == nil {
		for _, it := range body.Error.Errors {
			reasons[it.Reason] = true
			domains[it.Domain] = true
		}
		for _, d := range body.Error.Details {
			reasons[d.Reason] = true
		}
	}
	return reasons, domains
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
