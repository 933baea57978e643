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
		{name: "every external attendee leaving leaves the logged meeting in the CRM, untouched",
			in:    in(event("e1", att(rep, accepted), att(ae, accepted)), "cal-rep", rep, logged),
			state: Logged, link: true, copyStat: CopyConfirmed, record: true},
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
	if out.Write != nil || out.Meeting.State != Logged || out.Meeting.CRMID != "900" {
		t.Errorf("meeting no longer logged by the rules: write %v state %s", out.Write != nil, out.Meeting.State)
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
