package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/ledger"
)

// `rapport bench --chaos` runs the backfill of the scenario twice, each time
// with a fault in the middle, and measures the recovery: the time from the
// fault until everything settled — every meeting in HubSpot once, every
// copy linked, every calendar synced, as the ledger says, whatever the
// queue holds. The workers run as `rapport worker` subprocesses of this
// binary, so that the first fault is a real SIGKILL:
//
//   - kill: SIGKILL of the worker when a third of the meetings are in
//     HubSpot, and a new worker started at once (a supervisor's restart);
//   - flush: FLUSHDB of Rapport's Redis database at the same point (a
//     Redis restarted without persistence).

// chaosResult is one fault's run.
type chaosResult struct {
	Fault            string  `json:"fault"`
	AtMeetings       int     `json:"at_meetings"`
	Expected         int     `json:"meetings_expected"`
	FaultAfterS      float64 `json:"fault_after_s"`
	RecoveryS        float64 `json:"recovery_s"`
	BackfillS        float64 `json:"backfill_s"`
	MeetingsLogged   int     `json:"meetings_logged"`
	Duplicates       int     `json:"duplicates"`
	DeadLetters      int     `json:"dead_letters"`
	SweepEverySecond float64 `json:"sweep_every_s"`
	SweepGraceSecond float64 `json:"sweep_grace_s"`
	Settled          bool    `json:"settled"`
}

// runChaos runs the scenario once per fault.
func (b *bench) runChaos(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("chaos: find the rapport binary: %w", err)
	}
	for _, fault := range []string{"kill", "flush"} {
		r, err := b.chaosRun(ctx, self, fault)
		if err != nil {
			return fmt.Errorf("chaos (%s): %w", fault, err)
		}
		b.r.Chaos = append(b.r.Chaos, r)
		if !r.Settled {
			b.problem("chaos %s: not settled %.0f s after the fault", fault, r.RecoveryS)
		}
		if r.MeetingsLogged != r.Expected || r.Duplicates > 0 || r.DeadLetters > 0 {
			b.problem("chaos %s: %d of %d meetings logged, %d duplicates, %d dead letters", fault, r.MeetingsLogged, r.Expected, r.Duplicates, r.DeadLetters)
		}
	}
	return nil
}

// workerProc is a `rapport worker` subprocess.
type workerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorkerProcess runs `rapport worker` with the simulation's
// configuration.
func (s *simulation) startWorkerProcess(self string, logs io.Writer) (*workerProc, error) {
	cmd := exec.Command(self, "worker")
	cmd.Env = os.Environ()
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a worker: %w", err)
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

func (w *workerProc) kill() {
	select {
	case <-w.done:
	default:
		w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.done
	}
}

// chaosRun runs one backfill with one fault.
func (b *bench) chaosRun(ctx context.Context, self, fault string) (chaosResult, error) {
	o := b.o
	r := chaosResult{Fault: fault}
	sim, err := startSimulation(ctx, b.e, simOptions{
		Database: o.database, RedisDB: o.redisDB, Hub: b.hubOptions(), RateLimit: b.rateLimit(),
		GoogleLatency: o.latency, LogLevel: o.logLevel, App: app.Options{Unlimited: b.unlimited}, WorkerProcesses: true,
	})
	if err != nil {
		return r, err
	}
	defer sim.Close()
	r.SweepEverySecond, r.SweepGraceSecond = sim.cfg.SweepEvery.Seconds(), sim.cfg.SweepGrace.Seconds()
	var workers []*workerProc
	defer func() {
		for _, w := range workers {
			w.kill()
		}
	}()
	w, err := sim.startWorkerProcess(self, b.e.Stderr)
	if err != nil {
		return r, err
	}
	workers = append(workers, w)

	smp, err := generateSample(sampleSpec{Seed: o.seed, Calendars: o.calendars, Events: o.events, Companies: o.companies, Now: time.Now()}, sim.google, sim.hub)
	if err != nil {
		return r, err
	}
	r.Expected = smp.Expected
	sim.google.SetAutoNotify(true)
	var t0 time.Time
	if err := sim.connect(ctx, smp, func(pipeline.IndexStatus) { t0 = time.Now() }); err != nil {
		return r, err
	}
	b.logf("chaos %s: backfill of %d meetings started", fault, smp.Expected)
	at := smp.Expected / 3
	if err := poll(ctx, o.timeout, 20*time.Millisecond, "a third of the meetings in HubSpot", func() (bool, error) {
		return len(sim.hub.Meetings()) >= at, sim.failure()
	}); err != nil {
		return r, err
	}
	r.AtMeetings = len(sim.hub.Meetings())
	faultAt := time.Now()
	r.FaultAfterS = faultAt.Sub(t0).Seconds()
	switch fault {
	case "kill":
		w.kill()
		if w, err = sim.startWorkerProcess(self, b.e.Stderr); err != nil {
			return r, err
		}
		workers = append(workers, w)
		b.logf("chaos kill: SIGKILL of the worker at %d of %d meetings in HubSpot (%.1f s in); a new worker started", r.AtMeetings, smp.Expected, r.FaultAfterS)
	case "flush":
		if err := sim.app.Redis.FlushDB(ctx).Err(); err != nil {
			return r, fmt.Errorf("FLUSHDB: %w", err)
		}
		b.logf("chaos flush: FLUSHDB at %d of %d meetings in HubSpot (%.1f s in)", r.AtMeetings, smp.Expected, r.FaultAfterS)
	}
	store := ledger.New(sim.app.Pool)
	streak := 0
	lastPrint := time.Now()
	err = poll(ctx, o.timeout, time.Second, "everything settled after the fault", func() (bool, error) {
		owed, err := store.Owed(ctx, sim.ws)
		if err != nil {
			return false, err
		}
		n := len(sim.hub.Meetings())
		if owed.Zero() && n >= smp.Expected {
			streak++
		} else {
			streak = 0
		}
		if time.Since(lastPrint) >= 10*time.Second {
			lastPrint = time.Now()
			b.logf("  %5.0fs after the fault: %d meetings in HubSpot; owed: %d writes, %d write-backs, %d calendars", time.Since(faultAt).Seconds(),
				n, owed.Writes, owed.Links, owed.Calendars)
		}
		return streak >= 2, nil
	})
	r.RecoveryS = time.Since(faultAt).Seconds()
	r.BackfillS = time.Since(t0).Seconds()
	if err != nil && ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.Settled = err == nil
	meetings := sim.hub.Meetings()
	r.MeetingsLogged = len(meetings) - len(duplicates(meetings))
	r.Duplicates = len(duplicates(meetings))
	dls, dErr := sim.deadLetters(ctx)
	if dErr != nil && !errors.Is(dErr, context.Canceled) {
		return r, dErr
	}
	r.DeadLetters = len(dls)
	b.logf("chaos %s: settled %.1f s after the fault (backfill %.1f s in all): %d of %d meetings once, %d duplicates, %d dead letters",
		fault, r.RecoveryS, r.BackfillS, r.MeetingsLogged, smp.Expected, r.Duplicates, r.DeadLetters)
	return r, nil
}

// hubOptions are the fake HubSpot's options of the run.
func (b *bench) hubOptions() crmtest.Options {
	hub := crmtest.Options{Latency: b.o.latency}
	if b.unlimited {
		hub.Limit, hub.SearchPerSecond = -1, -1
	} else {
		hub.Limit, hub.Window = b.limit.Requests, b.limit.Window
	}
	return hub
}

// rateLimit is the limit Rapport is given (RAPPORT_HUBSPOT_RATE_LIMIT).
func (b *bench) rateLimit() string {
	if b.unlimited {
		return "1000000/1s"
	}
	return b.o.hubspotLimit
}

// reportChaos prints the chaos runs for people.
func (b *bench) reportChaos(w io.Writer) {
	fmt.Fprintf(w, "\nrapport bench --chaos: %d calendars, %d events, %d companies; HubSpot limit %s; %d cores\n",
		b.o.calendars, b.o.events, b.o.companies, b.o.hubspotLimit, b.r.Params.Cores)
	for _, c := range b.r.Chaos {
		what := map[string]string{"kill": "SIGKILL of the worker (a new one started at once)", "flush": "FLUSHDB of Rapport's Redis database"}[c.Fault]
		fmt.Fprintf(w, "\n%s\n", what)
		fmt.Fprintf(w, "  fault                  at %d of %d meetings in HubSpot, %.1f s into the backfill\n", c.AtMeetings, c.Expected, c.FaultAfterS)
		settled := "settled"
		if !c.Settled {
			settled = "NOT settled"
		}
		fmt.Fprintf(w, "  recovery               %s %.1f s after the fault (backfill %.1f s in all; sweep every %.0f s, grace %.0f s)\n",
			settled, c.RecoveryS, c.BackfillS, c.SweepEverySecond, c.SweepGraceSecond)
		fmt.Fprintf(w, "  outcome                %d of %d meetings once, %d duplicates, %d dead letters\n", c.MeetingsLogged, c.Expected, c.Duplicates, c.DeadLetters)
	}
	if len(b.r.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems")
		for _, p := range b.r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}
