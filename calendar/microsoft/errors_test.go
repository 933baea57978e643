package microsoft

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
)

func TestClassifyStatus(t *testing.T) {
	now := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	s := &Source{cfg: Config{Clock: func() time.Time { return now }}.withDefaults()}
	body := func(code string) []byte {
		return fmt.Appendf(nil, `{"error":{"code":%q,"message":"Mailbox alice@example.com: secret detail","innerError":{"date":"x"}}}`, code)
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		op     string
		status int
		header http.Header
		body   []byte
		class  calendar.Class
		wait   time.Duration
	}{
		{"410 on delta", opDelta, 410, nil, body("syncStateNotFound"), calendar.CursorExpired, 0},
		{"400 resyncRequired on delta", opDelta, 400, nil, body("resyncRequired"), calendar.CursorExpired, 0},
		{"400 SyncStateNotFound any case", opDelta, 400, nil, body("SyncStateNotFound"), calendar.CursorExpired, 0},
		{"410 elsewhere is a deleted item", opGet, 410, nil, body("ErrorItemNotFound"), calendar.NotFound, 0},
		{"429 Retry-After seconds", opDelta, 429, hdr("Retry-After", "7"), body("ApplicationThrottled"), calendar.RateLimited, 7 * time.Second},
		{"429 Retry-After date", opPatch, 429, hdr("Retry-After", now.Add(30*time.Second).Format(http.TimeFormat)), nil, calendar.RateLimited, 30 * time.Second},
		{"503 with Retry-After", opGet, 503, hdr("Retry-After", "3"), body("ServiceUnavailable"), calendar.RateLimited, 3 * time.Second},
		{"503 without Retry-After", opGet, 503, nil, body("ServiceUnavailable"), calendar.Transient, 0},
		{"401", opDelta, 401, nil, body("InvalidAuthenticationToken"), calendar.Auth, 0},
		{"403 access denied", opSubscribe, 403, nil, body("ErrorAccessDenied"), calendar.Auth, 0},
		{"403 other", opSubscribe, 403, nil, body("ExtensionError"), calendar.Permanent, 0},
		{"404", opGet, 404, nil, body("ErrorItemNotFound"), calendar.NotFound, 0},
		{"409 conflict", opPatch, 409, nil, body("ErrorIrresolvableConflict"), calendar.Transient, 0},
		{"500", opDelta, 500, nil, body("InternalServerError"), calendar.Transient, 0},
		{"504 html", opDelta, 504, nil, []byte("<html>gateway</html>"), calendar.Transient, 0},
		{"400", opSubscribe, 400, nil, body("ValidationError"), calendar.Permanent, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			got := s.classifyStatus(tt.op, &http.Response{StatusCode: tt.status, Header: h}, tt.body)
			if got.Class != tt.class || got.Wait != tt.wait {
				t.Fatalf("class %v wait %v, want %v %v", got.Class, got.Wait, tt.class, tt.wait)
			}
			if msg := got.Error(); strings.Contains(msg, "alice") || strings.Contains(msg, "secret") || !strings.Contains(msg, tt.op) {
				t.Fatalf("error text %q must name the op and carry no Graph message", msg)
			}
		})
	}
}

func TestClassifyErrScrubs(t *testing.T) {
	s := &Source{cfg: Config{}.withDefaults()}
	secretURL := "https://graph.microsoft.com/v1.0/me/calendarView/delta?$deltatoken=SECRETTOKEN&mailbox=alice@example.com"
	tests := []struct {
		name  string
		err   error
		class calendar.Class
		is    error
	}{
		{"connection refused", &url.Error{Op: "Get", URL: secretURL, Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, calendar.Transient, nil},
		{"timeout", &url.Error{Op: "Get", URL: secretURL, Err: context.DeadlineExceeded}, calendar.Transient, context.DeadlineExceeded},
		{"invalid_grant", &url.Error{Op: "Post", URL: secretURL, Err: &oauth2.RetrieveError{ErrorCode: "invalid_grant",
			ErrorDescription: "AADSTS70000 for alice@example.com", Body: []byte("refresh SECRETTOKEN"), Response: &http.Response{StatusCode: 400}}}, calendar.Auth, nil},
		{"token endpoint down", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}, calendar.Transient, nil},
		{"token endpoint throttles", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"9"}}}}, calendar.RateLimited, nil},
		{"invalid_client", &oauth2.RetrieveError{ErrorCode: "invalid_client", Response: &http.Response{StatusCode: 401}}, calendar.Auth, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.classifyErr(opDelta, tt.err)
			if got.Class != tt.class {
				t.Fatalf("class %v, want %v", got.Class, tt.class)
			}
			msg := got.Error()
			for _, leak := range []string{"SECRETTOKEN", "alice", "deltatoken", "graph.microsoft.com"} {
				if strings.Contains(msg, leak) {
					t.Fatalf("error text %q leaks %q", msg, leak)
				}
			}
			if tt.is != nil && !errors.Is(got, tt.is) {
				t.Fatalf("cause lost: %v", got)
			}
			var re *oauth2.RetrieveError
			if strings.Contains(tt.name, "grant") && !errors.As(got, &re) {
				t.Fatal("RetrieveError not reachable with errors.As")
			}
		})
	}
}

func TestBackoffCeiling(t *testing.T) {
	s := &Source{cfg: Config{BaseBackoff: 200 * time.Millisecond, MaxBackoff: time.Second}.withDefaults()}
	for i, w := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		if got := s.backoffCeiling(i); got != w {
			t.Errorf("attempt %d: %v, want %v", i, got, w)
		}
	}
}

func TestNormalizeZonesAndBody(t *testing.T) {
	ev := event{
		ID: "e1", Type: "singleInstance", Subject: "Call", ICalUID: "uid-1",
		Start:                 &dateTimeTZ{DateTime: "2026-03-25T15:00:00.0000000", TimeZone: "W. Europe Standard Time"},
		End:                   &dateTimeTZ{DateTime: "2026-03-25T16:30:00.0000000", TimeZone: "W. Europe Standard Time"},
		OriginalStartTimeZone: "Pacific Standard Time",
		Sensitivity:           "confidential", ShowAs: "oof",
	}
	ev.Body = &struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	}{"html", "<html><head><style>p{}</style></head><body><p>Agenda &amp; notes</p><br>line</body></html>"}
	got, err := normalize(&ev, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Start.Equal(time.Date(2026, 3, 25, 14, 0, 0, 0, time.UTC)) || !got.End.Equal(time.Date(2026, 3, 25, 15, 30, 0, 0, time.UTC)) {
		t.Fatalf("instants %v %v", got.Start, got.End)
	}
	if got.TimeZone != "America/Los_Angeles" || got.Visibility != "confidential" || got.ShowAs != "oof" || got.EventType != "outOfOffice" {
		t.Fatalf("event %+v", got)
	}
	if got.Description != "Agenda & notes\n\nline" {
		t.Fatalf("description %q", got.Description)
	}
	ev.Start.TimeZone = "Mars Standard Time"
	if _, err := normalize(&ev, nil, ""); err == nil {
		t.Fatal("unknown zone accepted")
	}
}

func TestIANAZone(t *testing.T) {
	for in, want := range map[string]string{
		"W. Europe Standard Time": "Europe/Berlin", "Eastern Standard Time": "America/New_York",
		"India Standard Time": "Asia/Calcutta", "UTC": "UTC", "tzone://Microsoft/Utc": "UTC",
		"Europe/Paris": "Europe/Paris", "tzone://Microsoft/Custom": "", "Customized Time Zone": "", "": "",
		"Nowhere/Land": "",
	} {
		if got := IANAZone(in); got != want {
			t.Errorf("IANAZone(%q) = %q, want %q", in, got, want)
		}
	}
	// Every zone of the generated table loads.
	for win, iana := range windowsZones {
		if _, err := time.LoadLocation(iana); err != nil {
			t.Errorf("%s → %s: %v", win, iana, err)
		}
	}
}

func TestAccountFromToken(t *testing.T) {
	jwt := func(payload string) *oauth2.Token {
		enc := func(s string) string { return strings.TrimRight(b64(s), "=") }
		return (&oauth2.Token{AccessToken: "x"}).WithExtra(map[string]any{"id_token": enc(`{"alg":"RS256"}`) + "." + enc(payload) + ".sig"})
	}
	tests := []struct {
		payload, want string
		ok            bool
	}{
		{`{"email":"Alice@Example.com","preferred_username":"alice@corp.onmicrosoft.com"}`, "alice@example.com", true},
		{`{"preferred_username":"Bob@Example.com"}`, "bob@example.com", true},
		{`{"preferred_username":"bob"}`, "", false},
		{`{}`, "", false},
		{`not json`, "", false},
	}
	for _, tt := range tests {
		got, err := AccountFromToken(jwt(tt.payload))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: %q %v", tt.payload, got, err)
		}
	}
	if _, err := AccountFromToken(&oauth2.Token{AccessToken: "x"}); err == nil {
		t.Error("token without id_token accepted")
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
