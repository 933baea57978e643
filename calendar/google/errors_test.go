package google

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/rapportsync/rapport/calendar"
)

func apiErr(code int, domain, reason string, header http.Header) error {
	body := fmt.Sprintf(`{"error":{"errors":[{"domain":%q,"reason":%q,"message":"m"}],"code":%d,"message":"m"}}`, domain, reason, code)
	return fmt.Errorf("wrapped: %w", &googleapi.Error{
		Code: code, Message: "m", Body: body, Header: header,
		Errors: []googleapi.ErrorItem{{Reason: reason, Message: "m"}},
	})
}

func TestClassify(t *testing.T) {
	now := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	s := &Source{cfg: Config{Clock: func() time.Time { return now }}.withDefaults()}
	retryIn := func(v string) http.Header { h := http.Header{}; h.Set("Retry-After", v); return h }

	tests := []struct {
		name  string
		op    string
		err   error
		class calendar.Class
		wait  time.Duration
	}{
		{"410 on list", opList, apiErr(410, "calendar", "fullSyncRequired", nil), calendar.CursorExpired, 0},
		{"410 without reason on list", opList, &googleapi.Error{Code: 410}, calendar.CursorExpired, 0},
		{"410 on patch is a deleted event", opPatch, apiErr(410, "global", "deleted", nil), calendar.NotFound, 0},
		{"429", opList, apiErr(429, "usageLimits", "rateLimitExceeded", nil), calendar.RateLimited, 0},
		{"429 Retry-After seconds", opList, apiErr(429, "usageLimits", "rateLimitExceeded", retryIn("7")), calendar.RateLimited, 7 * time.Second},
		{"429 Retry-After date", opList, apiErr(429, "usageLimits", "rateLimitExceeded", retryIn(now.Add(30*time.Second).Format(http.TimeFormat))), calendar.RateLimited, 30 * time.Second},
		{"403 rateLimitExceeded", opList, apiErr(403, "usageLimits", "rateLimitExceeded", nil), calendar.RateLimited, 0},
		{"403 userRateLimitExceeded", opPatch, apiErr(403, "usageLimits", "userRateLimitExceeded", nil), calendar.RateLimited, 0},
		{"403 other usageLimits reason", opList, apiErr(403, "usageLimits", "concurrentLimitExceeded", nil), calendar.RateLimited, 0},
		{"403 quotaExceeded", opList, apiErr(403, "usageLimits", "quotaExceeded", nil), calendar.RateLimited, 5 * time.Minute},
		{"403 dailyLimitExceeded", opList, apiErr(403, "usageLimits", "dailyLimitExceeded", nil), calendar.RateLimited, 5 * time.Minute},
		{"403 insufficientPermissions", opPatch, apiErr(403, "global", "insufficientPermissions", nil), calendar.Auth, 0},
		{"403 forbidden", opPatch, apiErr(403, "global", "forbidden", nil), calendar.Permanent, 0},
		{"401", opList, apiErr(401, "global", "authError", nil), calendar.Auth, 0},
		{"404", opList, apiErr(404, "global", "notFound", nil), calendar.NotFound, 0},
		{"400", opList, apiErr(400, "global", "invalid", nil), calendar.Permanent, 0},
		{"408", opList, &googleapi.Error{Code: 408}, calendar.Transient, 0},
		{"500", opList, apiErr(500, "global", "backendError", nil), calendar.Transient, 0},
		{"503", opList, &googleapi.Error{Code: 503, Body: "<html>"}, calendar.Transient, 0},
		{"invalid_grant through url.Error", opList, &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{ErrorCode: "invalid_grant"}}, calendar.Auth, 0},
		{"token endpoint 503", opList, &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}}, calendar.Transient, 0},
		{"token endpoint invalid_client", opList, &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{ErrorCode: "invalid_client", Response: &http.Response{StatusCode: 401}}}, calendar.Auth, 0},
		{"connection refused", opList, &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, calendar.Transient, 0},
		{"timeout", opList, &url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, calendar.Transient, 0},
		{"already classified", opList, &calendar.Error{Class: calendar.NotFound, Op: "x", Err: errors.New("e")}, calendar.NotFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.classify(tt.op, tt.err)
			if got.Class != tt.class || got.Wait != tt.wait {
				t.Fatalf("class %v wait %v, want %v %v", got.Class, got.Wait, tt.class, tt.wait)
			}
			if ce, ok := tt.err.(*calendar.Error); ok {
				if got.Err != ce.Err || got == ce {
					t.Fatalf("a classified error must come back as a copy with the same cause")
				}
			} else if !errors.Is(got, tt.err) {
				t.Fatalf("classified error does not wrap the original")
			}
		})
	}
}

func TestBackoffCeiling(t *testing.T) {
	s := &Source{cfg: Config{BaseBackoff: 200 * time.Millisecond, MaxBackoff: time.Second}.withDefaults()}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := s.backoffCeiling(i); got != w {
			t.Errorf("attempt %d: %v, want %v", i, got, w)
		}
	}
}
