package pipeline

import (
	"encoding/json"
	"errors"
	"time"
)

// Errors the admin API maps to statuses.
var (
	// ErrNotFound: the workspace, calendar, meeting, run or dead letter does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid wraps a validation failure of caller input.
	ErrInvalid = errors.New("invalid input")
	// ErrConflict: the thing exists already or is in a state that forbids it.
	ErrConflict = errors.New("conflict")
	// ErrForbidden: the caller may not do this (an account outside the
	// workspace's domains, a connect link used twice or expired).
	ErrForbidden = errors.New("forbidden")
)

// Workspace is a customer team: its internal domains and name.
type Workspace struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	InternalDomains []string  `json:"internal_domains"`
	CreatedAt       time.Time `json:"created_at"`
}

// WorkspaceStatus is a workspace with its connections and calendars.
type WorkspaceStatus struct {
	Workspace
	Connections []ConnectionStatus `json:"connections"`
	Calendars   []CalendarStatus   `json:"calendars"`
	Index       IndexStatus        `json:"company_index"`
}

// ConnectionStatus describes a connection without its tokens.
type ConnectionStatus struct {
	ID        string    `json:"id"`
	Provider  string    `json:"provider"`
	Account   string    `json:"account"`
	Status    string    `json:"status"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ReplacedBy names the connection that replaced this one (a CRM portal
	// replaced by the admin).
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// CalendarStatus is one calendar's sync status.
type CalendarStatus struct {
	ID               string     `json:"id"`
	ConnectionID     string     `json:"connection_id"`
	CalendarID       string     `json:"calendar_id"`
	Status           string     `json:"status"`
	LastSyncedAt     *time.Time `json:"last_synced_at"`
	ChannelExpiresAt *time.Time `json:"channel_expires_at"`
	LastError        string     `json:"last_error"`
}

// IndexStatus describes a workspace's company domain index.
type IndexStatus struct {
	Companies       int        `json:"companies"`
	FreeMailSkipped int        `json:"free_mail_skipped"`
	LoadedAt        *time.Time `json:"loaded_at"`
}

// ConnectionInput imports credentials obtained elsewhere (admin API) or by
// the OAuth flow.
type ConnectionInput struct {
	Provider     string    `json:"provider"` // google | hubspot
	AccountEmail string    `json:"account_email,omitempty"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	CalendarIDs  []string  `json:"calendar_ids,omitempty"`
	// AllowExternalAccount lets a calendar account outside the workspace's
	// internal domains connect (an explicit admin decision).
	AllowExternalAccount bool `json:"allow_external_account,omitempty"`
	// Replace lets a different CRM portal replace the workspace's CRM
	// connection (an explicit admin decision, logged and shown).
	Replace bool `json:"replace,omitempty"`
	// ExpectAccount is the account a connect link was issued for: the
	// connection is refused when another one signed in. Set by the OAuth
	// flow, never read from JSON.
	ExpectAccount string `json:"-"`
}

// ConnectLinkInput asks for a connect link: a signed, single-use,
// expiring link to a provider's OAuth consent for one workspace.
type ConnectLinkInput struct {
	Provider string `json:"provider"`
	// Account, when set, is the only account that may connect through the
	// link (an e-mail for a calendar, a portal id for HubSpot).
	Account string `json:"account,omitempty"`
	// AllowExternalAccount and Replace carry the admin's decisions of
	// ConnectionInput into the flow.
	AllowExternalAccount bool `json:"allow_external_account,omitempty"`
	Replace              bool `json:"replace,omitempty"`
}

// ConnectLink is an issued connect link, as stored (the URL is signed by
// the HTTP surface).
type ConnectLink struct {
	ID                   string
	WorkspaceID          string
	Provider             string
	Account              string
	AllowExternalAccount bool
	Replace              bool
	ExpiresAt            time.Time
}

// Connection is a created connection.
type Connection struct {
	ID        string   `json:"id"`
	Provider  string   `json:"provider"`
	Account   string   `json:"account"`
	Status    string   `json:"status"`
	Calendars []string `json:"calendars,omitempty"` // calendar row ids
}

// MeetingEntry is one row of the ledger.
type MeetingEntry struct {
	Key          string    `json:"meeting_key"`
	State        string    `json:"state"`
	CRMMeetingID string    `json:"crm_meeting_id,omitempty"`
	Rule         string    `json:"rule"`
	RulesVersion string    `json:"rules_version"`
	DecidedAt    time.Time `json:"decided_at"`
	LastError    string    `json:"last_error,omitempty"`
}

// MeetingDetail is a ledger entry with its decision trace and copies.
type MeetingDetail struct {
	MeetingEntry
	Trace  json.RawMessage `json:"trace"`
	Copies []MeetingCopy   `json:"copies"`
}

// MeetingCopy is one calendar's copy of a meeting.
type MeetingCopy struct {
	CalendarID  string `json:"calendar_id"`
	EventID     string `json:"event_id"`
	Status      string `json:"status"`
	Organizer   bool   `json:"organizer_copy"`
	Action      string `json:"action"`
	Rule        string `json:"rule"`
	LinkWritten bool   `json:"link_written"`
}

// DeadLetter is a terminal failure.
type DeadLetter struct {
	ID          int64           `json:"id"`
	WorkspaceID string          `json:"workspace_id,omitempty"`
	TaskType    string          `json:"task_type"`
	TaskID      string          `json:"task_id"`
	Queue       string          `json:"queue"`
	Ref         json.RawMessage `json:"ref"`
	Class       string          `json:"class"`
	Reason      string          `json:"reason"`
	CreatedAt   time.Time       `json:"created_at"`
	RetriedAt   *time.Time      `json:"retried_at,omitempty"`
}

// ReconcileRequest asks for a reconciliation of a workspace or one calendar.
type ReconcileRequest struct {
	WorkspaceID string `json:"workspace_id"`
	CalendarID  string `json:"calendar_id,omitempty"`
	DryRun      bool   `json:"dry_run,omitempty"`
}

// ReconcileReport is the outcome of a reconciliation run.
type ReconcileReport struct {
	ID        string   `json:"id"`
	Status    string   `json:"status"` // running | done | failed
	Checked   int      `json:"checked"`
	Created   int      `json:"created"`
	Updated   int      `json:"updated"`
	Cancelled int      `json:"cancelled"`
	Unchanged int      `json:"unchanged"`
	Errors    []string `json:"errors"`
}

// Page asks for one page of a list: Limit items after the opaque cursor.
type Page struct {
	Limit int
	After string
}
