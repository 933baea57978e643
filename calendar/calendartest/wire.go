package calendartest

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Event is an event resource in Calendar v3 wire format, as the server
// returns it. Kind, ETag and Updated are filled in when the event is served.
type Event struct {
	Kind               string              `json:"kind,omitempty"`
	ETag               string              `json:"etag,omitempty"`
	Updated            string              `json:"updated,omitempty"`
	ID                 string              `json:"id"`
	Status             string              `json:"status,omitempty"`
	HTMLLink           string              `json:"htmlLink,omitempty"`
	Created            string              `json:"created,omitempty"`
	Summary            string              `json:"summary,omitempty"`
	Description        string              `json:"description,omitempty"`
	Location           string              `json:"location,omitempty"`
	Creator            *Person             `json:"creator,omitempty"`
	Organizer          *Person             `json:"organizer,omitempty"`
	Start              *DateTime           `json:"start,omitempty"`
	End                *DateTime           `json:"end,omitempty"`
	Recurrence         []string            `json:"recurrence,omitempty"`
	RecurringEventID   string              `json:"recurringEventId,omitempty"`
	OriginalStartTime  *DateTime           `json:"originalStartTime,omitempty"`
	Transparency       string              `json:"transparency,omitempty"`
	Visibility         string              `json:"visibility,omitempty"`
	ICalUID            string              `json:"iCalUID,omitempty"`
	Sequence           int64               `json:"sequence,omitempty"`
	Attendees          []Attendee          `json:"attendees,omitempty"`
	AttendeesOmitted   bool                `json:"attendeesOmitted,omitempty"`
	ExtendedProperties *ExtendedProperties `json:"extendedProperties,omitempty"`
	HangoutLink        string              `json:"hangoutLink,omitempty"`
	ConferenceData     *ConferenceData     `json:"conferenceData,omitempty"`
	Reminders          *Reminders          `json:"reminders,omitempty"`
	EventType          string              `json:"eventType,omitempty"`
}

// DateTime is the start, end or original start of an event: DateTime
// (RFC 3339 with offset) for a timed event, Date ("2006-01-02") for an
// all-day event.
type DateTime struct {
	Date     string `json:"date,omitempty"`
	DateTime string `json:"dateTime,omitempty"`
	TimeZone string `json:"timeZone,omitempty"`
}

// Attendee is an attendee of an event, both in EventSpec and on the wire.
// ResponseStatus is needsAction, declined, tentative or accepted (default
// needsAction).
type Attendee struct {
	Email          string `json:"email,omitempty"`
	DisplayName    string `json:"displayName,omitempty"`
	Organizer      bool   `json:"organizer,omitempty"`
	Self           bool   `json:"self,omitempty"`
	Resource       bool   `json:"resource,omitempty"`
	Optional       bool   `json:"optional,omitempty"`
	ResponseStatus string `json:"responseStatus,omitempty"`
}

// Person is the organizer or creator of an event.
type Person struct {
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Self        bool   `json:"self,omitempty"`
}

// ExtendedProperties are an event's private (this copy) and shared (every
// copy) key-value pairs.
type ExtendedProperties struct {
	Private map[string]string `json:"private,omitempty"`
	Shared  map[string]string `json:"shared,omitempty"`
}

// ConferenceData is the conference attached to an event.
type ConferenceData struct {
	ConferenceID       string              `json:"conferenceId,omitempty"`
	ConferenceSolution *ConferenceSolution `json:"conferenceSolution,omitempty"`
	EntryPoints        []EntryPoint        `json:"entryPoints,omitempty"`
}

// ConferenceSolution names the conferencing product.
type ConferenceSolution struct {
	Name string `json:"name,omitempty"`
}

// EntryPoint is one way to join a conference.
type EntryPoint struct {
	EntryPointType string `json:"entryPointType,omitempty"`
	URI            string `json:"uri,omitempty"`
	Label          string `json:"label,omitempty"`
}

// Reminders are an event's reminder settings.
type Reminders struct {
	UseDefault bool `json:"useDefault"`
}

// channelResource is the body of events.watch and channels.stop and the
// answer of events.watch. Expiration is a decimal string of Unix
// milliseconds, as Google sends it.
type channelResource struct {
	Kind        string            `json:"kind,omitempty"`
	ID          string            `json:"id,omitempty"`
	ResourceID  string            `json:"resourceId,omitempty"`
	ResourceURI string            `json:"resourceUri,omitempty"`
	Token       string            `json:"token,omitempty"`
	Expiration  flexInt           `json:"expiration,omitempty"`
	Type        string            `json:"type,omitempty"`
	Address     string            `json:"address,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
}

// flexInt is an int64 that Google writes as a string but accepts as either.
type flexInt int64

func (n flexInt) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatInt(int64(n), 10))
}

func (n *flexInt) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*n = 0
			return nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		*n = flexInt(v)
		return err
	}
	var v int64
	err := json.Unmarshal(b, &v)
	*n = flexInt(v)
	return err
}

// apiError is one error answer in Google's JSON error format.
type apiError struct {
	code         int
	domain       string
	reason       string
	message      string
	locationType string
	location     string
}

func (e apiError) write(w http.ResponseWriter) {
	type item struct {
		Domain       string `json:"domain"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		LocationType string `json:"locationType,omitempty"`
		Location     string `json:"location,omitempty"`
	}
	type body struct {
		Error struct {
			Errors  []item `json:"errors"`
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	var b body
	b.Error.Errors = []item{{e.domain, e.reason, e.message, e.locationType, e.location}}
	b.Error.Code = e.code
	b.Error.Message = e.message
	writeJSON(w, e.code, b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// Google's error answers, one place.
var (
	errFullSyncRequired = apiError{code: 410, domain: "calendar", reason: "fullSyncRequired",
		message: "Sync token is no longer valid, a full sync is required."}
	errDeleted       = apiError{code: 410, domain: "global", reason: "deleted", message: "Resource has been deleted"}
	errNotFound      = apiError{code: 404, domain: "global", reason: "notFound", message: "Not Found"}
	errLoginRequired = apiError{code: 401, domain: "global", reason: "required", message: "Login Required.",
		locationType: "header", location: "Authorization"}
	errAuth = apiError{code: 401, domain: "global", reason: "authError", message: "Invalid Credentials",
		locationType: "header", location: "Authorization"}
	errRateLimit429 = apiError{code: 429, domain: "usageLimits", reason: "rateLimitExceeded", message: "Rate Limit Exceeded"}
	errRateLimit403 = apiError{code: 403, domain: "usageLimits", reason: "rateLimitExceeded", message: "Rate Limit Exceeded"}
	errUserRate403  = apiError{code: 403, domain: "usageLimits", reason: "userRateLimitExceeded", message: "User Rate Limit Exceeded"}
	errQuota403     = apiError{code: 403, domain: "usageLimits", reason: "quotaExceeded", message: "Calendar usage limits exceeded."}
	errBackend      = apiError{code: 500, domain: "global", reason: "backendError", message: "Backend Error"}
)

// errSyncTokenRestrictions is the 400 for parameters that cannot accompany a
// syncToken. The reason string is not confirmed from a recorded Google
// answer; clients must act on the 400 alone.
func errSyncTokenRestrictions(param string) apiError {
	return apiError{code: 400, domain: "calendar", reason: "syncTokenWithRequestRestrictions",
		message: "Sync token cannot be used with other request restrictions.", locationType: "parameter", location: param}
}

func errInvalid(param, msg string) apiError {
	return apiError{code: 400, domain: "global", reason: "invalid", message: msg, locationType: "parameter", location: param}
}

func errBadRequest(msg string) apiError {
	return apiError{code: 400, domain: "global", reason: "badRequest", message: msg}
}
