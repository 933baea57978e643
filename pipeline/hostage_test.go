package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

// deadLetter is one dead letter of the harness's workspace.
type deadLetter struct {
	id            int64
	class, reason string
	ref           string
}

func (h *harness) openDeadLetters() []deadLetter {
	h.t.Helper()
	rows, err := h.pool.Query(h.ctx, `SELECT id, class, reason, ref::text FROM dead_letters WHERE workspace_id = $1 AND retried_at IS NULL ORDER BY id`, h.ws)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []deadLetter
	for rows.Next() {
		var d deadLetter
		rows.Scan(&d.id, &d.class, &d.reason, &d.ref)
		out = append(out, d)
	}
	return out
}

func (h *harness) meetingState(title string) string {
	h.t.Helper()
	var st string
	h.pool.QueryRow(h.ctx, `SELECT m.state FROM meetings m WHERE m.workspace_id = $1 AND m.rule <> '' AND m.meeting_key = $2`, h.ws, h.keyOf(title)).Scan(&st)
	return st
}

// keyOf finds a fixture meeting's key by its title on the fake calendar.
func (h *harness) keyOf(title string) string {
	h.t.Helper()
	var key string
	rows, _ := h.pool.Query(h.ctx, `SELECT cal.calendar_id, c.event_id, m.meeting_key FROM meeting_copies c
		JOIN meetings m ON m.id = c.meeting_id JOIN calendars cal ON cal.id = c.calendar_id WHERE m.workspace_id = $1`, h.ws)
	defer rows.Close()
	for rows.Next() {
		var cal, ev, k string
		rows.Scan(&cal, &ev, &k)
		if got, err := h.google.Get(cal, ev); err == nil && got.Summary == title {
			key = k
		}
	}
	return key
}

// TestRefusedInputParksOneMeeting: HubSpot refuses one input of a batch
// create for good (a VALIDATION_ERROR in a 207). That meeting alone is
// parked, failed with a dead letter saying HubSpot's reason; the others of
// its batch are written at once; the sweep leaves it alone; a retry of the
// dead letter re-drives it once the cause is fixed.
func TestRefusedInputParksOneMeeting(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: durable(nil)})
	f := seed(h)
	h.hub.RefuseInputs(func(_ string, _ int, props map[string]string) bool { return props[crm.PropTitle] == "Acme UK" })
	h.connectAll()
	h.eventually("the others written and the refused one parked", func() bool {
		return len(h.hub.Meetings()) == f.logged-1 && h.meetingState("Acme UK") == "failed"
	})
	if n := len(h.byTitle("Acme UK")); n != 0 {
		t.Fatalf("%d refused meetings in HubSpot", n)
	}
	dls := h.openDeadLetters()
	if len(dls) != 1 || dls[0].class != "permanent" || !strings.Contains(dls[0].reason, "not valid") || !strings.Contains(dls[0].ref, h.keyOf("Acme UK")) {
		t.Fatalf("dead letters %+v, want one permanent for the refused meeting with HubSpot's reason", dls)
	}
	if r, err := h.p.Sweep(h.ctx); err != nil || r.Fetches+r.FullListings+r.Writes != 0 {
		t.Errorf("sweep after the refusal: %+v, %v; a parked meeting is not queued again", r, err)
	}

	h.hub.RefuseInputs(nil)
	if err := h.p.RetryDeadLetter(h.ctx, dls[0].id); err != nil {
		t.Fatal(err)
	}
	h.eventually("the re-driven meeting written", func() bool { return len(h.byTitle("Acme UK")) == 1 })
	h.recovered(f, time.Now())
	if dls := h.openDeadLetters(); len(dls) != 0 {
		t.Errorf("open dead letters after the retry: %+v", dls)
	}
}

// TestRetryBudget: one meeting's input keeps failing (a transient error
// in every 207). No batch retries forever: after its attempts the meeting
// is parked with a dead letter naming the last error, while the rest were
// written; the dead letter's retry re-drives it with a fresh budget.
func TestRetryBudget(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(c *pipeline.Config) {
		durable(nil)(c)
		c.WriteAttempts = 3
	}})
	f := seed(h)
	h.hub.FailInputs(func(_ string, _ int, props map[string]string) bool { return props[crm.PropTitle] == "Acme UK" })
	h.connectAll()
	h.eventually("the failing meeting parked", func() bool { return h.meetingState("Acme UK") == "failed" })
	if n := len(h.hub.Meetings()); n != f.logged-1 {
		t.Errorf("%d meetings in HubSpot while one kept failing, want the other %d", n, f.logged-1)
	}
	dls := h.openDeadLetters()
	if len(dls) != 1 || dls[0].class != "exhausted" || !strings.Contains(dls[0].reason, "3 attempts") || !strings.Contains(dls[0].reason, "internal error") {
		t.Fatalf("dead letters %+v, want one exhausted, after 3 attempts, with the last error", dls)
	}
	var creates int
	h.hub.ResetCounters()
	if r, err := h.p.Sweep(h.ctx); err != nil || r.Fetches+r.FullListings+r.Writes != 0 {
		t.Errorf("sweep after parking: %+v, %v; a parked meeting is not queued again", r, err)
	}
	h.settle()
	if creates = h.hub.Calls()["meetings.batch.create"]; creates != 0 {
		t.Errorf("%d batch creates after the meeting was parked", creates)
	}

	h.hub.FailInputs(nil)
	if err := h.p.RetryDeadLetter(h.ctx, dls[0].id); err != nil {
		t.Fatal(err)
	}
	h.recovered(f, time.Now())
	if dls := h.openDeadLetters(); len(dls) != 0 {
		t.Errorf("open dead letters after the retry: %+v", dls)
	}
}

// TestNoCalendarContentInRedis scans every Redis key's value — every task
// payload, pending, active, aggregating, retried, completed or archived —
// during a backfill for the fixture's titles, descriptions, locations and
// attendee addresses. A batch HubSpot refuses as a whole is archived with
// its payload; it holds nothing readable either, and its meetings are
// recovered by the sweep.
func TestNoCalendarContentInRedis(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: durable(nil)})
	f := seed(h)
	h.hub.FailNextOn("meetings.batch.create", 1, 400)
	secrets := []string{"Acme renewal", "Globex weekly", "Initech demo", "Joint Acme QBR", "Acme UK", "Internal standup", "pricing", "Room 1",
		"cfo@acme.example", "vp@globex.example", "buyer@eu.sales.initech.example", "fd@mail.acme.co.uk", "pal@gmail.com", rep, ae, cs}
	var (
		mu    sync.Mutex
		found = map[string]string{}
		scans int
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			leaks := scanRedis(h, secrets)
			mu.Lock()
			scans++
			for k, v := range leaks {
				found[k] = v
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	h.connectAll()
	h.eventually("recovered from the archived batch", func() bool { return h.unsettled(f.logged) == "" })
	// The archived batch is still there to be scanned.
	archived, err := pipelineInspector(h.rdb).ListArchivedTasks(pipeline.QueueCRM)
	if err != nil || len(archived) == 0 {
		t.Fatalf("archived crm tasks: %d, %v; want the refused batch", len(archived), err)
	}
	close(stop)
	<-done
	for k, v := range scanRedis(h, secrets) {
		found[k] = v
	}
	if len(found) > 0 {
		for k, v := range found {
			t.Errorf("Redis key %s holds %q in the clear", k, v)
		}
	}
	assertKeysOnce(h, f.logged)
	t.Logf("%d scans of every key during the backfill; %d archived crm task(s) scanned", scans+1, len(archived))
}

// scanRedis reads every key's value and returns the keys holding any of
// the secrets (case-insensitively), with the secret.
func scanRedis(h *harness, secrets []string) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	var lower [][]byte
	for _, s := range secrets {
		lower = append(lower, []byte(strings.ToLower(s)))
	}
	check := func(key string, vals ...string) {
		for _, v := range append(vals, key) {
			b := bytes.ToLower([]byte(v))
			for i, s := range lower {
				if bytes.Contains(b, s) {
					out[key] = secrets[i]
				}
			}
		}
	}
	iter := h.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		switch h.rdb.Type(ctx, key).Val() {
		case "string":
			check(key, h.rdb.Get(ctx, key).Val())
		case "hash":
			var vals []string
			for k, v := range h.rdb.HGetAll(ctx, key).Val() {
				vals = append(vals, k, v)
			}
			check(key, vals...)
		case "list":
			check(key, h.rdb.LRange(ctx, key, 0, -1).Val()...)
		case "set":
			check(key, h.rdb.SMembers(ctx, key).Val()...)
		case "zset":
			check(key, h.rdb.ZRange(ctx, key, 0, -1).Val()...)
		case "stream":
			for _, m := range h.rdb.XRange(ctx, key, "-", "+").Val() {
				check(key, fmt.Sprint(m.Values))
			}
		}
	}
	return out
}
