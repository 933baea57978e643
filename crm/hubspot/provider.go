package hubspot

import (
	"context"
	"net/url"

	"github.com/rapportsync/rapport/crm"
)

// providerName is HubSpot's name in connections.
const providerName = "hubspot"

// Provider opens HubSpot clients: the crm.Provider of the registry.
type Provider struct {
	// Config is every client's configuration; PortalID and Limiter are set
	// per connection.
	Config Config
	// ClientSecret is the OAuth app's client secret, which also signs
	// HubSpot's webhooks (RAPPORT_HUBSPOT_CLIENT_SECRET).
	ClientSecret string
}

var _ crm.Provider = Provider{}

// Name implements crm.Provider.
func (Provider) Name() string { return providerName }

// Open implements crm.Provider.
func (p Provider) Open(_ context.Context, c crm.Conn) (crm.Sink, error) {
	cfg := p.Config
	cfg.PortalID = c.Account
	if c.Limiter != nil {
		cfg.Limiter = c.Limiter
	}
	return New(cfg, c.Tokens)
}

// Scopes are the OAuth scopes Rapport asks of HubSpot.
var Scopes = []string{"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.companies.read", "crm.objects.owners.read"}

var _ crm.Describer = Provider{}

// Title implements crm.Describer.
func (Provider) Title() string { return "HubSpot" }

// MeetingURL implements crm.Describer: the meeting's record in HubSpot
// (object type 0-47).
func (Provider) MeetingURL(portal, meetingID string) string {
	return "https://app.hubspot.com/contacts/" + url.PathEscape(portal) + "/record/0-47/" + url.PathEscape(meetingID)
}
