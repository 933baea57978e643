package calendartest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const cal = "alice@example.com"

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestServer(t testing.TB) (*Server, *testClock) {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	clk := &testClock{t: t0}
	s.SetClock(clk.now)
	if err := s.AddCalendar(cal, "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func do(t testing.TB, s *Server, method, path string, q url.Values, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	u := s.URL() + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type listAnswer struct {
	Items         []Event `json:"items"`
	NextPageToken string  `json:"nextPageToken"`
	NextSyncToken string  `json:"nextSyncToken"`
	TimeZone      string  `json:"timeZone"`
}

// listAll follows the pages of a listing and returns the item ids and the
// sync token.
func listAll(t testing.TB, s *Server, q url.Values) ([]Event, string) {
	t.Helper()
	var items []Event
	q = cloneValues(q)
	for {
		code, body := do(t, s, "GET", "calendars/"+url.PathEscape(cal)+"/events", q, nil)
		if code != 200 {
			t.Fatalf("list %v: %d %s", q, code, body)
		}
		var a listAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		items = append(items, a.Items...)
		if a.NextPageToken == "" {
			if a.NextSyncToken == "" {
				t.Fatal("last page without nextSyncToken")
			}
			return items, a.NextSyncToken
		}
		if a.NextSyncToken != "" {
			t.Fatal("page with both tokens")
		}
		q.Set("pageToken", a.NextPageToken)
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

func ids(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID+":"+e.Status)
	}
	sort.Strings(out)
	return out
}

func mustInsert(t testing.TB, s *Server, spec EventSpec) Event {
	t.Helper()
	ev, err := s.Insert(cal, spec)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func googleError(t *testing.T, body []byte) (int, string) {
	t.Helper()
	var e struct {
		Error struct {
			Errors []struct{ Reason string } `json:"errors"`
			Code   int                       `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Error.Errors) != 1 {
		t.Fatalf("not a Google error body: %s", body)
	}
	return e.Error.Code, e.Error.Errors[0].Reason
}

func TestListErrors(t *testing.T) {
	s, clk := newTestServer(t)
	mustInsert(t, s, EventSpec{Summary: "x", Start: t0, End: t0.Add(time.Hour)})
	_, syncToken := listAll(t, s, url.Values{"singleEvents": {"true"}})
	path := "calendars/" + url.PathEscape(cal) + "/events"

	// Google's documented 410 body, byte for byte in meaning.
	code, body := do(t, s, "GET", path, url.Values{"singleEvents": {"true"}, "syncToken": {"garbage"}}, nil)
	var got, want any
	_ = json.Unmarshal(body, &got)
	_ = json.Unmarshal([]byte(`{"error":{"errors":[{"domain":"calendar","reason":"fullSyncRequired","message":"Sync token is no longer valid, a full sync is required."}],"code":410,"message":"Sync token is no longer valid, a full sync is required."}}`), &want)
	if code != 410 || !cmp.Equal(want, got) {
		t.Fatalf("unknown token: %d %s", code, body)
	}

	tests := []struct {
		name       string
		q          url.Values
		code       int
		reason     string
		beforeFunc func()
	}{
		{name: "sync token with timeMin", q: url.Values{"singleEvents": {"true"}, "syncToken": {syncToken}, "timeMin": {"2026-01-01T00:00:00Z"}},
			code: 400, reason: "syncTokenWithRequestRestrictions"},
		{name: "sync token with q", q: url.Values{"singleEvents": {"true"}, "syncToken": {syncToken}, "q": {"x"}},
			code: 400, reason: "syncTokenWithRequestRestrictions"},
		{name: "singleEvents differs", q: url.Values{"syncToken": {syncToken}}, code: 400, reason: "invalid"},
		{name: "maxResults 0", q: url.Values{"maxResults": {"0"}}, code: 400, reason: "invalid"},
		{name: "empty time range", q: url.Values{"timeMin": {"2026-02-01T00:00:00Z"}, "timeMax": {"2026-01-01T00:00:00Z"}}, code: 400, reason: "timeRangeEmpty"},
		{name: "bad page token", q: url.Values{"pageToken": {"nope"}}, code: 400, reason: "invalid"},
		{name: "token too old", q: url.Values{"singleEvents": {"true"}, "syncToken": {syncToken}}, code: 410, reason: "fullSyncRequired",
			beforeFunc: func() { s.SetTokenTTL(time.Hour); clk.advance(2 * time.Hour) }},
		{name: "expired tokens", q: url.Values{"singleEvents": {"true"}, "syncToken": {syncToken}}, code: 410, reason: "fullSyncRequired",
			beforeFunc: func() { s.SetTokenTTL(0); _ = s.ExpireTokens(cal) }},
	}
	for _, tt := range tests {
		if tt.beforeFunc != nil {
			tt.beforeFunc()
		}
		code, body := do(t, s, "GET", path, tt.q, nil)
		if c, r := googleError(t, body); code != tt.code || c != tt.code || r != tt.reason {
			t.Errorf("%s: %d %s", tt.name, code, body)
		}
	}

	if code, body := do(t, s, "GET", "calendars/nobody%40example.com/events", nil, nil); code != 404 {
		t.Errorf("unknown calendar: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", s.URL()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("no credentials: %d", resp.StatusCode)
	}
	if n := s.Calls()[EndpointList]; n < 10 {
		t.Errorf("calls not counted: %d", n)
	}
}

func TestRecurrenceViews(t *testing.T) {
	s, _ := newTestServer(t)
	start := time.Date(2026, 3, 24, 10, 0, 0, 0, time.UTC) // 11:00 Berlin
	mustInsert(t, s, EventSpec{
		ID: "series01", Summary: "Weekly", Start: start, End: start.Add(time.Hour),
		Recurrence: []string{"RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Berlin:20260407T110000"},
	})
	// After 29 March, 11:00 Berlin is 09:00Z.
	inst := func(day int) string {
		if day == 24 {
			return "series01_20260324T100000Z"
		}
		return InstanceID("series01", time.Date(2026, 3, day, 9, 0, 0, 0, time.UTC))
	}
	if _, err := s.MoveInstance(cal, "series01", time.Date(2026, 3, 31, 9, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 31, 14, 0, 0, 0, time.UTC), time.Date(2026, 3, 31, 15, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelInstance(cal, "series01", time.Date(2026, 4, 14, 9, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Rename(cal, inst(45), "x"); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("renamed a cancelled instance: %v", err)
	}
	if _, err := s.Rename(cal, inst(38), "x"); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("renamed an instance removed by EXDATE: %v", err)
	}

	single, _ := listAll(t, s, url.Values{"singleEvents": {"true"}})
	want := []string{inst(24) + ":confirmed", inst(31) + ":confirmed", inst(52) + ":confirmed"} // 52 March = 21 April
	if d := cmp.Diff(want, ids(single)); d != "" {
		t.Errorf("singleEvents=true (-want +got):\n%s", d)
	}
	withDeleted, _ := listAll(t, s, url.Values{"singleEvents": {"true"}, "showDeleted": {"true"}})
	if len(withDeleted) != 4 {
		t.Errorf("singleEvents+showDeleted: %v", ids(withDeleted))
	}
	masters, _ := listAll(t, s, nil)
	want = []string{"series01:confirmed", inst(31) + ":confirmed", inst(45) + ":cancelled"}
	sort.Strings(want)
	if d := cmp.Diff(want, ids(masters)); d != "" {
		t.Errorf("singleEvents=false (-want +got):\n%s", d)
	}
	for _, m := range masters {
		if m.ID == "series01" && len(m.Recurrence) != 2 {
			t.Errorf("master without recurrence: %+v", m)
		}
		if m.ID == inst(31) && (m.OriginalStartTime == nil || m.OriginalStartTime.DateTime != "2026-03-31T11:00:00+02:00" ||
			m.Start.DateTime != "2026-03-31T16:00:00+02:00") {
			t.Errorf("moved instance: %+v %+v", m.OriginalStartTime, m.Start)
		}
	}

	// Time filters: timeMin on the end, timeMax on the start.
	window, _ := listAll(t, s, url.Values{"singleEvents": {"true"},
		"timeMin": {"2026-03-24T11:00:00Z"}, "timeMax": {"2026-03-31T14:00:00Z"}})
	if len(window) != 0 {
		t.Errorf("window excluding both ends: %v", ids(window))
	}
	window, _ = listAll(t, s, url.Values{"singleEvents": {"true"}, "timeMin": {"2026-03-31T14:30:00Z"}})
	if len(window) != 2 {
		t.Errorf("timeMin: %v", ids(window))
	}
}

func TestMoveSeriesReissuesInstances(t *testing.T) {
	s, clk := newTestServer(t)
	start := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	mustInsert(t, s, EventSpec{ID: "series02", Summary: "Daily", Start: start, End: start.Add(30 * time.Minute),
		Recurrence: []string{"RRULE:FREQ=DAILY;COUNT=2"}})
	_, tok := listAll(t, s, url.Values{"singleEvents": {"true"}})
	clk.advance(time.Minute)
	if _, err := s.Move(cal, "series02", start.Add(time.Hour), start.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	changes, _ := listAll(t, s, url.Values{"singleEvents": {"true"}, "syncToken": {tok}})
	want := []string{
		"series02_20260401T080000Z:cancelled", "series02_20260401T090000Z:confirmed",
		"series02_20260402T080000Z:cancelled", "series02_20260402T090000Z:confirmed",
	}
	if d := cmp.Diff(want, ids(changes)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	for _, c := range changes {
		if c.Status == "cancelled" && (c.Start != nil || c.RecurringEventID != "series02" || c.OriginalStartTime == nil || c.Updated != "") {
			t.Errorf("cancelled instance not minimal: %+v", c)
		}
	}
}

func TestPatchWire(t *testing.T) {
	s, _ := newTestServer(t)
	ev := mustInsert(t, s, EventSpec{Summary: "x", Start: t0, End: t0.Add(time.Hour), Private: map[string]string{"a": "1", "b": "2"}})
	path := "calendars/" + url.PathEscape(cal) + "/events/" + ev.ID
	long := strings.Repeat("k", 45)
	code, body := do(t, s, "PATCH", path, nil, map[string]any{
		"extendedProperties": map[string]any{"private": map[string]any{"a": nil, "c": "3", long: "dropped", "v": strings.Repeat("x", 2000)}},
	})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var got Event
	_ = json.Unmarshal(body, &got)
	if p := got.ExtendedProperties.Private; len(p) != 3 || p["b"] != "2" || p["c"] != "3" || len(p["v"]) != 1024 {
		t.Errorf("private after patch: %v", p)
	}
	if got.ETag == ev.ETag {
		t.Error("etag unchanged")
	}
	if code, body := do(t, s, "PATCH", path, nil, map[string]any{"start": map[string]any{"date": "2026-01-01"}}); code != 400 {
		t.Errorf("unsupported field: %d %s", code, body)
	}
	if code, _ := do(t, s, "PATCH", "calendars/"+url.PathEscape(cal)+"/events/unknown1", nil, map[string]any{"summary": "x"}); code != 404 {
		t.Errorf("unknown event: %d", code)
	}
	if code, body := do(t, s, "GET", path, nil, nil); code != 200 || !bytes.Contains(body, []byte(`"c":"3"`)) {
		t.Errorf("get: %d %s", code, body)
	}
}

func TestWatchWire(t *testing.T) {
	s, clk := newTestServer(t)
	recv := make(chan http.Header, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { recv <- r.Header.Clone() }))
	defer rcv.Close()
	hookURL := rcv.URL + "/hook"

	path := "calendars/" + url.PathEscape(cal) + "/events/watch"
	code, body := do(t, s, "POST", path, nil, map[string]any{"id": "chan1", "type": "web_hook", "address": hookURL, "token": "secret"})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	if exp, ok := raw["expiration"].(string); !ok || exp != fmt.Sprint(t0.Add(channelTTL).UnixMilli()) {
		t.Errorf("expiration must be a string of ms: %v", raw["expiration"])
	}
	h := <-recv
	if h.Get("X-Goog-Resource-State") != "sync" || h.Get("X-Goog-Channel-Token") != "secret" ||
		h.Get("X-Goog-Message-Number") != "1" || h.Get("X-Goog-Channel-Expiration") != t0.Add(channelTTL).Format(http.TimeFormat) {
		t.Errorf("sync headers: %v", h)
	}
	if code, _ := do(t, s, "POST", path, nil, map[string]any{"id": "chan1", "type": "web_hook", "address": hookURL}); code != 400 {
		t.Errorf("duplicate channel id: %d", code)
	}
	if code, _ := do(t, s, "POST", path, nil, map[string]any{"id": "chan2", "type": "email", "address": hookURL}); code != 400 {
		t.Errorf("bad type: %d", code)
	}
	chs := s.Channels(cal)
	if len(chs) != 1 {
		t.Fatalf("channels %v", chs)
	}
	if code, _ := do(t, s, "POST", "channels/stop", nil, map[string]any{"id": "chan1", "resourceId": "wrong"}); code != 404 {
		t.Errorf("stop with wrong resource: %d", code)
	}
	// An expired channel is dropped, not notified.
	clk.advance(channelTTL)
	if err := s.Notify(cal); err != nil || len(s.Channels(cal)) != 0 {
		t.Errorf("expired channel: %v %v", err, s.Channels(cal))
	}
	if code, _ := do(t, s, "POST", "channels/stop", nil, map[string]any{"id": "chan1", "resourceId": chs[0].ResourceID}); code != 404 {
		t.Errorf("stop expired: %d", code)
	}
}

func TestGoAPIValidation(t *testing.T) {
	s, _ := newTestServer(t)
	bad := []EventSpec{
		{ID: "UPPER1", Start: t0, End: t0.Add(time.Hour)},
		{ID: "abc", Start: t0, End: t0.Add(time.Hour)},
		{Start: t0.Add(time.Hour), End: t0},
		{StartDate: "2026-04-01", EndDate: "2026-04-01"},
		{StartDate: "2026-04-01", Start: t0},
		{Start: t0, End: t0.Add(time.Hour), Recurrence: []string{"RRULE:FREQ=SOMETIMES"}},
		{Start: t0, End: t0.Add(time.Hour), Recurrence: []string{"EXDATE:20260101T000000Z"}},
		{Start: t0, End: t0.Add(time.Hour), TimeZone: "Mars/Olympus"},
		{Start: t0, End: t0.Add(time.Hour), Attendees: []Attendee{{DisplayName: "no email"}}},
	}
	for _, spec := range bad {
		if _, err := s.Insert(cal, spec); err == nil {
			t.Errorf("accepted %+v", spec)
		}
	}
	ev := mustInsert(t, s, EventSpec{ID: "single01", Start: t0, End: t0.Add(time.Hour)})
	if _, err := s.Insert(cal, EventSpec{ID: ev.ID, Start: t0, End: t0.Add(time.Hour)}); err == nil {
		t.Error("duplicate id accepted")
	}
	if _, err := s.Update(cal, ev.ID, func(e *EventSpec) { e.Recurrence = []string{"RRULE:FREQ=DAILY"} }); err == nil {
		t.Error("single turned into series")
	}
	if _, err := s.Insert("nobody", EventSpec{Start: t0, End: t0.Add(time.Hour)}); err == nil {
		t.Error("unknown calendar accepted")
	}
	if err := s.Delete(cal, ev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rename(cal, ev.ID, "x"); err == nil {
		t.Error("renamed a deleted event")
	}
	got, err := s.Get(cal, ev.ID)
	if err != nil || got.Status != "cancelled" || got.Start != nil {
		t.Errorf("deleted event: %+v %v", got, err)
	}

	// Copies share id and iCalUID; self follows the calendar.
	if err := s.AddCalendar("bob@example.com", "UTC"); err != nil {
		t.Fatal(err)
	}
	orig := mustInsert(t, s, EventSpec{Start: t0, End: t0.Add(time.Hour),
		Attendees: []Attendee{{Email: cal}, {Email: "bob@example.com"}}})
	cp, err := s.InsertCopy("bob@example.com", cal, orig.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cp.ID != orig.ID || cp.ICalUID != orig.ICalUID || cp.Organizer.Email != cal || cp.Organizer.Self ||
		cp.Attendees[0].Self || !cp.Attendees[1].Self {
		t.Errorf("copy %+v", cp)
	}
}

// BenchmarkListing measures the fake at `rapport bench` scale: 100,000 events
// over 200 calendars.
func BenchmarkListing(b *testing.B) {
	s := NewServer()
	defer s.Close()
	const calendars, perCalendar = 200, 500
	for c := range calendars {
		id := fmt.Sprintf("user%d@example.com", c)
		if err := s.AddCalendar(id, "Europe/Berlin"); err != nil {
			b.Fatal(err)
		}
		for i := range perCalendar {
			st := t0.Add(time.Duration(i) * time.Hour)
			if _, err := s.Insert(id, EventSpec{Summary: "Meeting", Start: st, End: st.Add(30 * time.Minute),
				Attendees: []Attendee{{Email: id}, {Email: "guest@acme.com"}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	q := url.Values{"singleEvents": {"true"}, "maxResults": {"2500"}}
	c0 := fmt.Sprintf("user%d@example.com", 0)
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			code, _ := do(b, s, "GET", "calendars/"+url.PathEscape(c0)+"/events", q, nil)
			if code != 200 {
				b.Fatal(code)
			}
		}
	})
	_, body := do(b, s, "GET", "calendars/"+url.PathEscape(c0)+"/events", q, nil)
	var a listAnswer
	_ = json.Unmarshal(body, &a)
	for i := range 10 {
		if _, err := s.Rename(c0, a.Items[i*7].ID, "renamed"); err != nil {
			b.Fatal(err)
		}
	}
	inc := url.Values{"singleEvents": {"true"}, "maxResults": {"2500"}, "syncToken": {a.NextSyncToken}}
	b.Run("incremental", func(b *testing.B) {
		for b.Loop() {
			code, _ := do(b, s, "GET", "calendars/"+url.PathEscape(c0)+"/events", inc, nil)
			if code != 200 {
				b.Fatal(code)
			}
		}
	})
}
