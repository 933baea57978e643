package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/migrations"
	"github.com/rapportsync/rapport/pipeline"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// simEnv runs a command against the test PostgreSQL server and this test
// binary's Redis database, in a database of its own that is dropped
// afterwards.
func simEnv(t *testing.T, prefix string) (getenv func(string) string, args []string) {
	t.Helper()
	name := prefix + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = migrations.DropDatabase(ctx, testenv.DatabaseURL(), name)
	})
	env := map[string]string{
		"RAPPORT_DATABASE_URL": testenv.DatabaseURL(),
		"RAPPORT_REDIS_URL":    "redis://" + testenv.RedisAddr() + "/0",
	}
	return func(k string) string { return env[k] },
		[]string{"--database", name, "--redis-db", strconv.Itoa(testenv.RedisDB(t))}
}

func TestDemoOnce(t *testing.T) {
	getenv, args := simEnv(t, "rapport_test_demo_")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := runCommand(ctx, DemoFlags, RunDemo, append([]string{"--once"}, args...), &stdout, &stderr, getenv)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("rapport demo --once exited %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), out)
	}
	for _, want := range []string{"customer meetings logged once each in HubSpot", "every event accounted for once", "reschedule", "cancellation",
		"new meeting", "second company", "every check passed", "Where to look", "/admin/workspaces/", "/timeline/companies/"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	checkSummaryAddsUp(t, out)
}

var (
	headlineRE = regexp.MustCompile(`(\d+) events on (\d+) calendars → (\d+) customer meetings logged once each in HubSpot \((\d+) copies on colleagues' calendars merged\), (\d+) skipped:\n((?:    +\d+  .*\n)+)`)
	reasonRE   = regexp.MustCompile(`(?m)^ +(\d+)  (.*)$`)
)

// checkSummaryAddsUp reads the summary as a person would and checks its
// sums: every event is a logged meeting, a merged copy or a skipped one,
// and the reasons add up to the skipped.
func checkSummaryAddsUp(t *testing.T, out string) {
	t.Helper()
	m := headlineRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary headline with its reasons in the output:\n%s", out)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	events, calendars, logged, merged, skipped := n(1), n(2), n(3), n(4), n(5)
	if calendars != 5 || logged == 0 || merged == 0 || skipped == 0 {
		t.Errorf("summary %q: want 5 calendars and some of each kind", m[0])
	}
	if logged+merged+skipped != events {
		t.Errorf("summary does not add up: %d logged + %d merged + %d skipped != %d events", logged, merged, skipped, events)
	}
	sum := 0
	for _, r := range reasonRE.FindAllStringSubmatch(m[6], -1) {
		v, _ := strconv.Atoi(r[1])
		sum += v
	}
	if sum != skipped {
		t.Errorf("the reasons add up to %d, the headline says %d skipped:\n%s", sum, skipped, m[6])
	}
}

// TestTallyAccountsForEveryEvent: a meeting's copies beyond the first are
// merged when it is logged, and skipped by their own rule when it is not;
// events that left no entry are cancelled before logging.
func TestTallyAccountsForEveryEvent(t *testing.T) {
	copies := func(rules ...string) []pipeline.MeetingCopy {
		var out []pipeline.MeetingCopy
		for _, r := range rules {
			out = append(out, pipeline.MeetingCopy{Rule: r})
		}
		return out
	}
	detail := func(state, rule string, cs []pipeline.MeetingCopy) pipeline.MeetingDetail {
		return pipeline.MeetingDetail{MeetingEntry: pipeline.MeetingEntry{State: state, Rule: rule}, Copies: cs}
	}
	got := tallyOf(12, 3, []pipeline.MeetingDetail{
		detail("logged", "customer-meeting", copies("customer-meeting", "customer-meeting", "skip-declined-by-owner")),
		detail("logged", "customer-meeting", copies("customer-meeting")),
		detail("cancelled", "cancel-logged", copies("cancel-logged", "cancel-logged")),
		detail("skipped", "default", copies("default", "default")),
		detail("skipped", "skip-private", copies("skip-private")),
		detail("skipped", "default", copies("")),
	})
	want := tally{Events: 12, Calendars: 3, Logged: 3, Merged: 3, Skipped: map[string]int{
		skipReason("default"): 3, skipReason("skip-private"): 1, skipReason(unrecorded): 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tally (-want +got):\n%s", diff)
	}
	if !got.adds() {
		t.Errorf("%+v does not add up", got)
	}
	if skipReason(unrecorded) != skipReason("skip-cancelled-before-logged") {
		t.Error("an event that left no entry and one the rule skipped as cancelled are told apart")
	}
	if bad := (tally{Events: 5, Logged: 1, Merged: 1, Skipped: map[string]int{"x": 1}}); bad.adds() {
		t.Error("a tally short of two events adds up")
	}
}

func TestBenchTinyJSON(t *testing.T) {
	getenv, args := simEnv(t, "rapport_test_bench_")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--calendars", "4", "--events", "200", "--companies", "60", "--steady", "2s",
		"--change-rate", "10", "--baseline", "20", "--hubspot-limit", "none", "--json"}, args...)
	code := runCommand(ctx, BenchFlags, RunBench, argv, &stdout, &stderr, getenv)
	if code != 0 {
		t.Fatalf("rapport bench exited %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	var r benchResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	bf, st := r.Backfill, r.Steady
	checks := []struct {
		what string
		ok   bool
	}{
		{"events generated", r.Sample.Events >= 200},
		{"every expected meeting logged", bf.MeetingsLogged == r.Sample.Meetings && bf.MeetingsLogged > 0},
		{"no duplicates, failures or dead letters", bf.Duplicates == 0 && bf.FailedMeetings == 0 && bf.DeadLetters == 0},
		{"positive wall time and rates", bf.WallSeconds > 0 && bf.EventsPerSecond > 0 && bf.MeetingsPerSecond > 0},
		{"HubSpot calls per meeting below one", bf.HubSpotCallsPerMtg > 0 && bf.HubSpotCallsPerMtg < 1},
		{"Google calls counted", bf.GoogleCalls > 0 && bf.GoogleCallsPerEvent > 0},
		{"steady changes all reflected", st.Changes == 20 && st.Reflected == st.Changes && st.Missed == 0},
		{"ordered percentiles", st.P50MS > 0 && st.P50MS <= st.P95MS && st.P95MS <= st.P99MS && st.P99MS <= st.MaxMS},
		{"memory sampled", r.Memory.PeakHeapInuseMB > 0 && r.Memory.MaxRSSMB > 0},
		{"baseline measured", r.Baseline.Meetings == 20 && r.Baseline.CallsPerMeeting >= 2 && r.Baseline.CallsRatio > 1},
		{"no problems", len(r.Problems) == 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no\n%s", c.what, stdout.String())
		}
	}
}

// runCommand parses a command's flags and runs it as the binary would; it
// returns the exit status.
func runCommand(ctx context.Context, flags func(*flag.FlagSet) any, run func(context.Context, *Env, any) error,
	args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := run(ctx, &Env{Stdout: stdout, Stderr: stderr, Getenv: getenv}, opts); err != nil {
		if !errors.Is(err, ErrReported) {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	return 0
}
