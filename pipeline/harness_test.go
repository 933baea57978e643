package pipeline_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	calendlyfake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	calendlyadapter "github.com/rapportsync/rapport/calendar/calendly"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/calendar/microsoft"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/credentials"
	"github.com/rapportsync/rapport/pipeline/httpapi"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness runs the real pipeline and worker on real PostgreSQL and Redis
// against the Google and HubSpot fakes, with webhooks delivered over HTTP.
type harness struct {
	t      testing.TB
	ctx    context.Context
	pool   *pgxpool.Pool
	rdb    redis.UniversalClient
	google *calendartest.Server
	hub    *crmtest.Server
	vault  *credentials.Vault
	p      *pipeline.Pipeline
	worker *pipeline.Worker
	web    *httptest.Server
	ws     string
	graph  *graph.Server
	cly    *calendlyfake.Server

	mu     sync.Mutex
	srv    http.Handler
	srvFor *pipeline.Pipeline

	opts harnessOptions
}

// restartPipeline builds a new Pipeline on the same database, Redis and
// fakes, as a restarted process would.
func (h *harness) restartPipeline() *pipeline.Pipeline {
	h.t.Helper()
	o := h.opts
	limit, _ := hubspot.ParseLimit("1000/1s")
	if o.hub.Limit > 0 {
		limit = hubspot.Limit{Requests: 10 * o.hub.Limit, Window: o.hub.Window}
	}
	if o.searchLag == 0 {
		o.searchLag = 200 * time.Millisecond
	}
	perMinute := o.googlePerMinute
	if perMinute == 0 {
		perMinute = google.DefaultPerMinute
	}
	cfg := pipeline.Config{
		Pool: h.pool, Redis: h.rdb, Vault: h.vault, PublicURL: h.web.URL,
		SearchLag: o.searchLag, Logger: testLogger(),
		Providers: pipeline.NewRegistry(
			[]calendar.Provider{google.Provider{PerMinute: perMinute,
				Config: google.Config{BaseURL: h.google.URL(), MaxRetries: 2, BaseBackoff: 10 * time.Millisecond}},
				&microsoft.Provider{Config: microsoft.Config{BaseURL: h.graph.URL(), MaxRetries: 2, BaseBackoff: 10 * time.Millisecond}},
				h.calendly()},
			[]crm.Provider{hubspot.Provider{Config: hubspot.Config{BaseURL: h.hub.URL(), RateLimit: limit, MaxRetries: 2, RetryBase: 20 * time.Millisecond}}},
		),
	}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	p, err := pipeline.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

type harnessOptions struct {
	hub             crmtest.Options
	searchLag       time.Duration
	googlePerMinute int
	autoNotify      bool
	tweak           func(*pipeline.Config)
	// redis replaces the package's Redis database (a Sentinel or Cluster
	// client of internal/redisconn).
	redis redis.UniversalClient
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testLogger() *slog.Logger {
	if os.Getenv("RAPPORT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quiet
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, pool: testenv.DB(t), rdb: o.redis}
	if h.rdb == nil {
		h.rdb = testenv.Redis(t)
	}
	h.google = calendartest.NewServer()
	t.Cleanup(h.google.Close)
	if o.hub.Limit == 0 {
		o.hub.Limit = -1
	}
	if o.hub.SearchPerSecond == 0 {
		o.hub.SearchPerSecond = -1
	}
	h.hub = crmtest.NewServer(o.hub)
	t.Cleanup(h.hub.Close)

	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	keys, err := credentials.ParseKeys("k1:" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	h.vault, err = credentials.New(credentials.Config{Pool: h.pool, Keys: keys, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h.graph = graph.NewServer()
	t.Cleanup(h.graph.Close)
	h.cly = calendlyfake.NewServer()
	t.Cleanup(h.cly.Close)
	h.web = httptest.NewServer(http.HandlerFunc(h.webhook))
	t.Cleanup(h.web.Close)

	h.opts = o
	h.p = h.restartPipeline()
	h.google.SetAutoNotify(o.autoNotify)
	ws, err := h.p.CreateWorkspace(ctx, "Northwind", []string{"northwind.test"})
	if err != nil {
		t.Fatal(err)
	}
	h.ws = ws.ID
	// The database is shared by the package's tests: drop this test's
	// workspace afterwards so the next test's schedules do not sync it.
	t.Cleanup(func() {
		h.stopWorker()
		h.pool.Exec(context.Background(), `DELETE FROM workspaces WHERE id = $1`, h.ws)
	})
	return h
}

// webhook is the HTTP surface of `rapport serve`, built on the current
// pipeline: the providers deliver their webhooks to it.
func (h *harness) webhook(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	srv := h.srv
	if srv == nil || h.srvFor != h.p {
		var err error
		srv, err = httpapi.New(httpapi.Config{Service: h.p, PublicURL: h.web.URL, AdminToken: harnessAdminToken, Logger: testLogger()})
		if err != nil {
			h.mu.Unlock()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.srv, h.srvFor = srv, h.p
	}
	h.mu.Unlock()
	srv.ServeHTTP(w, r)
}

const harnessAdminToken = "harness-admin-token-0123456789"

func (h *harness) startWorker() {
	h.t.Helper()
	h.worker = h.p.NewWorker()
	if err := h.worker.Start(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(h.stopWorker)
}

func (h *harness) stopWorker() {
	if h.worker != nil {
		h.worker.Shutdown()
		h.worker = nil
	}
}

// connectHubSpot imports a HubSpot connection and waits for its index.
func (h *harness) connectHubSpot() {
	h.t.Helper()
	_, err := h.p.AddConnection(h.ctx, h.ws, pipeline.ConnectionInput{Provider: "hubspot", AccessToken: "hub-token", RefreshToken: "r", ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		h.t.Fatalf("connect HubSpot: %v", err)
	}
	h.eventually("company index loaded", func() bool {
		st, err := h.p.WorkspaceStatus(h.ctx, h.ws)
		return err == nil && st.Index.LoadedAt != nil
	})
}

// connectGoogle imports a Google connection for one employee's calendar.
func (h *harness) connectGoogle(email, token string) pipeline.Connection {
	h.t.Helper()
	c, err := h.p.AddConnection(h.ctx, h.ws, pipeline.ConnectionInput{
		Provider: "google", AccountEmail: email, AccessToken: token, RefreshToken: "r-" + token,
		ExpiresAt: time.Now().Add(24 * time.Hour), CalendarIDs: []string{email},
	})
	if err != nil {
		h.t.Fatalf("connect Google %s: %v", email, err)
	}
	return c
}

func (h *harness) addCalendar(email string) {
	h.t.Helper()
	if err := h.google.AddCalendar(email, "Europe/Berlin"); err != nil {
		h.t.Fatal(err)
	}
}

// eventually polls cond until it holds; the minute is a safety net, not a timing.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits until the queues are empty and no meeting is pending.
func (h *harness) settle() {
	h.t.Helper()
	defer func() {
		if h.t.Failed() {
			h.dumpQueues()
		}
	}()
	h.eventually("queues drained", func() bool {
		for _, q := range []string{pipeline.QueueSync, pipeline.QueueCRM, pipeline.QueueLink, pipeline.QueueMaintenance} {
			n, err := h.queueSize(q)
			if err != nil || n > 0 {
				return false
			}
		}
		var pending int
		h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meetings WHERE workspace_id = $1 AND state IN ('pending', 'creating')`, h.ws).Scan(&pending)
		return pending == 0
	})
}

func (h *harness) queueSize(q string) (int, error) {
	insp := pipelineInspector(h.rdb)
	info, err := insp.GetQueueInfo(q)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found") {
			return 0, nil
		}
		return 0, err
	}
	return info.Pending + info.Active + info.Scheduled + info.Retry + info.Aggregating, nil
}

// meetings returns the fake HubSpot's meetings sorted by title then start.
func (h *harness) meetings() []crm.Meeting {
	ms := h.hub.Meetings()
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i].Properties, ms[j].Properties
		if a[crm.PropTitle] != b[crm.PropTitle] {
			return a[crm.PropTitle] < b[crm.PropTitle]
		}
		return a[crm.PropStart] < b[crm.PropStart]
	})
	return ms
}

// byTitle returns the meetings with a title.
func (h *harness) byTitle(title string) []crm.Meeting {
	var out []crm.Meeting
	for _, m := range h.hub.Meetings() {
		if m.Properties[crm.PropTitle] == title {
			out = append(out, m)
		}
	}
	return out
}

// one returns the single meeting with a title, failing otherwise.
func (h *harness) one(title string) crm.Meeting {
	h.t.Helper()
	ms := h.byTitle(title)
	if len(ms) != 1 {
		h.t.Fatalf("%d meetings titled %q in HubSpot, want 1", len(ms), title)
	}
	return ms[0]
}

func (h *harness) ledgerStates() map[string]int {
	rows, err := h.pool.Query(h.ctx, `SELECT state, count(*) FROM meetings WHERE workspace_id = $1 AND rule <> '' GROUP BY state`, h.ws)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		rows.Scan(&s, &n)
		out[s] = n
	}
	return out
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// calendly is the Calendly provider on the fake.
func (h *harness) calendly() calendar.Provider {
	p, err := calendlyadapter.NewProvider(calendlyadapter.Config{BaseURL: h.cly.URL(), MaxRetries: 2, BaseBackoff: 10 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// dumpQueues logs what is left in the queues, to tell why a test did not
// settle.
func (h *harness) dumpQueues() {
	insp := pipelineInspector(h.rdb)
	for _, q := range []string{pipeline.QueueSync, pipeline.QueueCRM, pipeline.QueueLink, pipeline.QueueMaintenance} {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks, insp.ListRetryTasks} {
			ts, _ := list(q)
			for _, ti := range ts {
				h.t.Logf("left in %s: %s %s (%s) retried %d, last error %q, next at %v", q, ti.Type, ti.ID, ti.State, ti.Retried, ti.LastErr, ti.NextProcessAt)
			}
		}
	}
}
