package sim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// The demo: a sample company in the fake Google Calendar and the fake
// HubSpot, the real pipeline between them, the initial sync shown as it
// happens and summed up, then live changes played through real webhook
// deliveries, each with the time it took to reach HubSpot.

type demoOptions struct {
	once          bool
	database      string
	redisDB       int
	changeTimeout time.Duration
}

// DemoFlags registers the flags of `rapport demo`.
func DemoFlags(fs *flag.FlagSet) any {
	o := &demoOptions{}
	fs.BoolVar(&o.once, "once", false, "exit after the initial sync and the scripted live changes (0 when all went right)")
	fs.StringVar(&o.database, "database", "rapport_demo", "database the demo drops and creates afresh on the server of RAPPORT_DATABASE_URL")
	fs.IntVar(&o.redisDB, "redis-db", 15, "Redis database index, on the server of RAPPORT_REDIS_URL, that the demo empties and uses")
	fs.DurationVar(&o.changeTimeout, "change-timeout", 20*time.Second, "how long a live change may take to show in HubSpot before the demo fails")
	return o
}

// demo is one run of the demo.
type demo struct {
	o        *demoOptions
	out      io.Writer
	sim      *simulation
	smp      *sample
	problems []string
}

func (d *demo) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.problems = append(d.problems, msg)
	fmt.Fprintf(d.out, "  PROBLEM: %s\n", msg)
}

// RunDemo runs `rapport demo` with the options DemoFlags registered.
func RunDemo(ctx context.Context, e *Env, opts any) error {
	o := opts.(*demoOptions)
	start := time.Now()
	out := e.Stdout
	addr := e.Getenv("RAPPORT_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	fmt.Fprintln(out, "Rapport demo: the real pipeline (PostgreSQL, Redis, webhooks, queue) against simulated Google Calendar and HubSpot")
	sim, err := startSimulation(ctx, e, simOptions{
		Database: o.database, RedisDB: o.redisDB, HTTPAddr: addr,
		Hub: crmtest.Options{Limit: 100, Window: 10 * time.Second}, RateLimit: "100/10s",
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	fmt.Fprintf(out, "  database %s, Redis database %d, Rapport listening on %s\n\n", o.database, o.redisDB, sim.base)

	smp, err := generateSample(sampleSpec{Seed: 1, Calendars: 5, Events: 400, Companies: 300, Now: time.Now()}, sim.google, sim.hub)
	if err != nil {
		return err
	}
	d := &demo{o: o, out: out, sim: sim, smp: smp}
	fmt.Fprintln(out, "Sample data")
	fmt.Fprint(out, "  "+smp.describe())
	fmt.Fprintf(out, "  the default rules should log %d meetings in HubSpot\n\n", smp.Expected)

	if err := d.initialSync(ctx); err != nil {
		return err
	}
	if err := d.summary(ctx); err != nil {
		return err
	}
	if err := d.liveChanges(ctx); err != nil {
		return err
	}
	d.finalChecks(ctx)

	if o.once {
		if len(d.problems) > 0 {
			fmt.Fprintf(e.Stderr, "rapport demo: %d problem(s): %s\n", len(d.problems), strings.Join(d.problems, "; "))
			return ErrReported
		}
		d.whereToLook(true)
		fmt.Fprintf(out, "\nDemo finished in %.1fs: every check passed.\n", time.Since(start).Seconds())
		return nil
	}
	d.whereToLook(false)
	<-ctx.Done()
	fmt.Fprintln(out, "\nStopping.")
	if len(d.problems) > 0 {
		fmt.Fprintf(e.Stderr, "rapport demo: %d problem(s): %s\n", len(d.problems), strings.Join(d.problems, "; "))
		return ErrReported
	}
	return nil
}

// initialSync connects everything through the admin API and shows the
// initial sync until it settles.
func (d *demo) initialSync(ctx context.Context) error {
	sim, out := d.sim, d.out
	// Google notifies every change from now on, Rapport's own write-backs
	// included, as it does for real.
	sim.google.SetAutoNotify(true)
	fmt.Fprintf(out, "Connecting through the admin API (%s/admin/)\n", sim.base)
	err := sim.connect(ctx, d.smp, func(ix pipeline.IndexStatus) {
		fmt.Fprintf(out, "  workspace %s created (%s)\n", sampleWorkspace, sim.ws)
		fmt.Fprintf(out, "  HubSpot connected: company index of %d companies (%d on a free-mail domain, ignored)\n", ix.Companies, ix.FreeMailSkipped)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %d Google calendars connected, each with a watch channel: %s\n\n", len(d.smp.Employees), strings.Join(d.smp.Employees, ", "))

	fmt.Fprintln(out, "Initial sync")
	begin := time.Now()
	err = sim.waitSettled(ctx, 90*time.Second, time.Second, func(el time.Duration) {
		qs, _ := sim.queues()
		fmt.Fprintf(out, "  %3.0fs  %4d meetings in HubSpot  (events read %4.0f; waiting: %d calendar reads, %d HubSpot writes, %d write-backs)\n",
			el.Seconds(), len(sim.hub.Meetings()), metric(sim.app.Registry, "rapport_events_total", nil),
			qs[pipeline.QueueSync], qs[pipeline.QueueCRM], qs[pipeline.QueueLink])
	})
	if err != nil {
		return fmt.Errorf("initial sync: %w", err)
	}
	fmt.Fprintf(out, "  done in %.1fs: every calendar read, every meeting in HubSpot, its HubSpot id written back to each calendar copy\n\n", time.Since(begin).Seconds())
	return nil
}

// tally is the initial sync in a RevOps person's terms: every event copy
// on the calendars is either a meeting logged in HubSpot, another
// calendar's copy of such a meeting (merged into it), or skipped for a
// reason.
type tally struct {
	Events    int // event copies on the calendars
	Calendars int
	// Logged meetings are in HubSpot; Merged counts their copies on
	// colleagues' calendars, which add nothing to HubSpot.
	Logged, Merged int
	// Skipped counts skipped event copies by reason.
	Skipped map[string]int
}

func (t tally) skipped() int { return sumCounts(t.Skipped) }

// adds reports whether every event is accounted for exactly once.
func (t tally) adds() bool { return t.Events == t.Logged+t.Merged+t.skipped() }

// headline is the summary's first line.
func (t tally) headline() string {
	return fmt.Sprintf("%d events on %d calendars → %d customer meetings logged once each in HubSpot (%d copies on colleagues' calendars merged), %d skipped",
		t.Events, t.Calendars, t.Logged, t.Merged, t.skipped())
}

// Reasons a copy is skipped, in words, by the rule (or the pipeline's own
// reason) that decided.
var skipWords = map[string]string{
	rules.DefaultRuleName:          "no one from a company in HubSpot: colleagues only, personal e-mail, or a company HubSpot does not have",
	"skip-all-day":                 "all-day entries",
	"skip-non-default-event-type":  "out of office, focus time and similar entries",
	"skip-declined-by-owner":       "declined by the employee",
	"skip-private":                 "marked private",
	"skip-cancelled-before-logged": "cancelled before they were logged",
	"cancelled":                    "cancelled before they were logged",
	"outside-window":               "outside the sync window (RAPPORT_BACKFILL, RAPPORT_LOOKAHEAD)",
	unrecorded:                     "cancelled before they were logged",
}

// unrecorded: the events Rapport read and kept nothing of (an event
// cancelled before any of its copies was logged leaves no ledger entry).
const unrecorded = "(unrecorded)"

func skipReason(rule string) string {
	if w, ok := skipWords[rule]; ok {
		return w
	}
	for _, r := range rules.Default().Rules() {
		if r.Name == rule && r.Reason != "" {
			return r.Reason
		}
	}
	return "rule " + rule
}

// tallyOf counts the ledger's meetings and their copies against the events
// on the calendars.
func tallyOf(events, calendars int, details []pipeline.MeetingDetail) tally {
	t := tally{Events: events, Calendars: calendars, Skipped: map[string]int{}}
	recorded := 0
	for _, d := range details {
		recorded += len(d.Copies)
		switch d.State {
		case "logged", "cancelled":
			t.Logged++
			t.Merged += max(0, len(d.Copies)-1)
		default:
			for _, c := range d.Copies {
				rule := c.Rule
				if rule == "" {
					rule = d.Rule
				}
				t.Skipped[skipReason(rule)]++
			}
		}
	}
	if n := events - recorded; n != 0 {
		t.Skipped[skipReason(unrecorded)] += n
	}
	return t
}

// summary prints what the initial sync did.
func (d *demo) summary(ctx context.Context) error {
	sim, smp, out := d.sim, d.smp, d.out
	entries, err := sim.ledger(ctx)
	if err != nil {
		return err
	}
	details, err := d.details(ctx, entries)
	if err != nil {
		return err
	}
	meetings := sim.hub.Meetings()
	t := tallyOf(smp.TotalEvents(), len(smp.Employees), details)

	fmt.Fprintln(out, "Summary")
	fmt.Fprintf(out, "  %s:\n", t.headline())
	for _, kv := range topCounts(t.Skipped, len(t.Skipped)) {
		fmt.Fprintf(out, "    %4d  %s\n", kv.n, kv.key)
	}
	verdict := "every event accounted for once"
	if !t.adds() {
		verdict = "DOES NOT ADD UP"
		d.problem("%d events on the calendars, but %d logged + %d merged + %d skipped = %d", t.Events, t.Logged, t.Merged, t.skipped(), t.Logged+t.Merged+t.skipped())
	}
	fmt.Fprintf(out, "  %d + %d + %d = %d events: %s\n", t.Logged, t.Merged, t.skipped(), t.Logged+t.Merged+t.skipped(), verdict)
	if len(meetings) != t.Logged || len(meetings) != smp.Expected {
		d.problem("HubSpot holds %d meetings, Rapport logged %d, the sample should have produced %d", len(meetings), t.Logged, smp.Expected)
	}
	if n := smp.Events[kindCancelled]; t.Skipped[skipReason(unrecorded)] != n {
		d.problem("%d events left no trace in Rapport, but the sample holds %d cancelled before logging", t.Skipped[skipReason(unrecorded)], n)
	}
	if dups := duplicates(meetings); len(dups) > 0 {
		d.problem("%d meetings are logged more than once in HubSpot", len(dups))
	}

	perCompany := map[string]int{}
	for _, m := range meetings {
		for _, id := range m.CompanyIDs {
			perCompany[id]++
		}
	}
	fmt.Fprintf(out, "  On the timelines of %d companies; the most meetings:\n", len(perCompany))
	for _, kv := range topCounts(perCompany, 5) {
		name := kv.key
		if c := smp.company(kv.key); c != nil {
			name = c.Name
		}
		fmt.Fprintf(out, "    %4d  %s\n", kv.n, name)
	}

	gtotal := sumCounts(sim.google.Calls())
	hcalls := sim.hub.Calls()
	htotal := sumCounts(hcalls)
	setup := hcalls["account.details"] + hcalls["properties.get"] + hcalls["properties.create"] + hcalls["companies.list"] + hcalls["owners.list"]
	fmt.Fprintf(out, "  API budget spent: %d HubSpot calls for %d meetings (%d to set up and read the companies, %d to look up contacts and write meetings), %d Google Calendar calls\n",
		htotal, len(meetings), setup, htotal-setup, gtotal)
	if n := sim.hub.RateLimited(); n > 0 {
		fmt.Fprintf(out, "  HubSpot asked Rapport to slow down %d times (rate limit); Rapport waited and retried\n", n)
	}
	fmt.Fprintln(out)
	return nil
}

// details fetches every ledger entry's copies through the admin API, a
// few at a time.
func (d *demo) details(ctx context.Context, entries []pipeline.MeetingEntry) ([]pipeline.MeetingDetail, error) {
	out := make([]pipeline.MeetingDetail, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, e := range entries {
		g.Go(func() error {
			return d.sim.admin(gctx, "GET", "/admin/workspaces/"+d.sim.ws+"/meetings/"+url.PathEscape(e.Key), nil, &out[i])
		})
	}
	return out, g.Wait()
}

// change is one scripted live change.
type change struct {
	name  string
	what  string
	apply func() error
	// check reports whether HubSpot shows the change, and how.
	check func() (bool, string)
}

// liveChanges plays the scripted changes on the fake Google, one at a
// time, and times each until the fake HubSpot shows it.
func (d *demo) liveChanges(ctx context.Context) error {
	sim, smp, out := d.sim, d.smp, d.out
	byKey := map[string]crm.Meeting{}
	for _, m := range sim.hub.Meetings() {
		byKey[m.Key] = m
	}
	now := time.Now()
	used := map[*sampleMeeting]bool{}
	pick := func(pred func(m *sampleMeeting) bool) (*sampleMeeting, crm.Meeting) {
		for _, m := range smp.Meetings {
			if used[m] || m.Kind != kindCustomer || m.Logged != 1 || !m.Start.After(now.Add(48*time.Hour)) || !pred(m) {
				continue
			}
			if cm, ok := byKey[pipeline.MeetingKey(sim.ws, m.ICalUID, time.Time{})]; ok {
				used[m] = true
				return m, cm
			}
		}
		return nil, crm.Meeting{}
	}
	onAll := func(m *sampleMeeting, fn func(cal string) error) error {
		for _, c := range m.Calendars {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
	meeting := func(id string) crm.Meeting { m, _ := sim.hub.Meeting(id); return m }
	var changes []change

	if m, cm := pick(func(m *sampleMeeting) bool { return len(m.Calendars) >= 2 }); m != nil {
		ns, ne := m.Start.Add(24*time.Hour), m.End.Add(24*time.Hour)
		want := isoUTC(ns)
		changes = append(changes, change{
			name: "reschedule",
			what: fmt.Sprintf("%q moved a day later, on all %d calendars that hold it", m.Title, len(m.Calendars)),
			apply: func() error {
				return onAll(m, func(cal string) error { _, err := sim.google.Move(cal, m.EventID, ns, ne); return err })
			},
			check: func() (bool, string) {
				got := meeting(cm.ID)
				return got.Properties[crm.PropStart] == want, fmt.Sprintf("meeting %s now starts %s", cm.ID, ns.UTC().Format("Mon 2 Jan 15:04 UTC"))
			},
		})
	}
	if m, cm := pick(func(*sampleMeeting) bool { return true }); m != nil {
		changes = append(changes, change{
			name:  "cancellation",
			what:  fmt.Sprintf("%q cancelled by its organizer", m.Title),
			apply: func() error { return onAll(m, func(cal string) error { return sim.google.Cancel(cal, m.EventID) }) },
			check: func() (bool, string) {
				got := meeting(cm.ID)
				return got.Properties[crm.PropOutcome] == crm.OutcomeCanceled, fmt.Sprintf("meeting %s outcome %s", cm.ID, got.Properties[crm.PropOutcome])
			},
		})
	}
	{
		owner := smp.Employees[0]
		var co *sampleCompany
		for _, c := range smp.Companies {
			if len(c.People) > 0 && c.Contacts > 0 {
				co = c
				break
			}
		}
		loc, _ := time.LoadLocation("Europe/Berlin")
		day := now.In(loc).AddDate(0, 0, 3)
		for day.Weekday() == time.Saturday || day.Weekday() == time.Sunday {
			day = day.AddDate(0, 0, 1)
		}
		st := time.Date(day.Year(), day.Month(), day.Day(), 11, 0, 0, 0, loc)
		title := co.Name + " kickoff"
		var key string
		changes = append(changes, change{
			name: "new meeting",
			what: fmt.Sprintf("%s invites %s to %q", owner, co.People[0], title),
			apply: func() error {
				ev, err := sim.google.Insert(owner, calendartest.EventSpec{Summary: title, Start: st, End: st.Add(45 * time.Minute), TimeZone: loc.String(),
					Attendees: []calendartest.Attendee{att(owner, "accepted"), att(co.People[0], "needsAction")}})
				key = pipeline.MeetingKey(sim.ws, ev.ICalUID, time.Time{})
				return err
			},
			check: func() (bool, string) {
				for _, m := range sim.hub.Meetings() {
					if m.Key == key {
						ok := slices.Contains(m.CompanyIDs, co.ID) && len(m.ContactIDs) > 0
						return ok, fmt.Sprintf("meeting %s created on %s's timeline with contact %s", m.ID, co.Name, strings.Join(m.ContactIDs, ", "))
					}
				}
				return false, ""
			},
		})
	}
	if m, cm := pick(func(m *sampleMeeting) bool { return len(m.Companies) == 1 }); m != nil {
		var second *sampleCompany
		for _, c := range smp.Companies {
			if len(c.People) > 0 && c.ID != m.Companies[0] && !strings.HasPrefix(c.Name, "Gmail") {
				second = c
				break
			}
		}
		attendees := append(slices.Clone(m.Attendees), att(second.People[0], "accepted"))
		changes = append(changes, change{
			name: "second company",
			what: fmt.Sprintf("%s (%s) added to %q", second.People[0], second.Name, m.Title),
			apply: func() error {
				return onAll(m, func(cal string) error { _, err := sim.google.SetAttendees(cal, m.EventID, attendees); return err })
			},
			check: func() (bool, string) {
				got := meeting(cm.ID)
				return slices.Contains(got.CompanyIDs, second.ID), fmt.Sprintf("meeting %s now on the timelines of %d companies", cm.ID, len(got.CompanyIDs))
			},
		})
	}

	fmt.Fprintln(out, "Live changes (made in the simulated Google Calendar, which notifies Rapport; the time until HubSpot shows each)")
	if len(changes) < 4 {
		d.problem("the sample has too few future customer meetings for the scripted changes (%d of 4)", len(changes))
	}
	for _, c := range changes {
		t0 := time.Now()
		if err := c.apply(); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		var outcome string
		err := poll(ctx, d.o.changeTimeout, 10*time.Millisecond, c.name, func() (bool, error) {
			ok, o := c.check()
			outcome = o
			return ok, sim.failure()
		})
		lat := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.problem("%s: %s: not in HubSpot after %v", c.name, c.what, d.o.changeTimeout)
			continue
		}
		fmt.Fprintf(out, "  %-15s %s\n  %15s → %s  in %.2fs\n", c.name, c.what, "", outcome, lat.Seconds())
	}
	fmt.Fprintln(out)
	return nil
}

// finalChecks waits for the changes' write-backs and looks for anything
// that went wrong.
func (d *demo) finalChecks(ctx context.Context) {
	sim := d.sim
	if err := sim.waitSettled(ctx, 30*time.Second, time.Hour, nil); err != nil {
		d.problem("after the live changes: %v", err)
	}
	meetings := sim.hub.Meetings()
	if dups := duplicates(meetings); len(dups) > 0 {
		d.problem("%d meeting keys are logged more than once in HubSpot", len(dups))
	}
	if want := d.smp.Expected + 1; len(meetings) != want {
		d.problem("HubSpot holds %d meetings after the live changes, want %d", len(meetings), want)
	}
	dls, err := sim.deadLetters(ctx)
	if err != nil {
		d.problem("list dead letters: %v", err)
	}
	for _, dl := range dls {
		d.problem("dead letter %d: %s %s: %s", dl.ID, dl.TaskType, dl.Class, dl.Reason)
	}
	errs, err := sim.calendarErrors(ctx)
	if err != nil {
		d.problem("list calendars: %v", err)
	}
	for _, e := range errs {
		d.problem("%s", e)
	}
	entries, err := sim.ledger(ctx)
	if err != nil {
		d.problem("read the ledger: %v", err)
	}
	for _, m := range entries {
		if m.State == "failed" || m.LastError != "" {
			d.problem("meeting %s is %s: %s", m.Key[:12], m.State, m.LastError)
		}
	}
	if len(d.problems) == 0 {
		fmt.Fprintln(d.out, "Checks: no duplicate meetings, no dead letters, no sync errors, every change reflected.")
	}
}

// whereToLook prints the addresses to open in a browser or with curl.
// With --once they stop answering when the demo exits.
func (d *demo) whereToLook(once bool) {
	sim, out := d.sim, d.out
	perCompany := map[string]int{}
	for _, m := range sim.hub.Meetings() {
		for _, id := range m.CompanyIDs {
			perCompany[id]++
		}
	}
	if once {
		fmt.Fprintln(out, "\nWhere to look (these answer while the demo runs: `make demo` or `rapport demo` keeps it running)")
	} else {
		fmt.Fprintln(out, "\nRapport keeps running on the demo data; Ctrl-C stops it. Where to look:")
	}
	fmt.Fprintf(out, "  admin API     %s/admin/workspaces/%s\n", sim.base, sim.ws)
	fmt.Fprintf(out, "  admin token   %s\n", sim.token)
	fmt.Fprintf(out, "                curl -H 'Authorization: Bearer %s' '%s/admin/workspaces/%s/meetings?state=logged'\n", sim.token, sim.base, sim.ws)
	fmt.Fprintf(out, "  queues        %s/admin/queues/   (Asynq web UI: any user name, the token as password)\n", sim.base)
	fmt.Fprintf(out, "  metrics       %s/metrics\n", sim.base)
	fmt.Fprintf(out, "  fake HubSpot  %s/timeline/   (company timelines, as HubSpot users see them)\n", sim.hub.URL())
	for _, kv := range topCounts(perCompany, 3) {
		name := kv.key
		if c := d.smp.company(kv.key); c != nil {
			name = c.Name
		}
		fmt.Fprintf(out, "                %s/timeline/companies/%s   %s (%d meetings)\n", sim.hub.URL(), kv.key, name, kv.n)
	}
}

// duplicates returns the meeting keys HubSpot holds more than once.
func duplicates(ms []crm.Meeting) []string {
	seen := map[string]int{}
	var out []string
	for _, m := range ms {
		if m.Key == "" {
			continue
		}
		seen[m.Key]++
		if seen[m.Key] == 2 {
			out = append(out, m.Key)
		}
	}
	return out
}

type keyCount struct {
	key string
	n   int
}

// topCounts returns the n largest counts, ties by key.
func topCounts(m map[string]int, n int) []keyCount {
	out := make([]keyCount, 0, len(m))
	for k, v := range m {
		out = append(out, keyCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].key < out[j].key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// formatCounts prints "a 3, b 2" by count, largest first.
func formatCounts(m map[string]int) string {
	var parts []string
	for _, kv := range topCounts(m, len(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", kv.key, kv.n))
	}
	return strings.Join(parts, ", ")
}

// isoUTC formats t as HubSpot's datetime properties hold it.
func isoUTC(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
