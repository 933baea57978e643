package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
	"github.com/rapportsync/rapport/rules"
)

// This file is `rapport rules plan`: a dry run of the window with a
// candidate rule set beside the live one. Every calendar of the workspace
// is listed in full (calendar reads only); each event copy is decided with
// both sets and planned against the ledger as a reconciliation would
// (plan.DecideEvent), in memory; nothing is written to the ledger, the
// queue or the CRM. Its outcome says, per rule, which meetings the
// candidate would newly log, which it would no longer log and what would
// then happen to them in the CRM.

// RulesPlan is what a candidate rule set would change against the live
// one over the window. Its lists are sorted, so that two plans of the same
// state print alike.
type RulesPlan struct {
	WorkspaceID      string    `json:"workspace_id"`
	LiveVersion      string    `json:"live_version"`
	CandidateVersion string    `json:"candidate_version"`
	WindowStart      time.Time `json:"window_start"`
	WindowEnd        time.Time `json:"window_end"`
	// Calendars were listed with CalendarCalls list calls; EventCopies
	// were decided, of Meetings meetings.
	Calendars     int `json:"calendars"`
	CalendarCalls int `json:"calendar_calls"`
	EventCopies   int `json:"event_copies"`
	Meetings      int `json:"meetings"`
	// CRMCalls are CRM reads the plan needed: a listing of the companies
	// when the candidate reads company properties the index does not hold
	// yet, and contact reads for contact properties the cache lacks.
	CRMCalls int `json:"crm_calls"`
	// NewlyLogged, NoLongerLogged and Unchanged count meetings;
	// UnchangedLogged are the unchanged ones both sets log.
	NewlyLogged     int `json:"newly_logged"`
	NoLongerLogged  int `json:"no_longer_logged"`
	Unchanged       int `json:"unchanged"`
	UnchangedLogged int `json:"unchanged_logged"`
	// Effects counts what the changed meetings become in the CRM
	// (plan.Effect: create, restore, withdraw, keep, …).
	Effects map[string]int `json:"effects"`
	// Changes group the changed meetings by change and by the candidate's
	// deciding rule.
	Changes []RuleChange `json:"changes"`
}

// RuleChange is the meetings one rule of the candidate changes one way.
type RuleChange struct {
	// Change is plan.NewlyLogged or plan.NoLongerLogged.
	Change   string         `json:"change"`
	Rule     string         `json:"rule"`
	Meetings int            `json:"meetings"`
	Effects  map[string]int `json:"effects"`
	// Examples are the first few meetings, by start.
	Examples []PlanExample `json:"examples"`
}

// PlanExample is one changed meeting: identifiers, time and the external
// domains, never a title or an address.
type PlanExample struct {
	Key     string    `json:"meeting_key"`
	Start   time.Time `json:"start"`
	Domains []string  `json:"domains"`
	// WasRule is the live rules' deciding rule.
	WasRule string `json:"was_rule"`
	Effect  string `json:"effect"`
}

// planExamples is how many examples a plan shows per rule and change.
const planExamples = 5

// plannedMeeting is one meeting of a plan as its copies are decided.
type plannedMeeting struct {
	key     string
	start   time.Time
	domains []string
	fates   [2]plan.Fate
	// rule is, per set, the deciding rule of the copy that explains the
	// verdict: the first copy that logs, else the organizer's, else the
	// first.
	rule    [2]string
	ruleLog [2]bool
	ruleOrg [2]bool
}

// planSet is one rule set of a plan with what it decides with.
type planSet struct {
	rs   *rules.Set
	view indexView
}

// PlanRules runs a dry run of the window of a workspace with a candidate
// rule set and compares it with the live rules (see RulesPlan).
func (p *Pipeline) PlanRules(ctx context.Context, ws string, candidate *rules.Set) (RulesPlan, error) {
	if candidate == nil {
		return RulesPlan{}, fmt.Errorf("no candidate rules: %w", ErrInvalid)
	}
	if _, err := p.ledger.Workspace(ctx, ws); err != nil {
		return RulesPlan{}, notFound(err)
	}
	live := p.rules()
	now, window := p.now(), p.window()
	out := RulesPlan{WorkspaceID: ws, LiveVersion: live.Version(), CandidateVersion: candidate.Version(),
		WindowStart: window.Min.UTC(), WindowEnd: window.Max.UTC(), Effects: map[string]int{}, Changes: []RuleChange{}}
	var conn ledger.CRMConn
	if c, err := p.ledger.CRMConnection(ctx, ws); err == nil {
		conn = c
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return out, err
	}
	sets := [2]planSet{{rs: live}, {rs: candidate}}
	for i := range sets {
		v, calls, err := p.planIndex(ctx, ws, sets[i].rs, conn)
		if err != nil {
			return out, err
		}
		sets[i].view, out.CRMCalls = v, out.CRMCalls+calls
	}
	cals, err := p.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{WorkspaceID: ws})
	if err != nil {
		return out, err
	}
	meetings := map[string]*plannedMeeting{}
	var order []string
	for _, id := range cals {
		cal, err := p.ledger.Calendar(ctx, id)
		if err != nil {
			return out, err
		}
		src, err := p.source(ctx, cal)
		if err != nil {
			return out, err
		}
		req := calendar.ListRequest{CalendarID: cal.CalendarID, TimeMin: window.Min, TimeMax: window.Max}
		for {
			page, err := src.List(ctx, req)
			p.metrics.calendarOps.WithLabelValues(cal.Provider, "list", classLabel(err)).Inc()
			out.CalendarCalls++
			if err != nil {
				return out, fmt.Errorf("list calendar %s: %w", cal.ID, err)
			}
			calls, err := p.planPage(ctx, &sets, conn, cal, page.Events, window, now, meetings, &order)
			out.CRMCalls += calls
			if err != nil {
				return out, err
			}
			out.EventCopies += len(page.Events)
			if page.NextPageToken == "" {
				break
			}
			req.PageToken = page.NextPageToken
		}
		out.Calendars++
	}
	out.Meetings = len(order)
	summarise(&out, meetings, order)
	return out, nil
}

// planIndex is the company index a rule set decides with in a plan: the
// stored one, or — when the set reads company properties the index does
// not hold yet — the companies listed from the CRM with them, in memory.
// It returns the CRM calls spent.
func (p *Pipeline) planIndex(ctx context.Context, ws string, rs *rules.Set, conn ledger.CRMConn) (indexView, int, error) {
	names := []string(nil)
	if rs.ReadsCompanyProperties() {
		names = declaredCompanyProps(rs)
	}
	st, err := p.ledger.IndexState(ctx, ws)
	if err != nil {
		return indexView{}, 0, err
	}
	covered := true
	for _, n := range names {
		covered = covered && slices.Contains(st.Properties, n)
	}
	if covered || conn.ID == "" {
		v, err := loadIndexView(ctx, p.ledger, ws, rs.FreeMail(), names)
		return v, 0, err
	}
	sink, err := p.sink(ctx, conn)
	if err != nil {
		return indexView{}, 0, err
	}
	ix := matching.NewIndex(rs.FreeMail())
	cv := &companyValues{names: names, vals: map[string][]string{}}
	calls, after := 0, ""
	for {
		page, err := sink.Companies(ctx, after, names)
		p.countCRM(conn.Provider, "companies.list", err)
		calls++
		if err != nil {
			return indexView{}, calls, fmt.Errorf("list companies with %v: %w", names, err)
		}
		for _, co := range page.Companies {
			ix.Upsert(crm.Company{ID: co.ID, Name: co.Name, Domains: matching.NormalizeCompanyDomains(co.Domains...)})
			vs := make([]string, len(names))
			set := false
			for i, n := range names {
				vs[i] = co.Properties[n]
				set = set || vs[i] != ""
			}
			if set {
				cv.vals[co.ID] = vs
			}
		}
		if after = page.Next; after == "" {
			return indexView{ix: ix, props: cv}, calls, nil
		}
	}
}

// planPage decides one listed page with both rule sets, in memory.
func (p *Pipeline) planPage(ctx context.Context, sets *[2]planSet, conn ledger.CRMConn, cal ledger.Calendar, events []calendar.Event,
	window plan.Window, now time.Time, meetings map[string]*plannedMeeting, order *[]string) (int, error) {
	ws := cal.WorkspaceID
	keys := make([]string, len(events))
	var natural []string
	for i := range events {
		ev := &events[i]
		if ev.ICalUID == "" || ev.OutOfWindow {
			continue
		}
		keys[i] = plan.MeetingKey(ws, ev.ICalUID, ev.OriginalStart)
		natural = append(natural, keys[i])
	}
	aliases, err := p.ledger.Aliases(ctx, ws, natural)
	if err != nil {
		return 0, err
	}
	var fresh []string
	for i, k := range keys {
		if a, ok := aliases[k]; ok {
			keys[i] = a
		}
		if keys[i] != "" && meetings[keys[i]] == nil {
			fresh = append(fresh, keys[i])
		}
	}
	slices.Sort(fresh)
	fresh = slices.Compact(fresh)
	view, err := p.ledger.ReadForPlan(ctx, ws, fresh)
	if err != nil {
		return 0, err
	}
	for _, k := range fresh {
		row, ok := view.Meetings[k]
		if !ok {
			row = plan.Meeting{Key: k, State: plan.Skipped, Action: plan.ActionSkip}
		}
		m := &plannedMeeting{key: k}
		for j := range m.fates {
			m.fates[j] = plan.NewFate(row, slices.Clone(view.Copies[row.ID]))
		}
		meetings[k] = m
		*order = append(*order, k)
	}

	// Contacts, for each set that reads their properties.
	calls := 0
	var contacts [2]decidedContacts
	for j, s := range sets {
		if conn.ID == "" || !s.rs.ReadsContactProperties() {
			continue
		}
		sc := &pageContext{cal: cal, rules: s.rs, index: s.view.ix}
		if contacts[j], err = p.resolveForDecision(ctx, conn, contactAddresses(sc, events), contactPropsOf(sc)); err != nil {
			return calls, err
		}
		calls += contacts[j].reads
	}

	for i := range events {
		key := keys[i]
		if key == "" {
			continue
		}
		ev := &events[i]
		m := meetings[key]
		if m.start.IsZero() || ev.Start.Before(m.start) {
			m.start = ev.Start
		}
		for j, s := range sets {
			f := &m.fates[j]
			d := s.rs.Decide(rules.Input{
				Event: *ev, Owner: cal.Owner, Workspace: rules.Workspace{ID: ws, Name: cal.WorkspaceName},
				Internal: cal.Internal, Index: s.view.ix, Logged: f.Meeting.Logged(),
				CompanyProperties: s.view.lookup(), Contacts: contacts[j].ids, ContactProperties: contacts[j].props,
			})
			ep := plan.DecideEvent(plan.EventInput{
				Event: ev, Key: key, Workspace: ws, CalendarID: cal.ID, Owner: cal.Owner, Meeting: f.Meeting, Copies: f.Copies,
				Decision: d, RulesVersion: s.rs.Version(), Window: window, CRMConnected: conn.ID != "",
				Ownership: plan.Ownership{Ownership: s.rs.Ownership()}, Now: now,
			})
			f.Add(ep)
			if ep.Skip {
				continue
			}
			m.explain(j, d, ep.Copy.Organizer)
			if j == 1 && m.domains == nil {
				m.domains = externalDomains(d)
			}
		}
	}
	return calls, nil
}

// explain keeps the rule that explains a set's verdict on the meeting.
func (m *plannedMeeting) explain(j int, d rules.Decision, organizer bool) {
	logs := d.Action == rules.ActionLog
	switch {
	case m.rule[j] == "":
	case logs && !m.ruleLog[j]:
	case !m.ruleLog[j] && organizer && !m.ruleOrg[j]:
	default:
		return
	}
	m.rule[j], m.ruleLog[j], m.ruleOrg[j] = d.Rule, logs, organizer
}

// externalDomains lists a decision's external attendee domains, sorted.
func externalDomains(d rules.Decision) []string {
	out := []string{}
	for _, a := range d.Attendees {
		if a.External && a.Domain != "" {
			out = append(out, a.Domain)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// summarise counts the meetings and groups the changed ones by rule.
func summarise(out *RulesPlan, meetings map[string]*plannedMeeting, order []string) {
	type group struct {
		change plan.Change
		rule   string
	}
	groups := map[group]*RuleChange{}
	for _, k := range order {
		m := meetings[k]
		live, cand := &m.fates[0], &m.fates[1]
		change := plan.Compare(live, cand)
		if change == plan.Unchanged {
			out.Unchanged++
			if cand.Logs() {
				out.UnchangedLogged++
			}
			continue
		}
		effect := string(cand.Effect())
		if change == plan.NewlyLogged {
			out.NewlyLogged++
		} else {
			out.NoLongerLogged++
		}
		out.Effects[effect]++
		g := group{change, m.rule[1]}
		rc := groups[g]
		if rc == nil {
			rc = &RuleChange{Change: string(change), Rule: m.rule[1], Effects: map[string]int{}}
			groups[g] = rc
		}
		rc.Meetings++
		rc.Effects[effect]++
		rc.Examples = append(rc.Examples, PlanExample{Key: m.key, Start: m.start.UTC(), Domains: m.domains, WasRule: m.rule[0], Effect: effect})
	}
	for _, rc := range groups {
		slices.SortFunc(rc.Examples, func(a, b PlanExample) int {
			return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Key, b.Key))
		})
		if len(rc.Examples) > planExamples {
			rc.Examples = rc.Examples[:planExamples]
		}
		for i := range rc.Examples {
			if rc.Examples[i].Domains == nil {
				rc.Examples[i].Domains = []string{}
			}
		}
		out.Changes = append(out.Changes, *rc)
	}
	slices.SortFunc(out.Changes, func(a, b RuleChange) int {
		// Newly logged first, then no longer logged; by rule within.
		return cmp.Or(cmp.Compare(a.Change, b.Change), cmp.Compare(a.Rule, b.Rule))
	})
}
