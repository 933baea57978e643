package pipeline

import (
	"context"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/pipeline/ledger"
)

// noVault is a Vault for tests that never touch tokens.
type noVault struct{}

func (noVault) Put(context.Context, string, string, string, *oauth2.Token) (string, error) {
	return "", nil
}
func (noVault) PutWith(context.Context, string, string, string, *oauth2.Token, func(context.Context, *ledger.Tx, string) error) (string, error) {
	return "", nil
}
func (noVault) TokenSource(string) oauth2.TokenSource                 { return nil }
func (noVault) MarkNeedsReauth(context.Context, string, string) error { return nil }

// testProviders open clients of nothing: tests using them must not reach a
// provider.
var testProviders = NewRegistry(
	[]calendar.Provider{google.Provider{Config: google.Config{BaseURL: "http://127.0.0.1:1/"}}},
	[]crm.Provider{hubspot.Provider{Config: hubspot.Config{BaseURL: "http://127.0.0.1:1", MaxRetries: -1}}},
)

func (noVault) Seal(_ string, plain []byte) ([]byte, error)  { return plain, nil }
func (noVault) Open(_ string, sealed []byte) ([]byte, error) { return sealed, nil }
