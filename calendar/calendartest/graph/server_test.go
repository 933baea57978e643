package graph

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const box = "alice@example.com"

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

func newTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	s.SetClock(func() time.Time { return t0 })
	tok, err := s.AddMailbox(box, "W. Europe Standard Time")
	if err != nil {
		t.Fatal(err)
	}
	return s, tok
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, method, u, tok string, body any, prefer string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func code(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func deltaURL(s *Server, start, end time.Time, extra string) string {
	return s.URL() + "me/calendarView/delta?startDateTime=" + url.QueryEscape(start.Format(time.RFC3339)) +
		"&endDateTime=" + url.QueryEscape(end.Format(time.RFC3339)) + extra
}

func TestDeltaWireFormat(t *testing.T) {
	s, tok := newTestServer(t)
	start := t0.Add(24 * time.Hour)
	single, _ := s.Insert(box, Primary, EventSpec{Subject: "one", Start: start, End: start.Add(time.Hour)})
	master, _ := s.Insert(box, Primary, EventSpec{Subject: "series", Start: start, End: start.Add(time.Hour), Recurrence: &Recurrence{Count: 3}})
	lo, hi := t0, t0.Add(30*24*time.Hour)

	if a := call(t, "GET", deltaURL(s, lo, hi, "&$expand=singleValueExtendedProperties"), tok, nil, ""); a.status != 400 || code(a) != "ErrorInvalidUrlQuery" {
		t.Fatalf("$expand on delta: %d %s", a.status, code(a))
	}
	if a := call(t, "GET", s.URL()+"me/calendarView/delta", tok, nil, ""); a.status != 400 {
		t.Fatalf("delta without a window: %d", a.status)
	}
	if a := call(t, "GET", deltaURL(s, lo, hi, ""), "", nil, ""); a.status != 401 {
		t.Fatalf("no token: %d", a.status)
	}

	a := call(t, "GET", deltaURL(s, lo, hi, ""), tok, nil, `odata.maxpagesize=2, outlook.timezone="Pacific Standard Time"`)
	if a.status != 200 || a.body["@odata.nextLink"] == nil || a.body["@odata.deltaLink"] != nil {
		t.Fatalf("first page: %d %v", a.status, a.body)
	}
	var items []map[string]any
	for _, v := range a.body["value"].([]any) {
		items = append(items, v.(map[string]any))
	}
	next := a.body["@odata.nextLink"].(string)
	a = call(t, "GET", next, tok, nil, `odata.maxpagesize=2`)
	for _, v := range a.body["value"].([]any) {
		items = append(items, v.(map[string]any))
	}
	if a.body["@odata.deltaLink"] == nil || len(items) != 4 {
		t.Fatalf("second page: %v, %d items", a.body, len(items))
	}
	for _, it := range items {
		switch it["type"] {
		case "occurrence":
			if it["subject"] != nil || it["seriesMasterId"] != master {
				t.Errorf("occurrence not stripped as Graph sends it: %v", it)
			}
		case "singleInstance":
			st := it["start"].(map[string]any)
			if it["id"] != single || st["timeZone"] != "Pacific Standard Time" || st["dateTime"] != "2026-03-21T02:00:00.0000000" {
				t.Errorf("single event %v", it)
			}
			if !strings.HasPrefix(it["iCalUId"].(string), "040000008200E00074C5B7101A82E008") {
				t.Errorf("iCalUId %v", it["iCalUId"])
			}
		default:
			t.Errorf("type %v in a calendar view", it["type"])
		}
	}

	// Move one out of the window, delete an occurrence: both @removed.
	delta := a.body["@odata.deltaLink"].(string)
	if err := s.Move(box, single, t0.AddDate(0, 3, 0), t0.AddDate(0, 3, 0).Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelOccurrence(box, master, start); err != nil {
		t.Fatal(err)
	}
	a = call(t, "GET", delta, tok, nil, "")
	vals := a.body["value"].([]any)
	if len(vals) != 2 {
		t.Fatalf("incremental: %v", vals)
	}
	for _, v := range vals {
		if v.(map[string]any)["@removed"] == nil {
			t.Errorf("not a removal: %v", v)
		}
	}
	if err := s.ExpireDelta(box); err != nil {
		t.Fatal(err)
	}
	if a := call(t, "GET", a.body["@odata.deltaLink"].(string), tok, nil, ""); a.status != 410 || code(a) != "syncStateNotFound" {
		t.Fatalf("expired: %d %s", a.status, code(a))
	}
}

func TestEventPatchAndExpand(t *testing.T) {
	s, tok := newTestServer(t)
	id, _ := s.Insert(box, Primary, EventSpec{Subject: "one", Start: t0, End: t0.Add(time.Hour)})
	prop := "String {6b2c3a4e-5d0f-4c1a-9e7b-2f8d1c0a9b31} Name rapportKey"
	a := call(t, "PATCH", s.URL()+"me/events/"+id, tok, map[string]any{"singleValueExtendedProperties": []map[string]any{{"id": prop, "value": "k1"}}}, "")
	if a.status != 200 {
		t.Fatalf("patch: %d %v", a.status, a.body)
	}
	if a := call(t, "PATCH", s.URL()+"me/events/"+id, tok, map[string]any{"start": "x"}, ""); a.status != 400 {
		t.Fatalf("unsupported patch: %d", a.status)
	}
	a = call(t, "GET", s.URL()+"me/events/"+id, tok, nil, "")
	if a.body["singleValueExtendedProperties"] != nil {
		t.Fatal("properties returned without $expand")
	}
	expand := url.QueryEscape("singleValueExtendedProperties($filter=id eq '" + prop + "')")
	a = call(t, "GET", s.URL()+"me/events/"+id+"?$select=id&$expand="+expand, tok, nil, "")
	props, _ := a.body["singleValueExtendedProperties"].([]any)
	if len(props) != 1 || props[0].(map[string]any)["value"] != "k1" || a.body["subject"] != nil {
		t.Fatalf("expanded: %v", a.body)
	}
	if a := call(t, "GET", s.URL()+"me/events/nope", tok, nil, ""); a.status != 404 || code(a) != "ErrorItemNotFound" {
		t.Fatalf("missing: %d %s", a.status, code(a))
	}
}

func TestThrottlingAndFaults(t *testing.T) {
	s, tok := newTestServer(t)
	s.Throttle(1, 3*time.Second)
	a := call(t, "GET", s.URL()+"me/events/x", tok, nil, "")
	if a.status != 429 || a.header.Get("Retry-After") != "3" {
		t.Fatalf("storm: %d %v", a.status, a.header)
	}
	s.FailNext(1, 503, "ServiceUnavailable")
	if a := call(t, "GET", s.URL()+"me/events/x", tok, nil, ""); a.status != 503 {
		t.Fatalf("fault: %d", a.status)
	}
	s.Revoke(tok)
	if a := call(t, "GET", s.URL()+"me/events/x", tok, nil, ""); a.status != 401 || code(a) != "InvalidAuthenticationToken" {
		t.Fatalf("revoked: %d", a.status)
	}

	// A fifth request in flight for one mailbox is refused.
	tok2, _ := s.AccessToken(box)
	release := s.Hold()
	var wg sync.WaitGroup
	for range MailboxConcurrency {
		wg.Add(1)
		go func() { defer wg.Done(); call(t, "GET", s.URL()+"me/events/x", tok2, nil, "") }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.InFlight(box) < MailboxConcurrency && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	a = call(t, "GET", s.URL()+"me/events/x", tok2, nil, "")
	release()
	wg.Wait()
	if a.status != 429 || code(a) != "ApplicationThrottled" || s.MaxInFlight(box) != MailboxConcurrency {
		t.Fatalf("fifth request: %d %s, max in flight %d", a.status, code(a), s.MaxInFlight(box))
	}
}

func TestSubscriptionRules(t *testing.T) {
	s, tok := newTestServer(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, r.URL.Query().Get("validationToken"))
	}))
	defer echo.Close()
	sub := func(exp time.Time, mutate func(map[string]any)) answer {
		body := map[string]any{"changeType": "created,updated,deleted", "notificationUrl": echo.URL, "resource": "/me/events",
			"expirationDateTime": exp.Format(time.RFC3339), "clientState": "s"}
		if mutate != nil {
			mutate(body)
		}
		return call(t, "POST", s.URL()+"subscriptions", tok, body, "")
	}
	if a := sub(t0.Add(10071*time.Minute), nil); a.status != 400 || !strings.Contains(a.body["error"].(map[string]any)["message"].(string), "10070 minutes") {
		t.Fatalf("too long: %d %v", a.status, a.body)
	}
	if a := sub(t0.Add(time.Hour), func(b map[string]any) { b["clientState"] = strings.Repeat("x", 129) }); a.status != 400 {
		t.Fatalf("long clientState: %d", a.status)
	}
	if a := sub(t0.Add(time.Hour), func(b map[string]any) { b["resource"] = "/me/messages" }); a.status != 400 {
		t.Fatalf("other resource: %d", a.status)
	}
	a := sub(t0.Add(10*time.Minute), nil)
	if a.status != 201 || a.body["expirationDateTime"] != t0.Add(45*time.Minute).Format("2006-01-02T15:04:05Z") {
		t.Fatalf("short expiry raised to 45 minutes: %d %v", a.status, a.body)
	}
	id := a.body["id"].(string)
	if a := call(t, "PATCH", s.URL()+"subscriptions/"+id, tok, map[string]any{"expirationDateTime": t0.Add(2 * time.Hour).Format(time.RFC3339)}, ""); a.status != 200 {
		t.Fatalf("renew: %d", a.status)
	}
	if a := call(t, "DELETE", s.URL()+"subscriptions/"+id, tok, nil, ""); a.status != 204 {
		t.Fatalf("delete: %d", a.status)
	}
	if a := call(t, "DELETE", s.URL()+"subscriptions/"+id, tok, nil, ""); a.status != 404 {
		t.Fatalf("delete again: %d", a.status)
	}
	if err := s.Lifecycle(id, "missed"); err == nil {
		t.Fatal("lifecycle for a deleted subscription")
	}
}

func TestTokenEndpoint(t *testing.T) {
	s, _ := newTestServer(t)
	post := func(form url.Values) answer {
		resp, err := http.PostForm(s.TokenURL(), form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&a.body)
		return a
	}
	code := s.AuthCode(box)
	a := post(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"c"}})
	if a.status != 200 || a.body["refresh_token"] == nil || a.body["id_token"] == nil {
		t.Fatalf("code exchange: %d %v", a.status, a.body)
	}
	if again := post(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"c"}}); again.body["error"] != "invalid_grant" {
		t.Fatalf("code reused: %v", again.body)
	}
	rt := a.body["refresh_token"].(string)
	b := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"c"}})
	if b.status != 200 || b.body["refresh_token"] == rt {
		t.Fatalf("refresh: %d %v", b.status, b.body)
	}
	if c := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"c"}}); c.status != 400 || c.body["error"] != "invalid_grant" {
		t.Fatalf("rotated token reused: %v", c.body)
	}
	s.RevokeGrant(box)
	if c := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {b.body["refresh_token"].(string)}, "client_id": {"c"}}); c.body["error"] != "invalid_grant" {
		t.Fatalf("revoked grant: %v", c.body)
	}
}

func TestGlobalObjectID(t *testing.T) {
	id := goidHex(GlobalObjectID("abc@google.com", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), time.Time{}))
	if !strings.HasPrefix(id, "040000008200E00074C5B7101A82E00807EA0401") || !strings.Contains(id, strings.ToUpper("7643616c2d556964")) {
		t.Fatalf("id %s", id)
	}
}

// scripting is the Go API tests drive a user's changes with, as
// calendartest.Server offers it for Google.
type scripting interface {
	URL() string
	Close()
	Insert(address, calendarID string, spec EventSpec) (string, error)
	Move(address, eventID string, start, end time.Time) error
	Rename(address, eventID, subject string) error
	Cancel(address, eventID string) error
	Delete(address, eventID string) error
	AddAttendee(address, eventID string, a Attendee) error
	RemoveAttendee(address, eventID, attendee string) error
	MoveOccurrence(address, masterID string, originalStart, start, end time.Time) error
	CancelOccurrence(address, masterID string, originalStart time.Time) error
	Notify(address, calendarID string, eventIDs ...string) error
	Lifecycle(subscriptionID, event string) error
	SetAutoNotify(on bool)
	Calls() map[string]int
	FailNext(n, status int, code string)
	Throttle(n int, retryAfter time.Duration)
	Revoke(tok string)
}

var _ scripting = (*Server)(nil)
