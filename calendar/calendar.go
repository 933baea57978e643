package calendar

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/internal/provider"
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
	// Private holds this copy's private properties Rapport reads back
	// (PropMeetingID, PropKey), whatever the provider's form of them.
	Private map[string]string
	// Source is the provider the copy came from: "google", "microsoft" or
	// "calendly".
	Source string
	// ShowAs is how the event shows in the owner's free/busy: free,
	// tentative, busy, oof (out of office), workingElsewhere; "" unknown.
	ShowAs string
	// OutOfWindow marks a copy that left the listed window (a Graph delta
	// removal of an event that still exists): not a cancellation.
	OutOfWindow bool
	// Booking is what a scheduling tool (Calendly) knows of the meeting,
	// nil for calendar events.
	Booking *Booking
}

// Booking is a scheduled meeting's booking: its event type, the invitees'
// answers and tracking.
type Booking struct {
	// EventType is the booking page's event type name ("Demo").
	EventType string
	// Answers are the invitees' answers to the booking questions.
	Answers []Answer
	// UTM holds the booking's tracking parameters (utm_source, …).
	UTM map[string]string
	// Rescheduled marks the copy of a booking cancelled because it was
	// moved to a new booking: this copy is gone, the meeting lives on in
	// the new one. A plain cancellation leaves it false.
	Rescheduled bool
	// CalendarEventKind and CalendarEventID name the event the booking put
	// on the host's calendar (Calendly's calendar_event: kind google,
	// outlook, exchange, …; external_id, the provider's event id), so the
	// booking and that calendar copy are one meeting.
	CalendarEventKind string
	CalendarEventID   string
}

// Answer is one answer to a booking question.
type Answer struct {
	Question string
	Answer   string
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
	// Empty means a full listing of the window [TimeMin, TimeMax).
	Cursor string
	// PageToken continues a listing started by an earlier call.
	PageToken string
	// TimeMin and TimeMax bound the window Rapport logs meetings in (events
	// ending after TimeMin and starting before TimeMax; a zero TimeMax is
	// unbounded). A full listing covers the window; a provider whose cursor
	// is bound to a window (Graph's deltaLink) answers CursorExpired when the
	// window moved on too far, and the pipeline lists in full again. Google
	// ignores them with a Cursor, where it forbids them.
	TimeMin, TimeMax time.Time
	// EventIDs, when set, asks for just these events, as a provider whose
	// notifications name the changed events (Calendly) needs: the page holds
	// them and no cursor.
	EventIDs []string
}

// Page is one page of changes. NextPageToken is set while more pages follow;
// NextCursor is set on the last page only.
type Page struct {
	Events        []Event
	NextPageToken string
	NextCursor    string
}

// Channel is an open push channel for one calendar: a Google watch channel,
// a Graph subscription, a Calendly webhook subscription.
type Channel struct {
	ID         string
	ResourceID string
	// Token is the secret the provider echoes in each notification (Google's
	// channel token, Graph's clientState) or signs them with (Calendly's
	// signing key). It is returned once by Watch; Rapport stores only its
	// hash, or, for a signing key, its ciphertext.
	Token      string
	Expiration time.Time
}

// WatchRequest asks for a push channel on one calendar.
type WatchRequest struct {
	CalendarID string
	// Address receives the notifications (https).
	Address string
	// LifecycleAddress receives lifecycle events (Graph); may equal Address.
	LifecycleAddress string
}

// Source reads one connected calendar account. Every calendar provider
// implements it; what else a provider supports it declares by implementing
// Watcher, Renewer and Linker too.
type Source interface {
	// List returns one page of changes.
	List(ctx context.Context, req ListRequest) (Page, error)
}

// Watcher opens and closes push channels per calendar.
type Watcher interface {
	// Watch opens a push channel for a calendar.
	Watch(ctx context.Context, req WatchRequest) (Channel, error)
	// StopWatch closes a channel. Stopping an unknown channel is not an error.
	StopWatch(ctx context.Context, ch Channel) error
}

// Renewer extends a channel in place (Graph's PATCH /subscriptions/{id}).
// A Watcher without it is renewed by opening a new channel, storing it, and
// then stopping the old one.
type Renewer interface {
	Renew(ctx context.Context, ch Channel) (Channel, error)
}

// Linker writes Rapport's ids back into one copy of an event: PropMeetingID
// and PropKey, in whatever form the provider stores private properties
// (Google's extendedProperties.private, Graph's single-value extended
// properties). A provider that cannot (Calendly) does not implement it.
type Linker interface {
	// PatchPrivate sets the given private properties of one copy of an
	// event, leaving its other properties untouched.
	PatchPrivate(ctx context.Context, calendarID, eventID string, props map[string]string) error
}

// NotificationState says what a push notification asks for.
type NotificationState string

// Notification states.
const (
	// StateSync is the handshake sent when a channel opens; acknowledge only.
	StateSync NotificationState = "sync"
	// StateChanged means the calendar changed; sync it.
	StateChanged NotificationState = "changed"
	// StateMissed means notifications were lost (Graph's "missed"): sync.
	StateMissed NotificationState = "missed"
	// StateReauthorize asks for the channel to be renewed now (Graph's
	// "reauthorizationRequired").
	StateReauthorize NotificationState = "reauthorize"
	// StateRemoved means the provider dropped the channel (Graph's
	// "subscriptionRemoved", a disabled Calendly subscription): open a new
	// one, then sync.
	StateRemoved NotificationState = "removed"
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
	// EventIDs name the changed events, for providers whose notifications
	// say which (Calendly); the pipeline fetches just those.
	EventIDs []string
}

// WebhookRequest is a push request as the webhook server received it.
type WebhookRequest struct {
	Method string
	// URL is the address the provider called: the public base URL, the
	// path and the query (what a provider that signs its URL signs).
	URL    string
	Header http.Header
	Query  url.Values
	// Path is what follows /webhooks/{provider} (e.g. "/lifecycle", or a
	// per-channel suffix), "" for the bare address.
	Path string
	Body []byte
	// Received is when the request arrived (signature freshness).
	Received time.Time
}

// Reply is an answer a provider needs verbatim, such as Graph's validation
// handshake.
type Reply struct {
	Status      int
	ContentType string
	Body        string
}

// WebhookParser turns a provider's push request into notifications. It
// checks the shape only: the pipeline verifies each notification against
// its stored channel (VerifyToken, or a SignatureVerifier) before anything
// is queued. A malformed request is an error wrapping ErrMalformed.
type WebhookParser interface {
	ParseWebhook(req WebhookRequest) (reply *Reply, ns []Notification, err error)
}

// SignatureVerifier is implemented by providers that sign each delivery
// with a per-channel key (Calendly) instead of echoing a token: Verify
// checks req against the channel's key, in constant time, and its
// freshness.
type SignatureVerifier interface {
	VerifySignature(req WebhookRequest, key []byte) error
}

// ErrMalformed marks a push request that is not what the provider sends.
var ErrMalformed = errors.New("malformed notification")

// Prober is implemented by providers that check a connection's token,
// and that they can be reached, with one cheap request before the
// connection is stored: an import then answers with the provider's word.
type Prober interface {
	Probe(ctx context.Context, c Conn, calendarID string) error
}

// AccountResolver is implemented by providers that learn a connection's
// account and calendars from its token (Calendly: the user, and the
// organization or user its scope covers) instead of the import naming
// them.
type AccountResolver interface {
	ResolveAccount(ctx context.Context, tokens oauth2.TokenSource, scope string) (account string, calendarIDs []string, err error)
}

// Conn is what a provider needs to open a Source for one connection.
type Conn struct {
	// ID is the connection's id: the key of its rate limits and logs.
	ID string
	// Account is the connection's account (the employee's e-mail, the
	// Calendly user or organization).
	Account string
	Tokens  oauth2.TokenSource
	// Limiter paces requests; shared by every process.
	Limiter provider.Limiter
}

// Provider is one calendar provider, found by name in the pipeline's
// registry.
type Provider interface {
	// Name is the provider's name as connections and webhook paths spell
	// it: "google", "microsoft", "calendly".
	Name() string
	// Open returns the Source of a connection.
	Open(ctx context.Context, c Conn) (Source, error)
}
