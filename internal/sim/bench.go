package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// The benchmark harness: the real pipeline (in-process workers, a fresh
// PostgreSQL database, Redis) against the fakes, filled with a generated
// sample. It measures the initial backfill, then a steady state of live
// changes timed from the change on the fake Google until the fake HubSpot
// holds it, and, in the same run, a naive integration's cost on a sample of
// the meetings.

type benchOptions struct {
	calendars, events, companies int
	latency                      time.Duration
	hubspotLimit                 string
	changeRate                   float64
	steady                       time.Duration
	baseline                     int
	json                         bool
	cpuprofile, memprofile       string
	database                     string
	redisDB                      int
	seed                         uint64
	syncConc, crmConc, linkConc  int
	batchMaxDelay                time.Duration
	timeout                      time.Duration
	logLevel                     string
	chaos                        bool
	contactRules                 bool
}

// BenchFlags registers the flags of `rapport bench`.
func BenchFlags(fs *flag.FlagSet) any {
	o := &benchOptions{}
	fs.IntVar(&o.calendars, "calendars", 200, "employees' calendars")
	fs.IntVar(&o.events, "events", 100_000, "event copies over the calendars (each instance of a series and each colleague's copy counts)")
	fs.IntVar(&o.companies, "companies", 20_000, "CRM companies")
	fs.DurationVar(&o.latency, "latency", 0, "latency the fake Google and the fake HubSpot add to every request")
	fs.StringVar(&o.hubspotLimit, "hubspot-limit", "190/10s", `HubSpot's request limit, enforced by the fake and given to Rapport; "none" lifts every provider limit (HubSpot, its search API, Rapport's Google per-user limit) to measure the pipeline itself`)
	fs.Float64Var(&o.changeRate, "change-rate", 20, "calendar changes per second in the steady phase")
	fs.DurationVar(&o.steady, "steady", 30*time.Second, "duration of the steady phase (0 skips it)")
	fs.IntVar(&o.baseline, "baseline", 300, "meetings the naive baseline writes (0 skips it)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the report")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile, taken when the backfill settled, to this file")
	fs.StringVar(&o.database, "database", "rapport_bench", "database the benchmark drops and creates afresh on the server of RAPPORT_DATABASE_URL")
	fs.IntVar(&o.redisDB, "redis-db", 14, "Redis database index, on the server of RAPPORT_REDIS_URL, that the benchmark empties and uses")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated sample")
	fs.IntVar(&o.syncConc, "sync-concurrency", 0, "workers on the sync queue (0: the pipeline's default, 4)")
	fs.IntVar(&o.crmConc, "crm-concurrency", 0, "workers on the crm queue (0: the pipeline's default, 2)")
	fs.IntVar(&o.linkConc, "link-concurrency", 0, "workers on the link queue (0: the pipeline's default, 64)")
	fs.DurationVar(&o.batchMaxDelay, "batch-max-delay", 0, "longest wait of a CRM write for its batch (0: the pipeline's default, 1s)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up when the backfill takes longer")
	fs.StringVar(&o.logLevel, "log-level", "error", "level of the logs written to stderr")
	fs.BoolVar(&o.chaos, "chaos", false, "instead of the phases above, run the backfill twice with a fault a third of the way in — SIGKILL of the worker (a subprocess), then FLUSHDB of Redis — and report the time from each fault until everything settled")
	fs.BoolVar(&o.contactRules, "contact-rules", false, "decide with the built-in rules plus one that reads a contact property (jobtitle), to measure the contact reads at decide time; the same meetings are logged")
	return o
}

// contactRuleSet is the built-in rules with one more rule, before
// customer-meeting, that reads a contact property: a job title the sample
// never sets, so the same meetings are logged and only the contact reads
// differ.
func contactRuleSet() (*rules.Set, error) {
	def := string(rules.DefaultYAML())
	i := strings.Index(def, "  - name: customer-meeting")
	if i < 0 {
		return nil, errors.New("the built-in rules have no customer-meeting rule")
	}
	extra := "  - name: skip-recruiters\n    when: any(external, .contact != nil && .contact.properties.jobtitle == \"Recruiter\")\n    action: skip\n"
	yaml := def[:i] + extra + def[i:] + "crm_properties:\n  contacts: [jobtitle]\n"
	return rules.LoadFiles(map[string][]byte{"bench-contact-rules.yaml": []byte(yaml)})
}

// benchResult is what the benchmark measured; --json prints it.
type benchResult struct {
	Params struct {
		Calendars    int     `json:"calendars"`
		Events       int     `json:"events"`
		Companies    int     `json:"companies"`
		LatencyMS    float64 `json:"latency_ms"`
		HubSpotLimit string  `json:"hubspot_limit"`
		ChangeRate   float64 `json:"change_rate"`
		SteadyS      float64 `json:"steady_s"`
		Concurrency  string  `json:"concurrency"`
		Cores        int     `json:"cores"`
		ContactRules bool    `json:"contact_rules"`
	} `json:"params"`
	Sample struct {
		Events           int     `json:"events"`
		Meetings         int     `json:"meetings_expected"`
		Companies        int     `json:"companies"`
		Contacts         int     `json:"contacts"`
		GenerateSeconds  float64 `json:"generate_s"`
		IndexLoadSeconds float64 `json:"index_load_s"`
	} `json:"sample"`
	Backfill struct {
		Settled              bool           `json:"settled"`
		Backlog              map[string]int `json:"backlog,omitempty"`
		Stranded             int            `json:"stranded_meetings"`
		WallSeconds          float64        `json:"wall_s"`
		DecidedSeconds       float64        `json:"decided_s"`
		CRMSeconds           float64        `json:"crm_s"`
		MeetingsLogged       int            `json:"meetings_logged"`
		Duplicates           int            `json:"duplicates"`
		MeetingsPerSecond    float64        `json:"meetings_per_s"`
		EventsPerSecond      float64        `json:"events_per_s"`
		DecideEventsPerSec   float64        `json:"decide_events_per_s"`
		HubSpotCalls         int            `json:"hubspot_calls"`
		HubSpotSetupCalls    int            `json:"hubspot_setup_calls"`
		HubSpotCallsPerMtg   float64        `json:"hubspot_calls_per_meeting"`
		HubSpotWritePerMtg   float64        `json:"hubspot_write_calls_per_meeting"`
		HubSpotByEndpoint    map[string]int `json:"hubspot_by_endpoint"`
		GoogleCalls          int            `json:"google_calls"`
		GoogleCallsPerEvent  float64        `json:"google_calls_per_event"`
		GoogleByEndpoint     map[string]int `json:"google_by_endpoint"`
		RateLimited429       int            `json:"hubspot_429"`
		DeadLetters          int            `json:"dead_letters"`
		FailedMeetings       int            `json:"failed_meetings"`
		PipelineLatencyCount int            `json:"pipeline_latency_observations"`
	} `json:"backfill"`
	Steady struct {
		Changes       int            `json:"changes"`
		ByKind        map[string]int `json:"by_kind"`
		Reflected     int            `json:"reflected"`
		Missed        int            `json:"missed"`
		P50MS         float64        `json:"p50_ms"`
		P95MS         float64        `json:"p95_ms"`
		P99MS         float64        `json:"p99_ms"`
		MaxMS         float64        `json:"max_ms"`
		HubSpotCalls  int            `json:"hubspot_calls"`
		GoogleCalls   int            `json:"google_calls"`
		RateLimited   int            `json:"hubspot_429"`
		SettleSeconds float64        `json:"settle_s"`
	} `json:"steady"`
	Memory struct {
		PeakSysMB       float64 `json:"peak_sys_mb"`
		PeakHeapInuseMB float64 `json:"peak_heap_inuse_mb"`
		MaxRSSMB        float64 `json:"max_rss_mb"`
	} `json:"memory"`
	Baseline struct {
		Meetings          int     `json:"meetings"`
		Calls             int     `json:"calls"`
		RateLimited429    int     `json:"hubspot_429"`
		CallsPerMeeting   float64 `json:"calls_per_meeting"`
		WallSeconds       float64 `json:"wall_s"`
		MeanCallMS        float64 `json:"mean_call_ms"`
		ProjectedCalls    int     `json:"projected_calls"`
		ProjectedSeconds  float64 `json:"projected_s"`
		CallsRatio        float64 `json:"calls_ratio"`
		WallRatio         float64 `json:"wall_ratio"`
		ProjectionSummary string  `json:"projection"`
	} `json:"baseline"`
	Chaos    []chaosResult `json:"chaos,omitempty"`
	Problems []string      `json:"problems"`
}

// hubspotSetup are the endpoints of connecting a portal and loading its
// company index, as opposed to writing meetings.
var hubspotSetup = []string{"account.details", "properties.get", "properties.create", "companies.list", "companies.search", "owners.list"}

// RunBench runs `rapport bench` with the options BenchFlags registered.
func RunBench(ctx context.Context, e *Env, opts any) error {
	o := opts.(*benchOptions)
	if o.calendars < 1 || o.events < 1 || o.companies < 1 || o.changeRate <= 0 || o.baseline < 0 {
		return &UsageError{"--calendars, --events, --companies and --change-rate must be positive"}
	}
	var limit hubspot.Limit
	unlimited := o.hubspotLimit == "none" || o.hubspotLimit == "0"
	if !unlimited {
		var err error
		if limit, err = hubspot.ParseLimit(o.hubspotLimit); err != nil {
			return &UsageError{err.Error()}
		}
	}
	if _, ok := app.LogLevels[o.logLevel]; !ok {
		return &UsageError{"--log-level: want debug, info, warn or error"}
	}
	b := &bench{o: o, e: e, unlimited: unlimited, limit: limit}
	b.r.Problems = []string{}
	b.progress = e.Stdout
	if o.json {
		b.progress = e.Stderr
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	stopMem := b.sampleMemory()
	run, report := b.run, b.report
	if o.chaos {
		b.r.Params.Cores = runtime.NumCPU()
		run, report = b.runChaos, b.reportChaos
	}
	err := run(ctx)
	stopMem()
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.r.Memory.MaxRSSMB = float64(ru.Maxrss) / 1024 // kilobytes on Linux
	}
	if o.json {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&b.r); err != nil {
			return err
		}
	} else {
		report(e.Stdout)
	}
	if len(b.r.Problems) > 0 {
		fmt.Fprintf(e.Stderr, "rapport bench: %d problem(s): %s\n", len(b.r.Problems), strings.Join(b.r.Problems, "; "))
		return ErrReported
	}
	return nil
}

type bench struct {
	o         *benchOptions
	e         *Env
	unlimited bool
	limit     hubspot.Limit
	progress  io.Writer
	sim       *simulation
	smp       *sample
	r         benchResult
	memMu     sync.Mutex
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, format+"\n", args...)
}

func (b *bench) problem(format string, args ...any) {
	b.r.Problems = append(b.r.Problems, fmt.Sprintf(format, args...))
}

// sampleMemory records the peak of the Go runtime's memory every 250 ms
// until the returned function is called.
func (b *bench) sampleMemory() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	take := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.memMu.Lock()
		b.r.Memory.PeakSysMB = math.Max(b.r.Memory.PeakSysMB, float64(ms.Sys)/(1<<20))
		b.r.Memory.PeakHeapInuseMB = math.Max(b.r.Memory.PeakHeapInuseMB, float64(ms.HeapInuse)/(1<<20))
		b.memMu.Unlock()
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			take()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		take()
	}
}

func (b *bench) run(ctx context.Context) error {
	o := b.o
	r := &b.r
	r.Params.Calendars, r.Params.Events, r.Params.Companies = o.calendars, o.events, o.companies
	r.Params.LatencyMS = float64(o.latency) / float64(time.Millisecond)
	r.Params.HubSpotLimit, r.Params.ChangeRate, r.Params.SteadyS = o.hubspotLimit, o.changeRate, o.steady.Seconds()
	r.Params.Cores = runtime.NumCPU()

	hub, rateLimit := b.hubOptions(), b.rateLimit()
	conc := map[string]int{}
	for q, n := range map[string]int{pipeline.QueueSync: o.syncConc, pipeline.QueueCRM: o.crmConc, pipeline.QueueLink: o.linkConc} {
		if n > 0 {
			conc[q] = n
		}
	}
	r.Params.Concurrency = fmt.Sprintf("sync=%d crm=%d link=%d", or(o.syncConc, 4), or(o.crmConc, 2), or(o.linkConc, 64))
	tweak := func(pc *pipeline.Config) {
		if len(conc) > 0 {
			merged := map[string]int{}
			for q, n := range pc.Concurrency {
				merged[q] = n
			}
			for q, n := range conc {
				merged[q] = n
			}
			pc.Concurrency = merged
		}
		if o.batchMaxDelay > 0 {
			pc.BatchMaxDelay = o.batchMaxDelay
		}
	}
	sim, err := startSimulation(ctx, b.e, simOptions{
		Database: o.database, RedisDB: o.redisDB, Hub: hub, RateLimit: rateLimit,
		GoogleLatency: o.latency, LogLevel: o.logLevel, App: app.Options{Pipeline: tweak, Unlimited: b.unlimited},
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	b.sim = sim
	if o.contactRules {
		set, err := contactRuleSet()
		if err != nil {
			return err
		}
		sim.app.Rules.Store(set)
		r.Params.ContactRules = true
	}

	t0 := time.Now()
	b.smp, err = generateSample(sampleSpec{Seed: o.seed, Calendars: o.calendars, Events: o.events, Companies: o.companies, Now: time.Now()}, sim.google, sim.hub)
	if err != nil {
		return err
	}
	smp := b.smp
	r.Sample.Events, r.Sample.Meetings, r.Sample.Companies, r.Sample.Contacts = smp.TotalEvents(), smp.Expected, len(smp.Companies), smp.Contacts
	r.Sample.GenerateSeconds = time.Since(t0).Seconds()
	b.logf("sample: %d event copies on %d calendars, %d companies, %d meetings to log (generated in %.1fs)",
		smp.TotalEvents(), o.calendars, len(smp.Companies), smp.Expected, r.Sample.GenerateSeconds)

	// The naive baseline runs alongside on its own fake portal: it is
	// bound by that portal's limit and barely uses the CPU.
	var baseWG sync.WaitGroup
	if o.baseline > 0 {
		baseWG.Add(1)
		go func() {
			defer baseWG.Done()
			b.runBaseline(ctx, hub)
		}()
	}
	defer baseWG.Wait()

	if err := b.backfill(ctx); err != nil {
		return err
	}
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	if o.steady > 0 && r.Backfill.Settled {
		if err := b.steadyState(ctx); err != nil {
			return err
		}
	}
	baseWG.Wait()
	if o.baseline > 0 && r.Baseline.Meetings > 0 {
		bl := &r.Baseline
		full := r.Backfill.MeetingsLogged
		bl.ProjectedCalls = int(math.Round(float64(full) * 2))
		seq := float64(bl.ProjectedCalls) * bl.MeanCallMS / 1000
		bound := seq
		how := "sequential calls at the measured latency"
		if !b.unlimited {
			if lim := float64(bl.ProjectedCalls) * b.limit.Window.Seconds() / float64(b.limit.Requests); lim > bound {
				bound, how = lim, "HubSpot's limit ("+b.limit.String()+"), 2 calls per meeting"
			}
		}
		bl.ProjectedSeconds = bound
		bl.ProjectionSummary = fmt.Sprintf("%d meetings × 2 calls, bound by %s", full, how)
		if r.Backfill.HubSpotCallsPerMtg > 0 {
			bl.CallsRatio = bl.CallsPerMeeting / r.Backfill.HubSpotCallsPerMtg
		}
		if r.Backfill.CRMSeconds > 0 {
			bl.WallRatio = bl.ProjectedSeconds / r.Backfill.CRMSeconds
		}
	}
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

func or(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// backfill connects everything and waits until the initial sync settled.
func (b *bench) backfill(ctx context.Context) error {
	sim, smp, r := b.sim, b.smp, &b.r
	sim.google.SetAutoNotify(true)
	hubStart := time.Now()
	var t0 time.Time
	err := sim.connect(ctx, smp, func(ix pipeline.IndexStatus) {
		r.Sample.IndexLoadSeconds = time.Since(hubStart).Seconds()
		b.logf("company index: %d companies in %.1fs", ix.Companies, r.Sample.IndexLoadSeconds)
		t0 = time.Now()
	})
	if err != nil {
		return err
	}
	b.logf("backfill: %d calendars connected in %.1fs", len(smp.Employees), time.Since(t0).Seconds())
	var decided, crmDone time.Duration
	lastPrint := time.Now()
	err = sim.waitSettled(ctx, b.o.timeout, time.Second, func(el time.Duration) {
		el = time.Since(t0)
		events := metric(sim.app.Registry, "rapport_events_total", nil)
		written := metric(sim.app.Registry, "rapport_meetings_written_total", nil)
		if decided == 0 && b.allSynced(ctx) {
			decided = el
		}
		if crmDone == 0 && int(written) >= smp.Expected {
			crmDone = el
		}
		if time.Since(lastPrint) >= 5*time.Second {
			lastPrint = time.Now()
			qs, _ := sim.queues()
			b.logf("  %5.0fs  decisions %7.0f  meetings written %6.0f  queued: sync %d, crm %d, link %d  HubSpot calls %d (429: %d)",
				el.Seconds(), events, written, qs[pipeline.QueueSync], qs[pipeline.QueueCRM], qs[pipeline.QueueLink], sim.hub.TotalCalls(), sim.hub.RateLimited())
		}
	})
	bf := &r.Backfill
	var stranded *errStranded
	bf.Settled = err == nil || errors.As(err, &stranded)
	if stranded != nil {
		bf.Stranded = stranded.n
		b.problem("backfill: %v", err)
	} else if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Report what was measured: usually the meetings are all in
		// HubSpot and the write-back is what is left.
		qs, _ := sim.queues()
		bf.Backlog = qs
		b.problem("backfill %v; still queued: sync %d, crm %d, link %d", err, qs[pipeline.QueueSync], qs[pipeline.QueueCRM], qs[pipeline.QueueLink])
	}
	wall := time.Since(t0)
	if decided == 0 {
		decided = wall
	}
	if crmDone == 0 {
		crmDone = wall
	}
	bf.WallSeconds, bf.DecidedSeconds, bf.CRMSeconds = wall.Seconds(), decided.Seconds(), crmDone.Seconds()
	meetings := sim.hub.Meetings()
	bf.MeetingsLogged = len(meetings)
	bf.Duplicates = len(duplicates(meetings))
	bf.MeetingsPerSecond = float64(bf.MeetingsLogged) / crmDone.Seconds()
	bf.EventsPerSecond = float64(smp.TotalEvents()) / wall.Seconds()
	bf.DecideEventsPerSec = float64(smp.TotalEvents()) / decided.Seconds()
	bf.HubSpotByEndpoint = sim.hub.Calls()
	bf.HubSpotCalls = sumCounts(bf.HubSpotByEndpoint)
	for _, ep := range hubspotSetup {
		bf.HubSpotSetupCalls += bf.HubSpotByEndpoint[ep]
	}
	bf.HubSpotCallsPerMtg = float64(bf.HubSpotCalls) / float64(max(1, bf.MeetingsLogged))
	bf.HubSpotWritePerMtg = float64(bf.HubSpotCalls-bf.HubSpotSetupCalls) / float64(max(1, bf.MeetingsLogged))
	bf.GoogleByEndpoint = sim.google.Calls()
	bf.GoogleCalls = sumCounts(bf.GoogleByEndpoint)
	bf.GoogleCallsPerEvent = float64(bf.GoogleCalls) / float64(max(1, smp.TotalEvents()))
	bf.RateLimited429 = sim.hub.RateLimited()
	bf.PipelineLatencyCount = int(metric(sim.app.Registry, "rapport_webhook_to_crm_seconds", nil))
	if bf.MeetingsLogged != smp.Expected {
		b.problem("backfill logged %d meetings, the sample should produce %d", bf.MeetingsLogged, smp.Expected)
	}
	if bf.Duplicates > 0 {
		b.problem("%d meetings logged twice", bf.Duplicates)
	}
	b.countFailures(ctx)
	b.logf("backfill: settled in %.1fs (all decided at %.1fs, all in HubSpot at %.1fs): %d meetings, %d HubSpot calls (%.4f per meeting), %d Google calls",
		wall.Seconds(), decided.Seconds(), crmDone.Seconds(), bf.MeetingsLogged, bf.HubSpotCalls, bf.HubSpotCallsPerMtg, bf.GoogleCalls)
	return nil
}

// allSynced reports whether every calendar finished its first sync: every
// event has been decided.
func (b *bench) allSynced(ctx context.Context) bool {
	var cals []pipeline.CalendarStatus
	if err := b.sim.admin(ctx, "GET", "/admin/workspaces/"+b.sim.ws+"/calendars", nil, &cals); err != nil {
		return false
	}
	for _, c := range cals {
		if c.LastSyncedAt == nil {
			return false
		}
	}
	return len(cals) > 0
}

// countFailures records dead letters and failed ledger entries.
func (b *bench) countFailures(ctx context.Context) {
	dls, err := b.sim.deadLetters(ctx)
	if err != nil {
		b.problem("list dead letters: %v", err)
	}
	b.r.Backfill.DeadLetters = len(dls)
	for i, dl := range dls {
		if i < 3 {
			b.problem("dead letter %d: %s %s: %s", dl.ID, dl.TaskType, dl.Class, dl.Reason)
		}
	}
	var l struct {
		Items []pipeline.MeetingEntry `json:"items"`
	}
	if err := b.sim.admin(ctx, "GET", "/admin/workspaces/"+b.sim.ws+"/meetings?limit=500&state=failed", nil, &l); err != nil {
		b.problem("list failed meetings: %v", err)
	}
	b.r.Backfill.FailedMeetings = len(l.Items)
	if len(l.Items) > 0 {
		b.problem("%d meetings failed to write", len(l.Items))
	}
}

// timedChange is one change of the steady phase.
type timedChange struct {
	kind  string
	at    time.Time
	key   string
	crmID string
	want  func(crm.Meeting) bool
}

// steadyState makes changes at the configured rate with real webhook
// deliveries, then measures when each reached HubSpot.
func (b *bench) steadyState(ctx context.Context) error {
	sim, smp, o, st := b.sim, b.smp, b.o, &b.r.Steady
	byKey := map[string]crm.Meeting{}
	for _, m := range sim.hub.Meetings() {
		byKey[m.Key] = m
	}
	var cands []*sampleMeeting
	for _, m := range smp.Meetings {
		if m.Kind == kindCustomer && m.Logged == 1 {
			cands = append(cands, m)
		}
	}
	rng := rand.New(rand.NewPCG(o.seed, 7))
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	hubBefore, googleBefore, limitedBefore := sim.hub.TotalCalls(), sumCounts(sim.google.Calls()), sim.hub.RateLimited()

	var changes []timedChange
	n := int(o.changeRate * o.steady.Seconds())
	every := time.Duration(float64(time.Second) / o.changeRate)
	b.logf("steady state: %d changes at %.0f/s for %v", n, o.changeRate, o.steady)
	tick := time.NewTicker(every)
	defer tick.Stop()
	next := 0
	onAll := func(m *sampleMeeting, fn func(cal string) error) error {
		for _, c := range m.Calendars {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		x := rng.IntN(100)
		var m *sampleMeeting
		var cm crm.Meeting
		if x >= 75 {
			m = nil
		} else {
			for next < len(cands) {
				c := cands[next]
				next++
				if got, ok := byKey[pipeline.MeetingKey(sim.ws, c.ICalUID, time.Time{})]; ok {
					m, cm = c, got
					break
				}
			}
			if m == nil {
				x = 100 // out of meetings to change: add new ones
			}
		}
		c := timedChange{at: time.Now()}
		var err error
		switch {
		case x < 40:
			c.kind = "reschedule"
			ns, ne := m.Start.Add(time.Hour), m.End.Add(time.Hour)
			want := isoUTC(ns)
			c.want = func(got crm.Meeting) bool { return got.Properties[crm.PropStart] == want }
			err = onAll(m, func(cal string) error { _, err := sim.google.Move(cal, m.EventID, ns, ne); return err })
		case x < 60:
			c.kind = "rename"
			title := m.Title + " (renamed)"
			c.want = func(got crm.Meeting) bool { return got.Properties[crm.PropTitle] == title }
			err = onAll(m, func(cal string) error { _, err := sim.google.Rename(cal, m.EventID, title); return err })
		case x < 75:
			c.kind = "cancel"
			c.want = func(got crm.Meeting) bool { return got.Properties[crm.PropOutcome] == crm.OutcomeCanceled }
			err = onAll(m, func(cal string) error { return sim.google.Cancel(cal, m.EventID) })
		default:
			c.kind = "new meeting"
			owner := smp.Employees[rng.IntN(len(smp.Employees))]
			var co *sampleCompany
			for co == nil || len(co.People) == 0 {
				co = smp.Companies[rng.IntN(len(smp.Companies))]
			}
			start := time.Now().Add(time.Duration(24+rng.IntN(24*20)) * time.Hour).Truncate(30 * time.Minute)
			var ev calendartest.Event
			ev, err = sim.google.Insert(owner, calendartest.EventSpec{Summary: co.Name + " intro", Start: start, End: start.Add(30 * time.Minute),
				Attendees: []calendartest.Attendee{att(owner, "accepted"), att(co.People[0], "accepted")}})
			c.key = pipeline.MeetingKey(sim.ws, ev.ICalUID, time.Time{})
			c.want = func(crm.Meeting) bool { return true }
		}
		if err != nil {
			return fmt.Errorf("steady change %d (%s): %w", i, c.kind, err)
		}
		if m != nil {
			c.key, c.crmID = cm.Key, cm.ID
		}
		changes = append(changes, c)
	}
	settleStart := time.Now()
	if err := sim.waitSettled(ctx, 3*time.Minute, time.Hour, nil); err != nil {
		var stranded *errStranded
		if !errors.As(err, &stranded) {
			return fmt.Errorf("after the steady phase: %w", err)
		}
		b.problem("after the steady phase: %v", err)
	}
	st.SettleSeconds = time.Since(settleStart).Seconds()
	byKey = map[string]crm.Meeting{}
	for _, m := range sim.hub.Meetings() {
		if _, dup := byKey[m.Key]; dup {
			b.problem("meeting key %s… logged twice", m.Key[:12])
		}
		byKey[m.Key] = m
	}
	st.ByKind = map[string]int{}
	var lat []float64
	for _, c := range changes {
		st.ByKind[c.kind]++
		got, ok := byKey[c.key]
		if !ok || !c.want(got) {
			st.Missed++
			continue
		}
		prop := "hs_lastmodifieddate"
		if c.kind == "new meeting" {
			prop = "hs_createdate"
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z", got.Properties[prop])
		if err != nil {
			st.Missed++
			continue
		}
		st.Reflected++
		lat = append(lat, float64(at.Sub(c.at))/float64(time.Millisecond))
	}
	st.Changes = len(changes)
	slices.Sort(lat)
	st.P50MS, st.P95MS, st.P99MS = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	if len(lat) > 0 {
		st.MaxMS = lat[len(lat)-1]
	}
	st.HubSpotCalls = sim.hub.TotalCalls() - hubBefore
	st.GoogleCalls = sumCounts(sim.google.Calls()) - googleBefore
	st.RateLimited = sim.hub.RateLimited() - limitedBefore
	if st.Missed > 0 {
		b.problem("%d of %d steady-state changes never reached HubSpot", st.Missed, st.Changes)
	}
	b.logf("steady state: %d changes, p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, %d HubSpot calls", st.Changes, st.P50MS, st.P95MS, st.P99MS, st.HubSpotCalls)
	return nil
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// runBaseline is what a first integration usually does: for each meeting,
// one create call and one association call, one after the other, no
// batching, no client-side limiter; a 429 is retried after a second.
func (b *bench) runBaseline(ctx context.Context, opts crmtest.Options) {
	bl := &b.r.Baseline
	fake := crmtest.NewServer(opts)
	defer fake.Close()
	ids := map[string]string{} // sample company id → the baseline portal's
	var ms []*sampleMeeting
	for _, m := range b.smp.Meetings {
		if m.Logged > 0 && len(ms) < b.o.baseline {
			ms = append(ms, m)
			for _, id := range m.Companies {
				if _, ok := ids[id]; !ok {
					c := b.smp.company(id)
					ids[id] = fake.AddCompany(crm.Company{Name: c.Name, Domains: c.Domains})
				}
			}
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	var ok int
	var okTime time.Duration
	call := func(path string, body any) (map[string]any, error) {
		raw, _ := json.Marshal(body)
		for {
			req, err := http.NewRequestWithContext(ctx, "POST", fake.URL()+path, bytes.NewReader(raw))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer naive-token")
			req.Header.Set("Content-Type", "application/json")
			t := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Second):
				}
				continue
			}
			if resp.StatusCode/100 != 2 {
				return nil, fmt.Errorf("%s: %s", path, resp.Status)
			}
			ok++
			okTime += time.Since(t)
			return out, nil
		}
	}
	start := time.Now()
	for _, m := range ms {
		props := map[string]string{
			crm.PropTitle: m.Title, crm.PropTimestamp: isoUTC(m.Start), crm.PropStart: isoUTC(m.Start), crm.PropEnd: isoUTC(m.End),
		}
		out, err := call("/crm/objects/2026-03/meetings", map[string]any{"properties": props})
		if err != nil {
			b.problem("baseline create: %v", err)
			return
		}
		id, _ := out["id"].(string)
		var inputs []map[string]any
		for _, c := range m.Companies {
			inputs = append(inputs, map[string]any{"from": map[string]string{"id": id}, "to": map[string]string{"id": ids[c]},
				"types": []map[string]any{{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 188}}})
		}
		if _, err := call("/crm/associations/2026-03/meetings/companies/batch/create", map[string]any{"inputs": inputs}); err != nil {
			b.problem("baseline association: %v", err)
			return
		}
		bl.Meetings++
	}
	bl.WallSeconds = time.Since(start).Seconds()
	bl.Calls = fake.TotalCalls()
	bl.RateLimited429 = fake.RateLimited()
	bl.CallsPerMeeting = float64(bl.Calls) / float64(max(1, bl.Meetings))
	if ok > 0 {
		bl.MeanCallMS = float64(okTime) / float64(ok) / float64(time.Millisecond)
	}
}

// report prints the results for people.
func (b *bench) report(w io.Writer) {
	r := &b.r
	bf, st, bl, mem := &r.Backfill, &r.Steady, &r.Baseline, &r.Memory
	fmt.Fprintf(w, "\nrapport bench: %d calendars, %d event copies, %d companies; fake latency %v; HubSpot limit %s; %s; %d cores\n",
		r.Params.Calendars, r.Sample.Events, r.Params.Companies, b.o.latency, r.Params.HubSpotLimit, r.Params.Concurrency, r.Params.Cores)
	if r.Params.ContactRules {
		fmt.Fprintln(w, "rules: the built-in rules plus one reading a contact property (--contact-rules): contacts are read at decide time")
	}
	fmt.Fprintln(w, "\nBackfill")
	if !bf.Settled {
		fmt.Fprintf(w, "  NOT SETTLED            after %.0f s; still queued: %s\n", bf.WallSeconds, formatCounts(bf.Backlog))
	}
	if bf.Stranded > 0 {
		fmt.Fprintf(w, "  LOST WRITES            %d meetings left pending with nothing queued to write them\n", bf.Stranded)
	}
	fmt.Fprintf(w, "  wall time              %.1f s to settle (every event decided at %.1f s, every meeting in HubSpot at %.1f s; company index before it: %.1f s)\n",
		bf.WallSeconds, bf.DecidedSeconds, bf.CRMSeconds, r.Sample.IndexLoadSeconds)
	fmt.Fprintf(w, "  throughput             %.0f events/s end to end, %.0f events/s decided, %.1f meetings/s into HubSpot\n",
		bf.EventsPerSecond, bf.DecideEventsPerSec, bf.MeetingsPerSecond)
	fmt.Fprintf(w, "  meetings logged        %d (expected %d), %d duplicates, %d failed, %d dead letters\n",
		bf.MeetingsLogged, r.Sample.Meetings, bf.Duplicates, bf.FailedMeetings, bf.DeadLetters)
	fmt.Fprintf(w, "  HubSpot calls          %d: %.4f per logged meeting (%.4f counting only meeting writes; %d for set-up and the company index); %d answered 429\n",
		bf.HubSpotCalls, bf.HubSpotCallsPerMtg, bf.HubSpotWritePerMtg, bf.HubSpotSetupCalls, bf.RateLimited429)
	fmt.Fprint(w, wrap(formatCounts(bf.HubSpotByEndpoint), 110, "                         "))
	fmt.Fprintf(w, "  Google calls           %d: %.3f per event (%s)\n", bf.GoogleCalls, bf.GoogleCallsPerEvent, formatCounts(bf.GoogleByEndpoint))
	if b.o.steady > 0 && bf.Settled {
		fmt.Fprintf(w, "\nSteady state (%.0f changes/s for %v: %s)\n", r.Params.ChangeRate, b.o.steady, formatCounts(st.ByKind))
		fmt.Fprintf(w, "  webhook-to-CRM         p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (%d of %d changes reflected)\n",
			st.P50MS, st.P95MS, st.P99MS, st.MaxMS, st.Reflected, st.Changes)
		fmt.Fprintf(w, "  calls                  HubSpot %d (%.2f per change, %d answered 429), Google %d\n",
			st.HubSpotCalls, float64(st.HubSpotCalls)/float64(max(1, st.Changes)), st.RateLimited, st.GoogleCalls)
	}
	fmt.Fprintln(w, "\nMemory (the whole process: Rapport and both fakes)")
	fmt.Fprintf(w, "  peak                   Sys %.0f MiB, HeapInuse %.0f MiB, max RSS %.0f MiB\n", mem.PeakSysMB, mem.PeakHeapInuseMB, mem.MaxRSSMB)
	if bl.Meetings > 0 {
		fmt.Fprintf(w, "\nNaive baseline (1 create + 1 association call per meeting, sequential, no limiter; %d meetings)\n", bl.Meetings)
		fmt.Fprintf(w, "  measured               %d calls (%.2f per meeting, %d answered 429) in %.1f s, %.1f ms per successful call\n",
			bl.Calls, bl.CallsPerMeeting, bl.RateLimited429, bl.WallSeconds, bl.MeanCallMS)
		fmt.Fprintf(w, "  projected to %d        %d calls, %.0f s (%s)\n", bf.MeetingsLogged, bl.ProjectedCalls, bl.ProjectedSeconds, bl.ProjectionSummary)
		fmt.Fprintf(w, "  Rapport vs naive       %.0f× fewer HubSpot calls per meeting; every meeting in HubSpot %.1f× sooner (%.0f s against a projected %.0f s)\n",
			bl.CallsRatio, bl.WallRatio, bf.CRMSeconds, bl.ProjectedSeconds)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}
