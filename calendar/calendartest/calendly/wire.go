package calendly

import (
	"encoding/json"
	"net/http"
	"time"
)

// timeLayout is how Calendly writes instants: UTC with microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func ts(t time.Time) string { return t.UTC().Format(timeLayout) }

// The JSON resources below follow Calendly API v2 (the OpenAPI document's
// User, OrganizationMembership, EventType, Event, Invitee,
// WebhookSubscription and WebhookPayload schemas). Nullable fields are
// pointers so that they are written as null, as Calendly does.

type wireUser struct {
	URI                 string  `json:"uri"`
	Name                string  `json:"name"`
	Slug                string  `json:"slug"`
	Email               string  `json:"email"`
	SchedulingURL       string  `json:"scheduling_url"`
	Timezone            string  `json:"timezone"`
	AvatarURL           *string `json:"avatar_url"`
	CreatedAt           string  `json:"created_at"`
	UpdatedAt           string  `json:"updated_at"`
	CurrentOrganization string  `json:"current_organization"`
	ResourceType        string  `json:"resource_type"`
	Locale              string  `json:"locale"`
}

type wireMembership struct {
	URI          string   `json:"uri"`
	Role         string   `json:"role"`
	User         wireUser `json:"user"`
	Organization string   `json:"organization"`
	UpdatedAt    string   `json:"updated_at"`
	CreatedAt    string   `json:"created_at"`
}

type wireProfile struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

type wireEventType struct {
	URI              string      `json:"uri"`
	Name             string      `json:"name"`
	Active           bool        `json:"active"`
	Slug             string      `json:"slug"`
	SchedulingURL    string      `json:"scheduling_url"`
	Duration         int         `json:"duration"`
	Kind             string      `json:"kind"`
	PoolingType      *string     `json:"pooling_type"`
	Type             string      `json:"type"`
	Color            string      `json:"color"`
	CreatedAt        string      `json:"created_at"`
	UpdatedAt        string      `json:"updated_at"`
	DescriptionPlain *string     `json:"description_plain"`
	Profile          wireProfile `json:"profile"`
	CustomQuestions  []any       `json:"custom_questions"`
}

// Location is a scheduled event's location as Calendly writes it: Type is
// physical, outbound_call, inbound_call, google_conference, zoom,
// microsoft_teams_conference, webex_conference, gotomeeting, custom or
// ask_invitee; Location holds the address, phone number or free text;
// JoinURL the conference link.
type Location struct {
	Type     string `json:"type"`
	Location string `json:"location,omitempty"`
	JoinURL  string `json:"join_url,omitempty"`
	Status   string `json:"status,omitempty"`
}

type wireCounter struct {
	Total  int `json:"total"`
	Active int `json:"active"`
	Limit  int `json:"limit"`
}

type wireMembershipRef struct {
	User      string `json:"user"`
	UserEmail string `json:"user_email"`
	UserName  string `json:"user_name"`
}

type wireGuest struct {
	Email     string `json:"email"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// CalendarEvent names the event a booking put on the host's calendar.
type CalendarEvent struct {
	Kind       string `json:"kind"`
	ExternalID string `json:"external_id"`
}

type wireCancellation struct {
	CanceledBy   string  `json:"canceled_by"`
	Reason       *string `json:"reason"`
	CancelerType string  `json:"canceler_type"`
	CreatedAt    string  `json:"created_at"`
}

type wireEvent struct {
	URI               string              `json:"uri"`
	Name              string              `json:"name"`
	MeetingNotesPlain *string             `json:"meeting_notes_plain"`
	MeetingNotesHTML  *string             `json:"meeting_notes_html"`
	Status            string              `json:"status"`
	StartTime         string              `json:"start_time"`
	EndTime           string              `json:"end_time"`
	EventType         string              `json:"event_type"`
	Location          *Location           `json:"location"`
	InviteesCounter   wireCounter         `json:"invitees_counter"`
	CreatedAt         string              `json:"created_at"`
	UpdatedAt         string              `json:"updated_at"`
	EventMemberships  []wireMembershipRef `json:"event_memberships"`
	EventGuests       []wireGuest         `json:"event_guests"`
	Cancellation      *wireCancellation   `json:"cancellation,omitempty"`
	// CalendarEvent is served on the Event resource (GET and list); the
	// scheduled_event embedded in webhook payloads does not carry it. A
	// pointer to a pointer so that a payload omits the key while the
	// resource writes null.
	CalendarEvent **CalendarEvent `json:"calendar_event,omitempty"`
}

type wireQA struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
	Position int    `json:"position"`
}

type wireTracking struct {
	UTMCampaign    *string `json:"utm_campaign"`
	UTMSource      *string `json:"utm_source"`
	UTMMedium      *string `json:"utm_medium"`
	UTMContent     *string `json:"utm_content"`
	UTMTerm        *string `json:"utm_term"`
	SalesforceUUID *string `json:"salesforce_uuid"`
}

type wireInvitee struct {
	URI                   string            `json:"uri"`
	Email                 string            `json:"email"`
	FirstName             *string           `json:"first_name"`
	LastName              *string           `json:"last_name"`
	Name                  string            `json:"name"`
	Status                string            `json:"status"`
	QuestionsAndAnswers   []wireQA          `json:"questions_and_answers"`
	Timezone              string            `json:"timezone"`
	Event                 string            `json:"event"`
	CreatedAt             string            `json:"created_at"`
	UpdatedAt             string            `json:"updated_at"`
	Tracking              wireTracking      `json:"tracking"`
	TextReminderNumber    *string           `json:"text_reminder_number"`
	Rescheduled           bool              `json:"rescheduled"`
	OldInvitee            *string           `json:"old_invitee"`
	NewInvitee            *string           `json:"new_invitee"`
	CancelURL             string            `json:"cancel_url"`
	RescheduleURL         string            `json:"reschedule_url"`
	RoutingFormSubmission *string           `json:"routing_form_submission"`
	Payment               *struct{}         `json:"payment"`
	NoShow                *struct{}         `json:"no_show"`
	Reconfirmation        *struct{}         `json:"reconfirmation"`
	SchedulingMethod      *string           `json:"scheduling_method"`
	InviteeScheduledBy    *string           `json:"invitee_scheduled_by"`
	Cancellation          *wireCancellation `json:"cancellation,omitempty"`
}

// wirePayload is an invitee webhook payload: the invitee plus the
// scheduled event it belongs to.
type wirePayload struct {
	wireInvitee
	ScheduledEvent wireEvent `json:"scheduled_event"`
}

type wireWebhook struct {
	Event     string      `json:"event"`
	CreatedAt string      `json:"created_at"`
	CreatedBy string      `json:"created_by"`
	Payload   wirePayload `json:"payload"`
}

type wireSubscription struct {
	URI            string   `json:"uri"`
	CallbackURL    string   `json:"callback_url"`
	CreatedAt      string   `json:"created_at"`
	UpdatedAt      string   `json:"updated_at"`
	RetryStartedAt *string  `json:"retry_started_at"`
	State          string   `json:"state"`
	Events         []string `json:"events"`
	Scope          string   `json:"scope"`
	Organization   string   `json:"organization"`
	User           *string  `json:"user"`
	Group          *string  `json:"group"`
	Creator        string   `json:"creator"`
}

type wirePagination struct {
	Count             int     `json:"count"`
	NextPage          *string `json:"next_page"`
	PreviousPage      *string `json:"previous_page"`
	NextPageToken     *string `json:"next_page_token"`
	PreviousPageToken *string `json:"previous_page_token"`
}

type wireCollection[T any] struct {
	Collection []T            `json:"collection"`
	Pagination wirePagination `json:"pagination"`
}

type wireResource[T any] struct {
	Resource T `json:"resource"`
}

// apiError is Calendly's error body: {title, message, details?}; an
// insufficient-scope 403 adds required_scopes.
type apiError struct {
	status         int
	Title          string   `json:"title"`
	Message        string   `json:"message"`
	RequiredScopes []string `json:"required_scopes,omitempty"`
}

func (e apiError) write(w http.ResponseWriter) {
	writeJSON(w, e.status, e)
}

var (
	errUnauthenticated = apiError{status: 401, Title: "Unauthenticated", Message: "The access token is invalid"}
	errTokenExpired    = apiError{status: 401, Title: "Unauthenticated", Message: "The access token expired"}
	errNoPermission    = apiError{status: 403, Title: "Permission Denied", Message: "You do not have permission"}
	errUpgrade         = apiError{status: 403, Title: "Permission Denied", Message: "Please upgrade your Calendly account to Standard"}
	errNotFound        = apiError{status: 404, Title: "Resource Not Found", Message: "The server could not find the requested resource."}
	errAlreadyExists   = apiError{status: 409, Title: "Already Exists", Message: "Hook with this url already exists"}
	errRateLimited     = apiError{status: 429, Title: "Too Many Requests", Message: "You have exceeded your API rate limit"}
	errInternal        = apiError{status: 500, Title: "Internal Server Error", Message: "The server encountered an unexpected condition that prevented it from fulfilling the request."}
)

func errInvalid(msg string) apiError {
	return apiError{status: 400, Title: "Invalid Argument", Message: msg}
}

func errScope(scopes ...string) apiError {
	return apiError{status: 403, Title: "Insufficient scope", Message: "The access token does not have the required scopes", RequiredScopes: scopes}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
