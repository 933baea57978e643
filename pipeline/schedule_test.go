package pipeline_test

import (
	"testing"
	"time"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

func (h *harness) dirtySum() int64 {
	var n int64
	h.pool.QueryRow(h.ctx, `SELECT coalesce(sum(dirty), 0) FROM calendars WHERE workspace_id = $1`, h.ws).Scan(&n)
	return n
}

// TestSchedulesRunOncePerPeriod runs two worker processes with a 1 s sync
// schedule: each period syncs every calendar once, not twice.
func TestSchedulesRunOncePerPeriod(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(c *pipeline.Config) { c.SyncEvery = time.Second }})
	seed(h)
	h.connectAll()
	second := h.restartPipeline().NewWorker() // another process
	if err := second.Start(h.ctx); err != nil {
		t.Fatal(err)
	}
	defer second.Shutdown()
	before := h.dirtySum()
	const periods = 4
	time.Sleep(periods * time.Second)
	runs := (h.dirtySum() - before) / 3 // three calendars
	if runs < periods-1 || runs > periods+1 {
		t.Errorf("%d scheduled syncs of each calendar in %d periods with two workers, want about %d", runs, periods, periods)
	}
}

// TestChannelRenewal renews a channel that expires within a day: the new
// one opens before the old one stops, and notifications keep flowing.
func TestChannelRenewal(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(c *pipeline.Config) { c.RenewEvery = time.Second }})
	f := seed(h)
	h.connectAll()
	old := h.google.Channels(rep)
	if len(old) != 1 {
		t.Fatalf("%d channels on %s, want 1", len(old), rep)
	}
	if _, err := h.pool.Exec(h.ctx, `UPDATE calendars SET channel_expires_at = now() + interval '1 hour' WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, rep); err != nil {
		t.Fatal(err)
	}
	h.eventually("channel renewed", func() bool {
		chs := h.google.Channels(rep)
		return len(chs) == 1 && chs[0].ID != old[0].ID
	})
	var stored string
	h.pool.QueryRow(h.ctx, `SELECT channel_id FROM calendars WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, rep).Scan(&stored)
	if now := h.google.Channels(rep); stored != now[0].ID {
		t.Errorf("stored channel %s, open channel %s", stored, now[0].ID)
	}
	if n := len(h.google.Channels(ae)); n != 1 {
		t.Errorf("%d channels on %s after renewal of another calendar's channel, want 1", n, ae)
	}
	renewal := h.one("Acme renewal")
	newStart := f.base.Add(8*24*time.Hour + 4*time.Hour)
	if _, err := h.google.Move(rep, f.renewal, newStart, newStart.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := h.google.Notify(rep); err != nil {
		t.Fatal(err)
	}
	h.eventually("moved through the new channel", func() bool {
		m, _ := h.hub.Meeting(renewal.ID)
		return m.Properties[crm.PropStart] == iso(newStart)
	})
}
