package plan

import (
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/rules"
)

// Meeting is one row of the ledger: a meeting across all its copies.
type Meeting struct {
	ID          int64
	Key         string
	State       MeetingState
	Action      Action
	Rule        string
	CRMID       string
	OwnedHash   string // hash of the calendar-owned state last written
	DesiredHash string // hash of the calendar-owned state the calendars now hold
	CompanyIDs  []string
	ContactIDs  []string
	AttemptID   string // the create attempt in flight; "" when none
	Attempts    int
	UpdatedAt   time.Time
	// Adopted: the CRM record was found in the CRM (logged by the CRM's
	// own calendar sync, or a create whose outcome was lost), not created
	// by this meeting's write; such a record is never withdrawn.
	Adopted bool
}

// Logged reports whether the meeting has a live record in the CRM.
func (m *Meeting) Logged() bool {
	return m.CRMID != "" && m.State != Cancelled && m.State != DeletedInCRM
}

// Copy is one calendar's copy of a meeting.
type Copy struct {
	CalendarID  string
	EventID     string
	Status      CopyStatus
	Organizer   bool // the organizer's own copy
	Action      Action
	Rule        string
	ETag        string
	LinkedCRMID string // the CRM id written back into the copy
	// Rescheduled marks a copy cancelled because its booking was moved to
	// a new one: gone, but the meeting lives on.
	Rescheduled bool
	// Booking marks a scheduling tool's booking (Calendly): for a booked
	// meeting, the bookings decide whether it is cancelled.
	Booking bool
	// ExternalEventID is the calendar event a booking put on its host's
	// calendar; MatchHash identifies a copy by its start and attendees.
	// Both let a booking and its calendar copy meet as one meeting.
	ExternalEventID string
	MatchHash       string
}

// Window is the span of time Rapport logs meetings in.
type Window struct{ Min, Max time.Time }

// Contains reports whether an event overlaps the window.
func (w Window) Contains(start, end time.Time) bool {
	return end.After(w.Min) && (w.Max.IsZero() || start.Before(w.Max))
}

// EventInput is everything the decision of one event copy depends on.
type EventInput struct {
	Event *calendar.Event
	Key   string
	// Workspace, CalendarID and Owner name the workspace, the calendar the
	// copy is on and whose it is.
	Workspace, CalendarID, Owner string
	// Meeting is the meeting's ledger row, locked; Copies all its copies as
	// known so far (this page's earlier decisions included).
	Meeting Meeting
	Copies  []Copy
	// Decision is the rules' decision on the event; ignored for a minimal
	// cancellation, which carries nothing to decide on.
	Decision rules.Decision
	// RulesVersion is the version of the rule set in force.
	RulesVersion string
	Window       Window
	// CRMConnected: the workspace has a CRM connection to write to.
	CRMConnected bool
	Ownership    Ownership
	Now          time.Time
}

// Outcome is what a decision means for a reconciliation's report.
type Outcome int

// Outcomes.
const (
	OutcomeNone Outcome = iota
	OutcomeCreate
	OutcomeUpdate
	OutcomeCancel
	// OutcomeCurrent: logged and unchanged, to be compared with the CRM.
	OutcomeCurrent
)

// EventPlan is what one event copy changes.
type EventPlan struct {
	// Skip: nothing to record (a copy that left the window).
	Skip bool
	// Copy is this copy's row to store; Copies the meeting's copies with it.
	Copy   Copy
	Copies []Copy
	// Meeting is the meeting's row after the decision.
	Meeting Meeting
	// RecordDecision: Meeting.Rule and Trace replace the stored decision.
	RecordDecision bool
	Trace          rules.Decision
	// StartsAt is the meeting's start, when the copy tells it.
	StartsAt *time.Time
	// Write, when set, is the CRM write the decision calls for.
	Write *Desired
	// Link: write the CRM id back into this copy.
	Link bool
	// Withdrawn: the meeting no longer qualifies before it happens and its
	// CRM record is withdrawn (Withdraws); Write is its cancellation.
	Withdrawn bool
	Outcome   Outcome
	// Desired is the meeting's desired state, for a reconciliation's drift
	// check (set with OutcomeCurrent).
	Desired *Desired
}

// Minimal returns the decision recorded for a minimal cancellation, which
// carries no content to decide on.
func Minimal(version string) rules.Decision {
	return rules.Decision{Action: rules.ActionSkip, Rule: "cancelled", Reason: "the event was cancelled or deleted", Version: version}
}

// DecideEvent decides one copy, then its meeting: a meeting on several
// calendars is one engagement, logged when any live copy says log, and
// cancelled as cancelledBy says.
func DecideEvent(in EventInput) EventPlan {
	e := in.Event
	row := in.Meeting
	if e.OutOfWindow {
		return EventPlan{Skip: true, Meeting: row, Copies: in.Copies}
	}
	minimal := e.ICalUID == ""
	d := in.Decision
	if minimal {
		d = Minimal(in.RulesVersion)
	}

	status := CopyStatus(e.Status)
	if status == "" {
		status = CopyConfirmed
	}
	this := Copy{
		CalendarID: in.CalendarID, EventID: e.ID, Status: status, Action: Action(d.Action), Rule: d.Rule, ETag: e.ETag,
		Organizer:   !minimal && (e.Organizer.Self || strings.EqualFold(e.Organizer.Email, in.Owner)),
		Rescheduled: status == CopyCancelled && e.Booking != nil && e.Booking.Rescheduled,
		Booking:     e.Booking != nil,
		MatchHash:   MatchHash(in.Workspace, e),
	}
	if e.Booking != nil {
		this.ExternalEventID = e.Booking.CalendarEventID
	}
	cs := make([]Copy, 0, len(in.Copies)+1)
	found := false
	for _, c := range in.Copies {
		if c.CalendarID == in.CalendarID && c.EventID == e.ID {
			if minimal {
				this.Organizer = c.Organizer
				this.Rescheduled = c.Rescheduled
				this.Booking = c.Booking
				this.ExternalEventID, this.MatchHash = c.ExternalEventID, c.MatchHash
			}
			this.LinkedCRMID = c.LinkedCRMID
			if this.ETag == "" {
				this.ETag = c.ETag
			}
			c = this
			found = true
		}
		cs = append(cs, c)
	}
	if !found {
		cs = append(cs, this)
	}
	if id := e.Private[calendar.PropMeetingID]; id != "" && id == row.CRMID {
		this.LinkedCRMID = row.CRMID
		for i := range cs {
			if cs[i].CalendarID == in.CalendarID && cs[i].EventID == e.ID {
				cs[i].LinkedCRMID = row.CRMID
			}
		}
	}

	cancelled, live, anyLog := cancelledBy(cs)

	inWindow := minimal || in.Window.Contains(e.Start, e.End)
	out := EventPlan{Copy: this, Copies: cs, Trace: d}
	recordDecision := d.Action == rules.ActionLog || !anyLog || row.Rule == ""
	state := row.State
	desiredHash := row.DesiredHash
	var w Desired
	switch {
	case row.State == DeletedInCRM:
		// A person deleted it in the CRM: it stays deleted.
	case cancelled:
		if row.CRMID != "" && row.State != Cancelled {
			w = Desired{Cancel: true}
			desiredHash = w.Hash(in.Ownership)
		} else if row.CRMID == "" {
			state, desiredHash = Skipped, ""
			if row.State == Skipped || row.Rule == "" {
				recordDecision = true
			}
		}
	case !live:
		// Only a rescheduled booking is left: wait for the new one.
	case status == CopyCancelled:
		// This copy is gone while others live on: they hold the meeting's
		// state, not this copy's last version.
	case anyLog && !minimal && (inWindow || row.CRMID != ""):
		w = DesiredOf(in.Key, e, &d, in.Now)
		desiredHash = w.Hash(in.Ownership)
		if row.CRMID == "" && row.State != Creating {
			state = Pending
		}
	case !anyLog && !minimal && Withdraws(row, e.Start, in.Now):
		// No longer qualifies before it happens: withdrawn (Withdraws).
		w = Desired{Cancel: true}
		desiredHash = w.Hash(in.Ownership)
		out.Withdrawn = true
	case row.CRMID == "":
		state, desiredHash = Skipped, ""
		if !inWindow && !minimal {
			out.Trace.Rule, out.Trace.Reason = "outside-window", "the meeting is outside the backfill and lookahead window"
			recordDecision = true
		}
	}
	// Only a copy that computed the meeting's desired state writes it: a
	// copy that leaves the state to others must not send an empty one.
	computed := w.Props != nil || w.Cancel
	needWrite := computed && desiredHash != "" && (desiredHash != row.OwnedHash || row.CRMID == "" ||
		(row.State == Cancelled && !cancelled))
	if needWrite && in.CRMConnected {
		w := w
		out.Write = &w
	}
	switch {
	case needWrite && row.CRMID == "":
		out.Outcome = OutcomeCreate
	case needWrite && w.Cancel:
		out.Outcome = OutcomeCancel
	case needWrite:
		out.Outcome = OutcomeUpdate
	case row.CRMID != "" && row.State == Logged && w.Props != nil && in.CRMConnected:
		out.Outcome = OutcomeCurrent
		w := w
		out.Desired = &w
	}
	out.Link = !needWrite && row.CRMID != "" && row.State != DeletedInCRM && this.LinkedCRMID != row.CRMID && !minimal && status != CopyCancelled

	action := ActionSkip
	if anyLog {
		action = ActionLog
	}
	if !minimal {
		start := e.Start
		out.StartsAt = &start
	}
	row.State, row.DesiredHash, row.Action = state, desiredHash, action
	if recordDecision {
		row.Rule = out.Trace.Rule
	}
	out.RecordDecision = recordDecision
	out.Meeting = row
	return out
}

// cancelledBy says whether a meeting's copies cancel it, whether any copy
// lives, and whether any live copy says log. A booked meeting (one with a
// booking among its copies) is cancelled when its bookings are: the
// scheduling tool decides, and its own rescheduling — which deletes the
// old calendar event and cancels the old booking — never cancels it. Any
// other meeting is cancelled when an organizer's copy is cancelled and
// none lives, or when no copy lives at all.
func cancelledBy(cs []Copy) (cancelled, live, anyLog bool) {
	var booked, bookingLive, bookingCancelled, rescheduled, orgCancelled, orgLive bool
	for _, c := range cs {
		booked = booked || c.Booking
		if c.Status == CopyCancelled {
			rescheduled = rescheduled || c.Rescheduled
			bookingCancelled = bookingCancelled || (c.Booking && !c.Rescheduled)
			orgCancelled = orgCancelled || (c.Organizer && !c.Rescheduled)
			continue
		}
		live = true
		anyLog = anyLog || c.Action == ActionLog
		orgLive = orgLive || c.Organizer
		bookingLive = bookingLive || c.Booking
	}
	if booked {
		// A rescheduled booking's meeting waits for its new booking; a
		// booking cancelled outright cancels it.
		return !bookingLive && (bookingCancelled || !rescheduled), live, anyLog
	}
	return (orgCancelled && !orgLive) || !live, live, anyLog
}
