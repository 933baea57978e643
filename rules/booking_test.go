package rules

import (
	"strings"
	"testing"

	"github.com/rapportsync/rapport/calendar"
)

// TestEnvironmentSourceAndBooking checks event.source, event.show_as and
// event.booking for a calendar event and for a Calendly booking.
func TestEnvironmentSourceAndBooking(t *testing.T) {
	t.Parallel()
	cal := meeting(guest("cfo@acme.example"))
	cal.Source, cal.ShowAs = "microsoft", "tentative"

	booked := meeting(guest("jo@gmail.com"))
	booked.Source = "calendly"
	booked.Booking = &calendar.Booking{
		EventType: "Demo",
		Answers: []calendar.Answer{
			{Question: "Team size", Answer: "50-200"},
			{Question: "What would you like to see?", Answer: "Reporting"},
		},
		UTM:         map[string]string{"utm_source": "linkedin", "utm_campaign": "spring", "term": "crm sync"},
		Rescheduled: true,
	}
	bare := meeting()
	bare.Source = "calendly"
	bare.Booking = &calendar.Booking{EventType: "Intro"}

	tests := []struct {
		name string
		ev   calendar.Event
		when []string
	}{
		{name: "calendar event", ev: cal, when: []string{
			`event.source == "microsoft" && event.show_as == "tentative"`,
			`event.booking == nil`,
			`event.booking?.event_type == nil`,
		}},
		{name: "booking", ev: booked, when: []string{
			`event.source == "calendly" && event.show_as == ""`,
			`event.booking != nil && event.booking.event_type == "Demo" && event.booking.rescheduled`,
			`len(event.booking.answers) == 2 && event.booking.answers[0].question == "Team size"`,
			`any(event.booking.answers, .question startsWith "What" && .answer == "Reporting")`,
			`event.booking.utm.source == "linkedin" && event.booking.utm.campaign == "spring"`,
			`event.booking.utm.term == "crm sync" && event.booking.utm.medium == "" && event.booking.utm.content == ""`,
		}},
		{name: "booking without answers or tracking", ev: bare, when: []string{
			`event.booking.event_type == "Intro" && !event.booking.rescheduled`,
			`len(event.booking.answers) == 0 && !any(event.booking.answers, .answer == "x")`,
			`event.booking.utm.source == ""`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, x := range tt.when {
				s := loadRules(t, map[string]string{"a.yaml": "version: 1\nrules:\n  - name: r\n    action: log\n    when: '" + strings.ReplaceAll(x, "'", "''") + "'\n"})
				if d := s.Decide(Input{Event: tt.ev, Owner: "rep@northwind.test", Internal: internal}); d.Rule != "r" {
					t.Errorf("%s: false (trace %+v)", x, d.Trace)
				}
			}
		})
	}
}

func TestBookingCompileErrors(t *testing.T) {
	t.Parallel()
	for when, want := range map[string]string{
		`event.booking.type == "Demo"`:       "a.yaml:4:26: when: type booking has no field type",
		`event.booking.utm.channel == "x"`:   "a.yaml:4:30: when: type utm has no field channel",
		`event.booking.answers[0].text`:      "a.yaml:4:37: when: type answer has no field text",
		`event.sauce == "google"`:            "a.yaml:4:18: when: type event has no field sauce",
		`event.booking.rescheduled == "yes"`: "a.yaml:4:38: when: invalid operation: == (mismatched types bool and string)",
	} {
		dir := writeDir(t, map[string]string{"a.yaml": "version: 1\nrules:\n  - name: r\n    when: '" + when + "'\n    action: log\n"})
		_, err := Load(dir)
		if got := strings.Join(errorLines(dir, err), "\n"); got != want {
			t.Errorf("%s: error %q, want %q", when, got, want)
		}
	}
}

// TestRunTestsBooking: a test case describes a booking; its source is
// calendly unless it says otherwise, and a calendar event's is google.
func TestRunTestsBooking(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"a.yaml": `version: 1
rules:
  - name: demo-booking
    when: event.booking != nil && event.booking.event_type == "Demo" && event.source == "calendly"
    action: log
  - name: big-team
    when: any(event.booking?.answers ?? [], .question == "Team size" && .answer == "200+")
    action: log
  - name: from-google
    when: event.source == "google" && event.booking == nil && event.show_as in ["", "busy"]
    action: skip
default: skip
`,
		"a_test.yaml": `version: 1
tests:
  - name: demo
    event: {booking: {event_type: Demo}, attendees: [jo@gmail.com]}
    expect: {action: log, rule: demo-booking}
  - name: intro from a big team
    event:
      source: calendly
      booking:
        event_type: Intro
        answers: [{question: Team size, answer: 200+}]
        utm: {source: linkedin}
        rescheduled: true
    expect: {action: log, rule: big-team}
  - name: calendar event
    event: {title: Sync, show_as: busy}
    expect: {action: skip, rule: from-google}
  - name: microsoft event
    event: {title: Sync, source: microsoft}
    expect: {action: skip, rule: default}
`,
	})
	rep, err := RunTests(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Passed != 4 {
		t.Errorf("report:\n%s", rep)
	}
}
