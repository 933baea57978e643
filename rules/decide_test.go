package rules

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
)

var (
	meetingStart = time.Date(2026, 3, 25, 14, 0, 0, 0, time.UTC)
	internal     = []string{"northwind.test"}
)

func testIndex(fm *matching.FreeMail) *matching.Index {
	ix := matching.NewIndex(fm)
	for _, c := range []crm.Company{
		{ID: "101", Name: "Acme", Domains: []string{"acme.example"}},
		{ID: "202", Name: "Globex", Domains: []string{"globex.example", "globex-eu.example"}},
		{ID: "303", Name: "Initech Europe", Domains: []string{"eu.initech.example"}},
	} {
		ix.Upsert(c)
	}
	return ix
}

// meeting is a confirmed 30-minute meeting organised by rep@northwind.test
// (the calendar's owner) with the given guests.
func meeting(guests ...calendar.Attendee) calendar.Event {
	rep := calendar.Attendee{Email: "rep@northwind.test", Name: "Rita Rep", Organizer: true, Self: true, Response: calendar.ResponseAccepted}
	return calendar.Event{
		ID:         "evt1",
		ICalUID:    "evt1@google.com",
		Status:     calendar.StatusConfirmed,
		Title:      "Renewal",
		Start:      meetingStart,
		End:        meetingStart.Add(30 * time.Minute),
		Visibility: "default",
		EventType:  "default",
		Organizer:  calendar.Attendee{Email: "rep@northwind.test", Name: "Rita Rep"},
		Attendees:  append([]calendar.Attendee{rep}, guests...),
	}
}

func guest(email string) calendar.Attendee {
	return calendar.Attendee{Email: email, Response: calendar.ResponseAccepted}
}

func loadRules(t testing.TB, files map[string]string) *Set {
	t.Helper()
	dir := writeDir(t, files)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultRules(t *testing.T) {
	t.Parallel()
	minimalCancel := calendar.Event{ID: "evt1", Status: calendar.StatusCancelled}
	withBlocked := loadRules(t, map[string]string{"rules.yaml": string(DefaultYAML()) + "blocked_domains: [globex.example]\n"})
	tests := []struct {
		name          string
		set           *Set
		ev            calendar.Event
		owner         string
		logged        bool
		wantAction    Action
		wantRule      string
		wantCompanies []string
	}{
		{name: "customer meeting is logged", ev: meeting(guest("cfo@acme.example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "two customers and a colleague", ev: meeting(guest("cfo@acme.example"), guest("ops@globex-eu.example"), guest("se@northwind.test")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101", "202"}},
		{name: "attendee on a subdomain of a company", ev: meeting(guest("cfo@mail.acme.example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "company registered on a subdomain", ev: meeting(guest("it@eu.initech.example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"303"}},
		{name: "parent of a company's subdomain is not the company", ev: meeting(guest("it@initech.example")),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "upper-case address", ev: meeting(guest("CFO@ACME.Example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "tentative meeting is logged", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.Status = calendar.StatusTentative
			return e
		}(), wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "invited by the customer, owner accepted", owner: "rep@northwind.test", ev: calendar.Event{
			ID: "e2", Status: calendar.StatusConfirmed, Start: meetingStart, End: meetingStart.Add(time.Hour),
			Organizer: calendar.Attendee{Email: "cfo@acme.example"},
			Attendees: []calendar.Attendee{
				{Email: "cfo@acme.example", Organizer: true, Response: calendar.ResponseAccepted},
				{Email: "rep@northwind.test", Response: calendar.ResponseAccepted},
			},
		}, wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "internal only is skipped", ev: meeting(guest("se@northwind.test"), guest("cto@eng.northwind.test")),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "free-mail guest only is skipped", ev: meeting(guest("someone@gmail.com")),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "guest of a company not in the CRM is skipped", ev: meeting(guest("ceo@unknown.example")),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "meeting room is not a guest", ev: meeting(calendar.Attendee{Email: "c_1888@resource.calendar.google.com", Resource: true}),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "blocked domain never counts", set: withBlocked, ev: meeting(guest("ops@globex.example")),
			wantAction: ActionSkip, wantRule: DefaultRuleName},
		{name: "blocked domain beside a customer", set: withBlocked, ev: meeting(guest("ops@globex.example"), guest("cfo@acme.example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "private is skipped", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.Visibility = "private"
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-private"},
		{name: "confidential is skipped", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.Visibility = "confidential"
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-private"},
		{name: "all-day is skipped", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.AllDay, e.StartDate, e.EndDate = true, "2026-03-25", "2026-03-26"
			e.Start = time.Date(2026, 3, 25, 0, 0, 0, 0, time.UTC)
			e.End = e.Start.AddDate(0, 0, 1)
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-all-day"},
		{name: "owner declined is skipped", owner: "ae@northwind.test", ev: meeting(
			calendar.Attendee{Email: "ae@northwind.test", Response: calendar.ResponseDeclined}, guest("cfo@acme.example")),
			wantAction: ActionSkip, wantRule: "skip-declined-by-owner"},
		{name: "a guest declining does not matter", ev: meeting(
			calendar.Attendee{Email: "cfo@acme.example", Response: calendar.ResponseDeclined}, guest("cto@acme.example")),
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "out of office is skipped", ev: func() calendar.Event {
			e := meeting()
			e.EventType = "outOfOffice"
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-non-default-event-type"},
		{name: "focus time with a customer address in the title is skipped", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.EventType = "focusTime"
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-non-default-event-type"},
		{name: "provider without event types", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.EventType, e.Visibility, e.Status = "", "", ""
			return e
		}(), wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "cancelled, never logged, is skipped", ev: minimalCancel, owner: "rep@northwind.test",
			wantAction: ActionSkip, wantRule: "skip-cancelled-before-logged"},
		{name: "cancelled with full content, never logged, is skipped", ev: func() calendar.Event {
			e := meeting(guest("cfo@acme.example"))
			e.Status = calendar.StatusCancelled
			return e
		}(), wantAction: ActionSkip, wantRule: "skip-cancelled-before-logged"},
		{name: "cancelled after it was logged gets through", ev: minimalCancel, owner: "rep@northwind.test", logged: true,
			wantAction: ActionLog, wantRule: "cancel-logged"},
		{name: "logged and not cancelled is decided as usual", ev: meeting(guest("cfo@acme.example")), logged: true,
			wantAction: ActionLog, wantRule: "customer-meeting", wantCompanies: []string{"101"}},
		{name: "solo event without attendees", owner: "rep@northwind.test", ev: calendar.Event{
			ID: "e3", Status: calendar.StatusConfirmed, Start: meetingStart, End: meetingStart.Add(time.Hour),
			Organizer: calendar.Attendee{Email: "rep@northwind.test", Self: true},
		}, wantAction: ActionSkip, wantRule: DefaultRuleName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.set
			if s == nil {
				s = Default()
			}
			owner := tt.owner
			if owner == "" {
				owner = "rep@northwind.test"
			}
			d := s.Decide(Input{
				Event: tt.ev, Owner: owner, Workspace: Workspace{ID: "ws1", Name: "Northwind"},
				Internal: internal, Index: testIndex(s.FreeMail()), Logged: tt.logged,
			})
			var companies []string
			for _, c := range d.Companies {
				companies = append(companies, c.ID)
			}
			// A skipped meeting may still list the companies it matched:
			// they explain the decision. Only a logged one must be exact.
			if d.Action != tt.wantAction || d.Rule != tt.wantRule || d.Action == ActionLog && !cmp.Equal(companies, tt.wantCompanies) {
				t.Errorf("decision = %s by %s, companies %v; want %s by %s, companies %v\ntrace: %+v\nattendees: %+v",
					d.Action, d.Rule, companies, tt.wantAction, tt.wantRule, tt.wantCompanies, d.Trace, d.Attendees)
			}
			if d.Version != s.Version() {
				t.Errorf("Version = %q, want %q", d.Version, s.Version())
			}
			if d.Reason == "" {
				t.Error("empty Reason")
			}
			assertNoAddresses(t, d)
		})
	}
}

// assertNoAddresses checks that a decision, which is stored, holds domains
// but no e-mail addresses.
func assertNoAddresses(t *testing.T, d Decision) {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "@") {
		t.Errorf("decision holds an e-mail address: %s", b)
	}
}

func TestFirstMatchWinsAndDefault(t *testing.T) {
	t.Parallel()
	s := loadRules(t, map[string]string{"10.yaml": `version: 1
rules:
  - name: boom
    when: external[5].email == "x"
    action: skip
  - name: exact
    when: event.title == "a"
    action: log
    reason: titled a
  - name: prefix
    when: event.title startsWith "a"
    action: skip
`, "20.yaml": `version: 1
rules:
  - name: never-reached-for-a
    when: "true"
    action: skip
default: log
`})
	tests := []struct {
		title, wantRule string
		wantAction      Action
		wantTrace       []TraceStep
	}{
		{"a", "exact", ActionLog, []TraceStep{{Rule: "boom"}, {Rule: "exact", Result: true}}},
		{"ab", "prefix", ActionSkip, []TraceStep{{Rule: "boom"}, {Rule: "exact"}, {Rule: "prefix", Result: true}}},
		{"b", "never-reached-for-a", ActionSkip, []TraceStep{{Rule: "boom"}, {Rule: "exact"}, {Rule: "prefix"}, {Rule: "never-reached-for-a", Result: true}}},
	}
	for _, tt := range tests {
		ev := meeting(guest("cfo@acme.example"))
		ev.Title = tt.title
		d := s.Decide(Input{Event: ev, Owner: "rep@northwind.test", Internal: internal})
		for i := range d.Trace {
			if d.Trace[i].Rule == "boom" {
				if !strings.Contains(d.Trace[i].Err, "index out of range") {
					t.Errorf("boom's trace error = %q, want index out of range", d.Trace[i].Err)
				}
				d.Trace[i].Err = ""
			}
		}
		if d.Action != tt.wantAction || d.Rule != tt.wantRule {
			t.Errorf("title %q: %s by %s, want %s by %s", tt.title, d.Action, d.Rule, tt.wantAction, tt.wantRule)
		}
		if diff := cmp.Diff(tt.wantTrace, d.Trace); diff != "" {
			t.Errorf("title %q: trace (-want +got):\n%s", tt.title, diff)
		}
	}
	a := meeting()
	a.Title = "a"
	if d := s.Decide(Input{Event: a}); d.Rule != "exact" || d.Reason != "titled a" {
		t.Errorf("rule %s, reason %q; want exact, \"titled a\"", d.Rule, d.Reason)
	}

	only := loadRules(t, map[string]string{"a.yaml": `version: 1
rules:
  - name: customer
    when: any(external, .company != nil)
    action: log
`})
	d := only.Decide(Input{Event: meeting(guest("x@gmail.com")), Internal: internal})
	if d.Action != ActionSkip || d.Rule != DefaultRuleName || d.Reason != "no rule matched; the default is skip" {
		t.Errorf("no match: %s by %s (%s), want skip by default", d.Action, d.Rule, d.Reason)
	}
	if diff := cmp.Diff([]TraceStep{{Rule: "customer"}}, d.Trace); diff != "" {
		t.Errorf("trace (-want +got):\n%s", diff)
	}
	d = only.Decide(Input{Event: meeting(guest("x@acme.example")), Internal: internal, Index: testIndex(nil)})
	if d.Reason != "when: any(external, .company != nil)" {
		t.Errorf("reason of a rule without one = %q", d.Reason)
	}
}

func TestRuntimeErrorsDoNotMatch(t *testing.T) {
	t.Parallel()
	s := loadRules(t, map[string]string{"a.yaml": `version: 1
rules:
  - name: memory-hog
    when: "len(map(1..10000000, # * 2)) > 0"
    action: skip
  - name: nil-company
    when: external[0].company.name == "Acme"
    action: skip
  - name: bad-regexp
    when: event.title matches event.description
    action: skip
  - name: fallback
    when: "true"
    action: log
`})
	ev := meeting(guest("x@gmail.com"))
	ev.Description = "("
	d := s.Decide(Input{Event: ev, Internal: internal})
	if d.Rule != "fallback" {
		t.Fatalf("decided by %s, want fallback; trace %+v", d.Rule, d.Trace)
	}
	for i, want := range []string{"memory budget exceeded", "cannot get name from company", "error parsing regexp"} {
		if st := d.Trace[i]; st.Result || !strings.Contains(st.Err, want) {
			t.Errorf("trace[%d] = %+v, want no match with an error containing %q", i, st, want)
		}
	}
}

// TestEnvironment checks every name of the expression environment against
// one event.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	ev := meeting(
		calendar.Attendee{Email: "CFO@Acme.Example", Name: "Carla", Optional: true, Response: calendar.ResponseTentative},
		calendar.Attendee{Email: "me@gmail.com", Response: calendar.ResponseDeclined},
		calendar.Attendee{Email: "c_1@resource.calendar.google.com", Resource: true},
		calendar.Attendee{Email: "se@northwind.test"},
		calendar.Attendee{Email: "not an address"},
	)
	ev.Description = "Agenda: pricing"
	ev.Location = "Room 1"
	ev.RecurringEventID = "series1"
	ev.ConferenceURL = "https://meet.example/abc"
	in := Input{
		Event: ev, Owner: "Rep@Northwind.test", Workspace: Workspace{ID: "ws1", Name: "Northwind"},
		Internal: internal, Index: testIndex(nil), Contacts: map[string]string{"cfo@acme.example": "c-9"},
	}
	exprs := []string{
		`event.id == "evt1" && event.ical_uid == "evt1@google.com"`,
		`event.title == "Renewal" && event.description contains "pricing" && event.location == "Room 1"`,
		`event.start == date("2026-03-25T14:00:00Z") && event.end > event.start`,
		`event.duration == duration("30m")`,
		`!event.all_day && event.status == "confirmed" && event.visibility == "default" && event.event_type == "default"`,
		`event.recurring && event.conference_url startsWith "https://"`,
		`event.organizer.email == "rep@northwind.test" && event.organizer.self && event.organizer.organizer`,
		`len(event.attendees) == 6`,
		`event.attendees[1].email == "cfo@acme.example" && event.attendees[1].name == "Carla"`,
		`event.attendees[1].domain == "acme.example" && event.attendees[1].optional && event.attendees[1].response == "tentative"`,
		`event.attendees[1].company.id == "101" && event.attendees[1].company.name == "Acme" && event.attendees[1].company.domain == "acme.example"`,
		`event.attendees[1].contact.id == "c-9" && event.attendees[2].contact == nil`,
		`event.attendees[2].free_mail && event.attendees[2].company == nil && event.attendees[2].response == "declined"`,
		`event.attendees[3].resource && event.attendees[4].internal && event.attendees[4].response == "needs_action"`,
		`event.attendees[5].domain == "" && !event.attendees[5].internal`,
		// Free-mail attendees are external; resources and colleagues are not;
		// an invalid address names no one known, so it is external.
		`map(external, .domain) == ["acme.example", "gmail.com", ""]`,
		`len(companies) == 1 && companies[0].id == "101"`,
		`owner.email == "rep@northwind.test" && owner.self && owner.internal && owner.response == "accepted"`,
		`workspace.id == "ws1" && workspace.name == "Northwind"`,
		`!logged`,
		`domain("Jane <jane@Mail.Acme.Example>") == "mail.acme.example" && domain("nope") == ""`,
		`any(event.attendees, .blocked) == false`,
	}
	for _, x := range exprs {
		s := loadRules(t, map[string]string{"a.yaml": "version: 1\nrules:\n  - name: r\n    action: log\n    when: '" + strings.ReplaceAll(x, "'", "''") + "'\n"})
		d := s.Decide(in)
		if d.Rule != "r" {
			t.Errorf("%s: false (trace %+v)", x, d.Trace)
		}
	}

	s := loadRules(t, map[string]string{"a.yaml": okRule})
	d := s.Decide(in)
	want := []AttendeeTrace{
		{Domain: "northwind.test", Internal: true, Organizer: true, Self: true, Response: "accepted"},
		{Domain: "acme.example", External: true, Optional: true, Response: "tentative", Companies: []string{"101"}, Contact: "c-9"},
		{Domain: "gmail.com", External: true, FreeMail: true, Response: "declined"},
		// matching finds google.com on the free-mail list; a resource is
		// never external either way.
		{Domain: "resource.calendar.google.com", Resource: true, FreeMail: true, Response: "needs_action"},
		{Domain: "northwind.test", Internal: true, Response: "needs_action"},
		{Invalid: true, External: true, Response: "needs_action"},
	}
	if diff := cmp.Diff(want, d.Attendees); diff != "" {
		t.Errorf("attendee trace (-want +got):\n%s", diff)
	}
	assertNoAddresses(t, d)
}

func TestOwnerAndOrganizerSynthesized(t *testing.T) {
	t.Parallel()
	s := loadRules(t, map[string]string{"a.yaml": `version: 1
rules:
  - name: r
    when: >-
      owner.email == "boss@northwind.test" && owner.self && owner.internal &&
      owner.response == "accepted" && event.organizer.email == "pa@northwind.test" &&
      event.organizer.organizer && !event.organizer.self && len(event.attendees) == 0
    action: log
`})
	ev := calendar.Event{ID: "e", Status: calendar.StatusConfirmed, Organizer: calendar.Attendee{Email: "pa@northwind.test"}}
	d := s.Decide(Input{Event: ev, Owner: "boss@northwind.test", Internal: internal})
	if d.Rule != "r" {
		t.Errorf("decided by %s; trace %+v", d.Rule, d.Trace)
	}
	want := []AttendeeTrace{
		{Domain: "northwind.test", Internal: true, Organizer: true, Response: "accepted"},
		{Domain: "northwind.test", Internal: true, Self: true, Response: "accepted"},
	}
	if diff := cmp.Diff(want, d.Attendees); diff != "" {
		t.Errorf("attendee trace (-want +got):\n%s", diff)
	}

	// Neither known: the expressions still run, on empty attendees.
	s = loadRules(t, map[string]string{"a.yaml": `version: 1
rules:
  - name: r
    when: owner.email == "" && event.organizer.email == "" && owner.response == "accepted"
    action: log
`})
	d = s.Decide(Input{Event: calendar.Event{ID: "e", Status: calendar.StatusCancelled}})
	if d.Rule != "r" || len(d.Attendees) != 0 {
		t.Errorf("decided by %s, attendees %+v; trace %+v", d.Rule, d.Attendees, d.Trace)
	}
}

func TestDecideConcurrent(t *testing.T) {
	t.Parallel()
	s := Default()
	ix := testIndex(s.FreeMail())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				ev := meeting(guest("cfo@acme.example"))
				want := "customer-meeting"
				if (i+j)%2 == 0 {
					ev.Visibility = "private"
					want = "skip-private"
				}
				if d := s.Decide(Input{Event: ev, Owner: "rep@northwind.test", Internal: internal, Index: ix}); d.Rule != want {
					t.Errorf("decided by %s, want %s", d.Rule, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkDecideDefault10Attendees(b *testing.B) {
	s := Default()
	ix := testIndex(s.FreeMail())
	ev := meeting(
		guest("se@northwind.test"),
		guest("cto@eng.northwind.test"),
		guest("someone@gmail.com"),
		calendar.Attendee{Email: "c_1888@resource.calendar.google.com", Resource: true},
		guest("ceo@unknown.example"),
		guest("ops@globex-eu.example"),
		guest("it@eu.initech.example"),
		guest("buyer@mail.acme.example"),
		guest("cfo@acme.example"),
	)
	in := Input{Event: ev, Owner: "rep@northwind.test", Workspace: Workspace{ID: "ws1"}, Internal: internal, Index: ix}
	if n := len(ev.Attendees); n != 10 {
		b.Fatalf("%d attendees", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := s.Decide(in); d.Rule != "customer-meeting" {
			b.Fatal(d.Rule)
		}
	}
}
