package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/migrations"
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
	for _, want := range []string{"meetings logged", "skipped, by rule", "reschedule", "cancellation", "new meeting", "second company", "every check passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
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
