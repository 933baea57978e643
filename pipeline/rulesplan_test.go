package pipeline_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// candidateRules is the built-in set with two changes: meetings with
// Globex are skipped, and meetings with free-mail guests are logged.
func candidateRules(t *testing.T) *rules.Set {
	t.Helper()
	def := string(rules.DefaultYAML())
	i := strings.Index(def, "  - name: customer-meeting")
	if i < 0 {
		t.Fatal("default.yaml has no customer-meeting rule")
	}
	extra := `  - name: skip-globex
    when: any(companies, .name == "Globex")
    action: skip
  - name: log-free-mail
    when: any(external, .free_mail)
    action: log
`
	return ruleSet(t, map[string]string{"rules.yaml": def[:i] + extra + def[i:]})
}

// TestRulesPlanMatchesApply: the plan of a rule change over a seeded
// window reads the calendars only and writes nothing; putting the rules in
// force and reconciling then does exactly what it said: the meetings it
// lists as newly logged appear in HubSpot, those no longer logged are
// withdrawn when upcoming and kept when past.
func TestRulesPlanMatchesApply(t *testing.T) {
	holder := rules.NewHolder(rules.Default())
	h := newHarness(t, holding(holder))
	seed(h)
	h.connectAll()
	h.eventually("write-backs done", func() bool { return linkedCopies(h) == 9 })
	h.settle()
	before := map[string]crm.Meeting{}
	for _, m := range h.hub.Meetings() {
		before[m.Properties[crm.PropKey]] = m
	}

	cand := candidateRules(t)
	snapshot := func() string {
		var s string
		h.pool.QueryRow(h.ctx, `SELECT count(*)::text || ':' || coalesce(max(updated_at)::text, '') || ':' || (SELECT count(*) FROM meeting_copies)::text
			FROM meetings WHERE workspace_id = $1`, h.ws).Scan(&s)
		return s
	}
	ledgerBefore := snapshot()
	h.hub.ResetCounters()
	p, err := h.p.PlanRules(h.ctx, h.ws, cand)
	if err != nil {
		t.Fatal(err)
	}
	if n := h.hub.TotalCalls(); n != 0 || p.CRMCalls != 0 {
		t.Errorf("the plan made %d HubSpot calls (%v), reports %d, want none", n, h.hub.Calls(), p.CRMCalls)
	}
	if got := snapshot(); got != ledgerBefore {
		t.Errorf("the plan changed the ledger: %s, was %s", got, ledgerBefore)
	}
	if p.Calendars != 3 || p.NewlyLogged != 1 || p.NoLongerLogged != 3 {
		t.Fatalf("plan: %d calendars, %d newly logged, %d no longer logged; want 3, 1, 3\n%s", p.Calendars, p.NewlyLogged, p.NoLongerLogged, p.Text())
	}
	if want := map[string]int{"create": 1, "withdraw": 2, "keep": 1}; !mapsEqual(p.Effects, want) {
		t.Errorf("effects %v, want %v", p.Effects, want)
	}
	var newly, withdrawn, kept []string
	for _, c := range p.Changes {
		for _, e := range c.Examples {
			switch {
			case c.Change == "newly_logged" && c.Rule == "log-free-mail" && slices.Equal(e.Domains, []string{"gmail.com"}) && e.WasRule == "default":
				newly = append(newly, e.Key)
			case c.Change == "no_longer_logged" && c.Rule == "skip-globex" && e.WasRule == "customer-meeting" && e.Effect == "withdraw":
				withdrawn = append(withdrawn, e.Key)
			case c.Change == "no_longer_logged" && c.Rule == "skip-globex" && e.Effect == "keep":
				kept = append(kept, e.Key)
			default:
				t.Errorf("unexpected change %s by %s: %+v", c.Change, c.Rule, e)
			}
		}
	}
	text := p.Text()
	t.Logf("the plan:\n%s\n%s", text, p.Markdown())
	for _, want := range []string{"Plan: 1 newly logged, 3 no longer logged", "+ 1 newly logged by rule log-free-mail", "- 3 no longer logged by rule skip-globex",
		"2 withdrawn (outcome CANCELED)", "1 left in the CRM as last written", "gmail.com", "globex.example"} {
		if !strings.Contains(text, want) {
			t.Errorf("text plan lacks %q:\n%s", want, text)
		}
	}
	if again, err := h.p.PlanRules(h.ctx, h.ws, cand); err != nil || again.Markdown() != p.Markdown() {
		t.Errorf("a second plan of the same state prints differently (%v):\n%s\n---\n%s", err, again.Markdown(), p.Markdown())
	}

	// Apply: the candidate in force, then a reconciliation of the window.
	holder.Store(cand)
	if _, err := h.p.RunReconcile(h.ctx, pipeline.ReconcileRequest{WorkspaceID: h.ws}); err != nil {
		t.Fatal(err)
	}
	h.settle()
	var created []string
	for _, m := range h.hub.Meetings() {
		k := m.Properties[crm.PropKey]
		old, existed := before[k]
		switch {
		case !existed:
			created = append(created, k)
		case slices.Contains(withdrawn, k):
			if m.Properties[crm.PropOutcome] != crm.OutcomeCanceled {
				t.Errorf("meeting %s planned as withdrawn has outcome %s", k[:12], m.Properties[crm.PropOutcome])
			}
		case m.Properties[crm.PropOutcome] != old.Properties[crm.PropOutcome]:
			t.Errorf("meeting %s (kept: %v) changed outcome %s → %s", k[:12], slices.Contains(kept, k), old.Properties[crm.PropOutcome], m.Properties[crm.PropOutcome])
		}
	}
	slices.Sort(created)
	slices.Sort(newly)
	if !slices.Equal(created, newly) {
		t.Errorf("meetings created by the apply %v, the plan said %v", created, newly)
	}
	if after, err := h.p.PlanRules(h.ctx, h.ws, cand); err != nil || after.NewlyLogged+after.NoLongerLogged != 0 {
		t.Errorf("a plan of the rules in force still finds changes (%v):\n%s", err, after.Text())
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
