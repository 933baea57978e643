package pipeline

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/rules"
)

// This file is the operator console's side of the pipeline: what a page
// reads beyond the admin API (workspaces, the meeting search, a meeting's
// write history, the rules in force) and the rules' dry run.

// The console's views of the ledger.
type (
	// MeetingQuery narrows a meeting search.
	MeetingQuery = ledger.MeetingQuery
	// FoundMeeting is one meeting of a search.
	FoundMeeting = ledger.FoundMeeting
	// MeetingEvent is one write of a meeting to the CRM.
	MeetingEvent = ledger.MeetingEvent
	// CompanyMatch is a company a meeting's decision matched.
	CompanyMatch = ledger.CompanyMatch
)

// Console is the pipeline as the operator console sees it: every admin
// operation, plus the rules' holder for what the rules page shows.
type Console struct {
	*Pipeline
	// Rules holds the rule set in force; nil shows the pipeline's set
	// without load times.
	Rules *rules.Holder
}

// Console returns the pipeline with the rules' holder, for the console.
func (p *Pipeline) Console(h *rules.Holder) *Console { return &Console{Pipeline: p, Rules: h} }

// Workspaces lists every workspace, by name.
func (p *Pipeline) Workspaces(ctx context.Context) ([]Workspace, error) {
	return p.ledger.Workspaces(ctx)
}

// SearchMeetings lists a workspace's decided meetings matching q, the most
// recently recorded first.
func (p *Pipeline) SearchMeetings(ctx context.Context, ws string, q MeetingQuery, pg Page) ([]FoundMeeting, string, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return nil, "", err
	}
	after, err := decodeCursor(pg.After)
	if err != nil {
		return nil, "", err
	}
	q.Domain = strings.ToLower(strings.TrimSpace(q.Domain))
	q.Company = strings.TrimSpace(q.Company)
	limit := clampLimit(pg.Limit)
	out, ids, err := p.ledger.SearchMeetings(ctx, ws, q, after, limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(ids[limit-1])
	}
	if out == nil {
		out = []FoundMeeting{}
	}
	return out, next, nil
}

// MeetingHistory returns a meeting's writes to the CRM, oldest first, and
// when the meeting starts.
func (p *Pipeline) MeetingHistory(ctx context.Context, ws, key string) ([]MeetingEvent, *time.Time, error) {
	evs, starts, err := p.ledger.MeetingHistory(ctx, ws, key)
	if evs == nil {
		evs = []MeetingEvent{}
	}
	return evs, starts, notFound(err)
}

// ReconcileRequestOf returns what a reconciliation run was asked to do:
// its workspace, calendar and whether it was a dry run.
func (p *Pipeline) ReconcileRequestOf(ctx context.Context, id string) (ReconcileRequest, error) {
	r, err := p.ledger.Run(ctx, id)
	if err != nil {
		return ReconcileRequest{}, notFound(err)
	}
	return ReconcileRequest{WorkspaceID: r.WorkspaceID, CalendarID: r.CalendarID, DryRun: r.DryRun}, nil
}

// RuleSample is a meeting made up to try the rules on.
type RuleSample struct {
	// Organizer is the organizer's address; Owner the address of the
	// person whose calendar the copy is on (default: the organizer).
	Organizer string
	Owner     string
	// Attendees are the attendees' addresses; the organizer and owner are
	// added when missing.
	Attendees  []string
	Title      string
	Start, End time.Time
}

// TryRules decides a sample meeting with the rules in force, the
// workspace's internal domains and its company index, as a sync would,
// and writes nothing. It returns the decision and its one-sentence
// explanation.
func (p *Pipeline) TryRules(ctx context.Context, ws string, s RuleSample) (rules.Decision, string, error) {
	w, err := p.workspace(ctx, ws)
	if err != nil {
		return rules.Decision{}, "", err
	}
	org, err := matching.ParseAddress(s.Organizer)
	if err != nil {
		return rules.Decision{}, "", fmt.Errorf("organizer: %v: %w", err, ErrInvalid)
	}
	owner := org
	if strings.TrimSpace(s.Owner) != "" {
		if owner, err = matching.ParseAddress(s.Owner); err != nil {
			return rules.Decision{}, "", fmt.Errorf("owner: %v: %w", err, ErrInvalid)
		}
	}
	if s.Start.IsZero() || !s.End.After(s.Start) {
		return rules.Decision{}, "", fmt.Errorf("the meeting must end after it starts: %w", ErrInvalid)
	}
	ev := calendar.Event{
		ID: "rapport-console-sample", ICalUID: "rapport-console-sample", Status: calendar.StatusConfirmed,
		Title: s.Title, Start: s.Start.UTC(), End: s.End.UTC(), Visibility: "default", EventType: "default",
		Organizer: calendar.Attendee{Email: org.Email, Organizer: true, Self: org.Email == owner.Email, Response: calendar.ResponseAccepted},
	}
	seen := map[string]bool{}
	add := func(a matching.Address) {
		if seen[a.Email] {
			return
		}
		seen[a.Email] = true
		ev.Attendees = append(ev.Attendees, calendar.Attendee{Email: a.Email, Organizer: a.Email == org.Email,
			Self: a.Email == owner.Email, Response: calendar.ResponseAccepted})
	}
	add(org)
	for i, raw := range s.Attendees {
		a, err := matching.ParseAddress(raw)
		if err != nil {
			return rules.Decision{}, "", fmt.Errorf("attendee %d: %v: %w", i+1, err, ErrInvalid)
		}
		add(a)
	}
	add(owner)
	rs := p.rules()
	view, err := p.indexes.get(ctx, w.ID, rs, p.now())
	if err != nil {
		return rules.Decision{}, "", err
	}
	d := rs.Decide(rules.Input{
		Event: ev, Owner: owner.Email, Workspace: rules.Workspace{ID: w.ID, Name: w.Name},
		Internal: w.InternalDomains, Index: view.ix, CompanyProperties: view.lookup(),
	})
	return d, rules.Explain(d), nil
}

// RulesStatus is the rule set in force, as the console shows it.
type RulesStatus struct {
	Version string
	// LoadedAt is when the set was put in force (zero when unknown).
	LoadedAt time.Time
	// LastError is the last refused reload's error, ErrorAt its time.
	LastError string
	ErrorAt   time.Time
	Rules     []rules.Rule
	Default   rules.Action
}

// RulesStatus returns the rule set in force with its load time and the
// last refused reload.
func (c *Console) RulesStatus() RulesStatus {
	rs := c.rules()
	st := RulesStatus{Version: rs.Version(), Rules: rs.Rules(), Default: rs.DefaultAction()}
	if c.Rules != nil {
		h := c.Rules.Status()
		st.LoadedAt, st.LastError, st.ErrorAt = h.LoadedAt, h.LastError, h.ErrorAt
	}
	return st
}

// LiveEvent is a meeting's event as one of its calendars has it now, for
// the console's meeting page: fetched on request, never stored or logged.
type LiveEvent struct {
	// CalendarID is the provider's id of the calendar it was read from.
	CalendarID string
	Title      string
	Start, End time.Time
	Organizer  string
	Attendees  []string
}

// LiveEvent fetches one copy of a meeting from its calendar: the
// organizer's when Rapport syncs it. ErrNotFound: no copy to read (all
// cancelled, or their calendars do not sync); ErrUnavailable: the provider
// did not answer.
func (p *Pipeline) LiveEvent(ctx context.Context, ws, key string) (LiveEvent, error) {
	calID, eventID, err := p.ledger.LiveCopyOf(ctx, ws, key)
	if err != nil {
		return LiveEvent{}, notFound(err)
	}
	cal, err := p.ledger.Calendar(ctx, calID)
	if err != nil {
		return LiveEvent{}, notFound(err)
	}
	src, err := p.source(ctx, cal)
	if err != nil {
		return LiveEvent{}, fmt.Errorf("read the event from %s: %s: %w", cal.Provider, scrub(err.Error()), ErrUnavailable)
	}
	pg, err := src.List(ctx, calendar.ListRequest{CalendarID: cal.CalendarID, EventIDs: []string{eventID}})
	if err != nil {
		return LiveEvent{}, fmt.Errorf("read the event from %s: %s: %w", cal.Provider, scrub(err.Error()), ErrUnavailable)
	}
	for _, ev := range pg.Events {
		if ev.ID != eventID || ev.Status == calendar.StatusCancelled {
			continue
		}
		out := LiveEvent{CalendarID: cal.CalendarID, Title: ev.Title, Start: ev.Start, End: ev.End, Organizer: ev.Organizer.Email}
		for _, a := range ev.Attendees {
			out.Attendees = append(out.Attendees, a.Email)
		}
		return out, nil
	}
	return LiveEvent{}, fmt.Errorf("the event is no longer on calendar %s: %w", cal.CalendarID, ErrNotFound)
}

// Providers lists the registered calendar providers and CRMs by name.
func (c *Console) Providers() (calendars, crms []string) {
	for _, n := range c.cfg.Providers.Names() {
		if _, ok := c.cfg.Providers.CRM(n); ok {
			crms = append(crms, n)
		} else {
			calendars = append(calendars, n)
		}
	}
	return calendars, crms
}

// CRMTitle is the name people know the CRM by, from its adapter ("the
// CRM" when it does not say).
func (c *Console) CRMTitle() string {
	for _, n := range c.cfg.Providers.CRMNames() {
		if p, ok := c.cfg.Providers.CRM(n); ok {
			if d, ok := p.(crm.Describer); ok {
				return d.Title()
			}
		}
	}
	return "the CRM"
}

// MeetingURL links a CRM meeting record in the CRM's own UI, when its
// adapter knows how; "" otherwise.
func (c *Console) MeetingURL(provider, account, meetingID string) string {
	p, ok := c.cfg.Providers.CRM(provider)
	if !ok {
		return ""
	}
	d, ok := p.(crm.Describer)
	if !ok {
		return ""
	}
	return d.MeetingURL(account, meetingID)
}
