package plan

import (
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/rules"
)

var (
	t0  = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	now = t0.Add(-24 * time.Hour)
	win = Window{Min: now.Add(-90 * 24 * time.Hour), Max: now.Add(30 * 24 * time.Hour)}
)

const (
	rep = "rep@northwind.test"
	ae  = "ae@northwind.test"
	cfo = "cfo@acme.example"
)

// event is a customer meeting organised by rep, on the calendar of owner.
func event(id string, attendees ...calendar.Attendee) *calendar.Event {
	return &calendar.Event{
		ID: id, ICalUID: "uid-1@google.com", Status: calendar.StatusConfirmed, Title: "Renewal",
		Start: t0, End: t0.Add(time.Hour), Organizer: calendar.Attendee{Email: rep, Organizer: true},
		Attendees: attendees,
	}
}

func att(email string, r calendar.Response) calendar.Attendee {
	return calendar.Attendee{Email: email, Response: r}
}

func minimal(id string) *calendar.Event {
	return &calendar.Event{ID: id, Status: calendar.StatusCancelled}
}

// decide runs the default rules on ev as the copy of owner's calendar.
func decide(ev *calendar.Event, owner string, logged bool) rules.Decision {
	ix := matching.NewIndex(rules.Default().FreeMail())
	ix.Upsert(crmCompany("101", "Acme", "acme.example"))
	return rules.Default().Decide(rules.Input{Event: *ev, Owner: owner, Internal: []string{"northwind.test"}, Index: ix, Logged: logged})
}

func in(ev *calendar.Event, cal, owner string, row Meeting, copies ...Copy) EventInput {
	i := EventInput{Event: ev, Key: "k", CalendarID: cal, Owner: owner, Meeting: row, Copies: copies,
		RulesVersion: "v2", Window: win, CRMConnected: true, Now: now}
	if ev.ICalUID != "" {
		i.Decision = decide(ev, owner, row.Logged())
	}
	return i
}

func TestDecideEvent(t *testing.T) {
	accepted := calendar.ResponseAccepted
	fresh := Meeting{ID: 1, Key: "k", State: Skipped, Action: ActionSkip}
	logged := Meeting{ID: 1, Key: "k", State: Logged, Action: ActionLog, Rule: "customer-meeting", CRMID: "900", OwnedHash: "h-old", DesiredHash: "h-old"}
	cases := []struct {
		name string
		in   EventInput
		// want
		state    MeetingState
		write    bool // a CRM write is queued
		cancel   bool // and it is a cancellation
		link     bool
		outcome  Outcome
		copyStat CopyStatus
		record   bool
	}{
		{name: "new customer meeting is logged",
			in:    in(event("e1", att(rep, accepted), att(cfo, accepted)), "cal-rep", rep, fresh),
			state: Pending, write: true, outcome: OutcomeCreate, copyStat: CopyConfirmed, record: true},
		{name: "internal organizer not in the attendee list",
			in:    in(event("e1", att(cfo, accepted)), "cal-rep", rep, fresh),
			state: Pending, write: true, outcome: OutcomeCreate, copyStat: CopyConfirmed, record: true},
		{name: "internal meeting is skipped",
			in:    in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep, fresh),
			state: Skipped, copyStat: CopyConfirmed, record: true},
		{name: "declined by the owner on the only copy is skipped",
			in:    in(event("e1", att(rep, accepted), att(ae, calendar.ResponseDeclined), att(cfo, accepted)), "cal-ae", ae, fresh),
			state: Skipped, copyStat: CopyConfirmed, record: true},
		{name: "every copy declined: still skipped when the second copy is declined too",
			in: in(event("e2", att(rep, calendar.ResponseDeclined), att(ae, calendar.ResponseDeclined), att(cfo, accepted)), "cal-rep", rep, fresh,
				Copy{CalendarID: "cal-ae", EventID: "e1", Status: CopyConfirmed, Action: ActionSkip, Rule: "skip-declined-by-owner"}),
			state: Skipped, copyStat: CopyConfirmed, record: true},
		{name: "one copy logs although another copy skips",
			in: in(event("e1", att(rep, accepted), att(ae, calendar.ResponseDeclined), att(cfo, accepted)), "cal-rep", rep, fresh,
				Copy{CalendarID: "cal-ae", EventID: "e2", Status: CopyConfirmed, Action: ActionSkip, Rule: "skip-declined-by-owner"}),
			state: Pending, write: true, outcome: OutcomeCreate, copyStat: CopyConfirmed, record: true},
		{name: "unchanged logged meeting needs no write, only its link",
			in:    in(event("e1", att(rep, accepted), att(cfo, accepted)), "cal-rep", rep, Meeting{ID: 1, Key: "k", State: Logged, Action: ActionLog, Rule: "customer-meeting", CRMID: "900"}),
			state: Logged, write: true, outcome: OutcomeUpdate, copyStat: CopyConfirmed, record: true},
		{name: "an attendee leaving changes the meeting: an update",
			in:    in(event("e1", att(rep, accepted), att(cfo, accepted)), "cal-rep", rep, logged),
			state: Logged, write: true, outcome: OutcomeUpdate, copyStat: CopyConfirmed, record: true},
		{name: "every external attendee leaving an upcoming meeting withdraws it from the CRM",
			in:    in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep, logged),
			state: Logged, write: true, cancel: true, outcome: OutcomeCancel, copyStat: CopyConfirmed, record: true},
		{name: "every external attendee leaving a past meeting leaves it in the CRM, untouched",
			in: func() EventInput {
				i := in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep, logged)
				i.Now = t0.Add(2 * time.Hour)
				return i
			}(),
			state: Logged, link: true, copyStat: CopyConfirmed, record: true},
		{name: "an adopted upcoming meeting that stops qualifying is left untouched",
			in: func() EventInput {
				adopted := logged
				adopted.Adopted = true
				return in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep, adopted)
			}(),
			state: Logged, link: true, copyStat: CopyConfirmed, record: true},
		{name: "a withdrawn meeting that qualifies again is restored",
			in: in(event("e1", att(rep, accepted), att(cfo, accepted)), "cal-rep", rep,
				Meeting{ID: 1, Key: "k", State: Cancelled, Action: ActionSkip, Rule: "skip-lead", CRMID: "900", OwnedHash: "h-cancel", DesiredHash: "h-cancel"}),
			state: Cancelled, write: true, outcome: OutcomeUpdate, copyStat: CopyConfirmed, record: true},
		{name: "a withdrawn meeting still not qualifying writes nothing again",
			in: in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep,
				Meeting{ID: 1, Key: "k", State: Cancelled, Action: ActionSkip, Rule: "skip-lead", CRMID: "900", OwnedHash: "h-cancel", DesiredHash: "h-cancel"}),
			state: Cancelled, link: true, copyStat: CopyConfirmed, record: true},
		{name: "the organizer's copy cancelled cancels a logged meeting",
			in: in(func() *calendar.Event {
				e := event("e1", att(rep, accepted), att(cfo, accepted))
				e.Status = calendar.StatusCancelled
				e.Organizer.Self = true
				return e
			}(),
				"cal-rep", rep, logged),
			state: Logged, write: true, cancel: true, outcome: OutcomeCancel, copyStat: CopyCancelled, record: true},
		{name: "a colleague's copy cancelled while the organizer's lives: no cancellation",
			in: in(minimal("e2"), "cal-ae", ae, logged,
				Copy{CalendarID: "cal-rep", EventID: "e1", Status: CopyConfirmed, Organizer: true, Action: ActionLog, Rule: "customer-meeting", LinkedCRMID: "900"},
				Copy{CalendarID: "cal-ae", EventID: "e2", Status: CopyConfirmed, Action: ActionLog, Rule: "customer-meeting"}),
			state: Logged, copyStat: CopyCancelled},
		{name: "the last live copy deleted cancels the meeting",
			in: in(minimal("e2"), "cal-ae", ae, logged,
				Copy{CalendarID: "cal-ae", EventID: "e2", Status: CopyConfirmed, Action: ActionLog, Rule: "customer-meeting"}),
			state: Logged, write: true, cancel: true, outcome: OutcomeCancel, copyStat: CopyCancelled, record: true},
		{name: "cancelled before it was ever logged: skipped, nothing written",
			in:    in(minimal("e1"), "cal-rep", rep, fresh, Copy{CalendarID: "cal-rep", EventID: "e1", Status: CopyConfirmed, Action: ActionLog}),
			state: Skipped, copyStat: CopyCancelled, record: true},
		{name: "a deletion of something never recorded is recorded as skipped",
			in:    in(minimal("e9"), "cal-rep", rep, fresh),
			state: Skipped, copyStat: CopyCancelled, record: true},
		{name: "a rescheduled booking's old copy does not cancel the meeting",
			in: in(func() *calendar.Event {
				e := event("old", att(rep, accepted), att(cfo, accepted))
				e.Status, e.Booking = calendar.StatusCancelled, &calendar.Booking{Rescheduled: true}
				return e
			}(), "cal-cly", rep, logged, Copy{CalendarID: "cal-cly", EventID: "old", Status: CopyConfirmed, Organizer: true, Action: ActionLog}),
			state: Logged, copyStat: CopyCancelled, record: true},
		{name: "deleted in the CRM stays deleted",
			in:    in(event("e1", att(rep, accepted), att(cfo, accepted)), "cal-rep", rep, Meeting{ID: 1, Key: "k", State: DeletedInCRM, CRMID: "900", Rule: "customer-meeting"}),
			state: DeletedInCRM, copyStat: CopyConfirmed, record: true},
		{name: "outside the window: skipped with its reason",
			in: in(func() *calendar.Event {
				e := event("e1", att(rep, accepted), att(cfo, accepted))
				e.Start, e.End = win.Max.Add(time.Hour), win.Max.Add(2*time.Hour)
				return e
			}(), "cal-rep", rep, fresh),
			state: Skipped, copyStat: CopyConfirmed, record: true},
		{name: "a copy that left the window changes nothing",
			in: in(func() *calendar.Event {
				e := event("e1", att(rep, accepted), att(cfo, accepted))
				e.OutOfWindow = true
				return e
			}(), "cal-rep", rep, logged),
			state: Logged},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := DecideEvent(c.in)
			if c.in.Event.OutOfWindow {
				if !out.Skip || out.Write != nil {
					t.Fatalf("out-of-window copy planned %+v", out)
				}
				return
			}
			if out.Meeting.State != c.state {
				t.Errorf("state %s, want %s", out.Meeting.State, c.state)
			}
			if (out.Write != nil) != c.write {
				t.Fatalf("write %v, want %v (plan %+v)", out.Write != nil, c.write, out)
			}
			if c.write && out.Write.Cancel != c.cancel {
				t.Errorf("cancel %v, want %v", out.Write.Cancel, c.cancel)
			}
			if out.Link != c.link {
				t.Errorf("link %v, want %v", out.Link, c.link)
			}
			if out.Outcome != c.outcome {
				t.Errorf("outcome %v, want %v", out.Outcome, c.outcome)
			}
			if out.Copy.Status != c.copyStat {
				t.Errorf("copy status %s, want %s", out.Copy.Status, c.copyStat)
			}
			if out.RecordDecision != c.record {
				t.Errorf("record decision %v, want %v (rule %q)", out.RecordDecision, c.record, out.Trace.Rule)
			}
		})
	}
}

// TestDecideOutsideWindowReason: a meeting outside the window records why.
func TestDecideOutsideWindowReason(t *testing.T) {
	e := event("e1", att(rep, calendar.ResponseAccepted), att(cfo, calendar.ResponseAccepted))
	e.Start, e.End = win.Min.Add(-3*time.Hour), win.Min.Add(-2*time.Hour)
	out := DecideEvent(in(e, "cal-rep", rep, Meeting{ID: 1, Key: "k", State: Skipped}))
	if out.Trace.Rule != "outside-window" || out.Meeting.Rule != "outside-window" {
		t.Errorf("rule %q / %q, want outside-window", out.Trace.Rule, out.Meeting.Rule)
	}
}

// TestDecideRulesVersionChange: a logged meeting decided again under a new
// rule set that still logs it writes nothing when its fields are the same,
// and a rule set that no longer logs it leaves it in the CRM untouched.
func TestDecideRulesVersionChange(t *testing.T) {
	e := event("e1", att(rep, calendar.ResponseAccepted), att(cfo, calendar.ResponseAccepted))
	first := DecideEvent(in(e, "cal-rep", rep, Meeting{ID: 1, Key: "k", State: Skipped}))
	row := first.Meeting
	row.State, row.CRMID, row.OwnedHash = Logged, "900", row.DesiredHash
	again := in(e, "cal-rep", rep, row, first.Copies...)
	again.RulesVersion = "v3"
	out := DecideEvent(again)
	if out.Write != nil || out.Outcome != OutcomeCurrent || out.Meeting.State != Logged {
		t.Errorf("same meeting under new rules: write %v outcome %v state %s", out.Write != nil, out.Outcome, out.Meeting.State)
	}
	skipAll := again
	skipAll.Decision = rules.Decision{Action: rules.ActionSkip, Rule: "skip-everything", Version: "v4"}
	skipAll.Copies = nil
	out = DecideEvent(skipAll)
	if out.Write == nil || !out.Write.Cancel || !out.Withdrawn || out.Outcome != OutcomeCancel {
		t.Errorf("upcoming meeting no longer logged by the rules: write %+v withdrawn %v outcome %v, want a withdrawal", out.Write, out.Withdrawn, out.Outcome)
	}
	skipAll.Now = t0.Add(time.Minute) // it has started
	out = DecideEvent(skipAll)
	if out.Write != nil || out.Withdrawn || out.Meeting.State != Logged || out.Meeting.CRMID != "900" {
		t.Errorf("started meeting no longer logged by the rules: write %v state %s", out.Write != nil, out.Meeting.State)
	}
}

// TestWithdraws is the policy for a meeting the rules stop logging.
func TestWithdraws(t *testing.T) {
	logged := Meeting{State: Logged, CRMID: "900"}
	adopted := logged
	adopted.Adopted = true
	for _, c := range []struct {
		name  string
		row   Meeting
		start time.Time
		want  bool
	}{
		{"created by Rapport, upcoming", logged, now.Add(time.Minute), true},
		{"created by Rapport, started", logged, now, false},
		{"created by Rapport, past", logged, now.Add(-24 * time.Hour), false},
		{"adopted, upcoming", adopted, now.Add(time.Hour), false},
		{"not in the CRM yet", Meeting{State: Pending}, now.Add(time.Hour), false},
		{"already cancelled", Meeting{State: Cancelled, CRMID: "900"}, now.Add(time.Hour), false},
		{"deleted in the CRM", Meeting{State: DeletedInCRM, CRMID: "900"}, now.Add(time.Hour), false},
		{"no start known", logged, time.Time{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Withdraws(c.row, c.start, now); got != c.want {
				t.Errorf("Withdraws = %v, want %v", got, c.want)
			}
		})
	}
}

// TestDecideLinkedCopy: a copy that carries its meeting's CRM id needs no
// write-back; one that does not, does.
func TestDecideLinkedCopy(t *testing.T) {
	e := event("e1", att(rep, calendar.ResponseAccepted), att(cfo, calendar.ResponseAccepted))
	first := DecideEvent(in(e, "cal-rep", rep, Meeting{ID: 1, Key: "k", State: Skipped}))
	row := first.Meeting
	row.State, row.CRMID, row.OwnedHash = Logged, "900", row.DesiredHash
	out := DecideEvent(in(e, "cal-rep", rep, row))
	if !out.Link || out.Write != nil {
		t.Errorf("unlinked copy: link %v write %v, want a link and no write", out.Link, out.Write != nil)
	}
	e.Private = map[string]string{calendar.PropMeetingID: "900"}
	out = DecideEvent(in(e, "cal-rep", rep, row))
	if out.Link || out.Copy.LinkedCRMID != "900" {
		t.Errorf("linked copy: link %v linked id %q", out.Link, out.Copy.LinkedCRMID)
	}
}

func TestCancelledBy(t *testing.T) {
	org := func(status CopyStatus) Copy { return Copy{Status: status, Organizer: true, Action: ActionLog} }
	guest := func(status CopyStatus) Copy { return Copy{Status: status, Action: ActionLog} }
	booking := func(status CopyStatus, rescheduled bool) Copy {
		return Copy{Status: status, Booking: true, Organizer: true, Rescheduled: rescheduled, Action: ActionLog}
	}
	for _, c := range []struct {
		name   string
		copies []Copy
		want   bool
	}{
		{"the organizer's copy lives", []Copy{org(CopyConfirmed), guest(CopyConfirmed)}, false},
		{"the organizer cancelled", []Copy{org(CopyCancelled), guest(CopyConfirmed)}, true},
		{"a guest's copy cancelled", []Copy{org(CopyConfirmed), guest(CopyCancelled)}, false},
		{"no copy lives", []Copy{guest(CopyCancelled)}, true},
		{"an organizer's old copy cancelled, its new copy lives", []Copy{org(CopyCancelled), org(CopyConfirmed)}, false},
		{"booked: the host's calendar copy deleted while the booking lives", []Copy{booking(CopyConfirmed, false), org(CopyCancelled)}, false},
		{"booked: the booking cancelled while the calendar copy lives", []Copy{booking(CopyCancelled, false), org(CopyConfirmed)}, true},
		{"booked: rescheduled, the new booking not seen yet", []Copy{booking(CopyCancelled, true), org(CopyCancelled)}, false},
		{"booked: rescheduled, the new booking lives", []Copy{booking(CopyCancelled, true), booking(CopyConfirmed, false)}, false},
		{"booked: the new booking cancelled too", []Copy{booking(CopyCancelled, true), booking(CopyCancelled, false)}, true},
	} {
		if got, _, _ := cancelledBy(c.copies); got != c.want {
			t.Errorf("%s: cancelled %v, want %v", c.name, got, c.want)
		}
	}
}

func TestMatchHash(t *testing.T) {
	booking := &calendar.Event{Start: t0, Organizer: calendar.Attendee{Email: rep},
		Attendees: []calendar.Attendee{{Email: rep}, {Email: "Buyer@Acme.example"}}}
	copyOnCalendar := &calendar.Event{Start: t0, Organizer: calendar.Attendee{Email: "REP@northwind.test"},
		Attendees: []calendar.Attendee{{Email: "buyer@acme.example"}, {Email: "room@resource.calendar.google.com", Resource: true}}}
	if a, b := MatchHash("ws", booking), MatchHash("ws", copyOnCalendar); a == "" || a != b {
		t.Errorf("a booking and its calendar copy hash %q and %q", a, b)
	}
	moved := *copyOnCalendar
	moved.Start = t0.Add(time.Hour)
	if MatchHash("ws", &moved) == MatchHash("ws", booking) {
		t.Error("another start hashes alike")
	}
	if MatchHash("ws2", booking) == MatchHash("ws", booking) {
		t.Error("another workspace hashes alike")
	}
	if MatchHash("ws", minimal("x")) != "" {
		t.Error("a minimal cancellation has a hash")
	}
}

// TestCancelledCopySendsNoEmptyWrite: a copy cancelled while another lives
// leaves the meeting's state to the live copy: it must not queue a write
// of its own, which would carry no properties (a rescheduled booking once
// overwrote its new time this way).
func TestCancelledCopySendsNoEmptyWrite(t *testing.T) {
	newer := event("new", att(rep, calendar.ResponseAccepted), att(cfo, calendar.ResponseAccepted))
	newer.Booking = &calendar.Booking{}
	row := Meeting{ID: 1, Key: "k", State: Logged, CRMID: "900", Rule: "customer-meeting", OwnedHash: "h-old"}
	first := DecideEvent(in(newer, "cal-cly", rep, row, Copy{CalendarID: "cal-cly", EventID: "old", Status: CopyConfirmed, Booking: true, Organizer: true, Action: ActionLog}))
	if first.Write == nil || first.Write.Props == nil {
		t.Fatalf("the new booking writes nothing: %+v", first)
	}
	old := event("old", att(rep, calendar.ResponseAccepted), att(cfo, calendar.ResponseAccepted))
	old.Status, old.Booking = calendar.StatusCancelled, &calendar.Booking{Rescheduled: true}
	out := DecideEvent(in(old, "cal-cly", rep, first.Meeting, first.Copies...))
	if out.Write != nil {
		t.Errorf("the old booking's cancellation queued a write %+v", out.Write)
	}
	if out.Meeting.DesiredHash != first.Meeting.DesiredHash {
		t.Errorf("desired hash changed to %s", out.Meeting.DesiredHash)
	}
}
