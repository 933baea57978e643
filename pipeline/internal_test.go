package pipeline

import (
	"context"
	"testing"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/hubspot"
)

// noVault is a Vault for tests that never touch tokens.
type noVault struct{}

func (noVault) Put(context.Context, string, string, string, *oauth2.Token) (string, error) {
	return "", nil
}
func (noVault) TokenSource(string) oauth2.TokenSource                 { return nil }
func (noVault) MarkNeedsReauth(context.Context, string, string) error { return nil }

var testProviders = Providers{
	Calendar: func(context.Context, CalendarConn) (calendar.Source, error) { return nil, nil },
	// A client of nothing: tests using it must not reach HubSpot.
	CRM: func(_ context.Context, portal string, ts oauth2.TokenSource) (crm.Sink, error) {
		return hubspot.New(hubspot.Config{BaseURL: "http://127.0.0.1:1", PortalID: portal, MaxRetries: -1}, ts)
	},
}

func TestSameInstant(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"2026-03-25T14:00:00.000Z", "2026-03-25T14:00:00Z", true},
		{"2026-03-25T14:00:00.000Z", "2026-03-25T15:00:00+01:00", true},
		{"2026-03-25T14:00:00.000Z", "1774447200000", true},
		{"2026-03-25T14:00:00.000Z", "2026-03-25T14:30:00Z", false},
		{"Renewal", "Renewal", true},
		{"Renewal", "renewal", false},
		{"", "2026-03-25T14:00:00Z", false},
	} {
		if got := sameInstant(c.a, c.b); got != c.want {
			t.Errorf("sameInstant(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
