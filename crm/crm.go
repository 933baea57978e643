package crm

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/internal/provider"
)

// Meeting property names Rapport writes (HubSpot's names; they are the
// neutral names too, since HubSpot is the CRM Rapport speaks).
const (
	PropTimestamp   = "hs_timestamp"
	PropTitle       = "hs_meeting_title"
	PropBody        = "hs_meeting_body"
	PropStart       = "hs_meeting_start_time"
	PropEnd         = "hs_meeting_end_time"
	PropLocation    = "hs_meeting_location"
	PropExternalURL = "hs_meeting_external_url"
	PropOutcome     = "hs_meeting_outcome"
	PropOwner       = "hubspot_owner_id"
	PropICalUID     = "hs_i_cal_uid"
	PropNotes       = "hs_internal_meeting_notes"
	// PropSource and SourceCalendarSync mark meetings HubSpot's own
	// calendar sync logged.
	PropSource         = "hs_meeting_source"
	SourceCalendarSync = "BIDIRECTIONAL_SYNC"
	// PropKey is Rapport's own property holding the meeting key.
	PropKey = "rapport_meeting_key"
)

// Meeting outcomes.
const (
	OutcomeScheduled = "SCHEDULED"
	OutcomeCompleted = "COMPLETED"
	OutcomeCanceled  = "CANCELED"
)

// Company is a CRM company with its raw domains (domain and additional
// domains, as the CRM holds them; matching normalises them).
type Company struct {
	ID        string
	Name      string
	Domains   []string
	UpdatedAt time.Time
	// Properties holds the values of the extra properties a listing asked
	// for, as the CRM returns them; an unset property is absent or "".
	Properties map[string]string
}

// CompanyPage is one page of companies. Next is empty on the last page.
type CompanyPage struct {
	Companies []Company
	Next      string
}

// Contact is a CRM contact.
type Contact struct {
	ID    string
	Email string
	Name  string
	// Properties holds the values of the extra properties a read asked
	// for; an unset property is absent or "".
	Properties map[string]string
}

// Owner is a CRM user who can own records.
type Owner struct {
	ID    string
	Email string
}

// Meeting is a meeting engagement.
type Meeting struct {
	// ID is the CRM id; empty before creation.
	ID string
	// Key is Rapport's meeting key.
	Key        string
	Properties map[string]string
	CompanyIDs []string
	ContactIDs []string
}

// Result is the outcome of one input of a batch write, in input order.
type Result struct {
	// ID is the CRM id of the written meeting, when it succeeded.
	ID string
	// Err is the classified error of this input, nil on success.
	Err error
}

// AssociationChange adds or removes associations of one meeting.
type AssociationChange struct {
	MeetingID  string
	CompanyIDs []string
	ContactIDs []string
}

// Portal describes what a prepared CRM portal supports.
type Portal struct {
	// ID identifies the portal (HubSpot's hub id); rate limits are per portal.
	ID string
	// UniqueKey reports that the meeting-key property has unique values, so
	// writes may upsert by it.
	UniqueKey bool
}

// Sink is one connected CRM account.
type Sink interface {
	// Prepare ensures the meeting-key property exists and reports whether it
	// can be unique.
	Prepare(ctx context.Context) (Portal, error)
	// Companies returns a page of all companies, starting after the cursor
	// (empty for the first page). props names extra properties to return
	// in Company.Properties (the rules' crm_properties), in the same call.
	Companies(ctx context.Context, after string, props []string) (CompanyPage, error)
	// CompaniesChangedSince returns a page of companies modified after since,
	// oldest first, with the extra properties props.
	CompaniesChangedSince(ctx context.Context, since time.Time, after string, props []string) (CompanyPage, error)
	// ContactsByEmail finds contacts by e-mail address (any number; batched
	// internally), with the extra properties props. Unknown addresses are
	// absent from the map, keyed by the lower-cased address.
	ContactsByEmail(ctx context.Context, emails []string, props []string) (map[string]Contact, error)
	// Owners lists the portal's owners.
	Owners(ctx context.Context) ([]Owner, error)
	// CreateMeetings creates meetings with their associations. With upsert,
	// meetings are upserted by the key property instead (Portal.UniqueKey).
	// The returned results are in input order; one failing input never fails
	// the others.
	CreateMeetings(ctx context.Context, ms []Meeting, upsert bool) ([]Result, error)
	// UpdateMeetings updates the properties of existing meetings (by ID).
	UpdateMeetings(ctx context.Context, ms []Meeting) ([]Result, error)
	// ReadMeetings reads meetings by CRM id with the given properties and
	// their associations. Missing ids are absent from the map.
	ReadMeetings(ctx context.Context, ids []string, props []string) (map[string]Meeting, error)
	// FindMeetingsByKey finds meetings by Rapport's key property. Search is
	// eventually consistent: a meeting written moments ago may be missing.
	FindMeetingsByKey(ctx context.Context, keys []string) (map[string]Meeting, error)
	// FindMeetingsByICalUID finds meetings logged by the CRM's own calendar
	// sync, keyed by iCalUID.
	FindMeetingsByICalUID(ctx context.Context, uids []string) (map[string][]Meeting, error)
	// HasCalendarSyncMeetings reports whether the portal holds any meeting
	// its own calendar sync logged; when it holds none, there is nothing to
	// adopt and FindMeetingsByICalUID can be skipped.
	HasCalendarSyncMeetings(ctx context.Context) (bool, error)
	// AddAssociations and RemoveAssociations change meeting associations in
	// batches.
	AddAssociations(ctx context.Context, changes []AssociationChange) error
	RemoveAssociations(ctx context.Context, changes []AssociationChange) error
}

// WebhookRequest is a CRM's webhook request as the webhook server
// received it.
type WebhookRequest struct {
	Method string
	// URL is the address the CRM called: the public base URL, the path and
	// the query, as the CRM signs it.
	URL      string
	Header   http.Header
	Body     []byte
	Received time.Time
}

// WebhookParser verifies a CRM's webhook and says which portals' companies
// changed. A refused request is a *provider.RequestError; a missing secret
// wraps provider.ErrNotConfigured.
type WebhookParser interface {
	CompaniesChanged(req WebhookRequest) (portals []string, err error)
}

// Describer is implemented by a CRM that names itself and links to its
// records for people (the console).
type Describer interface {
	// Title is the CRM's name for people ("HubSpot").
	Title() string
	// MeetingURL is the address of a meeting record in the CRM's own UI.
	MeetingURL(account, meetingID string) string
}

// Conn is what a CRM provider needs to open a Sink for one connection.
type Conn struct {
	// ID is the connection's id.
	ID string
	// Account is the portal id; empty before the portal is known (a new
	// connection, whose Prepare tells it).
	Account string
	Tokens  oauth2.TokenSource
	// Limiter paces requests; shared by every process.
	Limiter provider.Limiter
}

// Provider is one CRM, found by name in the pipeline's registry.
type Provider interface {
	// Name is the provider's name as connections spell it: "hubspot".
	Name() string
	// Open returns the Sink of a connection.
	Open(ctx context.Context, c Conn) (Sink, error)
}
