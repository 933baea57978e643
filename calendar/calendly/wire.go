package calendly

import (
	"encoding/json"
	"strings"
)

// The parts of Calendly API v2 resources the adapter reads. Unknown fields
// are ignored, so Calendly may add fields freely.

type user struct {
	URI                 string `json:"uri"`
	Name                string `json:"name"`
	Email               string `json:"email"`
	CurrentOrganization string `json:"current_organization"`
}

type membership struct {
	Role         string `json:"role"`
	Organization string `json:"organization"`
	User         struct {
		URI string `json:"uri"`
	} `json:"user"`
}

type eventTypeResource struct {
	URI  string `json:"uri"`
	Name string `json:"name"`
	// Kind is "solo" (one invitee per event: one-on-one, round robin,
	// collective) or "group".
	Kind string `json:"kind"`
}

type location struct {
	Type     string `json:"type"`
	Location string `json:"location"`
	JoinURL  string `json:"join_url"`
}

type calendarEvent struct {
	Kind       string `json:"kind"`
	ExternalID string `json:"external_id"`
}

type scheduledEvent struct {
	URI              string    `json:"uri"`
	Name             string    `json:"name"`
	Status           string    `json:"status"` // active, canceled
	StartTime        string    `json:"start_time"`
	EndTime          string    `json:"end_time"`
	EventType        string    `json:"event_type"`
	Location         *location `json:"location"`
	UpdatedAt        string    `json:"updated_at"`
	EventMemberships []struct {
		User      string `json:"user"`
		UserEmail string `json:"user_email"`
		UserName  string `json:"user_name"`
	} `json:"event_memberships"`
	EventGuests []struct {
		Email string `json:"email"`
	} `json:"event_guests"`
	CalendarEvent optionalCalendarEvent `json:"calendar_event"`
}

// optionalCalendarEvent tells a calendar_event that is null (the booking
// made no calendar copy) from one that is absent (the answer does not
// carry the field, as webhook payloads do not).
type optionalCalendarEvent struct {
	present bool
	value   *calendarEvent
}

func (o *optionalCalendarEvent) UnmarshalJSON(b []byte) error {
	o.present = true
	if string(b) == "null" {
		o.value = nil
		return nil
	}
	o.value = new(calendarEvent)
	return json.Unmarshal(b, o.value)
}

func (o optionalCalendarEvent) MarshalJSON() ([]byte, error) {
	return json.Marshal(o.value)
}

type invitee struct {
	URI                 string `json:"uri"`
	Email               string `json:"email"`
	Name                string `json:"name"`
	Status              string `json:"status"` // active, canceled
	Event               string `json:"event"`
	UpdatedAt           string `json:"updated_at"`
	QuestionsAndAnswers []struct {
		Question string `json:"question"`
		Answer   string `json:"answer"`
		Position int    `json:"position"`
	} `json:"questions_and_answers"`
	Tracking    map[string]*string `json:"tracking"`
	Rescheduled bool               `json:"rescheduled"`
	OldInvitee  *string            `json:"old_invitee"`
	NewInvitee  *string            `json:"new_invitee"`
}

type subscription struct {
	URI          string  `json:"uri"`
	CallbackURL  string  `json:"callback_url"`
	State        string  `json:"state"`
	Scope        string  `json:"scope"`
	Organization string  `json:"organization"`
	User         *string `json:"user"`
}

type pagination struct {
	NextPageToken *string `json:"next_page_token"`
}

type collection[T any] struct {
	Collection []T        `json:"collection"`
	Pagination pagination `json:"pagination"`
}

type resource[T any] struct {
	Resource T `json:"resource"`
}

// errorBody is Calendly's error answer.
type errorBody struct {
	Title          string   `json:"title"`
	Message        string   `json:"message"`
	RequiredScopes []string `json:"required_scopes"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// URIs. Calendly names resources by URI
// (https://api.calendly.com/scheduled_events/{uuid}); the adapter reads
// the ids out of them without trusting their host, and builds its own
// request paths on BaseURL.

// lastSegment returns the id after "/"+collection+"/" at the end of uri,
// or "" when uri does not end so or the id is not a plausible Calendly id.
func lastSegment(uri, collection string) string {
	i := strings.LastIndex(uri, "/"+collection+"/")
	if i < 0 {
		return ""
	}
	id := uri[i+len(collection)+2:]
	if !validID(id) {
		return ""
	}
	return id
}

// eventUUID returns a scheduled event's uuid from its URI or from a bare
// uuid.
func eventUUID(s string) string {
	if validID(s) {
		return s
	}
	return lastSegment(s, "scheduled_events")
}

// inviteeRef splits an invitee URI
// (…/scheduled_events/{event}/invitees/{invitee}) into its two uuids.
func inviteeRef(uri string) (event, inv string, ok bool) {
	rest, inv, found := strings.Cut(uri, "/invitees/")
	if !found || !validID(inv) {
		return "", "", false
	}
	event = lastSegment(rest, "scheduled_events")
	return event, inv, event != ""
}

// validID accepts Calendly's ids: UUIDs and the older 16-letter ids.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
