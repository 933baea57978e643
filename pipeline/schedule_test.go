package pipeline_test

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

// TestSchedulesRunOncePerPeriod: two worker processes tick the schedules
// at every moment of a period, under an injected clock; each period still
// produces one run of each schedule, not two.
func TestSchedulesRunOncePerPeriod(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	tweak := func(c *pipeline.Config) { c.Clock, c.SyncEvery = now, time.Minute }
	h := newHarness(t, harnessOptions{tweak: tweak})
	first, second := h.restartPipeline(), h.restartPipeline() // two processes
	const periods = 4
	for range periods {
		for range 3 { // several ticks within one period, from both
			first.ScheduleTick(h.ctx)
			second.ScheduleTick(h.ctx)
			clock.Add(int64(15 * time.Second))
		}
		clock.Add(int64(15 * time.Second))
	}
	tasks, err := pipelineInspector(h.rdb).ListPendingTasks(pipeline.QueueMaintenance, asynq.PageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, tk := range tasks {
		var pl map[string]string
		json.Unmarshal(tk.Payload, &pl)
		runs[pl["name"]]++
	}
	if runs["sync"] != periods {
		t.Errorf("%d runs of the sync schedule in %d periods with two workers, want %d (all: %v)", runs["sync"], periods, periods, runs)
	}
	if runs["reconcile"] != 1 {
		t.Errorf("%d runs of the 6-hourly reconciliation within 4 minutes, want 1", runs["reconcile"])
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
