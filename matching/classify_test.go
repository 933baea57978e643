package matching

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
)

func testClassifier() *Classifier {
	ix := NewIndex(DefaultFreeMail())
	ix.Upsert(crm.Company{ID: "101", Name: "Acme", Domains: []string{"acme.com", "acme.co.uk"}})
	ix.Upsert(crm.Company{ID: "102", Name: "Beta", Domains: []string{"beta.com"}})
	ix.Upsert(crm.Company{ID: "103", Name: "Beta Holdings", Domains: []string{"beta.com"}})
	// Companies on the workspace's own, a blocked and a free-mail domain
	// must never be matched through those attendees.
	ix.Upsert(crm.Company{ID: "900", Name: "Ourselves", Domains: []string{"northwind.test"}})
	ix.Upsert(crm.Company{ID: "901", Name: "Competitor", Domains: []string{"competitor.example"}})
	return &Classifier{
		Internal: []string{"northwind.test", "NorthWind-Labs.TEST."},
		Blocked:  []string{"competitor.example"},
		FreeMail: DefaultFreeMail().With([]string{"freebie.test"}, nil),
		Index:    ix,
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	c := testClassifier()
	acme := []CompanyRef{{ID: "101", Name: "Acme", Domain: "acme.com"}}
	tests := []struct {
		name string
		in   calendar.Attendee
		want Class
	}{
		{"external with company", calendar.Attendee{Email: "CFO@Acme.com"},
			Class{Address: mustParse(t, "cfo@acme.com"), Valid: true, Companies: acme}},
		{"external subdomain co.uk", calendar.Attendee{Email: "cfo@mail.eu.acme.co.uk"},
			Class{Address: mustParse(t, "cfo@mail.eu.acme.co.uk"), Valid: true,
				Companies: []CompanyRef{{ID: "101", Name: "Acme", Domain: "acme.co.uk"}}}},
		{"external two companies", calendar.Attendee{Email: "x@beta.com"},
			Class{Address: mustParse(t, "x@beta.com"), Valid: true,
				Companies: []CompanyRef{{"102", "Beta", "beta.com"}, {"103", "Beta Holdings", "beta.com"}}}},
		{"external without company", calendar.Attendee{Email: "x@unknown.test"},
			Class{Address: mustParse(t, "x@unknown.test"), Valid: true}},
		{"internal", calendar.Attendee{Email: "rep@northwind.test", Self: true, Organizer: true},
			Class{Address: mustParse(t, "rep@northwind.test"), Valid: true, Internal: true}},
		{"internal subdomain", calendar.Attendee{Email: "rep@eu.northwind.test"},
			Class{Address: mustParse(t, "rep@eu.northwind.test"), Valid: true, Internal: true}},
		{"internal unnormalised config", calendar.Attendee{Email: "rep@northwind-labs.test"},
			Class{Address: mustParse(t, "rep@northwind-labs.test"), Valid: true, Internal: true}},
		{"not internal: suffix without dot", calendar.Attendee{Email: "x@notnorthwind.test"},
			Class{Address: mustParse(t, "x@notnorthwind.test"), Valid: true}},
		{"blocked", calendar.Attendee{Email: "spy@competitor.example"},
			Class{Address: mustParse(t, "spy@competitor.example"), Valid: true, Blocked: true}},
		{"blocked subdomain", calendar.Attendee{Email: "spy@us.competitor.example"},
			Class{Address: mustParse(t, "spy@us.competitor.example"), Valid: true, Blocked: true}},
		{"free mail", calendar.Attendee{Email: "someone@GMAIL.com"},
			Class{Address: mustParse(t, "someone@gmail.com"), Valid: true, FreeMail: true}},
		{"free mail added by rules", calendar.Attendee{Email: "x@freebie.test"},
			Class{Address: mustParse(t, "x@freebie.test"), Valid: true, FreeMail: true}},
		{"resource flag", calendar.Attendee{Email: "room-1@acme.com", Resource: true},
			Class{Address: mustParse(t, "room-1@acme.com"), Valid: true, Resource: true}},
		{"resource calendar address", calendar.Attendee{Email: "c_188abc@resource.calendar.google.com"},
			// HubSpot's free-mail list holds this host too.
			Class{Address: mustParse(t, "c_188abc@resource.calendar.google.com"), Valid: true, Resource: true, FreeMail: true}},
		{"group calendar address", calendar.Attendee{Email: "team@group.calendar.google.com"},
			Class{Address: mustParse(t, "team@group.calendar.google.com"), Valid: true, Resource: true}},
		{"invalid", calendar.Attendee{Email: "not an address"}, Class{}},
		{"empty", calendar.Attendee{}, Class{}},
		{"invalid resource", calendar.Attendee{Email: "Room 4", Resource: true}, Class{Resource: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := c.Classify(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Classify(%+v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestClassifyExternal(t *testing.T) {
	t.Parallel()
	c := testClassifier()
	for email, want := range map[string]bool{
		"x@acme.com":                     true,
		"x@gmail.com":                    true, // free mail is external, without a company
		"x@northwind.test":               false,
		"x@competitor.example":           false,
		"r@resource.calendar.google.com": false,
		"no address":                     true,
	} {
		if got := c.Classify(calendar.Attendee{Email: email}).External(); got != want {
			t.Errorf("Classify(%q).External() = %v, want %v", email, got, want)
		}
	}
}

func TestClassifyDefaults(t *testing.T) {
	t.Parallel()
	var c Classifier // no index, default free-mail list
	got := c.Classify(calendar.Attendee{Email: "x@gmail.com"})
	if !got.Valid || !got.FreeMail || got.Companies != nil {
		t.Errorf("zero Classifier: %+v", got)
	}
	got = c.Classify(calendar.Attendee{Email: "x@acme.com"})
	if !got.Valid || got.FreeMail || got.Internal || got.Companies != nil {
		t.Errorf("zero Classifier: %+v", got)
	}
}

func TestClassifyAll(t *testing.T) {
	t.Parallel()
	c := testClassifier()
	as := []calendar.Attendee{
		{Email: "rep@northwind.test", Organizer: true, Self: true},
		{Email: "x@beta.com"},
		{Email: "cfo@acme.com"},
		{Email: "ops@acme.co.uk"},
		{Email: "bad"},
		{Email: "y@beta.com"},
	}
	classes, companies := c.ClassifyAll(as)
	if len(classes) != len(as) {
		t.Fatalf("ClassifyAll returned %d classes for %d attendees", len(classes), len(as))
	}
	for i, a := range as {
		if diff := cmp.Diff(c.Classify(a), classes[i]); diff != "" {
			t.Errorf("class %d differs from Classify (-want +got):\n%s", i, diff)
		}
	}
	want := []CompanyRef{
		{"102", "Beta", "beta.com"},
		{"103", "Beta Holdings", "beta.com"},
		{"101", "Acme", "acme.com"},
	}
	if diff := cmp.Diff(want, companies); diff != "" {
		t.Errorf("companies (-want +got):\n%s", diff)
	}
	if classes, companies := c.ClassifyAll(nil); len(classes) != 0 || companies != nil {
		t.Errorf("ClassifyAll(nil) = %v, %v", classes, companies)
	}
}
