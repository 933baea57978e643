package hubspot

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/crm"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	const tenSecondly = `{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c1","policyName":"TEN_SECONDLY_ROLLING"}`
	const daily = `{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"c2","policyName":"DAILY"}`
	tests := []struct {
		name             string
		status           int
		h                http.Header
		body             string
		loc              *time.Location
		search           bool
		class            crm.Class
		minWait, maxWait time.Duration
		message          string
	}{
		{"429 ten-secondly with interval header", 429, hdr(hdrInterval, "2000"), tenSecondly, nil, false, crm.RateLimited, time.Second, 2 * time.Second, "ten_secondly_rolling"},
		{"429 ten-secondly without headers", 429, hdr(), tenSecondly, nil, false, crm.RateLimited, 5 * time.Second, 10 * time.Second, ""},
		{"429 daily: until UTC midnight", 429, hdr(), daily, nil, false, crm.RateLimited, time.Hour, time.Hour + time.Minute, "daily limit"},
		{"429 daily: until midnight in the portal's zone", 429, hdr(), daily, time.FixedZone("EST", -5*3600), false, crm.RateLimited, 6 * time.Hour, 6*time.Hour + time.Minute, ""},
		{"429 with Retry-After", 429, hdr("Retry-After", "3"), tenSecondly, nil, false, crm.RateLimited, 3 * time.Second, 3 * time.Second, ""},
		{"429 search secondly", 429, hdr(), `{"status":"error","errorType":"RATE_LIMIT","policyName":"SECONDLY"}`, nil, true, crm.RateLimited, 500 * time.Millisecond, time.Second, ""},
		{"500", 500, hdr(), `{"status":"error","message":"internal error","category":"INTERNAL_ERROR"}`, nil, false, crm.Transient, 0, 0, "internal error"},
		{"503 with Retry-After", 503, hdr("Retry-After", "7"), ``, nil, false, crm.Transient, 7 * time.Second, 7 * time.Second, ""},
		{"502 html body", 502, hdr(), `<html>bad gateway</html>`, nil, false, crm.Transient, 0, 0, "bad gateway"},
		{"423 locked", 423, hdr(), `{"status":"error","message":"locked"}`, nil, false, crm.Transient, 2 * time.Second, 2 * time.Second, ""},
		{"401", 401, hdr(), `{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}`, nil, false, crm.Auth, 0, 0, "credentials"},
		{"403 missing scopes", 403, hdr(), `{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","category":"MISSING_SCOPES","context":{"requiredScopes":["crm.objects.contacts.write"]}}`, nil, false, crm.Auth, 0, 0, "crm.objects.contacts.write"},
		{"400 validation keeps the message", 400, hdr(), `{"status":"error","message":"Property values were not valid: hs_timestamp is required","category":"VALIDATION_ERROR","correlationId":"x"}`, nil, false, crm.Permanent, 0, 0, "Property values were not valid: hs_timestamp is required"},
		{"404", 404, hdr(), `{"status":"error","message":"Object not found.","category":"OBJECT_NOT_FOUND"}`, nil, false, crm.NotFound, 0, 0, "Object not found"},
		{"409", 409, hdr(), `{"status":"error","message":"exists","category":"CONFLICT"}`, nil, false, crm.Permanent, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := classify("op", tt.status, tt.h, []byte(tt.body), now, tt.loc, tt.search)
			if e.Class != tt.class {
				t.Errorf("class %v, want %v", e.Class, tt.class)
			}
			if e.Wait < tt.minWait || e.Wait > tt.maxWait {
				t.Errorf("wait %v, want %v..%v", e.Wait, tt.minWait, tt.maxWait)
			}
			var ae *APIError
			if !errors.As(e, &ae) || ae.Status != tt.status {
				t.Fatalf("no APIError with status %d in %v", tt.status, e)
			}
			if !strings.Contains(e.Error(), tt.message) {
				t.Errorf("error %q lacks %q", e.Error(), tt.message)
			}
		})
	}
}

func TestInputError(t *testing.T) {
	for cat, want := range map[string]crm.Class{
		"VALIDATION_ERROR": crm.Permanent, "OBJECT_NOT_FOUND": crm.NotFound, "INTERNAL_ERROR": crm.Transient, "RATE_LIMITS": crm.RateLimited,
	} {
		if got := inputError("op", 207, batchError{Status: "error", Category: cat, Message: "m"}).Class; got != want {
			t.Errorf("%s: %v, want %v", cat, got, want)
		}
	}
}

func TestGCRALimitStaysUnderTheWindow(t *testing.T) {
	for _, s := range []string{"100/10s", "190/10s", "250/10s", "110/10s", "5/1s", "10/1s", "20/500ms", "3/s"} {
		l, err := ParseLimit(s)
		if err != nil {
			t.Fatal(err)
		}
		g := gcraLimit(l)
		// A GCRA lets through at most Burst + Rate requests in any window of
		// its period.
		worst := g.Burst + g.Rate
		if worst > int(float64(l.Requests)*safetyShare) || g.Period != l.Window {
			t.Errorf("%s: %+v lets %d through per window", s, g, worst)
		}
		if l.Requests >= 10 && float64(g.Rate) < 0.75*float64(l.Requests) {
			t.Errorf("%s: %+v wastes the limit", s, g)
		}
	}
}

func TestParseLimit(t *testing.T) {
	good := map[string]Limit{
		"100/10s":     {100, 10 * time.Second},
		"190/10s":     {190, 10 * time.Second},
		" 5 / s ":     {5, time.Second},
		"10/1s":       {10, time.Second},
		"20/500ms":    {20, 500 * time.Millisecond},
		"600/1m":      {600, time.Minute},
		"250/10000ms": {250, 10 * time.Second},
	}
	for s, want := range good {
		if got, err := ParseLimit(s); err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "100", "0/10s", "-1/10s", "x/10s", "100/0s", "100/abc", "100/-10s", "100/48h"} {
		if _, err := ParseLimit(s); err == nil {
			t.Errorf("ParseLimit(%q) accepted", s)
		}
	}
}
