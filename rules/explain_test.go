package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
)

func TestExplain(t *testing.T) {
	t.Parallel()
	withBlocked := loadRules(t, map[string]string{"rules.yaml": string(DefaultYAML()) + "blocked_domains: [rival.example]\n"})
	custom := loadRules(t, map[string]string{"rules.yaml": `version: 1
crm_properties: {companies: [lifecyclestage, annualrevenue]}
rules:
  - name: skip-recruiting
    when: any(external, .domain in ["hire-fast.example"])
    action: skip
    reason: interviews with recruiting agencies stay private
  - name: big-deal
    when: any(companies, number(.properties.annualrevenue) > 1e6)
    action: log
  - name: demo-booking
    when: event.booking != nil && event.booking.event_type == "Demo"
    action: log
  - name: skip-private
    when: event.visibility == "private"
    action: skip
    reason: my own reason
  - name: customer
    when: any(companies, .properties.lifecyclestage == "customer")
    action: log
    reason: a customer attends
`})
	logAll := loadRules(t, map[string]string{"rules.yaml": "version: 1\nrules: []\ndefault: log\n"})
	ix := testIndex(nil)
	ix.Upsert(crm.Company{ID: "9", Name: "Rival", Domains: []string{"rival.example"}})
	ix.Upsert(crm.Company{ID: "404", Name: "Acme Holdings", Domains: []string{"acme.example"}})
	room := calendar.Attendee{Email: "c_1888@resource.calendar.google.com", Resource: true}
	with := func(ev calendar.Event, f func(*calendar.Event)) calendar.Event {
		f(&ev)
		return ev
	}
	tests := []struct {
		name   string
		set    *Set
		ev     calendar.Event
		owner  string
		logged bool
		want   string
	}{
		{
			name: "customer meeting",
			ev:   meeting(guest("cfo@acme.example"), guest("jo@gmail.com")),
			want: "logged by rule customer-meeting: acme.example matched Acme (company 101) and Acme Holdings (company 404); gmail.com is free mail; northwind.test is internal",
		},
		{
			name: "two companies, a subdomain",
			ev:   meeting(guest("ops@globex.example"), guest("it@eu.initech.example"), guest("x@globex.example")),
			want: "logged by rule customer-meeting: globex.example matched Globex (company 202) and eu.initech.example matched Initech Europe (company 303); northwind.test is internal",
		},
		{
			name: "unknown domain",
			ev:   meeting(guest("ceo@rock3-ventures.example")),
			want: "skipped: rock3-ventures.example is external but matches no HubSpot company; northwind.test is internal",
		},
		{
			name: "two unknown domains",
			ev:   meeting(guest("ceo@rock3-ventures.example"), guest("a@b.example")),
			want: "skipped: rock3-ventures.example and b.example are external but match no HubSpot company; northwind.test is internal",
		},
		{
			name: "free mail only",
			ev:   meeting(guest("jo@gmail.com"), guest("al@yahoo.com"), guest("bo@gmail.com")),
			want: "skipped: every external attendee uses free mail (gmail.com and yahoo.com); northwind.test is internal",
		},
		{
			name: "free mail and unknown",
			ev:   meeting(guest("jo@gmail.com"), guest("ceo@rock3-ventures.example")),
			want: "skipped: no external attendee matches a HubSpot company; rock3-ventures.example matches no HubSpot company; gmail.com is free mail; northwind.test is internal",
		},
		{
			name: "all internal",
			ev:   meeting(guest("se@northwind.test"), guest("cto@eng.northwind.test")),
			want: "skipped: all attendees are internal (northwind.test and eng.northwind.test)",
		},
		{
			name:  "solo event",
			owner: "rep@northwind.test",
			ev: calendar.Event{ID: "e", Status: calendar.StatusConfirmed, Start: meetingStart, End: meetingStart.Add(time.Hour),
				Organizer: calendar.Attendee{Email: "rep@northwind.test", Self: true}},
			want: "skipped: all attendees are internal (northwind.test)",
		},
		{
			name: "blocked domain",
			set:  withBlocked,
			ev:   meeting(guest("pm@rival.example")),
			want: "skipped: no attendee counts as external: northwind.test is internal; rival.example is blocked",
		},
		{
			name: "blocked beside a customer",
			set:  withBlocked,
			ev:   meeting(guest("pm@rival.example"), guest("cfo@acme.example")),
			want: "logged by rule customer-meeting: acme.example matched Acme (company 101) and Acme Holdings (company 404); northwind.test is internal; rival.example is blocked",
		},
		{
			name: "meeting room",
			ev:   meeting(room),
			want: "skipped: no attendee counts as external: northwind.test is internal; resource.calendar.google.com is a room or resource",
		},
		{
			name: "invalid address",
			ev:   meeting(guest("not an address")),
			want: "skipped: no external attendee has a valid address; northwind.test is internal",
		},
		{
			name: "private",
			ev:   with(meeting(guest("cfo@acme.example")), func(e *calendar.Event) { e.Visibility = "private" }),
			want: "skipped: the event is private (rule skip-private)",
		},
		{
			name: "confidential",
			ev:   with(meeting(guest("cfo@acme.example")), func(e *calendar.Event) { e.Visibility = "confidential" }),
			want: "skipped: the event is confidential (rule skip-private)",
		},
		{
			name: "all day",
			ev: with(meeting(guest("cfo@acme.example")), func(e *calendar.Event) {
				e.AllDay, e.StartDate, e.EndDate = true, "2026-03-25", "2026-03-26"
			}),
			want: "skipped: it is an all-day event, not a meeting (rule skip-all-day)",
		},
		{
			name:  "declined by owner",
			owner: "ae@northwind.test",
			ev:    meeting(calendar.Attendee{Email: "ae@northwind.test", Response: calendar.ResponseDeclined}, guest("cfo@acme.example")),
			want:  "skipped: the calendar's owner declined the meeting (rule skip-declined-by-owner)",
		},
		{
			name: "out of office",
			ev:   with(meeting(), func(e *calendar.Event) { e.EventType = "outOfOffice" }),
			want: "skipped: it is an out-of-office entry, not a meeting (rule skip-non-default-event-type)",
		},
		{
			name: "focus time",
			ev:   with(meeting(), func(e *calendar.Event) { e.EventType = "focusTime" }),
			want: "skipped: it is focus time, not a meeting (rule skip-non-default-event-type)",
		},
		{
			name: "cancelled before logging",
			ev:   calendar.Event{ID: "e", Status: calendar.StatusCancelled},
			want: "skipped: the event was cancelled before it was ever logged (rule skip-cancelled-before-logged)",
		},
		{
			name:   "cancelled after logging",
			ev:     calendar.Event{ID: "e", Status: calendar.StatusCancelled},
			logged: true,
			want:   "sent to HubSpot as a cancellation: the meeting was logged, then cancelled (rule cancel-logged)",
		},
		{
			name: "custom skip rule with a reason",
			set:  custom,
			ev:   meeting(guest("sam@hire-fast.example"), guest("cfo@acme.example")),
			want: "skipped by rule skip-recruiting: interviews with recruiting agencies stay private; acme.example matched Acme (company 101) and Acme Holdings (company 404); hire-fast.example matches no HubSpot company; northwind.test is internal",
		},
		{
			name: "a built-in name with another reason is a custom rule",
			set:  custom,
			ev:   with(meeting(guest("jo@gmail.com")), func(e *calendar.Event) { e.Visibility = "private" }),
			want: "skipped by rule skip-private: my own reason; gmail.com is free mail; northwind.test is internal",
		},
		{
			name: "custom log rule without a reason; a failed rule before it",
			set:  custom,
			ev: with(meeting(guest("jo@gmail.com")), func(e *calendar.Event) {
				e.Source, e.Booking = "calendly", &calendar.Booking{EventType: "Demo"}
			}),
			want: `logged by rule demo-booking (when event.booking != nil && event.booking.event_type == "Demo"); gmail.com is free mail; northwind.test is internal`,
		},
		{
			name: "default skip although a company matched",
			set:  custom,
			ev:   meeting(guest("cfo@acme.example")),
			want: "skipped: no rule matched (the default is skip), although acme.example matched Acme (company 101) and Acme Holdings (company 404); northwind.test is internal; rule big-deal could not be evaluated (number: the value is empty)",
		},
		{
			name: "default log",
			set:  logAll,
			ev:   meeting(guest("jo@gmail.com"), room),
			want: "logged: no rule matched, and the default is to log; gmail.com is free mail; northwind.test is internal; resource.calendar.google.com is a room or resource",
		},
		{
			name:  "no attendees known",
			set:   logAll,
			owner: " ",
			ev:    calendar.Event{ID: "e", Status: calendar.StatusConfirmed},
			want:  "logged: no rule matched, and the default is to log",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.set
			if s == nil {
				s = Default()
			}
			owner := cmpOr(tt.owner, "rep@northwind.test")
			d := s.Decide(Input{Event: tt.ev, Owner: owner, Internal: internal, Index: ix, Logged: tt.logged})
			if got := Explain(d); got != tt.want {
				t.Errorf("Explain:\n got %s\nwant %s", got, tt.want)
			}
			// From the stored trace, the same sentence.
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var stored Decision
			if err := json.Unmarshal(b, &stored); err != nil {
				t.Fatal(err)
			}
			if got := Explain(stored); got != tt.want {
				t.Errorf("Explain of the stored decision:\n got %s\nwant %s", got, tt.want)
			}
			if strings.Contains(Explain(d), "@") {
				t.Error("the explanation names an address")
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestExplainOutsideTheRules: decisions Rapport takes itself, as the
// pipeline records them, and the ones it overrides.
func TestExplainOutsideTheRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    Decision
		want string
	}{
		{Decision{}, "no decision was recorded"},
		{Decision{Action: ActionSkip, Rule: "cancelled", Reason: "the event was cancelled or deleted"},
			"skipped: the event was cancelled or deleted"},
		{Decision{Action: ActionLog, Rule: "outside-window", Reason: "the meeting is outside the backfill and lookahead window",
			Trace: []TraceStep{{Rule: "customer-meeting", Result: true}}},
			"not logged: the meeting is outside the backfill and lookahead window"},
		{Decision{Action: ActionSkip, Rule: "something"}, "skipped: Rapport decided it without the rules (something)"},
		// A decision stored before Event was recorded.
		{Decision{Action: ActionSkip, Rule: "skip-private", Reason: "private events are never logged", Trace: []TraceStep{{Rule: "skip-private", Result: true}}},
			"skipped: the event is private (rule skip-private)"},
		{Decision{Action: ActionSkip, Rule: "skip-non-default-event-type", Reason: builtinReasons()["skip-non-default-event-type"],
			Trace: []TraceStep{{Rule: "skip-non-default-event-type", Result: true}}, Event: EventTrace{EventType: "birthday"}},
			"skipped: it is a birthday, not a meeting (rule skip-non-default-event-type)"},
		{Decision{Action: ActionSkip, Rule: DefaultRuleName, Attendees: []AttendeeTrace{{Domain: "acme.example", External: true, Companies: []string{"7"}}}},
			"skipped: no rule matched (the default is skip), although acme.example matched company 7"},
		{Decision{Action: ActionLog, Rule: "r", Reason: "why", Trace: []TraceStep{{Rule: "a", Err: "x"}, {Rule: "b", Err: "y"}, {Rule: "c", Err: "z"}, {Rule: "r", Result: true}}},
			"logged by rule r: why; rule a could not be evaluated (x), nor could 2 more"},
	}
	for _, tt := range tests {
		if got := Explain(tt.d); got != tt.want {
			t.Errorf("Explain(%+v):\n got %s\nwant %s", tt.d, got, tt.want)
		}
	}
}

// TestDecisionEventTrace: the event's classes are stored with the decision,
// and nothing personal.
func TestDecisionEventTrace(t *testing.T) {
	t.Parallel()
	ev := meeting(guest("cfo@acme.example"))
	ev.Title, ev.Description, ev.Location = "Secret plans", "Body text", "Room 9"
	ev.Source, ev.ShowAs = "calendly", "busy"
	ev.Booking = &calendar.Booking{EventType: "Demo", Answers: []calendar.Answer{{Question: "Phone", Answer: "555-0100"}}}
	d := Default().Decide(Input{Event: ev, Owner: "rep@northwind.test", Internal: internal, Logged: true})
	want := EventTrace{Status: "confirmed", Visibility: "default", EventType: "default", Source: "calendly", ShowAs: "busy", BookingEventType: "Demo", Logged: true}
	if diff := cmp.Diff(want, d.Event); diff != "" {
		t.Errorf("Event (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(d)
	for _, secret := range []string{"Secret", "Body", "Room 9", "555", "Phone", "@"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("stored decision holds %q: %s", secret, b)
		}
	}
}
