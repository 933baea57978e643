package plan

import (
	"testing"
	"time"
)

func TestTriageWrites(t *testing.T) {
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	w := func(key, hash string, decided time.Time, cancel bool) Write {
		return Write{Key: key, Hash: hash, DecidedAt: decided, Desired: Desired{Cancel: cancel}}
	}
	earlier := now.Add(-time.Minute)
	rows := map[string]Meeting{
		"create":      {Key: "create", State: Pending, DesiredHash: "h", UpdatedAt: earlier},
		"update":      {Key: "update", State: Logged, CRMID: "1", OwnedHash: "old", DesiredHash: "h", UpdatedAt: earlier},
		"current":     {Key: "current", State: Logged, CRMID: "2", OwnedHash: "h", DesiredHash: "h", UpdatedAt: earlier},
		"uncancel":    {Key: "uncancel", State: Cancelled, CRMID: "3", OwnedHash: "h", DesiredHash: "h", UpdatedAt: earlier},
		"superseded":  {Key: "superseded", State: Pending, DesiredHash: "newer", UpdatedAt: now},
		"uncommitted": {Key: "uncommitted", State: Pending, DesiredHash: "older", UpdatedAt: earlier},
		"deleted":     {Key: "deleted", State: DeletedInCRM, CRMID: "4", DesiredHash: "h", UpdatedAt: earlier},
		"cancelnever": {Key: "cancelnever", State: Skipped, DesiredHash: "h", UpdatedAt: earlier},
		"inflight":    {Key: "inflight", State: Creating, AttemptID: "a1", DesiredHash: "h", UpdatedAt: now.Add(-time.Hour)},
		"lagging":     {Key: "lagging", State: Creating, AttemptID: "a2", DesiredHash: "h", UpdatedAt: now.Add(-5 * time.Second)},
		"lost":        {Key: "lost", State: Creating, AttemptID: "a3", DesiredHash: "h", UpdatedAt: now.Add(-time.Minute)},
	}
	writes := []Write{
		w("create", "h", earlier, false), w("update", "h", earlier, false), w("current", "h", earlier, false),
		w("uncancel", "h", earlier, false), w("superseded", "h", earlier, false), w("uncommitted", "h", now, false),
		w("missing", "h", now, false), w("deleted", "h", earlier, false), w("cancelnever", "h", earlier, true),
		w("inflight", "h", earlier, false), w("lagging", "h", earlier, false), w("lost", "h", earlier, false),
		w("gave-up", "h", now.Add(-3*time.Minute), false),
	}
	tr := TriageWrites(TriageInput{Writes: writes, Rows: rows, InFlight: map[string]bool{"a1": true}, Now: now,
		SearchLag: 30 * time.Second, DecisionWait: 2 * time.Minute})
	keys := func(ops []Op) []string {
		var out []string
		for _, o := range ops {
			out = append(out, o.W.Key)
		}
		return out
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s = %v, want %v", what, got, want)
			}
		}
	}
	check("creates", keys(tr.Creates), "create")
	check("recovers", keys(tr.Recovers), "lost")
	check("updates", keys(tr.Updates), "update", "uncancel")
	if tr.Invisible != 2 { // uncommitted, missing; gave-up waited long enough
		t.Errorf("invisible = %d, want 2", tr.Invisible)
	}
	// The in-flight create waits a second; the lagging one until its
	// create is searchable (25 s): the shorter wins.
	if tr.SearchWait != time.Second {
		t.Errorf("search wait = %v, want 1s", tr.SearchWait)
	}
	// With a unique key property, a create of unknown outcome is upserted
	// again at once.
	tr = TriageWrites(TriageInput{Writes: []Write{w("lagging", "h", earlier, false)}, Rows: rows, Now: now, SearchLag: 30 * time.Second, UniqueKey: true})
	check("recovers with a unique key", keys(tr.Recovers), "lagging")
}

func TestAdopt(t *testing.T) {
	ops := []Op{{W: Write{Key: "a"}, Row: Meeting{ID: 1, CompanyIDs: []string{"9"}}}, {W: Write{Key: "b"}, Row: Meeting{ID: 2}}}
	creates, adopted := Adopt(ops, map[string]string{"a": "900"})
	if len(creates) != 1 || creates[0].W.Key != "b" {
		t.Errorf("creates %+v", creates)
	}
	if len(adopted) != 1 || adopted[0].Row.CRMID != "900" || adopted[0].Row.CompanyIDs != nil {
		t.Errorf("adopted %+v: want the CRM id and no known associations", adopted)
	}
}

func TestAssociationDiff(t *testing.T) {
	add, remove := AssociationDiff([]string{"1", "2"}, []string{"2", "3"})
	if len(add) != 1 || add[0] != "3" || len(remove) != 1 || remove[0] != "1" {
		t.Errorf("add %v remove %v", add, remove)
	}
}

func TestSameInstant(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"2026-03-25T14:00:00.000Z", "2026-03-25T14:00:00Z", true},
		{"2026-03-25T14:00:00.000Z", "2026-03-25T15:00:00+01:00", true},
		{"2026-03-25T14:00:00.000Z", "1774447200000", true},
		{"2026-03-25T14:00:00.000Z", "2026-03-25T14:30:00Z", false},
		{"Renewal", "Renewal", true},
		{"Renewal", "renewal", false},
		{"", "2026-03-25T14:00:00Z", false},
	} {
		if got := SameInstant(c.a, c.b); got != c.want {
			t.Errorf("SameInstant(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestTruncateText(t *testing.T) {
	long := make([]rune, MaxText+10)
	for i := range long {
		long[i] = 'é'
	}
	got := truncateText(string(long))
	if n := len([]rune(got)); n != MaxText {
		t.Errorf("truncated to %d characters, want %d", n, MaxText)
	}
	if truncateText("short") != "short" {
		t.Error("a short text changed")
	}
}
