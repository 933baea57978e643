package google_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/calendar/google"
)

const alice = "alice@example.com"

var berlin = mustLoad("Europe/Berlin")

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// stamp fills in the etag and updated time the fake gave an event.
func stamp(t *testing.T, srv *calendartest.Server, cal string, ev calendar.Event) calendar.Event {
	t.Helper()
	w := must[calendartest.Event](t)(srv.Get(cal, ev.ID))
	ev.ETag = w.ETag
	ev.Updated = must[time.Time](t)(time.Parse(time.RFC3339, w.Updated))
	ev.Source = "google"
	return ev
}

// TestIncrementalSequence drives a calendar through the changes a user makes
// and checks that each incremental listing carries exactly those changes,
// normalised.
func TestIncrementalSequence(t *testing.T) {
	e := newEnv(t, google.Config{PageSize: 3})
	ctx := context.Background()
	check(t, e.srv.AddCalendar(alice, "Europe/Berlin"))

	attendees := []calendartest.Attendee{
		{Email: alice, DisplayName: "Alice", Organizer: true, ResponseStatus: "accepted"},
		{Email: "bob@acme.com", DisplayName: "Bob", ResponseStatus: "needsAction"},
		{Email: "room-1@resource.calendar.google.com", Resource: true, ResponseStatus: "accepted"},
	}
	seriesStart := time.Date(2026, 3, 25, 15, 0, 0, 0, berlin)
	must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{
		ID:          "series01",
		Summary:     "Weekly sync with Acme",
		Description: "agenda",
		Location:    "Room 1",
		Start:       seriesStart,
		End:         seriesStart.Add(time.Hour),
		TimeZone:    "Europe/Berlin",
		Attendees:   attendees,
		HangoutLink: "https://meet.google.com/abc-defg-hij",
		Recurrence:  []string{"RRULE:FREQ=WEEKLY;COUNT=4"},
	}))
	must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{
		ID:      "kickoff01",
		Summary: "Kickoff",
		Start:   time.Date(2026, 3, 26, 10, 0, 0, 0, berlin),
		End:     time.Date(2026, 3, 26, 11, 0, 0, 0, berlin),
	}))

	instance := func(orig, start, end time.Time) calendar.Event {
		return calendar.Event{
			ID:               calendartest.InstanceID("series01", orig),
			ICalUID:          "series01@google.com",
			RecurringEventID: "series01",
			OriginalStart:    orig,
			Status:           calendar.StatusConfirmed,
			Title:            "Weekly sync with Acme",
			Description:      "agenda",
			Location:         "Room 1",
			Start:            start,
			End:              end,
			TimeZone:         "Europe/Berlin",
			Visibility:       "default",
			EventType:        "default",
			Organizer:        calendar.Attendee{Email: alice, Self: true, Organizer: true, Response: calendar.ResponseAccepted},
			Attendees: []calendar.Attendee{
				{Email: alice, Name: "Alice", Organizer: true, Self: true, Response: calendar.ResponseAccepted},
				{Email: "bob@acme.com", Name: "Bob", Response: calendar.ResponseNeedsAction},
				{Email: "room-1@resource.calendar.google.com", Resource: true, Response: calendar.ResponseAccepted},
			},
			ConferenceURL: "https://meet.google.com/abc-defg-hij",
		}
	}
	// Berlin switches to summer time on 29 March: 15:00 local is 14:00Z
	// before and 13:00Z after.
	origs := []time.Time{
		time.Date(2026, 3, 25, 14, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 1, 13, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 8, 13, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 15, 13, 0, 0, 0, time.UTC),
	}

	full, cursor, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, TimeMin: t0.Add(-24 * time.Hour)})
	want := []calendar.Event{
		stamp(t, e.srv, alice, calendar.Event{
			ID: "kickoff01", ICalUID: "kickoff01@google.com", Status: calendar.StatusConfirmed, Title: "Kickoff",
			Start: time.Date(2026, 3, 26, 9, 0, 0, 0, time.UTC), End: time.Date(2026, 3, 26, 10, 0, 0, 0, time.UTC),
			TimeZone: "Europe/Berlin", Visibility: "default", EventType: "default",
			Organizer: calendar.Attendee{Email: alice, Self: true, Organizer: true},
		}),
	}
	for _, o := range origs {
		want = append(want, stamp(t, e.srv, alice, instance(o, o, o.Add(time.Hour))))
	}
	if d := cmp.Diff(byID(want), byID(full)); d != "" {
		t.Fatalf("full listing (-want +got):\n%s", d)
	}

	steps := []struct {
		name   string
		change func() error
		want   func() []calendar.Event
	}{
		{
			name: "create",
			change: func() error {
				_, err := e.srv.Insert(alice, calendartest.EventSpec{
					ID: "demo0001", Summary: "Demo", Start: t0.Add(48 * time.Hour), End: t0.Add(49 * time.Hour),
					TimeZone:  "Europe/Berlin",
					Attendees: []calendartest.Attendee{{Email: "carol@globex.com"}},
				})
				return err
			},
			want: func() []calendar.Event {
				return []calendar.Event{stamp(t, e.srv, alice, demo(t0, []calendar.Attendee{
					{Email: "carol@globex.com", Response: calendar.ResponseNeedsAction},
				}))}
			},
		},
		{
			name: "move one instance",
			change: func() error {
				_, err := e.srv.MoveInstance(alice, "series01", origs[1], origs[1].Add(19*time.Hour), origs[1].Add(20*time.Hour))
				return err
			},
			want: func() []calendar.Event {
				return []calendar.Event{stamp(t, e.srv, alice, instance(origs[1], origs[1].Add(19*time.Hour), origs[1].Add(20*time.Hour)))}
			},
		},
		{
			name:   "cancel one instance",
			change: func() error { return e.srv.CancelInstance(alice, "series01", origs[2]) },
			want: func() []calendar.Event {
				return []calendar.Event{minimal("series01", origs[2])}
			},
		},
		{
			name: "change attendees",
			change: func() error {
				_, err := e.srv.SetAttendees(alice, "demo0001", []calendartest.Attendee{
					{Email: "carol@globex.com", ResponseStatus: "accepted"},
					{Email: "dave@initech.com", Optional: true, ResponseStatus: "tentative"},
				})
				return err
			},
			want: func() []calendar.Event {
				return []calendar.Event{stamp(t, e.srv, alice, demo(t0, []calendar.Attendee{
					{Email: "carol@globex.com", Response: calendar.ResponseAccepted},
					{Email: "dave@initech.com", Optional: true, Response: calendar.ResponseTentative},
				}))}
			},
		},
		{
			name:   "delete the series",
			change: func() error { return e.srv.Delete(alice, "series01") },
			want: func() []calendar.Event {
				// The instance cancelled before did not change again.
				return []calendar.Event{minimal("series01", origs[0]), minimal("series01", origs[1]), minimal("series01", origs[3])}
			},
		},
	}
	for _, st := range steps {
		e.clock.Advance(time.Minute)
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, next, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, Cursor: cursor})
		if d := cmp.Diff(byID(st.want()), byID(got)); d != "" {
			t.Fatalf("%s: incremental listing (-want +got):\n%s", st.name, d)
		}
		for _, ev := range got {
			if ev.Status == calendar.StatusCancelled && !ev.Minimal() {
				t.Errorf("%s: cancellation %s is not minimal", st.name, ev.ID)
			}
		}
		cursor = next
	}

	// Nothing changed: an empty listing with a cursor.
	got, _, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, Cursor: cursor})
	if len(got) != 0 {
		t.Fatalf("listing without changes: %d events", len(got))
	}
	_ = ctx
}

func demo(t0 time.Time, attendees []calendar.Attendee) calendar.Event {
	return calendar.Event{
		ID: "demo0001", ICalUID: "demo0001@google.com", Status: calendar.StatusConfirmed, Title: "Demo",
		Start: t0.Add(48 * time.Hour), End: t0.Add(49 * time.Hour), TimeZone: "Europe/Berlin",
		Visibility: "default", EventType: "default",
		Organizer: calendar.Attendee{Email: alice, Self: true, Organizer: true},
		Attendees: attendees,
	}
}

func minimal(series string, orig time.Time) calendar.Event {
	return calendar.Event{
		ID:               calendartest.InstanceID(series, orig),
		Source:           "google",
		Status:           calendar.StatusCancelled,
		RecurringEventID: series,
		OriginalStart:    orig,
	}
}

// TestCursorExpiredMidStream expires the sync tokens between two pages of an
// incremental listing: the next page answers CursorExpired, and a full
// listing recovers.
func TestCursorExpiredMidStream(t *testing.T) {
	e := newEnv(t, google.Config{PageSize: 2})
	ctx := context.Background()
	check(t, e.srv.AddCalendar(alice, "UTC"))
	for i := range 3 {
		must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{Summary: "x", Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + 30*time.Minute)}))
	}
	_, cursor, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice})
	for i := range 5 {
		must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{Summary: "y", Start: t0.Add(time.Duration(10+i) * time.Hour), End: t0.Add(time.Duration(10+i)*time.Hour + 30*time.Minute)}))
	}

	p, err := e.src.List(ctx, calendar.ListRequest{CalendarID: alice, Cursor: cursor})
	check(t, err)
	if len(p.Events) != 2 || p.NextPageToken == "" {
		t.Fatalf("first page: %d events, next page token %q", len(p.Events), p.NextPageToken)
	}
	check(t, e.srv.ExpireTokens(alice))
	calls := e.srv.Calls()[calendartest.EndpointList]
	_, err = e.src.List(ctx, calendar.ListRequest{CalendarID: alice, Cursor: cursor, PageToken: p.NextPageToken})
	if got := calendar.ClassOf(err); got != calendar.CursorExpired {
		t.Fatalf("after expiry: class %v, err %v", got, err)
	}
	if n := e.srv.Calls()[calendartest.EndpointList] - calls; n != 1 {
		t.Errorf("cursor expiry retried: %d calls", n)
	}
	// A new incremental listing from the old cursor fails the same way.
	if _, err := e.src.List(ctx, calendar.ListRequest{CalendarID: alice, Cursor: cursor}); calendar.ClassOf(err) != calendar.CursorExpired {
		t.Fatalf("old cursor: %v", err)
	}
	full, cursor2, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice})
	if len(full) != 8 {
		t.Fatalf("full listing after expiry: %d events, want 8", len(full))
	}
	if got, _, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, Cursor: cursor2}); len(got) != 0 {
		t.Fatalf("incremental after full listing: %d events", len(got))
	}
}

// TestEmptyPages: pages may hold no items and still have a next page; only
// the last carries the cursor.
func TestEmptyPages(t *testing.T) {
	e := newEnv(t, google.Config{PageSize: 2})
	check(t, e.srv.AddCalendar(alice, "UTC"))
	e.srv.SetEmptyPages(1)
	for i := range 5 {
		must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{Summary: "x", Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + 30*time.Minute)}))
	}
	events, cursor, pages := listAll(t, e.src, calendar.ListRequest{CalendarID: alice})
	if len(events) != 5 {
		t.Fatalf("%d events, want 5", len(events))
	}
	empty := 0
	for i, p := range pages {
		if len(p.Events) == 0 && p.NextPageToken != "" {
			empty++
		}
		if i < len(pages)-1 && p.NextCursor != "" {
			t.Errorf("page %d of %d carries a cursor", i, len(pages))
		}
	}
	if empty != 3 || len(pages) != 6 {
		t.Fatalf("%d pages, %d empty with a next page; want 6 and 3", len(pages), empty)
	}

	must[calendartest.Event](t)(e.srv.Rename(alice, events[0].ID, "renamed"))
	got, _, pages := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, Cursor: cursor})
	if len(got) != 1 || got[0].Title != "renamed" || len(pages) != 2 {
		t.Fatalf("incremental: %d events in %d pages", len(got), len(pages))
	}
}

// TestPatchPrivateRoundTrip: write-back merges Rapport's keys into the
// copy's private properties, leaves the other keys alone and shows up as a
// change in the next incremental listing.
func TestPatchPrivateRoundTrip(t *testing.T) {
	e := newEnv(t, google.Config{})
	ctx := context.Background()
	check(t, e.srv.AddCalendar(alice, "UTC"))
	single := must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{
		Summary: "Call", Start: t0, End: t0.Add(time.Hour),
		Private: map[string]string{"other": "keep"},
		Shared:  map[string]string{"shared": "s"},
	}))
	must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{
		ID: "standup1", Summary: "Standup", Start: t0, End: t0.Add(15 * time.Minute),
		Recurrence: []string{"RRULE:FREQ=DAILY;COUNT=3"},
	}))
	before, cursor, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice})
	etags := map[string]string{}
	for _, ev := range before {
		etags[ev.ID] = ev.ETag
	}

	e.clock.Advance(time.Minute)
	props := map[string]string{calendar.PropMeetingID: "9001", calendar.PropKey: "k1"}
	check(t, e.src.PatchPrivate(ctx, alice, single.ID, props))
	second := calendartest.InstanceID("standup1", t0.Add(24*time.Hour))
	check(t, e.src.PatchPrivate(ctx, alice, second, props))

	got, _, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: alice, Cursor: cursor})
	if len(got) != 2 {
		t.Fatalf("incremental after patch: %d events, want 2: %+v", len(got), got)
	}
	for _, ev := range got {
		want := map[string]string{calendar.PropMeetingID: "9001", calendar.PropKey: "k1"}
		if ev.ID == single.ID {
			want["other"] = "keep"
		} else if ev.ID != second {
			t.Fatalf("unexpected change of %s", ev.ID)
		}
		if d := cmp.Diff(want, ev.Private); d != "" {
			t.Errorf("%s private (-want +got):\n%s", ev.ID, d)
		}
		if ev.ETag == etags[ev.ID] || !ev.Updated.Equal(t0.Add(time.Minute)) {
			t.Errorf("%s: etag %s (was %s), updated %v", ev.ID, ev.ETag, etags[ev.ID], ev.Updated)
		}
	}
	w := must[calendartest.Event](t)(e.srv.Get(alice, single.ID))
	if w.ExtendedProperties.Shared["shared"] != "s" || w.Summary != "Call" {
		t.Errorf("patch touched other fields: %+v", w)
	}
	if w := must[calendartest.Event](t)(e.srv.Get(alice, calendartest.InstanceID("standup1", t0))); w.ExtendedProperties != nil {
		t.Errorf("patching one instance changed another: %+v", w.ExtendedProperties)
	}

	// Patching the same values again is still a change for Google (new
	// etag), and a deleted event is NotFound.
	check(t, e.srv.Delete(alice, single.ID))
	if err := e.src.PatchPrivate(ctx, alice, single.ID, props); calendar.ClassOf(err) != calendar.NotFound {
		t.Errorf("patch deleted event: %v", err)
	}
	if err := e.src.PatchPrivate(ctx, alice, "nosuchevent", props); calendar.ClassOf(err) != calendar.NotFound {
		t.Errorf("patch unknown event: %v", err)
	}
	calls := e.srv.Calls()[calendartest.EndpointPatch]
	if err := e.src.PatchPrivate(ctx, alice, second, map[string]string{strings.Repeat("k", 45): "v"}); calendar.ClassOf(err) != calendar.Permanent {
		t.Errorf("over-long key: %v", err)
	}
	if n := e.srv.Calls()[calendartest.EndpointPatch]; n != calls {
		t.Errorf("over-long key was sent")
	}
}

// TestNormalisation covers all-day events, time zones (the event's, else
// the calendar's), conference links, visibility, event types and omitted
// attendees.
func TestNormalisation(t *testing.T) {
	e := newEnv(t, google.Config{})
	const cal = "tokyo@example.com"
	check(t, e.srv.AddCalendar(cal, "Asia/Tokyo"))
	ny := mustLoad("America/New_York")
	specs := []calendartest.EventSpec{
		{ID: "offsite01", Summary: "Offsite", StartDate: "2026-04-03", EndDate: "2026-04-05"},
		{ID: "eastcoast1", Summary: "NY call", Start: time.Date(2026, 4, 6, 9, 30, 0, 0, ny), End: time.Date(2026, 4, 6, 10, 0, 0, 0, ny),
			TimeZone: "America/New_York", ConferenceURL: "https://zoom.us/j/123", Visibility: "private", AttendeesOmitted: true},
		{ID: "localtime1", Summary: "Local", Start: time.Date(2026, 4, 7, 9, 0, 0, 0, time.UTC), End: time.Date(2026, 4, 7, 9, 45, 0, 0, time.UTC),
			EventType: "outOfOffice", Status: "tentative",
			Organizer: &calendartest.Person{Email: "boss@example.com", DisplayName: "Boss"},
			Attendees: []calendartest.Attendee{
				{Email: "boss@example.com", Organizer: true, ResponseStatus: "accepted"},
				{Email: cal, ResponseStatus: "declined"},
			}},
		{ID: "vacation1", Summary: "Holiday", StartDate: "2026-04-10", Recurrence: []string{"RRULE:FREQ=DAILY;COUNT=3", "EXDATE;VALUE=DATE:20260411"}},
	}
	for _, s := range specs {
		must[calendartest.Event](t)(e.srv.Insert(cal, s))
	}
	got, _, _ := listAll(t, e.src, calendar.ListRequest{CalendarID: cal})
	base := func(id, title string) calendar.Event {
		return calendar.Event{ID: id, ICalUID: id + "@google.com", Status: calendar.StatusConfirmed, Title: title,
			TimeZone: "Asia/Tokyo", Visibility: "default", EventType: "default",
			Organizer: calendar.Attendee{Email: cal, Self: true, Organizer: true}}
	}
	allDay := base("offsite01", "Offsite")
	allDay.AllDay, allDay.StartDate, allDay.EndDate = true, "2026-04-03", "2026-04-05"
	allDay.Start, allDay.End = time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC)

	nyc := base("eastcoast1", "NY call")
	nyc.TimeZone, nyc.Visibility, nyc.AttendeesOmitted, nyc.ConferenceURL = "America/New_York", "private", true, "https://zoom.us/j/123"
	nyc.Start, nyc.End = time.Date(2026, 4, 6, 13, 30, 0, 0, time.UTC), time.Date(2026, 4, 6, 14, 0, 0, 0, time.UTC)

	local := base("localtime1", "Local")
	local.Status, local.EventType = calendar.StatusTentative, "outOfOffice"
	local.Start, local.End = time.Date(2026, 4, 7, 9, 0, 0, 0, time.UTC), time.Date(2026, 4, 7, 9, 45, 0, 0, time.UTC)
	local.Organizer = calendar.Attendee{Email: "boss@example.com", Name: "Boss", Organizer: true, Response: calendar.ResponseAccepted}
	local.Attendees = []calendar.Attendee{
		{Email: "boss@example.com", Organizer: true, Response: calendar.ResponseAccepted},
		{Email: cal, Self: true, Response: calendar.ResponseDeclined},
	}

	want := []calendar.Event{stamp(t, e.srv, cal, allDay), stamp(t, e.srv, cal, nyc), stamp(t, e.srv, cal, local)}
	for _, day := range []string{"2026-04-10", "2026-04-12"} {
		d := must[time.Time](t)(time.Parse("2006-01-02", day))
		h := base(calendartest.AllDayInstanceID("vacation1", day), "Holiday")
		h.ICalUID, h.RecurringEventID, h.OriginalStart = "vacation1@google.com", "vacation1", d
		h.AllDay, h.StartDate, h.EndDate = true, day, d.AddDate(0, 0, 1).Format("2006-01-02")
		h.Start, h.End = d, d.AddDate(0, 0, 1)
		want = append(want, stamp(t, e.srv, cal, h))
	}
	if d := cmp.Diff(byID(want), byID(got)); d != "" {
		t.Fatalf("normalised events (-want +got):\n%s", d)
	}
}

// TestRetries: rate limits and backend errors are retried with backoff
// inside the call; when retries run out, or the wait asked for is too long,
// the classified error comes back.
func TestRetries(t *testing.T) {
	tests := []struct {
		name       string
		fault      calendartest.Fault
		n          int
		retryAfter time.Duration
		wantClass  calendar.Class // zero: success
		wantWait   time.Duration
		wantCalls  int
	}{
		{name: "429 then success", fault: calendartest.FaultRateLimited429, n: 2, wantCalls: 3},
		{name: "403 rateLimitExceeded then success", fault: calendartest.FaultRateLimited403, n: 3, wantCalls: 4},
		{name: "403 userRateLimitExceeded then success", fault: calendartest.FaultUserRateLimited403, n: 1, wantCalls: 2},
		{name: "500 then success", fault: calendartest.FaultBackendError, n: 2, wantCalls: 3},
		{name: "500 exhausted", fault: calendartest.FaultBackendError, n: 10, wantClass: calendar.Transient, wantCalls: 4},
		{name: "429 exhausted reports a wait", fault: calendartest.FaultRateLimited429, n: 10, wantClass: calendar.RateLimited, wantCalls: 4},
		{name: "Retry-After honoured", fault: calendartest.FaultRateLimited429, n: 1, retryAfter: time.Second, wantCalls: 2},
		{name: "long Retry-After returned", fault: calendartest.FaultRateLimited429, n: 1, retryAfter: 2 * time.Minute,
			wantClass: calendar.RateLimited, wantWait: 2 * time.Minute, wantCalls: 1},
		{name: "quotaExceeded waits long", fault: calendartest.FaultQuotaExceeded, n: 1,
			wantClass: calendar.RateLimited, wantWait: 5 * time.Minute, wantCalls: 1},
		{name: "401 not retried", fault: calendartest.FaultAuthError, n: 1, wantClass: calendar.Auth, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, google.Config{})
			check(t, e.srv.AddCalendar(alice, "UTC"))
			e.srv.SetRetryAfter(tt.retryAfter)
			e.srv.Fail(tt.fault, tt.n)
			start := time.Now()
			_, err := e.src.List(context.Background(), calendar.ListRequest{CalendarID: alice})
			if tt.wantClass == 0 {
				check(t, err)
			} else if got := calendar.ClassOf(err); got != tt.wantClass || err == nil {
				t.Fatalf("class %v, want %v (err %v)", got, tt.wantClass, err)
			}
			if tt.wantWait != 0 && calendar.WaitOf(err) != tt.wantWait {
				t.Errorf("wait %v, want %v", calendar.WaitOf(err), tt.wantWait)
			}
			if tt.wantClass == calendar.RateLimited && calendar.WaitOf(err) <= 0 {
				t.Errorf("rate limited without a wait")
			}
			if tt.retryAfter == time.Second && time.Since(start) < time.Second {
				t.Errorf("Retry-After not honoured: retried after %v", time.Since(start))
			}
			if got := e.srv.Calls()[calendartest.EndpointList]; got != tt.wantCalls {
				t.Errorf("%d calls, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestRetryHonoursContext(t *testing.T) {
	e := newEnv(t, google.Config{BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	check(t, e.srv.AddCalendar(alice, "UTC"))
	e.srv.Fail(calendartest.FaultBackendError, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.src.List(ctx, calendar.ListRequest{CalendarID: alice})
	if !errors.Is(err, context.DeadlineExceeded) || calendar.ClassOf(err) != calendar.Transient {
		t.Fatalf("err %v", err)
	}
}

// TestAuthFailures: a revoked access token and a refresh token Google no
// longer accepts (invalid_grant) both come back as Auth, without retries.
func TestAuthFailures(t *testing.T) {
	t.Run("revoked access token", func(t *testing.T) {
		e := newEnv(t, google.Config{})
		check(t, e.srv.AddCalendar(alice, "UTC"))
		e.srv.RevokeToken(accessToken)
		_, err := e.src.List(context.Background(), calendar.ListRequest{CalendarID: alice})
		if calendar.ClassOf(err) != calendar.Auth {
			t.Fatalf("err %v", err)
		}
		if n := e.srv.Calls()[calendartest.EndpointList]; n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
	t.Run("invalid_grant on refresh", func(t *testing.T) {
		srv := calendartest.NewServer()
		defer srv.Close()
		check(t, srv.AddCalendar(alice, "UTC"))
		tokenEndpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`))
		}))
		defer tokenEndpoint.Close()
		oc := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: oauth2.Endpoint{TokenURL: tokenEndpoint.URL}}
		ts := oc.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "revoked", Expiry: t0})
		src, err := google.New(context.Background(), google.Config{BaseURL: srv.URL(), BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, ts)
		check(t, err)
		_, err = src.List(context.Background(), calendar.ListRequest{CalendarID: alice})
		var re *oauth2.RetrieveError
		if calendar.ClassOf(err) != calendar.Auth || !errors.As(err, &re) {
			t.Fatalf("err %v", err)
		}
		if n := srv.Calls()[calendartest.EndpointList]; n != 0 {
			t.Errorf("%d list calls reached the API", n)
		}
	})
}

func TestNewValidates(t *testing.T) {
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})
	for _, cfg := range []google.Config{{BaseURL: "not a url"}, {BaseURL: "ftp://x/"}, {PageSize: 2501}} {
		if _, err := google.New(context.Background(), cfg, ts); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := google.New(context.Background(), google.Config{}, nil); err == nil {
		t.Error("nil token source accepted")
	}
	// Without a trailing slash the base still works.
	srv := calendartest.NewServer()
	defer srv.Close()
	check(t, srv.AddCalendar(alice, "UTC"))
	src, err := google.New(context.Background(), google.Config{BaseURL: strings.TrimSuffix(srv.URL(), "/")}, ts)
	check(t, err)
	if _, err := src.List(context.Background(), calendar.ListRequest{CalendarID: alice}); err != nil {
		t.Fatal(err)
	}
}
