package pipeline_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// ruleSet writes files into a fresh rules directory and loads it.
func ruleSet(t testing.TB, files map[string]string) *rules.Set {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := rules.Load(dir)
	if err != nil {
		t.Fatalf("load rules: %v", err)
	}
	return s
}

// holding returns harness options whose pipeline decides with the rules of
// holder.
func holding(holder *rules.Holder) harnessOptions {
	return harnessOptions{autoNotify: true, tweak: func(c *pipeline.Config) { c.Rules = holder.Get }}
}

const lifecycleRules = `version: 1
crm_properties:
  companies: [lifecyclestage]
rules:
  - name: skip-private
    when: event.visibility in ["private", "confidential"]
    action: skip
  - name: customer-or-opportunity
    when: any(companies, .properties.lifecyclestage in ["opportunity", "customer"])
    action: log
default: skip
`

// TestLifecycleStageRule: a rule on the companies' lifecycle stage logs the
// meetings with a customer and skips those with a lead; when the stages
// change in HubSpot, the next index refresh (the same incremental search,
// with one more property) re-decides the upcoming meetings of those
// companies: the new customer's meeting is logged, the former customer's
// upcoming meeting withdrawn, its past meeting left as it was.
func TestLifecycleStageRule(t *testing.T) {
	holder := rules.NewHolder(ruleSet(t, map[string]string{"policy.yaml": lifecycleRules}))
	h := newHarness(t, holding(holder))
	acme := h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}, Properties: map[string]string{"lifecyclestage": "customer"}})
	globex := h.hub.AddCompany(crm.Company{Name: "Globex", Domains: []string{"globex.example"}, Properties: map[string]string{"lifecyclestage": "lead"}})
	h.addCalendar(rep)
	base := time.Now().UTC().Truncate(time.Hour)
	insert := func(title, guest string, start time.Time) string {
		t.Helper()
		ev, err := h.google.Insert(rep, calendartest.EventSpec{Summary: title, Start: start, End: start.Add(30 * time.Minute),
			Attendees: []calendartest.Attendee{att(rep), att(guest)}})
		if err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	insert("Acme past", "cfo@acme.example", base.Add(-48*time.Hour))
	insert("Acme upcoming", "cfo@acme.example", base.Add(48*time.Hour))
	insert("Globex past", "vp@globex.example", base.Add(-72*time.Hour))
	insert("Globex upcoming", "vp@globex.example", base.Add(72*time.Hour))

	h.startWorker()
	h.connectHubSpot()
	h.connectGoogle(rep, "tok-rep")
	h.settle()
	titles := func() []string {
		var out []string
		for _, m := range h.meetings() {
			out = append(out, m.Properties[crm.PropTitle]+" "+m.Properties[crm.PropOutcome])
		}
		return out
	}
	if got, want := titles(), []string{"Acme past COMPLETED", "Acme upcoming SCHEDULED"}; !slices.Equal(got, want) {
		t.Fatalf("HubSpot holds %q, want %q (the lead's meetings skipped)", got, want)
	}
	if n := h.hub.Calls()["companies.list"]; n != 1 {
		t.Errorf("%d company listings, want 1: the properties ride along with the listing", n)
	}

	// The stages change in HubSpot; the company webhook queues a refresh.
	h.hub.ResetCounters()
	h.hub.SetCompanyProperty(globex, "lifecyclestage", "customer")
	h.hub.SetCompanyProperty(acme, "lifecyclestage", "lead")
	if err := h.p.CRMChanged(h.ctx, h.hub.PortalID()); err != nil {
		t.Fatal(err)
	}
	h.eventually("the upcoming meetings re-decided", func() bool {
		got := titles()
		return slices.Contains(got, "Globex upcoming SCHEDULED") && slices.Contains(got, "Acme upcoming CANCELED")
	})
	h.settle()
	want := []string{"Acme past COMPLETED", "Acme upcoming CANCELED", "Globex upcoming SCHEDULED"}
	if got := titles(); !slices.Equal(got, want) {
		t.Errorf("after the change HubSpot holds %q, want %q (past meetings stay as they were)", got, want)
	}
	calls := h.hub.Calls()
	if calls["companies.search"] != 1 || calls["companies.list"] != 0 {
		t.Errorf("refresh calls %v, want one incremental search and no listing", calls)
	}
	if got := h.one("Globex upcoming").CompanyIDs; !slices.Equal(got, []string{globex}) {
		t.Errorf("Globex meeting companies %v", got)
	}

	// A new meeting with the new customer is logged; one with the former
	// customer is not.
	insert("Globex next", "vp@globex.example", base.Add(96*time.Hour))
	insert("Acme next", "cfo@acme.example", base.Add(96*time.Hour))
	h.eventually("the next Globex meeting logged", func() bool { return len(h.byTitle("Globex next")) == 1 })
	h.settle()
	if n := len(h.byTitle("Acme next")); n != 0 {
		t.Errorf("the former customer's next meeting was logged")
	}
}

const jobTitleRules = `version: 1
crm_properties:
  contacts: [jobtitle]
rules:
  - name: executive-meeting
    when: any(external, .contact != nil && .contact.properties.jobtitle matches "(?i)\\b(vp|chief)\\b")
    action: log
default: skip
`

// TestJobTitleRule: a rule on the attendees' job titles resolves the
// contacts at decide time — one batch read for the page's company-matched
// attendees, with the declared property — and the write path finds them in
// the shared cache and reads nothing again.
func TestJobTitleRule(t *testing.T) {
	holder := rules.NewHolder(ruleSet(t, map[string]string{"policy.yaml": jobTitleRules}))
	h := newHarness(t, holding(holder))
	acme := h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	cfo := h.hub.AddContact("cfo@acme.example", "Ada CFO", acme)
	h.hub.SetContactProperty(cfo, "jobtitle", "Chief Financial Officer")
	buyer := h.hub.AddContact("buyer@acme.example", "Bo Buyer", acme)
	h.hub.SetContactProperty(buyer, "jobtitle", "Buyer")
	h.addCalendar(rep)
	base := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	for i, m := range []struct{ title, guest string }{
		{"CFO call", "cfo@acme.example"}, {"Buyer call", "buyer@acme.example"},
		{"Stranger call", "new@acme.example"}, {"Free mail call", "pal@gmail.com"},
	} {
		s := base.Add(time.Duration(i) * time.Hour)
		if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: m.title, Start: s, End: s.Add(30 * time.Minute),
			Attendees: []calendartest.Attendee{att(rep), att(m.guest)}}); err != nil {
			t.Fatal(err)
		}
	}
	h.startWorker()
	h.connectHubSpot()
	h.connectGoogle(rep, "tok-rep")
	h.settle()

	ms := h.meetings()
	if len(ms) != 1 || ms[0].Properties[crm.PropTitle] != "CFO call" {
		t.Fatalf("HubSpot holds %d meetings (%v), want the CFO call only", len(ms), ms)
	}
	if !slices.Equal(ms[0].ContactIDs, []string{cfo}) {
		t.Errorf("CFO call contacts %v, want [%s]", ms[0].ContactIDs, cfo)
	}
	// One read at decide time for the three company-matched addresses
	// (the free-mail one is never looked up); none at write time.
	if n := h.hub.Calls()["contacts.batch.read"]; n != 1 {
		t.Errorf("%d contact batch reads, want 1 (at decide time; the write path uses the shared cache)", n)
	}
	// The decisions saw the contacts: the trace names their ids.
	d, err := h.p.Meeting(h.ctx, h.ws, ms[0].Properties[crm.PropKey])
	if err != nil {
		t.Fatal(err)
	}
	var trace rules.Decision
	if err := json.Unmarshal(d.Trace, &trace); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, a := range trace.Attendees {
		if a.Contact != "" {
			seen = append(seen, a.Contact)
		}
	}
	if d.Rule != "executive-meeting" || !slices.Equal(seen, []string{cfo}) {
		t.Errorf("CFO call decided by %q with contacts %v, want executive-meeting with [%s]", d.Rule, seen, cfo)
	}
}
