package plan

import (
	"testing"
	"time"
)

// TestTriageBudget: a write whose meeting used up its attempts is
// exhausted instead of sent, whatever it would have been; a create in
// flight elsewhere still waits (its attempt is that batch's); a parked
// create of unknown outcome that was decided again is searched for, not
// sent blind; a write queued before its meeting was parked is dropped.
func TestTriageBudget(t *testing.T) {
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Hour)
	rows := map[string]Meeting{
		"create":   {Key: "create", State: Pending, DesiredHash: "h", Attempts: 3, UpdatedAt: earlier},
		"update":   {Key: "update", State: Logged, CRMID: "1", OwnedHash: "old", DesiredHash: "h", Attempts: 5, UpdatedAt: earlier},
		"recover":  {Key: "recover", State: Creating, AttemptID: "a1", DesiredHash: "h", Attempts: 3, UpdatedAt: earlier},
		"inflight": {Key: "inflight", State: Creating, AttemptID: "a2", DesiredHash: "h", Attempts: 3, UpdatedAt: earlier},
		"fresh":    {Key: "fresh", State: Pending, DesiredHash: "h", Attempts: 2, UpdatedAt: earlier},
		"current":  {Key: "current", State: Logged, CRMID: "2", OwnedHash: "h", DesiredHash: "h", Attempts: 9, UpdatedAt: earlier},
		"reparked": {Key: "reparked", State: Pending, AttemptID: "a3", DesiredHash: "h", Attempts: 0, UpdatedAt: earlier},
		"parked":   {Key: "parked", State: Failed, DesiredHash: "h", Attempts: 3, UpdatedAt: earlier},
	}
	var writes []Write
	for _, k := range []string{"create", "current", "fresh", "inflight", "parked", "recover", "reparked", "update"} {
		writes = append(writes, Write{Key: k, Hash: "h", DecidedAt: earlier})
	}
	tr := TriageWrites(TriageInput{Writes: writes, Rows: rows, InFlight: map[string]bool{"a2": true}, Now: now,
		SearchLag: 30 * time.Second, DecisionWait: 2 * time.Minute, Budget: 3})
	keys := func(ops []Op) (out []string) {
		for _, o := range ops {
			out = append(out, o.W.Key)
		}
		return out
	}
	for what, c := range map[string]struct{ got, want []string }{
		"exhausted": {keys(tr.Exhausted), []string{"create", "recover", "update"}},
		"creates":   {keys(tr.Creates), []string{"fresh"}},
		"recovers":  {keys(tr.Recovers), []string{"reparked"}},
		"updates":   {keys(tr.Updates), nil},
	} {
		if len(c.got) != len(c.want) {
			t.Errorf("%s = %v, want %v", what, c.got, c.want)
			continue
		}
		for i := range c.got {
			if c.got[i] != c.want[i] {
				t.Errorf("%s = %v, want %v", what, c.got, c.want)
			}
		}
	}
	if tr.SearchWait != time.Second {
		t.Errorf("search wait = %v, want 1s for the create in flight", tr.SearchWait)
	}
}
