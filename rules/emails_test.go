package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
)

// TestDecisionEmails checks the addresses a decision hands the pipeline:
// contacts to associate and owner candidates, which it used to decode from
// the attendee trace by position.
func TestDecisionEmails(t *testing.T) {
	t.Parallel()
	room := calendar.Attendee{Email: "c_1888@resource.calendar.google.com", Resource: true}
	tests := []struct {
		name         string
		ev           calendar.Event
		owner        string
		wantContacts []string
		wantOwners   []string
	}{
		{
			name:         "organizer attends, one customer",
			ev:           meeting(guest("cfo@acme.example")),
			wantContacts: []string{"cfo@acme.example"},
			wantOwners:   []string{"rep@northwind.test"},
		},
		{
			name: "internal organizer not in the attendee list comes first",
			ev: calendar.Event{
				ID: "e", Status: calendar.StatusConfirmed, Start: meetingStart, End: meetingStart.Add(30 * time.Minute),
				Organizer: calendar.Attendee{Email: "PA@Northwind.test"},
				Attendees: []calendar.Attendee{guest("se@northwind.test"), guest("cfo@acme.example"), guest("boss@northwind.test")},
			},
			owner:        "boss@northwind.test",
			wantContacts: []string{"cfo@acme.example"},
			wantOwners:   []string{"pa@northwind.test", "se@northwind.test", "boss@northwind.test"},
		},
		{
			name: "external organizer is no owner candidate",
			ev: calendar.Event{
				ID: "e", Status: calendar.StatusConfirmed,
				Organizer: calendar.Attendee{Email: "cfo@acme.example"},
				Attendees: []calendar.Attendee{
					{Email: "cfo@acme.example", Organizer: true, Response: calendar.ResponseAccepted},
					guest("rep@northwind.test"),
				},
			},
			wantContacts: []string{"cfo@acme.example"},
			wantOwners:   []string{"rep@northwind.test"},
		},
		{
			name: "resources excluded, even on an internal domain",
			ev: meeting(room, calendar.Attendee{Email: "boardroom@northwind.test", Resource: true},
				guest("se@northwind.test"), guest("ops@globex.example")),
			wantContacts: []string{"ops@globex.example"},
			wantOwners:   []string{"rep@northwind.test", "se@northwind.test"},
		},
		{
			name: "duplicates and case collapse, contacts sorted",
			ev: meeting(guest("Ops@Globex.example"), guest("CFO@acme.example"), guest("cfo@ACME.example"),
				guest("SE@northwind.test"), guest("se@northwind.test"), guest("REP@northwind.test")),
			wantContacts: []string{"cfo@acme.example", "ops@globex.example"},
			wantOwners:   []string{"rep@northwind.test", "se@northwind.test"},
		},
		{
			name:         "display-name forms are normalised",
			ev:           meeting(guest(`"Carla" <CFO@Acme.Example>`), guest("mailto:se@northwind.test")),
			wantContacts: []string{"cfo@acme.example"},
			wantOwners:   []string{"rep@northwind.test", "se@northwind.test"},
		},
		{
			name:       "free mail, unknown, blocked and invalid are no contacts",
			ev:         meeting(guest("jo@gmail.com"), guest("ceo@unknown.example"), guest("pm@rival.example"), guest("not an address")),
			wantOwners: []string{"rep@northwind.test"},
		},
		{
			name:         "plus-tag kept: the CRM keys contacts by the address as written",
			ev:           meeting(guest("cfo+crm@acme.example")),
			wantContacts: []string{"cfo+crm@acme.example"},
			wantOwners:   []string{"rep@northwind.test"},
		},
		{
			name: "no internal attendee, organizer unknown",
			ev: calendar.Event{ID: "e", Status: calendar.StatusConfirmed,
				Attendees: []calendar.Attendee{guest("cfo@acme.example")}},
			owner:        "x@partner.example",
			wantContacts: []string{"cfo@acme.example"},
		},
		{
			name:  "minimal cancellation",
			ev:    calendar.Event{ID: "e", Status: calendar.StatusCancelled},
			owner: "rep@northwind.test",
		},
	}
	s := loadRules(t, map[string]string{"a.yaml": string(DefaultYAML()) + "blocked_domains: [rival.example]\n"})
	ix := testIndex(s.FreeMail())
	ix.Upsert(crm.Company{ID: "9", Name: "Rival", Domains: []string{"rival.example"}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			owner := tt.owner
			if owner == "" {
				owner = "rep@northwind.test"
			}
			d := s.Decide(Input{Event: tt.ev, Owner: owner, Internal: internal, Index: ix})
			if diff := cmp.Diff(tt.wantContacts, d.ContactEmails); diff != "" {
				t.Errorf("ContactEmails (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOwners, d.OwnerEmails); diff != "" {
				t.Errorf("OwnerEmails (-want +got):\n%s", diff)
			}
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "@") || strings.Contains(string(b), "Emails") {
				t.Errorf("stored decision holds addresses: %s", b)
			}
		})
	}
}
