package calendly_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
)

// TestListBackfill lists an organization's window page by page: every
// event once, a group event with several invitees as one Event, canceled
// events as cancellations, events outside the window left out, and the
// cursor marker on the last page only.
func TestListBackfill(t *testing.T) {
	e := newEnv(t)
	e.cfg.PageSize = 2
	prov, err := calendly.NewProvider(e.cfg)
	check(t, err)
	e.prov = prov
	src, _ := e.open(t, e.admin)

	var want []string
	for i := range 5 {
		b := e.book(t, fake.BookingSpec{Start: t0.Add(time.Duration(24*i) * time.Hour), End: t0.Add(time.Duration(24*i)*time.Hour + 30*time.Minute),
			Invitee: fake.InviteeSpec{Email: "buyer@acme.example", Name: "Bea Buyer"}})
		want = append(want, b.EventUUID)
	}
	group := e.book(t, fake.BookingSpec{EventType: e.workshop, Start: t0.Add(2 * time.Hour), End: t0.Add(3 * time.Hour),
		Invitee: fake.InviteeSpec{Email: "ann@acme.example", Name: "Ann"}})
	e.srv.AddInvitee(group.EventUUID, fake.InviteeSpec{Email: "bob@globex.example", Name: "Bob"})
	left, _ := e.srv.AddInvitee(group.EventUUID, fake.InviteeSpec{Email: "cy@initech.example", Name: "Cy"})
	e.srv.CancelInvitee(left.InviteeURI, "conflict")
	want = append(want, group.EventUUID)
	canceled := e.book(t, fake.BookingSpec{Start: t0.Add(5 * time.Hour), Invitee: fake.InviteeSpec{Email: "late@acme.example"}})
	e.srv.CancelInvitee(canceled.InviteeURI, "")
	want = append(want, canceled.EventUUID)
	// Outside the window: ended before it, starts after it.
	e.book(t, fake.BookingSpec{Start: t0.Add(-48 * time.Hour), Invitee: fake.InviteeSpec{Email: "old@acme.example"}})
	e.book(t, fake.BookingSpec{Start: t0.Add(40 * 24 * time.Hour), Invitee: fake.InviteeSpec{Email: "far@acme.example"}})
	// Started before the window, ends inside it.
	straddle := e.book(t, fake.BookingSpec{Start: t0.Add(-time.Hour), End: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "early@acme.example"}})
	want = append(want, straddle.EventUUID)

	req := calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0, TimeMax: t0.Add(30 * 24 * time.Hour)}
	events, pages := listAll(t, src, req)
	if len(pages) < 4 {
		t.Fatalf("%d pages for %d events with page size 2", len(pages), len(events))
	}
	if d := cmp.Diff(sortedCopy(want), ids(events)); d != "" {
		t.Fatalf("listed events (-want +got):\n%s", d)
	}
	got := byID(events)

	g := got[group.EventUUID]
	if g.Status != calendar.StatusConfirmed || g.Booking.EventType != "Onboarding workshop" {
		t.Fatalf("group event %+v", g)
	}
	wantAtt := []calendar.Attendee{
		{Email: "rep@northwind.test", Name: "Rey Rep", Organizer: true, Response: calendar.ResponseAccepted},
		{Email: "ann@acme.example", Name: "Ann", Response: calendar.ResponseAccepted},
		{Email: "bob@globex.example", Name: "Bob", Response: calendar.ResponseAccepted},
	}
	if d := cmp.Diff(wantAtt, g.Attendees); d != "" {
		t.Errorf("group attendees (-want +got):\n%s", d)
	}
	if c := got[canceled.EventUUID]; c.Status != calendar.StatusCancelled || c.Booking.Rescheduled || c.Minimal() {
		t.Errorf("canceled event %+v", c)
	}
	for _, ev := range events {
		if ev.ICalUID != calendly.ICalUIDPrefix+ev.ID {
			t.Errorf("event %s ICalUID %q", ev.ID, ev.ICalUID)
		}
	}

	// The cursor marker lists the window in full again.
	again, _ := listAll(t, src, calendar.ListRequest{CalendarID: e.org.URI, Cursor: calendly.ListingCursor, TimeMin: t0, TimeMax: t0.Add(30 * 24 * time.Hour)})
	if d := cmp.Diff(ids(events), ids(again)); d != "" {
		t.Errorf("listing with the cursor marker (-first +again):\n%s", d)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestListUserScope lists the events one user hosts, with that user's
// token: another rep's events are not in it, and Self marks the user.
func TestListUserScope(t *testing.T) {
	e := newEnv(t)
	mine := e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	other := e.srv.AddEventType(e.rep2, "Intro", "solo")
	e.book(t, fake.BookingSpec{EventType: other, Start: t0.Add(2 * time.Hour), Invitee: fake.InviteeSpec{Email: "b@acme.example"}})
	src, _ := e.open(t, e.rep)

	events, _ := listAll(t, src, calendar.ListRequest{CalendarID: e.rep.URI, TimeMin: t0})
	if len(events) != 1 || events[0].ID != mine.EventUUID {
		t.Fatalf("user listing %v", ids(events))
	}
	if !events[0].Organizer.Self || !events[0].Attendees[0].Self || events[0].Attendees[1].Self {
		t.Errorf("self marks: organizer %+v attendees %+v", events[0].Organizer, events[0].Attendees)
	}

	// The admin's organization connection sees both, and is no host.
	adm, _ := e.open(t, e.admin)
	all, _ := listAll(t, adm, calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0})
	if len(all) != 2 || all[0].Organizer.Self {
		t.Fatalf("organization listing %v, organizer %+v", ids(all), all[0].Organizer)
	}
}

// TestNormalization checks one booking's every field: host and invitee
// classes, guests, answers in question order, UTM, event type, join URL,
// calendar_event from GET by id.
func TestNormalization(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	b := e.book(t, fake.BookingSpec{
		Hosts: []fake.User{e.rep, e.rep2},
		Start: t0.Add(26 * time.Hour), End: t0.Add(26*time.Hour + 45*time.Minute),
		Invitee: fake.InviteeSpec{
			Email: "cfo@acme.example", Name: "Cora Finance", Timezone: "Europe/Berlin",
			Answers: []fake.Answer{{Question: "Company size", Answer: "200-500"}, {Question: "What should we cover?", Answer: "Pricing"}},
			UTM:     map[string]string{"utm_source": "newsletter", "utm_campaign": "spring"},
		},
		Guests:        []string{"cto@acme.example", "REP@northwind.test"},
		Location:      &fake.Location{Type: "zoom", JoinURL: "https://zoom.example/j/123", Status: "pushed"},
		CalendarEvent: &fake.CalendarEvent{Kind: "google", ExternalID: "abc123google"},
	})

	page, err := src.List(context.Background(), calendar.ListRequest{EventIDs: []string{b.EventURI}})
	check(t, err)
	if len(page.Events) != 1 {
		t.Fatalf("%d events", len(page.Events))
	}
	got := page.Events[0]
	want := calendar.Event{
		ID:            b.EventUUID,
		ICalUID:       "calendly:" + b.EventUUID,
		Status:        calendar.StatusConfirmed,
		Title:         "Product demo",
		Start:         t0.Add(26 * time.Hour),
		End:           t0.Add(26*time.Hour + 45*time.Minute),
		Visibility:    "default",
		EventType:     "default",
		ConferenceURL: "https://zoom.example/j/123",
		Updated:       t0,
		Source:        "calendly",
		Organizer:     calendar.Attendee{Email: "rep@northwind.test", Name: "Rey Rep", Organizer: true, Response: calendar.ResponseAccepted},
		Attendees: []calendar.Attendee{
			{Email: "rep@northwind.test", Name: "Rey Rep", Organizer: true, Response: calendar.ResponseAccepted},
			{Email: "sam@northwind.test", Name: "Sam Second", Response: calendar.ResponseAccepted},
			{Email: "cfo@acme.example", Name: "Cora Finance", Response: calendar.ResponseAccepted},
			{Email: "cto@acme.example", Response: calendar.ResponseNeedsAction},
		},
		Booking: &calendar.Booking{
			EventType: "Product demo",
			Answers: []calendar.Answer{
				{Question: "Company size", Answer: "200-500"},
				{Question: "What should we cover?", Answer: "Pricing"},
			},
			UTM:               map[string]string{"utm_source": "newsletter", "utm_campaign": "spring"},
			CalendarEventKind: "google",
			CalendarEventID:   "abc123google",
		},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(calendar.Event{}, "ETag")); d != "" {
		t.Errorf("normalised event (-want +got):\n%s", d)
	}
	if got.ETag == "" {
		t.Error("no etag")
	}

	// A physical location; a deleted event type leaves the name empty.
	et := e.srv.AddEventType(e.rep, "Site visit", "solo")
	visit := e.book(t, fake.BookingSpec{EventType: et, Start: t0.Add(50 * time.Hour),
		Invitee:  fake.InviteeSpec{Email: "ops@acme.example"},
		Location: &fake.Location{Type: "physical", Location: "Acme HQ, 1 Main St"}})
	e.srv.DeleteEventType(et)
	page, err = src.List(context.Background(), calendar.ListRequest{EventIDs: []string{visit.EventUUID}})
	check(t, err)
	v := page.Events[0]
	if v.Location != "Acme HQ, 1 Main St" || v.ConferenceURL != "" || v.Booking.EventType != "" || v.Booking.CalendarEventID != "" {
		t.Errorf("visit %+v booking %+v", v, v.Booking)
	}

	// An invitee joining a group event changes its etag.
	g := e.book(t, fake.BookingSpec{EventType: e.workshop, Start: t0.Add(70 * time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	p1, err := src.List(context.Background(), calendar.ListRequest{EventIDs: []string{g.EventUUID}})
	check(t, err)
	e.srv.AddInvitee(g.EventUUID, fake.InviteeSpec{Email: "b@acme.example"})
	p2, err := src.List(context.Background(), calendar.ListRequest{EventIDs: []string{g.EventUUID}})
	check(t, err)
	if p1.Events[0].ETag == p2.Events[0].ETag {
		t.Error("etag did not change when an invitee joined")
	}
}

// TestFetchByEventIDs fetches events by URI and by uuid, deduplicated,
// with calendar_event; an unknown event is a minimal cancellation; a
// malformed id is refused.
func TestFetchByEventIDs(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	a := e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"},
		CalendarEvent: &fake.CalendarEvent{Kind: "outlook", ExternalID: "AAMkAD"}})
	b := e.book(t, fake.BookingSpec{Start: t0.Add(2 * time.Hour), Invitee: fake.InviteeSpec{Email: "b@acme.example"}})
	gone := "00000000-0000-4000-8000-00000000ffff"

	e.srv.ResetCalls()
	page, err := src.List(context.Background(), calendar.ListRequest{CalendarID: e.org.URI,
		EventIDs: []string{a.EventURI, b.EventUUID, a.EventUUID, e.srv.URL() + "scheduled_events/" + gone}})
	check(t, err)
	if page.NextCursor != "" || page.NextPageToken != "" || len(page.Events) != 3 {
		t.Fatalf("page %+v", page)
	}
	if got := page.Events[0].Booking; got.CalendarEventKind != "outlook" || got.CalendarEventID != "AAMkAD" {
		t.Errorf("calendar_event %+v", got)
	}
	if g := page.Events[2]; !g.Minimal() || g.ID != gone {
		t.Errorf("unknown event %+v", g)
	}
	calls := e.srv.Calls()
	if calls[fake.EndpointEvent] != 3 || calls[fake.EndpointEvents] != 0 {
		t.Errorf("calls %v", calls)
	}

	_, err = src.List(context.Background(), calendar.ListRequest{EventIDs: []string{"https://api.calendly.com/users/x"}})
	if calendar.ClassOf(err) != calendar.Permanent {
		t.Errorf("malformed id: %v", err)
	}
}

// TestListRefusesUnknownCalendar rejects a calendar id that is no scope
// URI.
func TestListRefusesUnknownCalendar(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	_, err := src.List(context.Background(), calendar.ListRequest{CalendarID: "primary"})
	if calendar.ClassOf(err) != calendar.Permanent || !strings.Contains(err.Error(), "neither") {
		t.Fatalf("err %v", err)
	}
}

// TestListCalendarEvent: a listing carrying calendar_event costs no GET
// per event; one that leaves it out is completed with GET by uuid.
func TestListCalendarEvent(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"},
		CalendarEvent: &fake.CalendarEvent{Kind: "google", ExternalID: "g1"}})
	e.book(t, fake.BookingSpec{Start: t0.Add(2 * time.Hour), Invitee: fake.InviteeSpec{Email: "b@acme.example"}})
	req := calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0}

	for _, omit := range []bool{false, true} {
		e.srv.SetListOmitsCalendarEvent(omit)
		e.srv.ResetCalls()
		events, _ := listAll(t, src, req)
		if len(events) != 2 || events[0].Booking.CalendarEventID != "g1" || events[1].Booking.CalendarEventID != "" {
			t.Fatalf("omit=%v: %+v %+v", omit, events[0].Booking, events[1].Booking)
		}
		want := 0
		if omit {
			want = 2
		}
		if n := e.srv.Calls()[fake.EndpointEvent]; n != want {
			t.Errorf("omit=%v: %d GETs by uuid, want %d", omit, n, want)
		}
	}
}
