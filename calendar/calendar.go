package calendar

import (
	"context"
	"net/http"
	"time"
)

// Status is the status of an event.
type Status string

// Event statuses, as the rules environment spells them.
const (
	StatusConfirmed Status = "confirmed"
	StatusTentative Status = "tentative"
	StatusCancelled Status = "cancelled"
)

// Response is an attendee's answer to an invitation.
type Response string

// Attendee responses, as the rules environment spells them.
const (
	ResponseAccepted    Response = "accepted"
	ResponseDeclined    Response = "declined"
	ResponseTentative   Response = "tentative"
	ResponseNeedsAction Response = "needs_action"
)

// Keys of the private extended properties Rapport writes on each synced copy.
const (
	PropMeetingID = "rapportMeetingId"
	PropKey       = "rapportKey"
)

// Attendee is one participant of an event.
type Attendee struct {
	Email     string
	Name      string
	Organizer bool
	Self      bool
	Resource  bool
	Optional  bool
	Response  Response
}

// Event is one copy of a calendar event, normalised. A single instance of a
// recurring series is an Event of its own (singleEvents expansion) with
// RecurringEventID and OriginalStart set.
//
// A cancellation may arrive as a minimal record: only ID, Status (cancelled)
// and, for an instance of a series, RecurringEventID and OriginalStart. Every
// other field is then zero.
type Event struct {
	ID               string
	ICalUID          string
	RecurringEventID string
	// OriginalStart identifies an instance of a recurring series even after it
	// moved; zero for a single event.
	OriginalStart time.Time
	Status        Status
	Title         string
	Description   string
	Location      string
	// Start and End are UTC instants. For an all-day event they are midnight
	// UTC of StartDate and EndDate.
	Start time.Time
	End   time.Time
	// TimeZone is the IANA zone of the event's start, when the provider says.
	TimeZone string
	AllDay   bool
	// StartDate and EndDate ("2006-01-02", end exclusive) are set for all-day
	// events only.
	StartDate string
	EndDate   string
	// Visibility is default, public, private or confidential.
	Visibility string
	// EventType is default, outOfOffice, focusTime, workingLocation, birthday
	// or fromGmail.
	EventType        string
	Organizer        Attendee
	Attendees        []Attendee
	AttendeesOmitted bool
	ConferenceURL    string
	ETag             string
	Updated          time.Time
	// Private holds this copy's private extended properties.
	Private map[string]string
}

// Minimal reports whether e is a minimal cancellation record that carries no
// content, only identity.
func (e *Event) Minimal() bool {
	return e.Status == StatusCancelled && e.ICalUID == "" && e.Start.IsZero()
}

// ListRequest asks for one page of changes of one calendar.
type ListRequest struct {
	CalendarID string
	// Cursor is the provider's sync cursor from a previous complete listing.
	// Empty means a full listing of the events ending after TimeMin.
	Cursor string
	// PageToken continues a listing started by an earlier call.
	PageToken string
	// TimeMin bounds a full listing (events ending after it). Ignored with a
	// Cursor, where providers forbid it.
	TimeMin time.Time
}

// Page is one page of changes. NextPageToken is set while more pages follow;
// NextCursor is set on the last page only.
type Page struct {
	Events        []Event
	NextPageToken string
	NextCursor    string
}

// Channel is an open push channel for one calendar.
type Channel struct {
	ID         string
	ResourceID string
	// Token is the secret the provider echoes in each notification. It is
	// returned once by Watch; only its hash (TokenHash) is stored.
	Token      string
	Expiration time.Time
}

// NotificationState says what a push notification asks for.
type NotificationState string

// Notification states.
const (
	// StateSync is the handshake sent when a channel opens; acknowledge only.
	StateSync NotificationState = "sync"
	// StateChanged means the calendar changed; sync it.
	StateChanged NotificationState = "changed"
)

// Notification is a parsed push notification, not yet verified against the
// stored channel.
type Notification struct {
	ChannelID     string
	Token         string
	ResourceID    string
	State         NotificationState
	MessageNumber int64
	Expiration    time.Time
}

// Source is one connected calendar account of a provider.
type Source interface {
	// List returns one page of changes.
	List(ctx context.Context, req ListRequest) (Page, error)
	// Watch opens a push channel for a calendar that delivers to address.
	Watch(ctx context.Context, calendarID, address string) (Channel, error)
	// StopWatch closes a channel. Stopping an unknown channel is not an error.
	StopWatch(ctx context.Context, ch Channel) error
	// PatchPrivate sets the given private extended properties of one copy of
	// an event, leaving its other keys untouched.
	PatchPrivate(ctx context.Context, calendarID, eventID string, props map[string]string) error
}

// NotificationParser parses a provider's push notification from its headers
// and body. It checks the shape only; the token is verified by the caller
// against the stored channel with VerifyToken.
type NotificationParser interface {
	ParseNotification(h http.Header, body []byte) (Notification, error)
}
