package ledger_test

import (
	"context"
	"regexp"
	"slices"
	"testing"

	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline/plan"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStatesMatchTheSchema holds the typed states of package plan and the
// migrations' CHECK constraints together: a state added on one side only
// fails here, not in production.
func TestStatesMatchTheSchema(t *testing.T) {
	pool := testenv.DB(t)
	quoted := regexp.MustCompile(`'([a-z_]+)'::text`)
	check := func(table, column string, want []string) {
		t.Helper()
		var def string
		err := pool.QueryRow(context.Background(), `SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
			JOIN pg_class r ON r.oid = c.conrelid WHERE r.relname = $1 AND c.contype = 'c' AND pg_get_constraintdef(c.oid) LIKE '%(' || $2 || ' = ANY%'`,
			table, column).Scan(&def)
		if err != nil {
			t.Fatalf("CHECK constraint of %s.%s: %v", table, column, err)
		}
		var got []string
		for _, m := range quoted.FindAllStringSubmatch(def, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s.%s: the schema allows %v, package plan knows %v", table, column, got, want)
		}
	}
	check("meetings", "state", strs(plan.MeetingStates))
	check("meetings", "action", strs(plan.Actions))
	check("meeting_copies", "status", strs(plan.CopyStatuses))
	check("meeting_copies", "action", strs(plan.Actions))
	check("calendars", "status", strs(plan.CalendarStatuses))
	check("connections", "status", strs(plan.ConnStatuses))
	check("dead_letters", "class", strs(plan.DeadLetterClasses))
	check("reconciliation_runs", "status", strs(plan.RunStatuses))
}

func strs[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}
