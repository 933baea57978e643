package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/migrations"
	"github.com/rapportsync/rapport/pipeline"
)

// A simulation is Rapport wired as `rapport run` wires it, against the
// in-process fake Google Calendar and fake HubSpot: its own database
// (dropped and created afresh), its own Redis database index (emptied), the
// HTTP server on a loopback port that the fakes deliver webhooks to, and the
// workers. The demo and the benchmark drive one through the admin API.

// simOptions configures a simulation.
type simOptions struct {
	// Database is the database name, created on the server of
	// RAPPORT_DATABASE_URL; RedisDB the database index on the server of
	// RAPPORT_REDIS_URL.
	Database string
	RedisDB  int
	// HTTPAddr is where the HTTP server listens (127.0.0.1:0: any port).
	HTTPAddr string
	// Hub configures the fake HubSpot; RateLimit is the client's limit
	// (RAPPORT_HUBSPOT_RATE_LIMIT).
	Hub       crmtest.Options
	RateLimit string
	// GoogleLatency delays every answer of the fake Google.
	GoogleLatency time.Duration
	// LogLevel of the logs written to stderr (warn).
	LogLevel string
	// App adjusts the App: the pipeline's tuning, the providers' limits.
	App app.Options
	// WorkerProcesses: no worker in this process; the caller starts
	// `rapport worker` subprocesses (startWorkerProcess), which it can kill.
	WorkerProcesses bool
}

type simulation struct {
	o      simOptions
	e      *Env
	google *calendartest.Server
	hub    *crmtest.Server
	app    *app.App
	cfg    *app.Config
	log    *slog.Logger
	insp   *asynq.Inspector
	// base is the HTTP server's URL; token the admin token.
	base, token string
	http        *http.Client
	ws          string
	calendars   []string // calendar row ids

	// env is the configuration the simulation overrides, for worker
	// subprocesses.
	env    map[string]string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error // first error of the server or the workers
}

// startSimulation prepares the database and Redis, starts the fakes and
// runs Rapport. Close it.
func startSimulation(ctx context.Context, e *Env, o simOptions) (*simulation, error) {
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:0"
	}
	if o.RateLimit == "" {
		o.RateLimit = "100/10s"
	}
	s := &simulation{o: o, e: e, http: &http.Client{Timeout: 60 * time.Second}}
	s.log = slog.New(quietHandler{slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: app.LogLevels[o.LogLevel]})})
	dbURL := e.Getenv("RAPPORT_DATABASE_URL")
	if dbURL == "" {
		dbURL = "postgres://127.0.0.1:5432/rapport?sslmode=disable"
	}
	dsn, err := freshDatabase(ctx, dbURL, o.Database, s.log)
	if err != nil {
		return nil, err
	}
	redisURL, err := freshRedis(ctx, e.Getenv("RAPPORT_REDIS_URL"), o.RedisDB)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	tok := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s.token = hex.EncodeToString(tok)

	s.google = calendartest.NewServer()
	s.google.SetLatency(o.GoogleLatency)
	s.hub = crmtest.NewServer(o.Hub)
	ln, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		s.closeFakes()
		return nil, fmt.Errorf("listen on %s: %w", o.HTTPAddr, err)
	}
	s.base = "http://" + ln.Addr().String()

	overrides := map[string]string{
		"RAPPORT_DATABASE_URL":       dsn,
		"RAPPORT_REDIS_URL":          redisURL,
		"RAPPORT_HTTP_ADDR":          ln.Addr().String(),
		"RAPPORT_PUBLIC_URL":         s.base,
		"RAPPORT_ADMIN_TOKEN":        s.token,
		"RAPPORT_ENCRYPTION_KEYS":    "sim:" + base64.StdEncoding.EncodeToString(key),
		"RAPPORT_RULES_DIR":          "",
		"RAPPORT_GOOGLE_API_URL":     s.google.URL(),
		"RAPPORT_HUBSPOT_API_URL":    s.hub.URL(),
		"RAPPORT_HUBSPOT_RATE_LIMIT": o.RateLimit,
		"RAPPORT_LOG_FORMAT":         "text",
		"RAPPORT_LOG_LEVEL":          o.LogLevel,
	}
	fs := flag.NewFlagSet("simulation", flag.ContinueOnError)
	load := app.BindConfig(fs)
	if err := fs.Parse(nil); err != nil {
		ln.Close()
		s.closeFakes()
		return nil, err
	}
	s.env = overrides
	s.cfg, err = load(func(k string) string {
		if v, ok := overrides[k]; ok {
			return v
		}
		return e.Getenv(k)
	})
	if err != nil {
		ln.Close()
		s.closeFakes()
		return nil, fmt.Errorf("configuration: %w", err)
	}
	s.app, err = app.New(ctx, s.cfg, s.log, o.App)
	if err != nil {
		ln.Close()
		s.closeFakes()
		return nil, err
	}
	s.insp = asynq.NewInspectorFromRedisClient(s.app.Redis)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fail(s.app.ServeListener(runCtx, ln))
	}()
	if o.WorkerProcesses {
		return s, nil
	}
	w := s.app.Pipeline.NewWorker()
	if err := w.Start(runCtx); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-runCtx.Done()
		w.Shutdown()
	}()
	return s, nil
}

// quietHandler drops the worker's warnings about tasks that asked to be
// retried later (a calendar whose sync is already running, a rate limit
// wait, a lagging CRM search): that is the queue working as designed, and
// at warn level it would drown the demo's output.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "task failed" {
		benign := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && strings.HasPrefix(a.Value.String(), "retry after ") {
				benign = true
				return false
			}
			return true
		})
		if benign {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

func (s *simulation) fail(err error) {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// failure returns the first error of the server or the workers.
func (s *simulation) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops Rapport and the fakes.
func (s *simulation) Close() {
	s.cancel()
	s.wg.Wait()
	s.app.Close()
	s.closeFakes()
}

func (s *simulation) closeFakes() {
	s.google.SetAutoNotify(false)
	s.google.Close()
	s.hub.Close()
}

// freshDatabase drops the database name on the server of base and creates
// and migrates it anew, so every run starts from nothing.
func freshDatabase(ctx context.Context, base, name string, logger *slog.Logger) (string, error) {
	if name == "" {
		return "", errors.New("no database name")
	}
	if err := migrations.DropDatabase(ctx, base, name); err != nil {
		return "", fmt.Errorf("%w (at %s; set RAPPORT_DATABASE_URL)", err, redactURL(base))
	}
	dsn := migrations.WithDatabase(base, name)
	if _, err := migrations.Up(ctx, dsn, logger); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dsn, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "the configured server"
}

// freshRedis returns the URL of database index db on the server of raw
// (default the local one) after emptying it.
func freshRedis(ctx context.Context, raw string, db int) (string, error) {
	if raw == "" {
		raw = "redis://127.0.0.1:6379/0"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("RAPPORT_REDIS_URL: %w", err)
	}
	u.Path = "/" + strconv.Itoa(db)
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return "", fmt.Errorf("RAPPORT_REDIS_URL: %w", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return "", fmt.Errorf("empty Redis database %d at %s: %w", db, opts.Addr, err)
	}
	return u.String(), nil
}

// admin calls the admin API; out, if set, receives the JSON answer.
func (s *simulation) admin(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// connect creates the workspace and imports the HubSpot connection, waits
// for the company index, then imports each employee's Google calendar, all
// through the admin API. onIndexed, if set, runs between the two.
func (s *simulation) connect(ctx context.Context, smp *sample, onIndexed func(pipeline.IndexStatus)) error {
	var ws pipeline.Workspace
	if err := s.admin(ctx, "POST", "/admin/workspaces", map[string]any{"name": sampleWorkspace, "internal_domains": []string{sampleDomain}}, &ws); err != nil {
		return err
	}
	s.ws = ws.ID
	exp := time.Now().Add(7 * 24 * time.Hour)
	if err := s.admin(ctx, "POST", "/admin/workspaces/"+s.ws+"/connections", pipeline.ConnectionInput{
		Provider: "hubspot", AccessToken: "hubspot-sim-token", RefreshToken: "hubspot-sim-refresh", ExpiresAt: exp,
	}, nil); err != nil {
		return err
	}
	var idx pipeline.IndexStatus
	if err := poll(ctx, 2*time.Minute, 50*time.Millisecond, "the company index to load", func() (bool, error) {
		var st pipeline.WorkspaceStatus
		if err := s.admin(ctx, "GET", "/admin/workspaces/"+s.ws, nil, &st); err != nil {
			return false, err
		}
		idx = st.Index
		return st.Index.LoadedAt != nil, nil
	}); err != nil {
		return err
	}
	if onIndexed != nil {
		onIndexed(idx)
	}
	for _, email := range smp.Employees {
		var c pipeline.Connection
		if err := s.admin(ctx, "POST", "/admin/workspaces/"+s.ws+"/connections", pipeline.ConnectionInput{
			Provider: "google", AccountEmail: email, AccessToken: "google-sim-" + email, RefreshToken: "google-sim-refresh-" + email,
			ExpiresAt: exp, CalendarIDs: []string{email},
		}, &c); err != nil {
			return err
		}
		s.calendars = append(s.calendars, c.Calendars...)
	}
	return nil
}

// poll calls cond every interval until it holds, fails, or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// queues returns the tasks waiting or running per pipeline queue.
func (s *simulation) queues() (map[string]int, error) {
	out := map[string]int{}
	// A queue exists once a task was enqueued to it; asking for one that
	// does not is an error.
	exist, err := s.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	for _, q := range []string{pipeline.QueueSync, pipeline.QueueCRM, pipeline.QueueLink} {
		out[q] = 0
		if !slices.Contains(exist, q) {
			continue
		}
		info, err := s.insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		out[q] = info.Pending + info.Active + info.Scheduled + info.Retry + info.Aggregating
	}
	return out, nil
}

// settledNow reports whether every calendar has synced, the queues are
// empty and no meeting waits for its CRM write. stranded counts the
// meetings waiting for a CRM write (up to 500) while nothing is queued:
// work that was lost.
func (s *simulation) settledNow(ctx context.Context) (ok bool, stranded int, err error) {
	qs, err := s.queues()
	if err != nil {
		return false, 0, err
	}
	idle := true
	for _, n := range qs {
		if n > 0 {
			idle = false
		}
	}
	var cals []pipeline.CalendarStatus
	if err := s.admin(ctx, "GET", "/admin/workspaces/"+s.ws+"/calendars", nil, &cals); err != nil {
		return false, 0, err
	}
	for _, c := range cals {
		if c.LastSyncedAt == nil {
			idle = false
		}
	}
	waiting := 0
	for _, state := range []string{"pending", "creating"} {
		limit := 1
		if idle {
			limit = 500
		}
		var l struct {
			Items []pipeline.MeetingEntry `json:"items"`
		}
		if err := s.admin(ctx, "GET", "/admin/workspaces/"+s.ws+"/meetings?limit="+strconv.Itoa(limit)+"&state="+state, nil, &l); err != nil {
			return false, 0, err
		}
		waiting += len(l.Items)
	}
	if idle && waiting > 0 {
		return false, waiting, nil
	}
	return idle && waiting == 0, 0, nil
}

// errStranded: the queues are empty but meetings still wait for their CRM
// write, which nothing will send before the next periodic sync.
type errStranded struct{ n int }

func (e *errStranded) Error() string {
	return fmt.Sprintf("%d meetings are pending with nothing queued to write them (lost CRM writes)", e.n)
}

// waitSettled waits until the simulation is settled three times in a row,
// 100 ms apart (a webhook the fake Google is still delivering makes one of
// them see a queued sync). It gives up with an *errStranded when meetings
// stay pending with empty queues for 5 s. tick, if set, is called about
// every progressEvery.
func (s *simulation) waitSettled(ctx context.Context, timeout, progressEvery time.Duration, tick func(elapsed time.Duration)) error {
	start := time.Now()
	lastTick := start
	streak := 0
	var strandedSince time.Time
	for {
		if err := s.failure(); err != nil {
			return err
		}
		ok, stranded, err := s.settledNow(ctx)
		if err != nil {
			return err
		}
		if ok {
			streak++
		} else {
			streak = 0
		}
		if streak >= 3 {
			return nil
		}
		switch {
		case stranded == 0:
			strandedSince = time.Time{}
		case strandedSince.IsZero():
			strandedSince = time.Now()
		case time.Since(strandedSince) > 5*time.Second:
			return &errStranded{stranded}
		}
		if tick != nil && time.Since(lastTick) >= progressEvery {
			lastTick = time.Now()
			tick(time.Since(start))
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("not settled after %v", timeout.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ledger reads every ledger entry of the workspace through the admin API.
func (s *simulation) ledger(ctx context.Context) ([]pipeline.MeetingEntry, error) {
	var all []pipeline.MeetingEntry
	after := ""
	for {
		var l struct {
			Items []pipeline.MeetingEntry `json:"items"`
			Next  string                  `json:"next"`
		}
		if err := s.admin(ctx, "GET", "/admin/workspaces/"+s.ws+"/meetings?limit=500&after="+url.QueryEscape(after), nil, &l); err != nil {
			return nil, err
		}
		all = append(all, l.Items...)
		if l.Next == "" {
			return all, nil
		}
		after = l.Next
	}
}

// deadLetters returns the open dead letters.
func (s *simulation) deadLetters(ctx context.Context) ([]pipeline.DeadLetter, error) {
	var l struct {
		Items []pipeline.DeadLetter `json:"items"`
	}
	if err := s.admin(ctx, "GET", "/admin/dead-letters?limit=500", nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// calendarErrors returns the calendars whose last sync failed.
func (s *simulation) calendarErrors(ctx context.Context) ([]string, error) {
	var cals []pipeline.CalendarStatus
	if err := s.admin(ctx, "GET", "/admin/workspaces/"+s.ws+"/calendars", nil, &cals); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cals {
		if c.LastError != "" || c.Status != "active" {
			out = append(out, fmt.Sprintf("calendar %s (%s) is %s: %s", c.CalendarID, c.ID, c.Status, c.LastError))
		}
	}
	return out, nil
}

// metric sums a counter or histogram count of the app's registry over the
// label values that match (nil: all).
func metric(g prometheus.Gatherer, name string, match map[string]string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range match {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
