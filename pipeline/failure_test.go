package pipeline_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/pipeline"
)

// assertExactlyOnce checks that HubSpot holds each logged meeting once.
func assertExactlyOnce(h *harness, f fixture) {
	h.t.Helper()
	want := map[string]int{"Acme renewal": 1, "Globex weekly": 3, "Initech demo": 1, "Acme UK": 1, "Joint Acme QBR": 1}
	got := map[string]int{}
	keys := map[string]bool{}
	for _, m := range h.hub.Meetings() {
		got[m.Properties[crm.PropTitle]]++
		k := m.Properties[crm.PropKey]
		if keys[k] {
			h.t.Errorf("meeting key %s written twice", k)
		}
		keys[k] = true
	}
	for title, n := range want {
		if got[title] != n {
			h.t.Errorf("%d meetings titled %q, want %d (all: %v)", got[title], title, n, got)
		}
	}
	if len(got) != len(want) {
		h.t.Errorf("HubSpot holds %v, want %v", got, want)
	}
	if st := h.ledgerStates(); st["logged"] != f.logged {
		h.t.Errorf("ledger states %v, want %d logged", st, f.logged)
	}
}

// TestCrashMidBatch: the create reaches HubSpot but its answer is lost and
// the worker dies; a new process finds the meetings by key and adopts them.
func TestCrashMidBatch(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.hub.FailNextOn("meetings.batch.create", 1, crmtest.LoseResponse)
	h.startWorker()
	h.connectHubSpot()
	for _, c := range []string{rep, ae, cs} {
		h.connectGoogle(c, "tok-"+c)
	}
	h.eventually("the batch create was sent", func() bool { return h.hub.Calls()["meetings.batch.create"] >= 1 })
	h.stopWorker() // the process dies with the outcome unknown
	var creating int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meetings WHERE workspace_id = $1 AND state = 'creating'`, h.ws).Scan(&creating)
	if creating == 0 {
		t.Fatal("no meeting left in state creating after the lost answer")
	}
	if n := len(h.hub.Meetings()); n < creating {
		t.Fatalf("HubSpot holds %d meetings after the lost answer, want at least the %d in flight (the write went through)", n, creating)
	}

	// A new process: a fresh pipeline and worker on the same database and
	// queue.
	h.p = h.restartPipeline()
	h.startWorker()
	h.settle()
	assertExactlyOnce(h, f)
	if h.hub.Calls()["meetings.search"] == 0 {
		t.Error("no recovery search: the retry must look for the lost create before writing")
	}
}

func TestDuplicateAndOutOfOrderNotifications(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.connectAll()
	renewal := h.one("Acme renewal")
	newStart := f.base.Add(8*24*time.Hour + 5*time.Hour)
	if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.google.Notify(rep); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.eventually("moved", func() bool {
		m, _ := h.hub.Meeting(renewal.ID)
		return m.Properties[crm.PropStart] == iso(newStart)
	})
	h.settle()
	// An old notification arriving after everything else changes nothing.
	h.hub.ResetCounters()
	if err := h.google.Notify(rep); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if n := h.hub.TotalCalls(); n != 0 {
		t.Errorf("a stale notification cost %d HubSpot calls", n)
	}
	assertExactlyOnce(h, f)
}

func TestReconciliationRecoversDroppedNotification(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.connectAll()
	renewal := h.one("Acme renewal")
	uk := h.one("Acme UK")
	newStart := f.base.Add(8*24*time.Hour + 6*time.Hour)
	if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
		t.Fatal(err) // no notification: it is lost
	}
	h.hub.DeleteMeeting(uk.ID) // a person deletes a meeting in HubSpot
	// Someone edits a calendar-owned field in HubSpot: drift.
	qbr := h.one("Joint Acme QBR")
	h.hub.SetMeetingProperty(qbr.ID, crm.PropTitle, "edited in HubSpot")

	dry, err := h.p.RunReconcile(h.ctx, pipeline.ReconcileRequest{WorkspaceID: h.ws, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Status != "done" || dry.Updated != 2 {
		t.Errorf("dry run report %+v, want done with 2 updates", dry)
	}
	if m, _ := h.hub.Meeting(renewal.ID); m.Properties[crm.PropStart] == iso(newStart) {
		t.Fatal("a dry run changed HubSpot")
	}

	rep, err := h.p.RunReconcile(h.ctx, pipeline.ReconcileRequest{WorkspaceID: h.ws})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != "done" || rep.Updated != 2 || rep.Created != 0 || rep.Checked == 0 || len(rep.Errors) != 0 {
		t.Errorf("report %+v, want done, 2 updated (the move and the drift), 0 created", rep)
	}
	h.eventually("move reconciled", func() bool {
		m, _ := h.hub.Meeting(renewal.ID)
		return m.Properties[crm.PropStart] == iso(newStart)
	})
	h.eventually("drift fixed", func() bool {
		m, _ := h.hub.Meeting(qbr.ID)
		return m.Properties[crm.PropTitle] == "Joint Acme QBR"
	})
	h.settle()
	if len(h.byTitle("Acme UK")) != 0 {
		t.Error("a meeting deleted in HubSpot was written again")
	}
	var state string
	h.pool.QueryRow(h.ctx, `SELECT state FROM meetings WHERE workspace_id = $1 AND crm_meeting_id = $2`, h.ws, uk.ID).Scan(&state)
	if state != "deleted_in_crm" {
		t.Errorf("deleted meeting's ledger state %q, want deleted_in_crm", state)
	}
	got, err := h.p.ReconcileRun(h.ctx, rep.ID)
	if err != nil || got.Status != "done" {
		t.Errorf("ReconcileRun = %+v, %v", got, err)
	}
}

func TestCursorExpiredMidSync(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.connectAll()
	renewal := h.one("Acme renewal")
	if err := h.google.ExpireTokens(rep); err != nil {
		t.Fatal(err)
	}
	newStart := f.base.Add(8*24*time.Hour + 7*time.Hour)
	if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := h.google.Notify(rep); err != nil {
		t.Fatal(err)
	}
	h.eventually("moved after the full listing", func() bool {
		m, _ := h.hub.Meeting(renewal.ID)
		return m.Properties[crm.PropStart] == iso(newStart)
	})
	h.settle()
	assertExactlyOnce(h, f)
}

func TestHubSpotRateLimitStormAndErrors(t *testing.T) {
	// HubSpot allows 5 requests a second, and another integration on the
	// same portal spends most of them: a storm of 429s on the writes and
	// the contact reads, plus 5xx answers, and every meeting is still
	// written once. The storm is injected into the fake, not timed.
	h := newHarness(t, harnessOptions{hub: crmtest.Options{Limit: 5, Window: time.Second}})
	f := seed(h)
	h.hub.FailNextOn("meetings.batch.create", 3, http.StatusTooManyRequests)
	h.hub.FailNextOn("contacts.batch.read", 2, http.StatusTooManyRequests)
	h.hub.FailNextOn("meetings.batch.create", 2, 500)
	h.hub.FailNextOn("contacts.batch.read", 1, 503)
	h.connectAll()
	assertExactlyOnce(h, f)
	if h.hub.RateLimited() < 5 {
		t.Errorf("the fake answered %d 429s, want the 5 injected", h.hub.RateLimited())
	}
	var dead int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1`, h.ws).Scan(&dead)
	if dead != 0 {
		t.Errorf("%d dead letters; rate limits and 5xx must be retried, not parked", dead)
	}
	t.Logf("429s answered: %d, calls %v", h.hub.RateLimited(), h.hub.Calls())
}

func TestRevokedGoogleToken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.connectAll()
	renewal := h.one("Acme renewal")
	h.google.RevokeToken("tok-" + rep)
	newStart := f.base.Add(8*24*time.Hour + 2*time.Hour)
	if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := h.google.Notify(rep); err != nil {
		t.Fatal(err)
	}
	var connID string
	h.eventually("needs_reauth", func() bool {
		var status string
		h.pool.QueryRow(h.ctx, `SELECT id, status FROM connections WHERE workspace_id = $1 AND account = $2`, h.ws, rep).Scan(&connID, &status)
		return status == "needs_reauth"
	})
	h.settle()
	// No retry storm: more notifications make no calls for that account.
	before := h.google.Calls()
	for range 5 {
		if err := h.google.Notify(rep); err != nil {
			t.Fatal(err)
		}
	}
	h.settle()
	after := h.google.Calls()
	for k, v := range after {
		if v != before[k] {
			t.Errorf("calls to %s went from %d to %d while the connection needs re-authorisation", k, before[k], v)
		}
	}
	var parked int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1 AND class = 'auth' AND retried_at IS NULL`, h.ws).Scan(&parked)
	if parked == 0 {
		t.Error("no parked work recorded for the revoked connection")
	}

	// Re-authorise: the parked work resumes and the move gets through.
	h.connectGoogle(rep, "tok2-"+rep)
	h.eventually("moved after re-authorisation", func() bool {
		m, _ := h.hub.Meeting(renewal.ID)
		return m.Properties[crm.PropStart] == iso(newStart)
	})
	h.settle()
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1 AND class = 'auth' AND retried_at IS NULL`, h.ws).Scan(&parked)
	if parked != 0 {
		t.Errorf("%d parked tasks not resumed", parked)
	}
	assertExactlyOnce(h, f)
}

// TestGoogleBeforeHubSpot connects the calendars before the CRM: the first
// company index load lists the calendars again and logs what matches.
func TestGoogleBeforeHubSpot(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	h.startWorker()
	for _, c := range []string{rep, ae, cs} {
		h.connectGoogle(c, "tok-"+c)
	}
	h.settle()
	if n := len(h.hub.Meetings()); n != 0 {
		t.Fatalf("%d meetings written without a CRM connection", n)
	}
	h.connectHubSpot()
	h.eventually("meetings logged", func() bool { return h.ledgerStates()["logged"] == f.logged })
	h.settle()
	assertExactlyOnce(h, f)
}

// TestAdoptsHubSpotCalendarSyncMeeting: HubSpot's own calendar sync logged
// the renewal already; Rapport adopts that record instead of doubling it.
func TestAdoptsHubSpotCalendarSyncMeeting(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	ev, err := h.google.Get(rep, f.renewal)
	if err != nil {
		t.Fatal(err)
	}
	client, err := hubspot.New(hubspot.Config{BaseURL: h.hub.URL()}, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "other"}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.CreateMeetings(h.ctx, []crm.Meeting{{Properties: map[string]string{
		crm.PropTimestamp: ev.Start.DateTime, crm.PropTitle: "Acme renewal (from HubSpot sync)",
		crm.PropICalUID: ev.ICalUID, crm.PropSource: crm.SourceCalendarSync,
	}}}, false)
	if err != nil || res[0].Err != nil {
		t.Fatalf("pre-create: %v %v", err, res)
	}
	h.connectAll()
	ms := h.byTitle("Acme renewal")
	if len(ms) != 1 || ms[0].ID != res[0].ID {
		t.Fatalf("renewal meetings %+v, want the adopted %s only", ms, res[0].ID)
	}
	if !slices.Contains(ms[0].CompanyIDs, f.acme) {
		t.Errorf("adopted meeting not associated with Acme: %v", ms[0].CompanyIDs)
	}
	if n := len(h.hub.Meetings()); n != f.logged {
		t.Errorf("%d meetings, want %d", n, f.logged)
	}
}

// TestBackfillWithoutContacts: none of the external attendees is a HubSpot
// contact, so every contacts batch read answers 404 OBJECT_NOT_FOUND for
// the whole call. That means "none found": every meeting is written at once,
// each batch reads contacts once, and nothing is retried or parked.
func TestBackfillWithoutContacts(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	h.addCalendar(rep)
	base := time.Now().UTC().Truncate(time.Hour).Add(-20 * 24 * time.Hour)
	const n = 150
	for i := range n {
		s := base.Add(time.Duration(i) * 3 * time.Hour)
		if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: fmt.Sprintf("Acme call %d", i), Start: s, End: s.Add(30 * time.Minute),
			Attendees: []calendartest.Attendee{att(rep), att(fmt.Sprintf("person%d@acme.example", i))}}); err != nil {
			t.Fatal(err)
		}
	}
	h.startWorker()
	h.connectHubSpot()
	h.connectGoogle(rep, "tok-rep")
	h.settle()
	if got := len(h.hub.Meetings()); got != n {
		t.Fatalf("HubSpot holds %d meetings, want %d", got, n)
	}
	calls := h.hub.Calls()
	if reads, creates := calls["contacts.batch.read"], calls["meetings.batch.create"]; reads > creates {
		t.Errorf("%d contact batch reads for %d batch creates: an all-missing read was retried", reads, creates)
	}
	var dead int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1`, h.ws).Scan(&dead)
	if dead != 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
}
