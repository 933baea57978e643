package pipeline_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/ledger"
)

// goneGauge reads rapport_calendars_gone as /metrics serves it.
func goneGauge(h *harness) float64 {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(&pipeline.StateCollector{Ledger: ledger.New(h.pool)})
	mfs, err := reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rapport_calendars_gone" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	h.t.Fatal("no rapport_calendars_gone metric")
	return 0
}

// TestVanishedCalendar: Google answers 404 for a calendar (deleted, or the
// account lost it). It is marked gone, visible in the admin API and the
// metrics, not synced again by the schedule, webhooks or the admin, with
// one dead letter however many syncs come; re-importing it resumes it,
// with a push channel that works.
func TestVanishedCalendar(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(c *pipeline.Config) { c.SyncEvery = time.Second }})
	h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	h.addCalendar(rep)
	h.addCalendar(ae)
	h.startWorker()
	h.connectHubSpot()
	h.connectGoogle(rep, "tok-rep")
	h.connectGoogle(ae, "tok-ae")
	h.settle()
	gone0 := goneGauge(h)

	calID := func() string {
		var id string
		h.pool.QueryRow(h.ctx, `SELECT id FROM calendars WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, rep).Scan(&id)
		return id
	}()
	status := func() pipeline.CalendarStatus {
		cals, err := h.p.Calendars(h.ctx, h.ws)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cals {
			if c.ID == calID {
				return c
			}
		}
		t.Fatalf("calendar %s not listed", calID)
		return pipeline.CalendarStatus{}
	}
	deadLetters := func() int {
		var n int
		h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE workspace_id = $1 AND ref->>'calendar_id' = $2`, h.ws, calID).Scan(&n)
		return n
	}
	aeDirty := func() int64 {
		var n int64
		h.pool.QueryRow(h.ctx, `SELECT dirty FROM calendars WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, ae).Scan(&n)
		return n
	}

	if err := h.google.RemoveCalendar(rep); err != nil {
		t.Fatal(err)
	}
	if err := h.p.RequestSync(h.ctx, h.ws, calID); err != nil {
		t.Fatal(err)
	}
	h.eventually("calendar marked gone", func() bool { return status().Status == "gone" })
	if st := status(); st.LastError == "" {
		t.Errorf("gone calendar shows no reason: %+v", st)
	}
	if got := goneGauge(h); got != gone0+1 {
		t.Errorf("rapport_calendars_gone = %v, want %v", got, gone0+1)
	}

	// Several scheduled syncs (the other calendar's dirty counter shows
	// them), admin syncs: still one dead letter, and no call for it.
	for range 3 {
		if err := h.p.RequestSync(h.ctx, h.ws, calID); err != nil {
			t.Fatal(err)
		}
	}
	start := aeDirty()
	h.eventually("three scheduled syncs", func() bool { return aeDirty() >= start+3 })
	h.settle()
	if n := deadLetters(); n != 1 {
		t.Errorf("%d dead letters for the vanished calendar after several syncs, want 1", n)
	}
	if st := status(); st.Status != "gone" {
		t.Errorf("status %q after several syncs, want gone", st.Status)
	}

	// The calendar is back (restored, or access granted again) and the
	// admin imports it again: it syncs, and its new channel delivers.
	if err := h.google.AddCalendar(rep, "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	h.connectGoogle(rep, "tok2-rep")
	h.eventually("calendar active again", func() bool {
		st := status()
		return st.Status == "active" && st.LastError == "" && st.LastSyncedAt != nil
	})
	if got := goneGauge(h); got != gone0 {
		t.Errorf("rapport_calendars_gone = %v after the re-import, want %v", got, gone0)
	}
	h.eventually("a channel on the restored calendar", func() bool { return len(h.google.Channels(rep)) == 1 })
	s := time.Now().UTC().Truncate(time.Hour).Add(48 * time.Hour)
	if _, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Acme after the restore", Start: s, End: s.Add(time.Hour),
		Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}}); err != nil {
		t.Fatal(err)
	}
	if err := h.google.Notify(rep); err != nil {
		t.Fatal(err)
	}
	h.eventually("the meeting after the restore logged", func() bool { return len(h.byTitle("Acme after the restore")) == 1 })
	if n := deadLetters(); n != 1 {
		t.Errorf("%d dead letters after the re-import, want the 1", n)
	}
}
