package pipeline_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

// TestWorkspaceBounds: names and internal-domain lists are capped, and a
// free-mail domain is never internal.
func TestWorkspaceBounds(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	many := make([]string, pipeline.MaxInternalDomains+1)
	for i := range many {
		many[i] = fmt.Sprintf("d%d.example", i)
	}
	for _, c := range []struct {
		name    string
		domains []string
	}{
		{strings.Repeat("n", pipeline.MaxWorkspaceName+1), []string{"acme.test"}},
		{"tab\there", []string{"acme.test"}},
		{"Acme", many},
		{"Acme", []string{"acme.test", "gmail.com"}},
		{"Acme", []string{"googlemail.com"}},
		{"Acme", []string{"mail.yahoo.co.uk"}}, // under a free-mail registrable domain
	} {
		if _, err := h.p.CreateWorkspace(h.ctx, c.name, c.domains); !errors.Is(err, pipeline.ErrInvalid) {
			t.Errorf("CreateWorkspace(%.20q…, %d domains %.40v): %v, want ErrInvalid", c.name, len(c.domains), c.domains, err)
		}
	}
	w, err := h.p.CreateWorkspace(h.ctx, strings.Repeat("é", pipeline.MaxWorkspaceName), many[:pipeline.MaxInternalDomains])
	if err != nil {
		t.Fatalf("workspace at the limits: %v", err)
	}
	h.pool.Exec(h.ctx, `DELETE FROM workspaces WHERE id = $1`, w.ID)
}

// TestImportManyCalendars: an import registers all of its calendars in one
// transaction and answers before any provider call; the channels and the
// initial syncs follow in the background. More than the cap is refused and
// stores nothing.
func TestImportManyCalendars(t *testing.T) {
	// One account's calendars share Google's per-user budget: lift it, the
	// test is about the import, not the pace.
	h := newHarness(t, harnessOptions{googlePerMinute: 1_000_000})
	const n = 120
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("team%03d@northwind.test", i)
		h.addCalendar(ids[i])
	}
	in := pipeline.ConnectionInput{Provider: "google", AccountEmail: rep, AccessToken: "tok", RefreshToken: "r",
		ExpiresAt: time.Now().Add(time.Hour)}
	count := func() int {
		var k int
		h.pool.QueryRow(h.ctx, `SELECT count(*) FROM calendars WHERE workspace_id = $1`, h.ws).Scan(&k)
		return k
	}

	in.CalendarIDs = make([]string, pipeline.MaxCalendarIDs+1)
	for i := range in.CalendarIDs {
		in.CalendarIDs[i] = fmt.Sprintf("c%d", i)
	}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); !errors.Is(err, pipeline.ErrInvalid) {
		t.Fatalf("%d calendar ids: %v, want ErrInvalid", len(in.CalendarIDs), err)
	}
	in.CalendarIDs = []string{"ok", "bad\x00id"}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); !errors.Is(err, pipeline.ErrInvalid) {
		t.Fatalf("a calendar id with NUL: %v, want ErrInvalid", err)
	}
	var conns int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM connections WHERE workspace_id = $1`, h.ws).Scan(&conns)
	if conns != 0 || count() != 0 {
		t.Fatalf("%d connections and %d calendars stored by refused imports", conns, count())
	}

	in.CalendarIDs = append(ids, ids[0]) // a duplicate is registered once
	c, err := h.p.AddConnection(h.ctx, h.ws, in)
	if err != nil {
		t.Fatal(err)
	}
	// No worker runs yet: the import made no provider call and registered
	// every calendar.
	if calls := h.google.Calls()[calendartest.EndpointWatch]; calls != 0 {
		t.Errorf("the import made %d watch calls before answering, want 0 (they belong in connection:setup)", calls)
	}
	if len(c.Calendars) != n || count() != n || c.Setup != "queued" {
		t.Fatalf("import answered %d calendars (setup %q), %d registered; want %d", len(c.Calendars), c.Setup, count(), n)
	}
	h.startWorker()
	h.settle()
	h.eventually("every calendar synced with a channel", func() bool {
		var ready int
		h.pool.QueryRow(h.ctx, `SELECT count(*) FROM calendars WHERE workspace_id = $1 AND channel_id IS NOT NULL AND last_synced_at IS NOT NULL`, h.ws).Scan(&ready)
		return ready == n
	})
	// A re-import changes nothing but the tokens.
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if count() != n {
		t.Errorf("%d calendars after a re-import, want %d", count(), n)
	}
	if got := h.google.Calls()[calendartest.EndpointWatch]; got != n {
		t.Errorf("%d watch calls after import and re-import, want %d (current channels are kept)", got, n)
	}
}

// TestLongTextsTruncated: a description longer than HubSpot's 65,536
// characters reaches HubSpot cut to the limit on a character boundary (the
// fake refuses longer values, as HubSpot does), and the meeting is logged.
func TestLongTextsTruncated(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	h.addCalendar(rep)
	s := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	long := strings.Repeat("é", 70_000)
	if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Acme essay", Description: long, Location: strings.Repeat("L", 70_000),
		Start: s, End: s.Add(time.Hour), Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}}); err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	h.connectHubSpot()
	h.connectGoogle(rep, "tok-rep")
	h.settle()
	m := h.one("Acme essay")
	for _, p := range []string{crm.PropBody, crm.PropLocation} {
		v := m.Properties[p]
		if n := utf8.RuneCountInString(v); n != 65_536 || !utf8.ValidString(v) {
			t.Errorf("%s has %d characters (valid UTF-8: %v), want 65536", p, n, utf8.ValidString(v))
		}
	}
	var dead int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1`, h.ws).Scan(&dead)
	if dead != 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
}
