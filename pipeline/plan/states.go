package plan

// MeetingState is the state of a meeting in the ledger.
type MeetingState string

// Meeting states. The migrations' CHECK constraint lists the same values
// (a test holds them together).
const (
	// Skipped: decided not to log.
	Skipped MeetingState = "skipped"
	// Pending: to be created in the CRM.
	Pending MeetingState = "pending"
	// Creating: the create was sent; its outcome is unknown until recorded.
	Creating MeetingState = "creating"
	// Logged: in the CRM and current.
	Logged MeetingState = "logged"
	// Cancelled: cancelled in the CRM.
	Cancelled MeetingState = "cancelled"
	// DeletedInCRM: a person deleted it in the CRM; it stays deleted.
	DeletedInCRM MeetingState = "deleted_in_crm"
	// Failed: parked, with a dead letter.
	Failed MeetingState = "failed"
)

// MeetingStates lists every meeting state.
var MeetingStates = []MeetingState{Skipped, Pending, Creating, Logged, Cancelled, DeletedInCRM, Failed}

// InCRM reports whether a meeting in state s has a live record in the CRM.
func (s MeetingState) InCRM() bool { return s == Logged || s == Creating }

// CopyStatus is the status of one calendar copy of a meeting.
type CopyStatus string

// Copy statuses (the calendar's event statuses).
const (
	CopyConfirmed CopyStatus = "confirmed"
	CopyTentative CopyStatus = "tentative"
	CopyCancelled CopyStatus = "cancelled"
)

// CopyStatuses lists every copy status.
var CopyStatuses = []CopyStatus{CopyConfirmed, CopyTentative, CopyCancelled}

// Action is what the rules decided for a copy, and for a meeting the
// combination of its copies.
type Action string

// Actions.
const (
	ActionLog  Action = "log"
	ActionSkip Action = "skip"
)

// Actions lists every action.
var Actions = []Action{ActionLog, ActionSkip}

// CalendarStatus is the sync status of a calendar.
type CalendarStatus string

// Calendar statuses.
const (
	CalendarActive CalendarStatus = "active"
	CalendarPaused CalendarStatus = "paused"
	CalendarError  CalendarStatus = "error"
	// CalendarGone: the provider answers the calendar no longer exists;
	// it is not synced until its connection is imported again.
	CalendarGone CalendarStatus = "gone"
)

// CalendarStatuses lists every calendar status.
var CalendarStatuses = []CalendarStatus{CalendarActive, CalendarPaused, CalendarError, CalendarGone}

// ConnStatus is the status of a provider connection.
type ConnStatus string

// Connection statuses.
const (
	ConnActive      ConnStatus = "active"
	ConnNeedsReauth ConnStatus = "needs_reauth"
	ConnRevoked     ConnStatus = "revoked"
)

// ConnStatuses lists every connection status.
var ConnStatuses = []ConnStatus{ConnActive, ConnNeedsReauth, ConnRevoked}

// DeadLetterClass is why work was parked.
type DeadLetterClass string

// Dead-letter classes.
const (
	// DeadPermanent: the provider refused the input for good.
	DeadPermanent DeadLetterClass = "permanent"
	// DeadAuth: the connection needs re-authorisation; re-driven when it
	// is re-authorised.
	DeadAuth DeadLetterClass = "auth"
	// DeadExhausted: retries ran out.
	DeadExhausted DeadLetterClass = "exhausted"
	// DeadNotFound: the calendar or record no longer exists.
	DeadNotFound DeadLetterClass = "not_found"
)

// DeadLetterClasses lists every dead-letter class.
var DeadLetterClasses = []DeadLetterClass{DeadPermanent, DeadAuth, DeadExhausted, DeadNotFound}

// RunStatus is the status of a reconciliation run.
type RunStatus string

// Run statuses.
const (
	RunRunning RunStatus = "running"
	RunDone    RunStatus = "done"
	RunFailed  RunStatus = "failed"
)

// RunStatuses lists every run status.
var RunStatuses = []RunStatus{RunRunning, RunDone, RunFailed}
