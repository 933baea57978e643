package calendly

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
)

func TestClassifyAnswer(t *testing.T) {
	now := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		status int
		h      http.Header
		body   string
		class  calendar.Class
		wait   time.Duration
		reason string
	}{
		{"429 reset", 429, hdr("X-RateLimit-Reset", "42"), `{"title":"Too Many Requests"}`, calendar.RateLimited, 42 * time.Second, ""},
		{"429 Retry-After wins", 429, hdr("Retry-After", "7", "X-RateLimit-Reset", "42"), ``, calendar.RateLimited, 7 * time.Second, ""},
		{"429 Retry-After date", 429, hdr("Retry-After", now.Add(30*time.Second).Format(http.TimeFormat)), ``, calendar.RateLimited, 30 * time.Second, ""},
		{"429 absurd reset", 429, hdr("X-RateLimit-Reset", "1711000000"), ``, calendar.RateLimited, 0, ""},
		{"429 bare", 429, nil, ``, calendar.RateLimited, 0, ""},
		{"401", 401, nil, `{"title":"Unauthenticated","message":"The access token is invalid"}`, calendar.Auth, 0, ""},
		{"403 insufficient scope", 403, nil, `{"title":"Insufficient scope","message":"m","required_scopes":["webhooks:write"]}`, calendar.Auth, 0, reasonScope},
		{"403 required_scopes only", 403, nil, `{"title":"Forbidden","required_scopes":["x"]}`, calendar.Auth, 0, reasonScope},
		{"403 plan", 403, nil, `{"title":"Permission Denied","message":"Please upgrade your Calendly account to Standard"}`, calendar.Permanent, 0, reasonPlan},
		{"403 role", 403, nil, `{"title":"Permission Denied","message":"You do not have permission"}`, calendar.Permanent, 0, reasonRole},
		{"404", 404, nil, `{"title":"Resource Not Found"}`, calendar.NotFound, 0, ""},
		{"409", 409, nil, `{"title":"Already Exists","message":"Hook with this url already exists"}`, calendar.Permanent, 0, ""},
		{"400", 400, nil, `{"title":"Invalid Argument"}`, calendar.Permanent, 0, ""},
		{"408", 408, nil, ``, calendar.Transient, 0, ""},
		{"500", 500, nil, `{"title":"Internal Server Error"}`, calendar.Transient, 0, ""},
		{"503 html", 503, nil, `<html>`, calendar.Transient, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			class, wait, herr := classifyAnswer(tc.status, tc.h, []byte(tc.body), now)
			if class != tc.class || wait != tc.wait || herr.Status != tc.status || herr.Reason != tc.reason {
				t.Fatalf("got %v %v %v, want %v %v", class, wait, herr, tc.class, tc.wait)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		class calendar.Class
	}{
		{"invalid_grant", &url.Error{Op: "Get", URL: "https://x/?q=secret", Err: &oauth2.RetrieveError{ErrorCode: "invalid_grant"}}, calendar.Auth},
		{"token endpoint 503", &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}}, calendar.Transient},
		{"token endpoint 429", &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: 429}}}, calendar.RateLimited},
		{"invalid_client", &url.Error{Op: "Get", URL: "u", Err: &oauth2.RetrieveError{ErrorCode: "invalid_client", Response: &http.Response{StatusCode: 401}}}, calendar.Auth},
		{"connection refused", &url.Error{Op: "Get", URL: "https://api.calendly.com/scheduled_events?user=a%40b", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, calendar.Transient},
		{"deadline", &url.Error{Op: "Get", URL: "https://x/?q=1", Err: context.DeadlineExceeded}, calendar.Transient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cerr := transportError("GET", "scheduled_events", tc.err)
			if cerr.Class != tc.class {
				t.Fatalf("class %v, want %v", cerr.Class, tc.class)
			}
			if s := cerr.Error(); strings.Contains(s, "?") || strings.Contains(s, "secret") {
				t.Fatalf("text leaks the URL: %s", s)
			}
			if !errors.Is(cerr, tc.err) {
				t.Fatal("original error not in the chain")
			}
		})
	}
}

func TestURIs(t *testing.T) {
	base := "https://api.calendly.com/"
	if got := eventUUID(base + "scheduled_events/abc-123"); got != "abc-123" {
		t.Errorf("eventUUID %q", got)
	}
	if got := eventUUID("abc-123"); got != "abc-123" {
		t.Errorf("bare uuid %q", got)
	}
	for _, bad := range []string{"", base + "scheduled_events/", base + "scheduled_events/a/b", base + "users/x", base + "scheduled_events/a b", "a/b"} {
		if got := eventUUID(bad); got != "" {
			t.Errorf("eventUUID(%q) = %q", bad, got)
		}
	}
	ev, inv, ok := inviteeRef(base + "scheduled_events/E1/invitees/I1")
	if !ok || ev != "E1" || inv != "I1" {
		t.Errorf("inviteeRef %q %q %v", ev, inv, ok)
	}
	for _, bad := range []string{base + "scheduled_events/E1", base + "invitees/I1", base + "scheduled_events/E1/invitees/", base + "x/E1/invitees/I1"} {
		if _, _, ok := inviteeRef(bad); ok {
			t.Errorf("inviteeRef(%q) accepted", bad)
		}
	}
	if p, err := scopeParam(base + "organizations/O1"); err != nil || p != "organization" {
		t.Errorf("scopeParam org %q %v", p, err)
	}
	if p, err := scopeParam(base + "users/U1"); err != nil || p != "user" {
		t.Errorf("scopeParam user %q %v", p, err)
	}
}
