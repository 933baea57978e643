package pipeline_test

import (
	"slices"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
)

func TestInitialSync(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := seed(h)
	far := time.Now().UTC().Truncate(time.Hour).Add(40 * 24 * time.Hour) // past the 30-day lookahead
	if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Acme far future", Start: far, End: far.Add(time.Hour),
		Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}}); err != nil {
		t.Fatal(err)
	}
	h.connectAll()
	h.eventually("write-backs done", func() bool { return linkedCopies(h) == 7+2 }) // 7 meetings on rep's calendar, QBR on ae and cs

	ms := h.meetings()
	var titles []string
	for _, m := range ms {
		titles = append(titles, m.Properties[crm.PropTitle])
	}
	want := []string{"Acme UK", "Acme renewal", "Globex weekly", "Globex weekly", "Globex weekly", "Initech demo", "Joint Acme QBR"}
	if !slices.Equal(titles, want) {
		t.Fatalf("HubSpot meetings = %q, want %q", titles, want)
	}
	renewal := h.one("Acme renewal")
	if !slices.Equal(renewal.CompanyIDs, []string{f.acme}) || !slices.Equal(renewal.ContactIDs, []string{f.cfo}) {
		t.Errorf("renewal associations = companies %v contacts %v, want [%s] [%s]", renewal.CompanyIDs, renewal.ContactIDs, f.acme, f.cfo)
	}
	p := renewal.Properties
	start := f.base.Add(8*24*time.Hour + time.Hour)
	for k, v := range map[string]string{
		crm.PropStart: iso(start), crm.PropEnd: iso(start.Add(30 * time.Minute)), crm.PropTimestamp: iso(start),
		crm.PropLocation: "Room 1", crm.PropExternalURL: "https://meet.google.com/abc-defg-hij", crm.PropOutcome: crm.OutcomeScheduled,
		crm.PropBody: "pricing", crm.PropOwner: f.repOwner,
	} {
		if p[k] != v {
			t.Errorf("renewal %s = %q, want %q", k, p[k], v)
		}
	}
	if p[crm.PropKey] == "" {
		t.Error("renewal carries no meeting key")
	}
	if got := h.one("Initech demo").CompanyIDs; !slices.Equal(got, []string{f.initech}) {
		t.Errorf("Initech demo companies = %v (subdomain match)", got)
	}
	if got := h.one("Acme UK").CompanyIDs; !slices.Equal(got, []string{f.acme}) {
		t.Errorf("Acme UK companies = %v (registrable-domain match)", got)
	}
	for _, m := range h.byTitle("Globex weekly") {
		start, _ := time.Parse(time.RFC3339, m.Properties[crm.PropStart])
		want := crm.OutcomeScheduled
		if start.Before(time.Now()) {
			want = crm.OutcomeCompleted
		}
		if m.Properties[crm.PropOutcome] != want {
			t.Errorf("weekly on %s outcome %q, want %q", start, m.Properties[crm.PropOutcome], want)
		}
	}
	// Written back: the CRM id and key on every copy of the QBR.
	qbr := h.one("Joint Acme QBR")
	for _, c := range []string{ae, rep, cs} {
		ev, err := h.google.Get(c, f.qbr)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ExtendedProperties == nil || ev.ExtendedProperties.Private[calendar.PropMeetingID] != qbr.ID {
			t.Errorf("QBR copy on %s not linked to %s: %+v", c, qbr.ID, ev.ExtendedProperties)
		}
	}
	var outside int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meetings WHERE workspace_id = $1 AND rule = 'outside-window' AND state = 'skipped'`, h.ws).Scan(&outside)
	if outside != 1 {
		t.Errorf("%d meetings skipped as outside the window, want 1 (the far-future one)", outside)
	}
	states := h.ledgerStates()
	if states["logged"] != f.logged {
		t.Errorf("ledger states %v, want %d logged", states, f.logged)
	}
	if n := h.hub.Calls()["meetings.batch.create"]; n > 3 {
		t.Errorf("%d batch creates for %d meetings: writes are not being batched", n, len(ms))
	}
	calls := h.hub.TotalCalls()
	t.Logf("initial sync: %d meetings logged with %d HubSpot calls (%.2f per meeting): %v", len(ms), calls, float64(calls)/float64(len(ms)), h.hub.Calls())
}

// linkedCopies counts copies whose CRM id was written back.
func linkedCopies(h *harness) int {
	var n int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meeting_copies c JOIN calendars k ON k.id = c.calendar_id WHERE k.workspace_id = $1 AND c.linked_crm_id IS NOT NULL`, h.ws).Scan(&n)
	return n
}

func TestLiveChanges(t *testing.T) {
	h := newHarness(t, harnessOptions{autoNotify: true})
	f := seed(h)
	h.connectAll()
	h.eventually("write-backs done", func() bool { return linkedCopies(h) == 9 })
	h.settle()
	renewal := h.one("Acme renewal")

	t.Run("display name change costs no CRM call", func(t *testing.T) {
		h.hub.ResetCounters()
		_, err := h.google.SetAttendees(rep, f.renewal, []calendartest.Attendee{att(rep), {Email: "cfo@acme.example", DisplayName: "Ada (new name)", ResponseStatus: "accepted"}})
		if err != nil {
			t.Fatal(err)
		}
		waitSynced(h, rep, f.renewal)
		h.settle()
		if n := h.hub.TotalCalls(); n != 0 {
			t.Errorf("a display-name change made %d HubSpot calls (%v), want 0", n, h.hub.Calls())
		}
	})

	t.Run("notes and body edited in HubSpot stay", func(t *testing.T) {
		h.hub.SetMeetingProperty(renewal.ID, crm.PropNotes, "internal notes")
		h.hub.SetMeetingProperty(renewal.ID, crm.PropBody, "edited in HubSpot")
		newStart := f.base.Add(8*24*time.Hour + 3*time.Hour)
		if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		h.eventually("moved in HubSpot", func() bool {
			m, _ := h.hub.Meeting(renewal.ID)
			return m.Properties[crm.PropStart] == iso(newStart)
		})
		m, _ := h.hub.Meeting(renewal.ID)
		if m.Properties[crm.PropEnd] != iso(newStart.Add(time.Hour)) || m.Properties[crm.PropTimestamp] != iso(newStart) {
			t.Errorf("moved meeting end/timestamp = %q/%q", m.Properties[crm.PropEnd], m.Properties[crm.PropTimestamp])
		}
		if m.Properties[crm.PropNotes] != "internal notes" || m.Properties[crm.PropBody] != "edited in HubSpot" {
			t.Errorf("CRM-owned fields overwritten: notes %q body %q", m.Properties[crm.PropNotes], m.Properties[crm.PropBody])
		}
	})

	t.Run("rename", func(t *testing.T) {
		if _, err := h.google.Rename(rep, f.renewal, "Acme renewal (final)"); err != nil {
			t.Fatal(err)
		}
		h.eventually("renamed in HubSpot", func() bool {
			m, _ := h.hub.Meeting(renewal.ID)
			return m.Properties[crm.PropTitle] == "Acme renewal (final)"
		})
	})

	t.Run("attendee from a second company", func(t *testing.T) {
		if _, err := h.google.SetAttendees(rep, f.renewal, []calendartest.Attendee{att(rep), att("cfo@acme.example"), att("vp@globex.example")}); err != nil {
			t.Fatal(err)
		}
		h.eventually("Globex associated", func() bool {
			m, _ := h.hub.Meeting(renewal.ID)
			return slices.Contains(m.CompanyIDs, f.globex) && slices.Contains(m.ContactIDs, f.vp)
		})
		m, _ := h.hub.Meeting(renewal.ID)
		if !slices.Contains(m.CompanyIDs, f.acme) {
			t.Errorf("Acme association lost: %v", m.CompanyIDs)
		}
	})

	t.Run("attendee leaves: only Rapport's association removed", func(t *testing.T) {
		if _, err := h.google.SetAttendees(rep, f.renewal, []calendartest.Attendee{att(rep), att("cfo@acme.example")}); err != nil {
			t.Fatal(err)
		}
		h.eventually("Globex removed", func() bool {
			m, _ := h.hub.Meeting(renewal.ID)
			return !slices.Contains(m.CompanyIDs, f.globex) && !slices.Contains(m.ContactIDs, f.vp)
		})
	})

	t.Run("cancel", func(t *testing.T) {
		if err := h.google.Cancel(rep, f.renewal); err != nil {
			t.Fatal(err)
		}
		h.eventually("cancelled in HubSpot", func() bool {
			m, _ := h.hub.Meeting(renewal.ID)
			return m.Properties[crm.PropOutcome] == crm.OutcomeCanceled
		})
		if n := len(h.byTitle("Acme renewal (final)")); n != 1 {
			t.Errorf("%d meetings after cancel, want 1", n)
		}
	})

	t.Run("cancelled instance of a series", func(t *testing.T) {
		before := len(h.byTitle("Globex weekly"))
		orig := f.base.Add(3*24*time.Hour + 4*time.Hour + 7*24*time.Hour)
		if err := h.google.CancelInstance(rep, f.series, orig); err != nil {
			t.Fatal(err)
		}
		h.eventually("instance cancelled", func() bool {
			for _, m := range h.byTitle("Globex weekly") {
				if m.Properties[crm.PropStart] == iso(orig) && m.Properties[crm.PropOutcome] == crm.OutcomeCanceled {
					return true
				}
			}
			return false
		})
		if after := len(h.byTitle("Globex weekly")); after != before {
			t.Errorf("series meetings %d → %d", before, after)
		}
	})

	t.Run("new customer meeting", func(t *testing.T) {
		s := time.Now().UTC().Truncate(time.Hour).Add(48 * time.Hour)
		if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Globex kickoff", Start: s, End: s.Add(time.Hour),
			Attendees: []calendartest.Attendee{att(rep), att("vp@globex.example")}}); err != nil {
			t.Fatal(err)
		}
		h.eventually("kickoff logged", func() bool { return len(h.byTitle("Globex kickoff")) == 1 })
	})
}

// waitSynced waits until the ledger copy of an event carries its current
// etag, i.e. a sync has seen the latest change.
func waitSynced(h *harness, cal, eventID string) {
	h.t.Helper()
	ev, err := h.google.Get(cal, eventID)
	if err != nil {
		h.t.Fatal(err)
	}
	h.eventually("sync saw "+eventID, func() bool {
		var etag string
		h.pool.QueryRow(h.ctx, `SELECT coalesce(c.etag, '') FROM meeting_copies c JOIN calendars k ON k.id = c.calendar_id
			WHERE k.workspace_id = $1 AND k.calendar_id = $2 AND c.event_id = $3`, h.ws, cal, eventID).Scan(&etag)
		return etag == ev.ETag
	})
}
