package pipeline

import (
	"errors"
	"time"

	"github.com/rapportsync/rapport/pipeline/ledger"
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
	// workspace's domains, a connect link used twice or expired, a forged
	// notification).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: a provider could not be reached; try again later.
	ErrUnavailable = errors.New("provider unavailable")
	// ErrNotConfigured: a setting the operation needs is missing.
	ErrNotConfigured = errors.New("not configured")
)

// The admin API's views of the ledger.
type (
	// Workspace is a customer team: its internal domains and name.
	Workspace = ledger.Workspace
	// ConnectionStatus describes a connection without its tokens.
	ConnectionStatus = ledger.ConnectionStatus
	// CalendarStatus is one calendar's sync status.
	CalendarStatus = ledger.CalendarStatus
	// IndexStatus describes a workspace's company domain index.
	IndexStatus = ledger.IndexStatus
	// MeetingEntry is one row of the ledger.
	MeetingEntry = ledger.MeetingEntry
	// MeetingDetail is a ledger entry with its decision trace and copies.
	MeetingDetail = ledger.MeetingDetail
	// MeetingCopy is one calendar's copy of a meeting.
	MeetingCopy = ledger.MeetingCopy
	// DeadLetter is a terminal failure.
	DeadLetter = ledger.DeadLetter
	// ReconcileReport is the outcome of a reconciliation run.
	ReconcileReport = ledger.Report
	// ConnectLink is an issued connect link, as stored (the URL is signed
	// by the HTTP surface).
	ConnectLink = ledger.ConnectLink
)

// WorkspaceStatus is a workspace with its connections and calendars.
type WorkspaceStatus struct {
	Workspace
	Connections []ConnectionStatus `json:"connections"`
	Calendars   []CalendarStatus   `json:"calendars"`
	Index       IndexStatus        `json:"company_index"`
}

// ConnectionInput imports credentials obtained elsewhere (admin API) or by
// the OAuth flow.
type ConnectionInput struct {
	Provider     string    `json:"provider"` // google | microsoft | calendly | hubspot
	AccountEmail string    `json:"account_email,omitempty"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	CalendarIDs  []string  `json:"calendar_ids,omitempty"`
	// Scope is a Calendly connection's scope: organization or user.
	Scope string `json:"scope,omitempty"`
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

// Connection is a created connection.
type Connection struct {
	ID        string   `json:"id"`
	Provider  string   `json:"provider"`
	Account   string   `json:"account"`
	Status    string   `json:"status"`
	Calendars []string `json:"calendars,omitempty"` // calendar row ids
	// Setup is "queued" for a calendar connection: its channels open and
	// its initial syncs start in the background.
	Setup string `json:"setup,omitempty"`
}

// ReconcileRequest asks for a reconciliation of a workspace or one calendar.
type ReconcileRequest struct {
	WorkspaceID string `json:"workspace_id"`
	CalendarID  string `json:"calendar_id,omitempty"`
	DryRun      bool   `json:"dry_run,omitempty"`
}

// Page asks for one page of a list: Limit items after the opaque cursor.
type Page struct {
	Limit int
	After string
}
