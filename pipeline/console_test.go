package pipeline_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// TestConsoleReads syncs the fixture, then searches the ledger the way the
// console does, reads a meeting's write history after an update, and
// tries the rules on samples without writing anything.
func TestConsoleReads(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.connectAll()
	h.eventually("everything logged", func() bool { return h.ledgerStates()["logged"] == f.logged })

	search := func(q pipeline.MeetingQuery) []pipeline.FoundMeeting {
		t.Helper()
		var all []pipeline.FoundMeeting
		pg := pipeline.Page{Limit: 2}
		for {
			items, next, err := h.p.SearchMeetings(h.ctx, h.ws, q, pg)
			if err != nil {
				t.Fatalf("search %+v: %v", q, err)
			}
			all = append(all, items...)
			if next == "" {
				return all
			}
			pg.After = next
		}
	}
	if got := search(pipeline.MeetingQuery{State: "logged"}); len(got) != f.logged {
		t.Errorf("logged meetings found: %d, want %d", len(got), f.logged)
	}
	acme := search(pipeline.MeetingQuery{Company: "acme"}) // by name, any case
	// Renewal, Acme UK and the QBR match Acme; the private, all-day,
	// declined and out-of-office events were skipped before matching
	// companies mattered, but their traces name Acme too.
	if len(acme) < 3 {
		t.Fatalf("meetings with Acme: %d, want at least 3", len(acme))
	}
	for _, m := range acme {
		if !slices.ContainsFunc(m.Companies, func(c pipeline.CompanyMatch) bool { return c.ID == f.acme }) {
			t.Errorf("meeting %s found for Acme matched %+v", m.Key, m.Companies)
		}
	}
	byID := search(pipeline.MeetingQuery{Company: f.acme, State: "logged"})
	if len(byID) != 3 {
		t.Errorf("logged meetings with company id %s: %d, want 3 (renewal, Acme UK, QBR)", f.acme, len(byID))
	}
	if got := search(pipeline.MeetingQuery{Domain: "GLOBEX.example", Rule: "customer-meeting"}); len(got) != 3 {
		t.Errorf("weekly Globex meetings by domain and rule: %d, want 3", len(got))
	}
	if got := search(pipeline.MeetingQuery{Domain: "gmail.com", State: "skipped"}); len(got) != 1 {
		t.Errorf("free-mail coffee by domain: %d, want 1", len(got))
	}
	// The renewal starts eight days after base, an hour in.
	day := f.base.Add(8 * 24 * time.Hour).Truncate(24 * time.Hour)
	inDay := search(pipeline.MeetingQuery{From: day, To: day.Add(24 * time.Hour), State: "logged"})
	if len(inDay) != 1 || inDay[0].StartsAt == nil || !inDay[0].StartsAt.Equal(f.base.Add(8*24*time.Hour+time.Hour)) {
		t.Errorf("logged meetings on %s: %+v, want the renewal", day.Format("2006-01-02"), inDay)
	}
	if got := search(pipeline.MeetingQuery{Company: "100%_"}); len(got) != 0 {
		t.Errorf("a LIKE pattern in the company matched %d meetings", len(got))
	}
	if _, _, err := h.p.SearchMeetings(h.ctx, "00000000-0000-0000-0000-000000000000", pipeline.MeetingQuery{}, pipeline.Page{}); !errors.Is(err, pipeline.ErrNotFound) {
		t.Errorf("search of an unknown workspace: %v", err)
	}

	// History: created, then updated after a rename.
	renewal := search(pipeline.MeetingQuery{From: day, To: day.Add(24 * time.Hour), State: "logged"})[0]
	if _, err := h.google.Rename(rep, f.renewal, "Acme renewal (v2)"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.RequestSync(h.ctx, h.ws, calendarOf(t, h, rep)); err != nil {
		t.Fatal(err)
	}
	var hist []pipeline.MeetingEvent
	h.eventually("the rename written", func() bool {
		var err error
		hist, _, err = h.p.MeetingHistory(h.ctx, h.ws, renewal.Key)
		return err == nil && len(hist) >= 2
	})
	if hist[0].Kind != "created" || hist[1].Kind != "updated" || hist[0].CRMMeetingID != renewal.CRMMeetingID || hist[1].At.Before(hist[0].At) {
		t.Errorf("history = %+v, want created then updated of %s", hist, renewal.CRMMeetingID)
	}
	if _, _, err := h.p.MeetingHistory(h.ctx, "00000000-0000-0000-0000-000000000000", renewal.Key); !errors.Is(err, pipeline.ErrNotFound) {
		t.Errorf("history of another workspace's meeting: %v", err)
	}

	// The event itself, read live from its calendar.
	ev, err := h.p.LiveEvent(h.ctx, h.ws, renewal.Key)
	if err != nil || ev.Title != "Acme renewal (v2)" || !slices.ContainsFunc(ev.Attendees, func(a string) bool { return strings.EqualFold(a, "cfo@acme.example") }) || ev.CalendarID != rep {
		t.Errorf("live event %+v, %v", ev, err)
	}
	if _, err := h.p.LiveEvent(h.ctx, "00000000-0000-0000-0000-000000000000", renewal.Key); !errors.Is(err, pipeline.ErrNotFound) {
		t.Errorf("live event of another workspace's meeting: %v", err)
	}

	// Trying the rules writes nothing and explains.
	var before int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meetings`).Scan(&before)
	start := time.Now().Add(time.Hour)
	d, expl, err := h.p.TryRules(h.ctx, h.ws, pipeline.RuleSample{Organizer: rep, Attendees: []string{"cfo@acme.example", "pal@gmail.com"},
		Title: "Renewal", Start: start, End: start.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != rules.ActionLog || d.Rule != "customer-meeting" || !strings.Contains(expl, "acme.example matched Acme") {
		t.Errorf("customer sample: %s by %s: %q", d.Action, d.Rule, expl)
	}
	d, expl, err = h.p.TryRules(h.ctx, h.ws, pipeline.RuleSample{Organizer: rep, Attendees: []string{"x@rock3-ventures.example"},
		Start: start, End: start.Add(time.Hour)})
	if err != nil || d.Action != rules.ActionSkip || !strings.Contains(expl, "rock3-ventures.example is external but matches no HubSpot company") {
		t.Errorf("unknown-domain sample: %v %s: %q", err, d.Action, expl)
	}
	for name, smp := range map[string]pipeline.RuleSample{
		"bad organizer": {Organizer: "nobody", Start: start, End: start.Add(time.Hour)},
		"bad attendee":  {Organizer: rep, Attendees: []string{"not an address"}, Start: start, End: start.Add(time.Hour)},
		"ends first":    {Organizer: rep, Start: start, End: start.Add(-time.Hour)},
	} {
		if _, _, err := h.p.TryRules(h.ctx, h.ws, smp); !errors.Is(err, pipeline.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	var after int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meetings`).Scan(&after)
	if after != before {
		t.Errorf("trying the rules changed the ledger: %d meetings, then %d", before, after)
	}

	ws, err := h.p.Workspaces(h.ctx)
	if err != nil || !slices.ContainsFunc(ws, func(w pipeline.Workspace) bool { return w.ID == h.ws }) {
		t.Errorf("workspaces %+v, %v: want %s among them", ws, err, h.ws)
	}
	st := h.p.Console(rules.NewHolder(rules.Default())).RulesStatus()
	if st.Version != rules.Default().Version() || st.LoadedAt.IsZero() || len(st.Rules) == 0 {
		t.Errorf("rules status %+v", st)
	}
}

// calendarOf returns the calendar row id of an employee's calendar.
func calendarOf(t *testing.T, h *harness, email string) string {
	t.Helper()
	var id string
	if err := h.pool.QueryRow(h.ctx, `SELECT id FROM calendars WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
