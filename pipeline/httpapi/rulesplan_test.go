package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

var _ RulesPlanner = (*fakeService)(nil)

// PlanRules answers a plan naming the candidate's version and rules.
func (f *fakeService) PlanRules(ctx context.Context, ws string, candidate *rules.Set) (pipeline.RulesPlan, error) {
	if err := f.workspace(ws); err != nil {
		return pipeline.RulesPlan{}, err
	}
	p := pipeline.RulesPlan{WorkspaceID: ws, LiveVersion: "sha256:000000000000+builtin", CandidateVersion: candidate.Version(),
		WindowStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), WindowEnd: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		Calendars: 1, CalendarCalls: 1, EventCopies: 2, Meetings: 2, NewlyLogged: 1, Unchanged: 1, Effects: map[string]int{"create": 1}}
	p.Changes = []pipeline.RuleChange{{Change: "newly_logged", Rule: candidate.Rules()[0].Name, Meetings: 1, Effects: map[string]int{"create": 1},
		Examples: []pipeline.PlanExample{{Key: strings.Repeat("ab", 32), Start: p.WindowStart.Add(time.Hour), Domains: []string{"acme.example"}, WasRule: "default", Effect: "create"}}}}
	return p, nil
}

func planBody(files map[string]string) string {
	b, _ := json.Marshal(map[string]any{"files": files})
	return string(b)
}

// TestRulesPlanEndpoint: the candidate rule files travel in the body; a
// mistake in them is a 400 with its file:line:col; the plan answers as
// JSON, text or markdown.
func TestRulesPlanEndpoint(t *testing.T) {
	e := newEnv(t)
	good := planBody(map[string]string{"20-policy.yaml": "version: 1\nrules:\n  - name: vip\n    when: any(external, .company != nil)\n    action: log\n"})
	path := "/admin/workspaces/ws-1/rules/plan"

	w := e.admin(http.MethodPost, path, good)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	p := decodeJSON[pipeline.RulesPlan](t, w.Body.String())
	if p.NewlyLogged != 1 || len(p.Changes) != 1 || p.Changes[0].Rule != "vip" || !strings.HasPrefix(p.CandidateVersion, "sha256:") {
		t.Errorf("plan %+v", p)
	}
	w = e.admin(http.MethodPost, path+"?format=markdown", good)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "#### Newly logged by rule `vip`: 1") || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/markdown") {
		t.Errorf("markdown: %d %s\n%s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = e.admin(http.MethodPost, path+"?format=text", good)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "+ 1 newly logged by rule vip") {
		t.Errorf("text: %d\n%s", w.Code, w.Body)
	}

	bad := planBody(map[string]string{"20-policy.yaml": "version: 1\ncrm_properties:\n  companies: [lifecyclestage]\nrules:\n  - name: lead\n    when: any(companies, .properties.lifecyclestag == \"lead\")\n    action: skip\n"})
	w = e.admin(http.MethodPost, path, bad)
	checkError(t, w.Code, w.Body.String(), http.StatusBadRequest, "invalid_rules")
	if !strings.Contains(w.Body.String(), `20-policy.yaml:6:`) || !strings.Contains(w.Body.String(), `did you mean \"lifecyclestage\"`) {
		t.Errorf("rule mistake not positioned: %s", w.Body)
	}
	for _, c := range []struct {
		target, body string
		status       int
		code         string
	}{
		{path, `{"files": {}}`, http.StatusBadRequest, "invalid"},
		{path, `{"dir": "/etc"}`, http.StatusBadRequest, "bad_request"},
		{path, planBody(map[string]string{"../x.yaml": "version: 1\n"}), http.StatusBadRequest, "invalid_rules"},
		{path + "?format=html", good, http.StatusBadRequest, "invalid"},
		{"/admin/workspaces/nope/rules/plan", good, http.StatusNotFound, "not_found"},
		{path, `{"files": {"a.yaml": "` + strings.Repeat("x", 8<<10) + `"}}`, http.StatusRequestEntityTooLarge, "too_large"},
	} {
		w := e.admin(http.MethodPost, c.target, c.body)
		checkError(t, w.Code, w.Body.String(), c.status, c.code)
	}
	if w := e.do(http.MethodPost, path, good); w.Code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", w.Code)
	}
}
