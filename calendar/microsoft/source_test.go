package microsoft_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/microsoft"
)

const teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc"

var ignoreStamps = cmpopts.IgnoreFields(calendar.Event{}, "ETag", "Updated")

type fixture struct {
	single, series, weekly, allDay, later string
	origs                                 []time.Time
	occ                                   []string
}

// seed puts a calendar's worth of events on alice's mailbox.
func seed(t *testing.T, e *env) fixture {
	t.Helper()
	var f fixture
	f.single = must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
		ExternalUID: "kickoff01@google.com", Subject: "Kickoff", Body: "agenda", Location: "Room 1",
		Start: time.Date(2026, 3, 26, 9, 0, 0, 0, time.UTC), End: time.Date(2026, 3, 26, 10, 0, 0, 0, time.UTC),
		OnlineMeetingURL: teams,
		Attendees: []graph.Attendee{
			{Person: graph.Person{Address: "bob@acme.com", Name: "Bob"}, Response: "accepted"},
			{Person: graph.Person{Address: "carol@globex.com"}, Type: "optional"},
			{Person: graph.Person{Address: "room-1@example.com", Name: "Room 1"}, Type: "resource", Response: "accepted"},
		},
	}))
	start := time.Date(2026, 3, 24, 14, 0, 0, 0, time.UTC)
	f.series = must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
		ExternalUID: "series01@google.com", Subject: "Standup", Start: start, End: start.Add(15 * time.Minute),
		Recurrence: &graph.Recurrence{Count: 4},
		Attendees:  []graph.Attendee{{Person: graph.Person{Address: "bob@acme.com"}}},
	}))
	for i := range 4 {
		o := start.AddDate(0, 0, i)
		f.origs = append(f.origs, o)
		f.occ = append(f.occ, must[string](t)(e.srv.OccurrenceID(alice, f.series, o)))
	}
	w := time.Date(2026, 3, 23, 8, 0, 0, 0, time.UTC)
	f.weekly = must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
		Subject: "Weekly", Start: w, End: w.Add(time.Hour), Recurrence: &graph.Recurrence{Interval: 7, Count: 3},
	}))
	f.allDay = must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
		ExternalUID: "offsite01@google.com", Subject: "Offsite", AllDay: true,
		Start: time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC),
		Sensitivity: "private", ShowAs: "oof",
	}))
	f.later = must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
		ExternalUID: "later01@google.com", Subject: "Later", Start: t0.Add(48 * time.Hour), End: t0.Add(49 * time.Hour),
	}))
	// Far outside the window: never listed.
	must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{Subject: "Next year", Start: t0.AddDate(1, 0, 0), End: t0.AddDate(1, 0, 0).Add(time.Hour)}))
	return f
}

var me = calendar.Attendee{Email: alice, Organizer: true, Self: true, Response: calendar.ResponseAccepted}

func kickoff(f fixture) calendar.Event {
	return calendar.Event{
		ID: f.single, ICalUID: "kickoff01@google.com", Status: calendar.StatusConfirmed,
		Title: "Kickoff", Description: "agenda", Location: "Room 1",
		Start: time.Date(2026, 3, 26, 9, 0, 0, 0, time.UTC), End: time.Date(2026, 3, 26, 10, 0, 0, 0, time.UTC),
		TimeZone: "Europe/Berlin", Visibility: "default", EventType: "default", ShowAs: "busy",
		Organizer: me,
		Attendees: []calendar.Attendee{
			me,
			{Email: "bob@acme.com", Name: "Bob", Response: calendar.ResponseAccepted},
			{Email: "carol@globex.com", Optional: true, Response: calendar.ResponseNeedsAction},
			{Email: "room-1@example.com", Name: "Room 1", Resource: true, Response: calendar.ResponseAccepted},
		},
		ConferenceURL: teams, Source: "microsoft",
	}
}

func standup(f fixture, i int, start time.Time) calendar.Event {
	return calendar.Event{
		ID: f.occ[i], ICalUID: "series01@google.com", RecurringEventID: f.series, OriginalStart: f.origs[i],
		Status: calendar.StatusConfirmed, Title: "Standup", Start: start, End: start.Add(15 * time.Minute),
		TimeZone: "Europe/Berlin", Visibility: "default", EventType: "default", ShowAs: "busy",
		Organizer: me,
		Attendees: []calendar.Attendee{me, {Email: "bob@acme.com", Response: calendar.ResponseNeedsAction}},
		Source:    "microsoft",
	}
}

// TestInitialSync lists a calendar in full over several pages and checks
// the normalised events.
func TestInitialSync(t *testing.T) {
	e := newEnv(t, microsoft.Config{PageSize: 2})
	f := seed(t, e)
	got, cursor, pages := listAll(t, e.src, calendar.ListRequest{})
	if len(got) != 10 || len(pages) != 5 {
		t.Fatalf("%d events in %d pages, want 10 in 5", len(got), len(pages))
	}
	if !strings.HasPrefix(cursor, "graph1.") {
		t.Fatalf("cursor %q", cursor)
	}
	evs := byID(got)
	if d := cmp.Diff(kickoff(f), evs[f.single], ignoreStamps); d != "" {
		t.Errorf("single event (-want +got):\n%s", d)
	}
	for i, o := range f.origs {
		if d := cmp.Diff(standup(f, i, o), evs[f.occ[i]], ignoreStamps); d != "" {
			t.Errorf("occurrence %d (-want +got):\n%s", i, d)
		}
	}
	off := evs[f.allDay]
	if !off.AllDay || off.StartDate != "2026-04-03" || off.EndDate != "2026-04-05" || off.Visibility != "private" ||
		off.EventType != "outOfOffice" || !off.Start.Equal(time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC)) ||
		// Like Google: no attendee list (not even the organizer) without invitees.
		len(off.Attendees) != 0 || off.Organizer != me {
		t.Errorf("all-day event %+v", off)
	}
	// Exchange's own series: one upper-case hex UID, date bytes cleared,
	// shared by its occurrences.
	var weekly []calendar.Event
	for _, ev := range got {
		if ev.RecurringEventID == f.weekly {
			weekly = append(weekly, ev)
		}
	}
	if len(weekly) != 3 {
		t.Fatalf("%d weekly occurrences", len(weekly))
	}
	for _, ev := range weekly {
		uid := ev.ICalUID
		if uid != weekly[0].ICalUID || !strings.HasPrefix(uid, "040000008200E00074C5B7101A82E00800000000") || uid != strings.ToUpper(uid) {
			t.Errorf("weekly occurrence uid %s", uid)
		}
		if !ev.OriginalStart.Equal(ev.Start) {
			t.Errorf("occurrence original start %v, start %v", ev.OriginalStart, ev.Start)
		}
	}
	for _, ev := range got {
		if ev.ETag == "" || !ev.Updated.Equal(t0) {
			t.Errorf("%s: etag %q updated %v", ev.ID, ev.ETag, ev.Updated)
		}
	}
	// Nothing changed: an empty incremental page with a cursor.
	again, _, _ := listAll(t, e.src, calendar.ListRequest{Cursor: cursor})
	if len(again) != 0 {
		t.Fatalf("incremental without changes: %v", ids(again))
	}
	// Costs: the delta pages, one GET per series master seen on a page, one
	// per single event or exception (extended properties).
	calls := e.srv.Calls()
	if calls[graph.EndpointDelta] != 6 {
		t.Errorf("%d delta calls, want 6", calls[graph.EndpointDelta])
	}
}

// TestIncremental drives the calendar through a user's changes and checks
// each incremental listing.
func TestIncremental(t *testing.T) {
	e := newEnv(t, microsoft.Config{PageSize: 3})
	f := seed(t, e)
	_, cursor, _ := listAll(t, e.src, calendar.ListRequest{})

	moved := f.origs[1].Add(3 * time.Hour)
	steps := []struct {
		name   string
		change func() error
		want   func() []calendar.Event
	}{
		{"rename", func() error { return e.srv.Rename(alice, f.single, "Kickoff (new)") }, func() []calendar.Event {
			k := kickoff(f)
			k.Title = "Kickoff (new)"
			return []calendar.Event{k}
		}},
		{"move", func() error {
			return e.srv.Move(alice, f.single, time.Date(2026, 3, 27, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC))
		}, func() []calendar.Event {
			k := kickoff(f)
			k.Title = "Kickoff (new)"
			k.Start, k.End = time.Date(2026, 3, 27, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC)
			return []calendar.Event{k}
		}},
		{"attendee added", func() error {
			return e.srv.AddAttendee(alice, f.single, graph.Attendee{Person: graph.Person{Address: "dave@initech.com"}, Response: "tentativelyAccepted"})
		}, nil},
		{"attendee removed", func() error { return e.srv.RemoveAttendee(alice, f.single, "carol@globex.com") }, nil},
		{"occurrence moved", func() error {
			return e.srv.MoveOccurrence(alice, f.series, f.origs[1], moved, moved.Add(15*time.Minute))
		},
			func() []calendar.Event { return []calendar.Event{standup(f, 1, moved)} }},
		{"occurrence cancelled", func() error { return e.srv.CancelOccurrence(alice, f.series, f.origs[2]) },
			func() []calendar.Event { return []calendar.Event{{ID: f.occ[2], Status: calendar.StatusCancelled}} }},
		{"cancelled by the organizer", func() error { return e.srv.Cancel(alice, f.allDay) }, nil},
		{"deleted", func() error { return e.srv.Delete(alice, f.later) },
			func() []calendar.Event { return []calendar.Event{{ID: f.later, Status: calendar.StatusCancelled}} }},
	}
	for _, st := range steps {
		e.clock.Advance(time.Minute)
		check(t, st.change())
		got, next, _ := listAll(t, e.src, calendar.ListRequest{Cursor: cursor})
		cursor = next
		if st.want != nil {
			if d := cmp.Diff(st.want(), got, ignoreStamps); d != "" {
				t.Fatalf("%s (-want +got):\n%s", st.name, d)
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d events: %v", st.name, len(got), ids(got))
		}
		ev := got[0]
		switch st.name {
		case "attendee added":
			last := ev.Attendees[len(ev.Attendees)-1]
			if len(ev.Attendees) != 5 || last.Email != "dave@initech.com" || last.Response != calendar.ResponseTentative {
				t.Fatalf("%s: %+v", st.name, ev.Attendees)
			}
		case "attendee removed":
			for _, a := range ev.Attendees {
				if a.Email == "carol@globex.com" {
					t.Fatalf("%s: carol still there", st.name)
				}
			}
		case "cancelled by the organizer":
			if ev.ID != f.allDay || ev.Status != calendar.StatusCancelled || ev.Minimal() || ev.Title != "Offsite" || ev.OutOfWindow {
				t.Fatalf("%s: %+v", st.name, ev)
			}
		}
		if !ev.Updated.Equal(e.clock.Now()) {
			t.Errorf("%s: updated %v", st.name, ev.Updated)
		}
	}
}

// TestRemovalOrOutOfWindow: both leave the delta view as @removed; one GET
// each tells them apart.
func TestRemovalOrOutOfWindow(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	f := seed(t, e)
	_, cursor, _ := listAll(t, e.src, calendar.ListRequest{})
	far := t0.Add(90 * 24 * time.Hour)
	check(t, e.srv.Move(alice, f.later, far, far.Add(time.Hour)))
	check(t, e.srv.Delete(alice, f.single))
	e.srv.ResetCalls()
	got, _, _ := listAll(t, e.src, calendar.ListRequest{Cursor: cursor})
	evs := byID(got)
	if len(got) != 2 {
		t.Fatalf("events %v", ids(got))
	}
	if gone := evs[f.single]; !gone.Minimal() || gone.OutOfWindow {
		t.Errorf("deleted event: %+v", gone)
	}
	out := evs[f.later]
	if !out.OutOfWindow || out.Status != calendar.StatusConfirmed || out.Title != "Later" || !out.Start.Equal(far) {
		t.Errorf("event moved out of the window: %+v", out)
	}
	if c := e.srv.Calls(); c[graph.EndpointDelta] != 1 || c[graph.EndpointGet] != 2 {
		t.Errorf("calls %v: want 1 delta and 1 GET per removal", c)
	}
}

// TestCursorExpiredMidSync: delta tokens expire between two pages.
func TestCursorExpiredMidSync(t *testing.T) {
	e := newEnv(t, microsoft.Config{PageSize: 2, SkipPrivate: true})
	seed(t, e)
	lo, hi := window()
	ctx := context.Background()
	p, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", TimeMin: lo, TimeMax: hi})
	check(t, err)
	if p.NextPageToken == "" {
		t.Fatal("one page only")
	}
	check(t, e.srv.ExpireDelta(alice))
	e.srv.ResetCalls()
	_, err = e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", TimeMin: lo, TimeMax: hi, PageToken: p.NextPageToken})
	if calendar.ClassOf(err) != calendar.CursorExpired {
		t.Fatalf("class %v: %v", calendar.ClassOf(err), err)
	}
	if n := e.srv.Calls()[graph.EndpointDelta]; n != 1 {
		t.Errorf("cursor expiry retried: %d calls", n)
	}
	// A delta token from before the expiry fails the same way; a full
	// listing recovers.
	full, cursor, _ := listAll(t, e.src, calendar.ListRequest{})
	if len(full) != 10 {
		t.Fatalf("%d events after relisting", len(full))
	}
	check(t, e.srv.ExpireDelta(alice))
	if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: cursor, TimeMin: lo, TimeMax: hi}); calendar.ClassOf(err) != calendar.CursorExpired {
		t.Fatalf("expired delta token: %v", err)
	}
}

// TestWindowSlide: a cursor is bound to its window; once the window moved
// on by more than Slide the cursor expires without a call.
func TestWindowSlide(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	seed(t, e)
	_, cursor, _ := listAll(t, e.src, calendar.ListRequest{})
	lo, hi := window()
	ctx := context.Background()
	e.srv.ResetCalls()
	for _, d := range []time.Duration{2 * time.Hour, 23 * time.Hour} {
		if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: cursor, TimeMin: lo.Add(d), TimeMax: hi.Add(d)}); err != nil {
			t.Fatalf("window moved %v: %v", d, err)
		}
	}
	for _, d := range []time.Duration{25 * time.Hour, 72 * time.Hour} {
		_, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: cursor, TimeMin: lo.Add(d), TimeMax: hi.Add(d)})
		if calendar.ClassOf(err) != calendar.CursorExpired {
			t.Fatalf("window moved %v: %v", d, err)
		}
	}
	// The backfill grew: the cursor does not cover the new start.
	if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: cursor, TimeMin: lo.Add(-time.Hour), TimeMax: hi}); calendar.ClassOf(err) != calendar.CursorExpired {
		t.Fatalf("backfill grew: %v", err)
	}
	// The lookahead grew past the listed end.
	if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: cursor, TimeMin: lo, TimeMax: hi.Add(25 * time.Hour)}); calendar.ClassOf(err) != calendar.CursorExpired {
		t.Fatalf("lookahead grew: %v", err)
	}
	if n := e.srv.Calls()[graph.EndpointDelta]; n != 2 {
		t.Errorf("%d delta calls, want 2 (expired cursors cost none)", n)
	}
	// Foreign or damaged cursors are listed in full again, never followed.
	for _, c := range []string{"garbage", "graph1.e30", microsoftCursor("https://evil.example/v1.0/me/calendarView/delta?$deltatoken=x")} {
		if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", Cursor: c, TimeMin: lo, TimeMax: hi}); calendar.ClassOf(err) != calendar.CursorExpired {
			t.Errorf("cursor %q: %v", c, err)
		}
		if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: "primary", PageToken: c, TimeMin: lo, TimeMax: hi}); calendar.ClassOf(err) != calendar.Permanent {
			t.Errorf("page token %q: %v", c, err)
		}
	}
}

// TestThrottleStorm: 429s with Retry-After are waited out (the waits asked
// for are what Graph said); a Retry-After beyond MaxWait comes back at once
// as RateLimited with that wait.
func TestThrottleStorm(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	seed(t, e)
	e.srv.Throttle(3, 2*time.Second)
	got, _, _ := listAll(t, e.src, calendar.ListRequest{})
	if len(got) != 10 {
		t.Fatalf("%d events", len(got))
	}
	waits := e.sleep.all()
	if len(waits) != 3 {
		t.Fatalf("waits %v", waits)
	}
	for _, w := range waits {
		if w < 2*time.Second || w > 2*time.Second+e.cfg.BaseBackoff+200*time.Millisecond {
			t.Errorf("wait %v, want Retry-After 2s plus jitter", w)
		}
	}
	e.srv.ResetCalls()
	e.srv.Throttle(1, 2*time.Minute)
	_, err := e.src.List(context.Background(), calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)})
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) != 2*time.Minute {
		t.Fatalf("long Retry-After: %v (wait %v)", err, calendar.WaitOf(err))
	}
	if n := e.srv.Calls()[graph.EndpointDelta]; n != 1 {
		t.Errorf("%d calls", n)
	}
	// Retries run out: RateLimited with a wait to schedule by.
	e.srv.Throttle(10, time.Second)
	_, err = e.src.List(context.Background(), calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)})
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) <= 0 {
		t.Fatalf("storm outlasting retries: %v", err)
	}
}

// TestTransientRetried: 503 without Retry-After and 500 are retried; a
// 400 is not.
func TestTransientRetried(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	seed(t, e)
	e.srv.FailNext(2, 503, "ServiceUnavailable")
	if got, _, _ := listAll(t, e.src, calendar.ListRequest{}); len(got) != 10 {
		t.Fatalf("%d events", len(got))
	}
	e.srv.ResetCalls()
	e.srv.FailNext(1, 400, "ErrorInvalidRequest")
	_, err := e.src.List(context.Background(), calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)})
	if calendar.ClassOf(err) != calendar.Permanent || e.srv.Calls()[graph.EndpointDelta] != 1 {
		t.Fatalf("400: %v after %d calls", err, e.srv.Calls()[graph.EndpointDelta])
	}
}

// TestAtMostFourInFlight: however many calls run at once for a mailbox, no
// more than four requests reach Graph at a time, and none is refused.
func TestAtMostFourInFlight(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	f := seed(t, e)
	var evs []string
	for i := range 10 {
		evs = append(evs, must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{
			Subject: "x", Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + time.Minute)})))
	}
	_ = f
	release := e.srv.Hold()
	defer release()
	errs := make(chan error, len(evs))
	for _, id := range evs {
		go func() {
			errs <- e.src.PatchPrivate(context.Background(), "primary", id, map[string]string{calendar.PropKey: "k-" + id})
		}()
	}
	deadline := time.Now().Add(10 * time.Second) // a safety net, not the test
	for e.srv.InFlight(alice) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests in flight", e.srv.InFlight(alice))
		}
		time.Sleep(time.Millisecond)
	}
	release()
	for range evs {
		check(t, <-errs)
	}
	if m := e.srv.MaxInFlight(alice); m != 4 {
		t.Fatalf("%d requests in flight at most, want 4", m)
	}
	if n := e.srv.Calls()[graph.EndpointPatch]; n != len(evs) {
		t.Fatalf("%d patches for %d events: some were refused and retried", n, len(evs))
	}
}

// TestRevokedToken: a revoked access token is Auth, not retried; so is a
// refresh token the identity platform no longer accepts, without the API
// being called.
func TestRevokedToken(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	e.srv.Revoke(e.token)
	_, err := e.src.List(context.Background(), calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)})
	if calendar.ClassOf(err) != calendar.Auth || e.srv.Calls()[graph.EndpointDelta] != 1 {
		t.Fatalf("revoked token: %v after %d calls", err, e.srv.Calls()[graph.EndpointDelta])
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []microsoft.Config{{BaseURL: "not a url"}, {BaseURL: "ftp://x/"}, {PageSize: 1001}, {SubscriptionTTL: 10070 * time.Minute}, {Concurrency: -1}} {
		if _, err := microsoft.New(cfg, calendar.Conn{ID: "c", Tokens: staticTokens("x")}); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := microsoft.New(microsoft.Config{}, calendar.Conn{ID: "c"}); err == nil {
		t.Error("no token source accepted")
	}
	if _, err := microsoft.New(microsoft.Config{}, calendar.Conn{Tokens: staticTokens("x")}); err == nil {
		t.Error("no connection id accepted")
	}
	p := &microsoft.Provider{}
	if p.Name() != "microsoft" {
		t.Errorf("name %q", p.Name())
	}
	src, err := p.Open(context.Background(), calendar.Conn{ID: "c", Tokens: staticTokens("x")})
	check(t, err)
	if _, ok := src.(calendar.Watcher); !ok {
		t.Error("source is not a Watcher")
	}
	var ce *calendar.Error
	_, err = src.List(context.Background(), calendar.ListRequest{})
	if !errors.As(err, &ce) || ce.Class != calendar.Permanent {
		t.Errorf("list without calendar: %v", err)
	}
}
