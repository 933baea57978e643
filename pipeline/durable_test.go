package pipeline_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline"
)

// Tests of issue 14: losing the queue (a process killed at any line, a
// FLUSHDB) costs latency, never data. The sweep runs every 200 ms here and
// re-queues what waited one second; a dead process's leases expire after
// 1.5 s. Pass and fail are decided by conditions on the ledger and the
// fakes, waited for with a deadline that is a safety net only.

const (
	testSweepEvery = 200 * time.Millisecond
	testSweepGrace = time.Second
	testLeaseTTL   = 1500 * time.Millisecond
)

// crasher is the crash hook: armed, it fires once at its point.
type crasher struct {
	point string
	armed atomic.Bool
	fired atomic.Bool
}

func (c *crasher) hook(point string) bool {
	return point == c.point && c.armed.Load() && c.fired.CompareAndSwap(false, true)
}

// durable is the tuning of these tests: a fast sweep, short leases, and
// the crash hook when given.
func durable(c *crasher) func(*pipeline.Config) {
	return func(cfg *pipeline.Config) {
		cfg.SweepEvery, cfg.SweepGrace = testSweepEvery, testSweepGrace
		cfg.SetLeaseTTL(testLeaseTTL)
		if c != nil {
			cfg.SetCrash(c.hook)
		}
	}
}

// kill abandons the worker, as its process died, and starts a new
// process: a fresh pipeline and worker on the same database and Redis.
func (h *harness) kill() {
	h.t.Helper()
	h.stopWorker()
	h.p = h.restartPipeline()
	h.startWorker()
}

// unsettled says what is still owed, or "" once every logged meeting is
// written, every live copy of one carries its CRM id (in the ledger and on
// the calendar), and nothing waits.
func (h *harness) unsettled(logged int) string {
	var owed, unlinked, got int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FILTER (WHERE state IN ('pending', 'creating') OR (state IN ('logged', 'cancelled') AND desired_hash IS DISTINCT FROM owned_hash)),
		count(*) FILTER (WHERE state = 'logged') FROM meetings WHERE workspace_id = $1`, h.ws).Scan(&owed, &got)
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE m.workspace_id = $1 AND m.state = 'logged' AND c.status <> 'cancelled' AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id`, h.ws).Scan(&unlinked)
	switch {
	case got != logged:
		return "meetings logged in the ledger"
	case owed > 0:
		return "CRM writes owed"
	case unlinked > 0:
		return "copies without their CRM id"
	case len(h.hub.Meetings()) != logged:
		return "meetings in HubSpot"
	}
	return ""
}

// recovered waits until nothing is owed and checks the outcome: every
// expected meeting in HubSpot exactly once, every copy linked on the
// calendar, no dead letters. It returns how long recovery took from since.
func (h *harness) recovered(f fixture, since time.Time) time.Duration {
	h.t.Helper()
	var last string
	h.eventually("recovery", func() bool {
		last = h.unsettled(f.logged)
		return last == ""
	})
	took := time.Since(since)
	if f.logged == fixtureLogged {
		assertExactlyOnce(h, f)
	} else {
		assertKeysOnce(h, f.logged)
	}
	h.assertLinked()
	h.assertNoDeadLetters()
	return took
}

// assertLinked checks that every live copy of a logged meeting carries the
// meeting's CRM id on the calendar itself.
func (h *harness) assertLinked() {
	h.t.Helper()
	rows, err := h.pool.Query(h.ctx, `SELECT cal.calendar_id, c.event_id, m.crm_meeting_id FROM meeting_copies c
		JOIN meetings m ON m.id = c.meeting_id JOIN calendars cal ON cal.id = c.calendar_id
		WHERE m.workspace_id = $1 AND m.state = 'logged' AND c.status <> 'cancelled'`, h.ws)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var cal, ev, crmID string
		if err := rows.Scan(&cal, &ev, &crmID); err != nil {
			h.t.Fatal(err)
		}
		got, err := h.google.Get(cal, ev)
		if err != nil {
			h.t.Errorf("copy %s on %s: %v", ev, cal, err)
			continue
		}
		var linked string
		if got.ExtendedProperties != nil {
			linked = got.ExtendedProperties.Private[calendar.PropMeetingID]
		}
		if linked != crmID {
			h.t.Errorf("copy %s on %s carries CRM id %q, want %q", ev, cal, linked, crmID)
		}
		n++
	}
	if n == 0 {
		h.t.Error("no live copies of logged meetings")
	}
}

// fixtureLogged is how many meetings seed's fixture logs.
const fixtureLogged = 7

// assertKeysOnce checks that HubSpot holds n meetings, each key once.
func assertKeysOnce(h *harness, n int) {
	h.t.Helper()
	keys := map[string]bool{}
	ms := h.hub.Meetings()
	for _, m := range ms {
		k := m.Properties[crm.PropKey]
		if keys[k] {
			h.t.Errorf("meeting key %s written twice", k)
		}
		keys[k] = true
	}
	if len(ms) != n {
		h.t.Errorf("HubSpot holds %d meetings, want %d", len(ms), n)
	}
}

func (h *harness) assertNoDeadLetters() {
	h.t.Helper()
	var dead int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM dead_letters WHERE (workspace_id = $1 OR workspace_id IS NULL) AND retried_at IS NULL`, h.ws).Scan(&dead)
	if dead != 0 {
		h.t.Errorf("%d dead letters not retried, want none", dead)
	}
}

// backfill connects HubSpot and the three calendars with the worker
// running, without waiting for anything but the index.
func (h *harness) backfill() {
	h.t.Helper()
	h.startWorker()
	h.connectHubSpot()
	for _, c := range []string{rep, ae, cs} {
		h.connectGoogle(c, "tok-"+c)
	}
}

// TestCrashPoints stops the worker at every named crash point — mid-page,
// between the CRM write and its ledger record, between the record and the
// write-back, mid-write-back, mid-channel-renewal and more — as if its
// process died there: nothing recorded, no Redis cleaned up, the task
// forgotten by the queue. A new process and the sweep must bring back
// every meeting exactly once, every copy linked, no dead letters.
func TestCrashPoints(t *testing.T) {
	var tried atomic.Int32
	for _, point := range pipeline.CrashPoints {
		t.Run(point, func(t *testing.T) {
			c := &crasher{point: point}
			h := newHarness(t, harnessOptions{tweak: durable(c)})
			f := seed(h)
			var crashedAt time.Time
			switch point {
			case "write.updated":
				h.connectAll()
				c.armed.Store(true)
				h.moveRenewal(f, 3*time.Hour)
			case "renew.watched", "renew.stored":
				h.connectAll()
				c.armed.Store(true)
				h.expireChannel(rep)
			default:
				c.armed.Store(true)
				h.backfill()
			}
			h.eventually("the crash point "+point, c.fired.Load)
			tried.Add(1)
			crashedAt = time.Now()
			h.kill()
			took := h.recovered(f, crashedAt)
			switch point {
			case "write.updated":
				h.eventually("the move in HubSpot", func() bool {
					return h.one("Acme renewal").Properties[crm.PropStart] == iso(f.base.Add(8*24*time.Hour+3*time.Hour))
				})
			case "renew.watched", "renew.stored":
				h.assertChannelRenewed(rep)
				took = time.Since(crashedAt)
				// The channel opened by the dead process (or the old one it
				// did not stop) is unknown to the ledger: its deliveries are
				// answered 404 until the provider gives up on it.
				h.moveRenewalTolerant(f, 5*time.Hour)
				h.eventually("a move notified through the renewed channel", func() bool {
					return h.one("Acme renewal").Properties[crm.PropStart] == iso(f.base.Add(8*24*time.Hour+5*time.Hour))
				})
			}
			t.Logf("crash at %s: recovered in %v", point, took.Round(10*time.Millisecond))
		})
	}
	t.Logf("%d crash points tried", tried.Load())
}

// moveRenewal moves the renewal meeting and notifies.
func (h *harness) moveRenewal(f fixture, by time.Duration) {
	h.t.Helper()
	start := f.base.Add(8*24*time.Hour + by)
	if _, err := h.google.Move(rep, f.renewal, start, start.Add(time.Hour)); err != nil {
		h.t.Fatal(err)
	}
	if err := h.google.Notify(rep); err != nil {
		h.t.Fatal(err)
	}
}

// moveRenewalTolerant is moveRenewal where some of the calendar's open
// channels are not Rapport's (any more): their deliveries fail.
func (h *harness) moveRenewalTolerant(f fixture, by time.Duration) {
	h.t.Helper()
	start := f.base.Add(8*24*time.Hour + by)
	if _, err := h.google.Move(rep, f.renewal, start, start.Add(time.Hour)); err != nil {
		h.t.Fatal(err)
	}
	_ = h.google.Notify(rep)
}

// expireChannel makes a calendar's stored channel expire within the hour:
// the sweep queues its renewal.
func (h *harness) expireChannel(email string) {
	h.t.Helper()
	if _, err := h.pool.Exec(h.ctx, `UPDATE calendars SET channel_expires_at = now() + interval '1 hour' WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, email); err != nil {
		h.t.Fatal(err)
	}
}

// assertChannelRenewed waits until the calendar's stored channel is open at
// the provider and far from expiry.
func (h *harness) assertChannelRenewed(email string) {
	h.t.Helper()
	h.eventually("channel renewed", func() bool {
		var id string
		var exp time.Time
		h.pool.QueryRow(h.ctx, `SELECT channel_id, channel_expires_at FROM calendars WHERE workspace_id = $1 AND calendar_id = $2`, h.ws, email).Scan(&id, &exp)
		if time.Until(exp) < 24*time.Hour {
			return false
		}
		return slices.ContainsFunc(h.google.Channels(email), func(ch calendartest.Channel) bool { return ch.ID == id })
	})
}

// TestFlushRedisMidBackfill empties Rapport's Redis database in the middle
// of a backfill: every queued task, group, lease, attempt mark and cache is
// gone. The sweep derives what was pending from the ledger.
func TestFlushRedisMidBackfill(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: durable(nil)})
	f := seed(h)
	f.logged += h.seedMore(ae, 40)
	h.backfill()
	h.eventually("the first meetings in HubSpot", func() bool { return len(h.hub.Meetings()) > 0 })
	flushed := time.Now()
	testenv.FlushDB(t, h.rdb)
	took := h.recovered(f, flushed)
	t.Logf("FLUSHDB mid-backfill: recovered in %v", took.Round(10*time.Millisecond))
}

// TestFlushRedisWhileIdle empties Redis while nothing runs: schedules come
// back by themselves, and the next change gets through.
func TestFlushRedisWhileIdle(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: durable(nil)})
	f := seed(h)
	h.connectAll()
	h.recovered(f, time.Now())
	testenv.FlushDB(t, h.rdb)
	h.hub.ResetCounters()
	h.eventually("the schedules queued again", func() bool {
		keys, _ := h.rdb.Keys(h.ctx, "asynq:{maintenance}:t:sched:sweep:*").Result()
		return len(keys) > 0
	})
	flushed := time.Now()
	h.moveRenewal(f, 6*time.Hour)
	h.eventually("a change after the flush in HubSpot", func() bool {
		return h.one("Acme renewal").Properties[crm.PropStart] == iso(f.base.Add(8*24*time.Hour+6*time.Hour))
	})
	took := h.recovered(f, flushed)
	if n := h.hub.Calls()["meetings.batch.create"]; n != 0 {
		t.Errorf("%d batch creates after an idle flush: nothing was owed", n)
	}
	t.Logf("FLUSHDB while idle: the next change reached HubSpot and settled in %v", took.Round(10*time.Millisecond))
}

// seedMore adds n customer meetings with Acme on a calendar and returns n.
func (h *harness) seedMore(cal string, n int) int {
	h.t.Helper()
	base := time.Now().UTC().Truncate(time.Hour).Add(-10 * 24 * time.Hour)
	for i := range n {
		s := base.Add(time.Duration(i) * 5 * time.Hour)
		if _, err := h.google.Insert(cal, calendartest.EventSpec{Summary: fmt.Sprintf("Acme sync %d", i), Start: s, End: s.Add(30 * time.Minute),
			Attendees: []calendartest.Attendee{att(cal), att(fmt.Sprintf("buyer%d@acme.example", i))}}); err != nil {
			h.t.Fatal(err)
		}
	}
	return n
}
