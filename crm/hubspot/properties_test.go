package hubspot_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
)

// TestCRMProperties: the rules' declared properties ride along with the
// company listing, the incremental search and the contact batch read —
// the same calls, more properties — and come back as the CRM holds them,
// unset ones absent.
func TestCRMProperties(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	acme := s.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}, UpdatedAt: base,
		Properties: map[string]string{"lifecyclestage": "customer", "industry": "SOFTWARE"}})
	lead := s.AddCompany(crm.Company{Name: "Globex", Domains: []string{"globex.example"}, UpdatedAt: base,
		Properties: map[string]string{"lifecyclestage": "lead"}})
	cfo := s.AddContact("cfo@acme.example", "Ada CFO", acme)
	s.SetContactProperty(cfo, "jobtitle", "VP Finance")
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()})
	ctx := context.Background()
	props := []string{"lifecyclestage", "industry", "hubspot_owner_id"}

	page, err := c.Companies(ctx, "", props)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, co := range page.Companies {
		got[co.ID] = co.Properties
	}
	want := map[string]map[string]string{
		acme: {"lifecyclestage": "customer", "industry": "SOFTWARE"},
		lead: {"lifecyclestage": "lead"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed properties (-want +got):\n%s", diff)
	}
	if n := s.Calls()["companies.list"]; n != 1 {
		t.Errorf("%d list calls, want 1", n)
	}

	s.SetCompanyProperty(lead, "lifecyclestage", "customer")
	changed, err := c.CompaniesChangedSince(ctx, base, "", props)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed.Companies) != 1 || changed.Companies[0].ID != lead || changed.Companies[0].Properties["lifecyclestage"] != "customer" {
		t.Errorf("changed since: %+v, want Globex as a customer", changed.Companies)
	}

	contacts, err := c.ContactsByEmail(ctx, []string{"CFO@acme.example", "nobody@acme.example"}, []string{"jobtitle", "lifecyclestage"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]crm.Contact{"cfo@acme.example": {ID: cfo, Email: "cfo@acme.example", Name: "Ada CFO",
		Properties: map[string]string{"jobtitle": "VP Finance"}}}, contacts); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
}
