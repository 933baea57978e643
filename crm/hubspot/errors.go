package hubspot

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/crm"
)

// APIError is what HubSpot said about a failed request or a failed batch
// input. It is the Err of the crm.Error the client returns, for callers that
// want the details (errors.As).
type APIError struct {
	// Status is the HTTP status of the response (for a batch input, of the
	// batch response).
	Status        int
	Category      string
	SubCategory   string
	Message       string
	CorrelationID string
	// PolicyName is the rate-limit policy of a 429: TEN_SECONDLY_ROLLING,
	// SECONDLY (search) or DAILY.
	PolicyName string
	Context    map[string][]string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hubspot %d", e.Status)
	if e.Category != "" {
		b.WriteString(" " + e.Category)
	}
	if e.PolicyName != "" {
		b.WriteString(" " + e.PolicyName)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.CorrelationID != "" {
		b.WriteString(" (correlation id " + e.CorrelationID + ")")
	}
	return b.String()
}

// Rate-limit policies in 429 bodies.
const (
	policyTenSecondly = "TEN_SECONDLY_ROLLING"
	policySecondly    = "SECONDLY"
	policyDaily       = "DAILY"
)

// Headers HubSpot sends about the rate limit.
const (
	hdrMax      = "X-HubSpot-RateLimit-Max"
	hdrRemain   = "X-HubSpot-RateLimit-Remaining"
	hdrInterval = "X-HubSpot-RateLimit-Interval-Milliseconds"
)

// lockedWait is the least wait after a 423 Locked (HubSpot asks for at least
// two seconds).
const lockedWait = 2 * time.Second

// classify turns an unsuccessful response into a crm.Error. The one table
// mapping HubSpot's answers to crm classes is here.
//
// search tells which window a 429 without a policy concerns; loc is the
// portal's time zone for DAILY resets (UTC when unknown, which makes the
// wait an approximation).
func classify(op string, status int, h http.Header, body []byte, now time.Time, loc *time.Location, search bool) *crm.Error {
	var b apiError
	_ = json.Unmarshal(body, &b)
	ae := &APIError{
		Status:        status,
		Category:      b.Category,
		SubCategory:   rawString(b.SubCategory),
		Message:       b.Message,
		CorrelationID: b.CorrelationID,
		PolicyName:    b.PolicyName,
		Context:       b.Context,
	}
	if ae.Category == "" && b.ErrorType != "" {
		ae.Category = b.ErrorType
	}
	if ae.Message == "" && len(b.Errors) > 0 {
		ae.Message = b.Errors[0].Message
	}
	if ae.Message == "" && len(body) > 0 && len(body) < 512 && b.Status == "" {
		ae.Message = strings.TrimSpace(string(body))
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(status)
	}
	e := &crm.Error{Op: op, Err: ae}
	retryAfter := parseRetryAfter(h.Get("Retry-After"), now)
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = crm.RateLimited
		e.Wait = rateLimitWait(b.PolicyName, h, now, loc, search)
		if retryAfter > 0 {
			e.Wait = retryAfter
		}
	case status == http.StatusLocked:
		e.Class = crm.Transient
		e.Wait = max(lockedWait, retryAfter)
	case status >= 500, status == http.StatusRequestTimeout:
		e.Class = crm.Transient
		e.Wait = retryAfter
	case status == http.StatusUnauthorized:
		e.Class = crm.Auth
	case status == http.StatusForbidden:
		// A token without the scopes an endpoint needs (MISSING_SCOPES) fails
		// the same way on every call until the app is re-authorised with
		// them, so it parks the connection like an invalid token instead of
		// failing each meeting as permanent.
		e.Class = crm.Auth
		if scopes := ae.Context["requiredScopes"]; len(scopes) > 0 {
			ae.Message += " (required scopes: " + strings.Join(scopes, ", ") + ")"
		}
	case status == http.StatusNotFound:
		e.Class = crm.NotFound
	default:
		// 400 VALIDATION_ERROR and other 4xx: the same request will fail again.
		e.Class = crm.Permanent
	}
	return e
}

// rateLimitWait is how long to pause after a 429 of the given policy.
// HubSpot's ten-second window is rolling, so the time until enough of it
// frees up is unknown; the wait is a jittered half to whole window, the
// window taken from the Interval header when present.
func rateLimitWait(policy string, h http.Header, now time.Time, loc *time.Location, search bool) time.Duration {
	switch {
	case policy == policyDaily:
		return untilMidnight(now, loc)
	case policy == policySecondly || (policy == "" && search):
		return jitterHalf(time.Second)
	}
	window := 10 * time.Second
	if ms, err := strconv.Atoi(h.Get(hdrInterval)); err == nil && ms > 0 {
		window = time.Duration(ms) * time.Millisecond
	}
	return jitterHalf(window)
}

// untilMidnight is the time until the next midnight in loc, when HubSpot's
// daily limit resets (in the portal's time zone; UTC when it is unknown).
func untilMidnight(now time.Time, loc *time.Location) time.Duration {
	if loc == nil {
		loc = time.UTC
	}
	t := now.In(loc)
	next := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
	return next.Sub(t) + time.Duration(rand.Int64N(int64(time.Minute)))
}

// jitterHalf returns a duration in [d/2, d].
func jitterHalf(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// inputError classifies one failed input of a batch response.
func inputError(op string, status int, be batchError) *crm.Error {
	ae := &APIError{
		Status:      status,
		Category:    be.Category,
		SubCategory: rawString(be.SubCategory),
		Message:     be.Message,
		Context:     be.Context,
	}
	if ae.Message == "" && len(be.Errors) > 0 {
		ae.Message = be.Errors[0].Message
	}
	e := &crm.Error{Op: op, Err: ae}
	switch be.Category {
	case "VALIDATION_ERROR", "CONFLICT", "OBJECT_ALREADY_EXISTS", "INVALID_EMAIL", "INVALID_OWNER_ID":
		e.Class = crm.Permanent
	case "OBJECT_NOT_FOUND", "NOT_FOUND":
		e.Class = crm.NotFound
	case "RATE_LIMITS", "RATE_LIMIT":
		e.Class = crm.RateLimited
		e.Wait = jitterHalf(10 * time.Second)
	case "INVALID_AUTHENTICATION", "EXPIRED_AUTHENTICATION", "MISSING_SCOPES":
		e.Class = crm.Auth
	default:
		// An input error HubSpot did not explain (e.g. an internal error for
		// that record) is worth another try.
		e.Class = crm.Transient
		if n, err := strconv.Atoi(be.Status); err == nil && n >= 400 && n < 500 {
			e.Class = crm.Permanent
		}
	}
	return e
}

// unknownOutcome is the error of an input the batch response mentions
// neither in results nor in errors: it may or may not have been written.
func unknownOutcome(op string) *crm.Error {
	return &crm.Error{Class: crm.Transient, Op: op, Err: fmt.Errorf("hubspot returned neither a result nor an error for this input; it may have been written")}
}
