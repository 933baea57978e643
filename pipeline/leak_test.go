package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	fakecalendly "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/calendly"
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

// faultMode is how a faultTransport answers.
type faultMode int32

const (
	pass      faultMode = iota
	refuse              // the connection is refused: a transport error naming the URL
	status4             // a 4xx other than 401 (403 or 400)
	status5             // 500
	status401           // 401: the credentials are refused
)

func (m faultMode) String() string {
	return [...]string{"pass", "connection refused", "4xx", "500", "401"}[m]
}

// faultTransport sits under a provider adapter's HTTP client: it passes
// requests on, or fails them as an unreachable or erring provider would.
// Its error bodies echo the request — URL with its query, Authorization
// header, the start of the body — in the provider's error format, the
// worst a provider may send back.
type faultTransport struct {
	mode     atomic.Int32
	onlyOpen atomic.Bool // fault only the opening of channels (watch, subscriptions)
	status   int         // the 4xx of status4
	format   func(status int, msg string) string
	mu       sync.Mutex
	hits     []string // paths of the faulted requests
	secrets  []string // secrets the faulted requests carried in their bodies
}

func (f *faultTransport) set(m faultMode) { f.mode.Store(int32(m)) }

func (f *faultTransport) faulted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hits...)
}

func (f *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	m := faultMode(f.mode.Load())
	if m == pass || f.onlyOpen.Load() && !opensChannel(r.URL.Path) {
		return http.DefaultTransport.RoundTrip(r)
	}
	f.mu.Lock()
	f.hits = append(f.hits, r.URL.Path)
	f.mu.Unlock()
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	// The secrets a request carries in its body (a channel's token, a
	// subscription's clientState, a webhook signing key) are secrets too.
	var fields map[string]any
	if json.Unmarshal(body, &fields) == nil {
		f.mu.Lock()
		for _, k := range []string{"token", "clientState", "signing_key"} {
			if v, ok := fields[k].(string); ok && len(v) >= 8 {
				f.secrets = append(f.secrets, v)
			}
		}
		f.mu.Unlock()
	}
	body = body[:min(len(body), 300)]
	if m == refuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	code := map[faultMode]int{status4: f.status, status5: 500, status401: 401}[m]
	msg := fmt.Sprintf("request %s %s failed; Authorization: %s; body %s", r.Method, r.URL.String(), r.Header.Get("Authorization"), body)
	return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(f.format(code, msg))), Request: r}, nil
}

// opensChannel tells the requests that open a push channel.
func opensChannel(path string) bool {
	return strings.HasSuffix(path, "/watch") || strings.HasSuffix(path, "/subscriptions")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// leakEnv is the real pipeline, worker and HTTP surface on real PostgreSQL
// and Redis against the fakes of the four providers, each behind a
// faultTransport, logging JSON into a buffer.
type leakEnv struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	rdb  *redis.Client
	p    *pipeline.Pipeline
	http http.Handler
	logs *syncBuffer
	ws   string

	google   *calendartest.Server
	graph    *graph.Server
	calendly *fakecalendly.Server
	hub      *crmtest.Server
	faults   map[string]*faultTransport

	answers []string // error texts of admin API answers
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const leakAdminToken = "leak-test-admin-token-0123456789"

func newLeakEnv(t *testing.T) *leakEnv {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &leakEnv{t: t, ctx: ctx, pool: testenv.DB(t), logs: &syncBuffer{}, faults: map[string]*faultTransport{}}
	e.rdb = testenv.Redis(t)
	rdb := e.rdb
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	e.google = calendartest.NewServer()
	t.Cleanup(e.google.Close)
	e.graph = graph.NewServer()
	t.Cleanup(e.graph.Close)
	e.calendly = fakecalendly.NewServer()
	t.Cleanup(e.calendly.Close)
	e.hub = crmtest.NewServer(crmtest.Options{Limit: -1, SearchPerSecond: -1})
	t.Cleanup(e.hub.Close)

	client := func(name string, status int, format func(int, string) string) *http.Client {
		f := &faultTransport{status: status, format: format}
		e.faults[name] = f
		return &http.Client{Transport: f, Timeout: 30 * time.Second}
	}
	googleClient := client("google", 403, func(code int, msg string) string {
		reason := map[int]string{400: "badRequest", 401: "authError", 403: "forbidden", 500: "backendError"}[code]
		return fmt.Sprintf(`{"error":{"code":%d,"message":%s,"errors":[{"domain":"global","reason":%q,"message":%s}]}}`, code, jsonString(msg), reason, jsonString(msg))
	})
	graphClient := client("microsoft", 400, func(code int, msg string) string {
		return fmt.Sprintf(`{"error":{"code":"ErrorInvalidRequest","message":%s,"innerError":{"request-id":"x"}}}`, jsonString(msg))
	})
	calendlyClient := client("calendly", 400, func(code int, msg string) string {
		return fmt.Sprintf(`{"title":"Invalid Argument","message":%s,"details":[{"parameter":"user","message":%s}]}`, jsonString(msg), jsonString(msg))
	})
	hubClient := client("hubspot", 400, func(code int, msg string) string {
		return fmt.Sprintf(`{"status":"error","message":%s,"correlationId":"c0ffee","category":"VALIDATION_ERROR","context":{"emails":[%s]}}`, jsonString(msg), jsonString(msg))
	})

	key := make([]byte, 32)
	keys, err := credentials.ParseKeys("k1:" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	vault, err := credentials.New(credentials.Config{Pool: e.pool, Keys: keys, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}

	// The HTTP surface is the webhook receiver the providers call: its
	// address must be known before the pipeline is built.
	var handler atomic.Value
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(web.Close)

	cly, err := calendly.NewProvider(calendly.Config{BaseURL: e.calendly.URL(), HTTPClient: calendlyClient, Logger: logger,
		BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, AppSigningKey: []byte(e.calendly.AppSigningKey())})
	if err != nil {
		t.Fatal(err)
	}
	limit, _ := hubspot.ParseLimit("1000/1s")
	e.p, err = pipeline.New(pipeline.Config{
		Pool: e.pool, Redis: rdb, Vault: vault, PublicURL: web.URL, Logger: logger, SearchLag: 200 * time.Millisecond,
		Providers: pipeline.NewRegistry(
			[]calendar.Provider{
				google.Provider{PerMinute: 1_000_000, Config: google.Config{BaseURL: e.google.URL(), HTTPClient: googleClient, Logger: logger,
					MaxRetries: 1, BaseBackoff: time.Millisecond}},
				&microsoft.Provider{Config: microsoft.Config{BaseURL: e.graph.URL(), HTTPClient: graphClient, Logger: logger,
					MaxRetries: 1, BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}},
				cly,
			},
			[]crm.Provider{hubspot.Provider{ClientSecret: "hubspot-secret", Config: hubspot.Config{BaseURL: e.hub.URL(), HTTPClient: hubClient, RateLimit: limit, Logger: logger,
				MaxRetries: 1, RetryBase: time.Millisecond}}},
		),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{Service: e.p, AdminToken: leakAdminToken, PublicURL: web.URL, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e.http = h
	handler.Store(h)

	w := e.p.NewWorker()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ws, err := e.p.CreateWorkspace(ctx, "Leaky", []string{"northwind.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.ws = ws.ID
	t.Cleanup(func() {
		w.Shutdown()
		e.pool.Exec(context.Background(), `DELETE FROM workspaces WHERE id = $1`, e.ws)
	})
	return e
}

// admin calls the admin API and keeps the error texts of its answer.
func (e *leakEnv) admin(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Authorization", "Bearer "+leakAdminToken)
	w := httptest.NewRecorder()
	e.http.ServeHTTP(w, req)
	e.answers = append(e.answers, errorTexts(w.Body.Bytes())...)
	return w.Code, w.Body.Bytes()
}

// errorTexts collects every "error", "errors", "last_error" and "reason"
// value of a JSON answer.
func errorTexts(b []byte) []string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return []string{string(b)}
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				switch k {
				case "error", "errors", "last_error", "reason":
					s, _ := json.Marshal(c)
					out = append(out, string(s))
				default:
					walk(c)
				}
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

func (e *leakEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *leakEnv) scalar(sql string, args ...any) string {
	e.t.Helper()
	var s string
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func (e *leakEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// The accounts, addresses and credentials the test must never find in an
// error text.
const (
	leakGoogle   = "zoe.leaky@northwind.test"
	leakGraph    = "max.leaky@northwind.test"
	leakCalendly = "cal.leaky@northwind.test"
	leakGuest    = "ada.secret@acme.example"
	leakGTok     = "gtok-SECRET-a1b2c3d4e5"
	leakHTok     = "htok-SECRET-f6g7h8i9j0"
)

// TestErrorsCarryNoAddressesOrTokens makes every provider fail — refused
// connections, 4xx, 5xx and 401 — through the real pipeline (syncs, CRM
// writes, imports), then reads the logs, calendars.last_error,
// connections.last_error, dead_letters.reason, meetings.last_error, the
// queue's task errors and the admin API's error texts: no e-mail local
// part, no token, no sync token or delta link may be in any of them.
func TestErrorsCarryNoAddressesOrTokens(t *testing.T) {
	e := newLeakEnv(t)
	start := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	e.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	e.hub.AddContact(leakGuest, "Ada Secret", e.hub.AddCompany(crm.Company{Name: "Acme Holdings", Domains: []string{"holdings.acme.example"}}))

	// Connect all four providers and sync once: cursors exist.
	if err := e.google.AddCalendar(leakGoogle, "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	graphTok, err := e.graph.AddMailbox(leakGraph, "W. Europe Standard Time")
	if err != nil {
		t.Fatal(err)
	}
	org := e.calendly.AddOrganization(fakecalendly.PlanTeams)
	cu := e.calendly.AddUser(org, leakCalendly, "Cal Leaky", fakecalendly.RoleOwner)
	calendlyTok := e.calendly.AddPAT(cu)
	secrets := []string{"zoe.leaky", "max.leaky", "cal.leaky", "ada.secret", leakGTok, leakHTok, graphTok, calendlyTok,
		"r-" + leakGTok, "r-" + leakHTok, "r-" + graphTok}

	exp := time.Now().Add(24 * time.Hour)
	imports := map[string]pipeline.ConnectionInput{
		"hubspot":   {Provider: "hubspot", AccessToken: leakHTok, RefreshToken: "r-" + leakHTok, ExpiresAt: exp},
		"google":    {Provider: "google", AccountEmail: leakGoogle, AccessToken: leakGTok, RefreshToken: "r-" + leakGTok, ExpiresAt: exp, CalendarIDs: []string{leakGoogle}},
		"microsoft": {Provider: "microsoft", AccountEmail: leakGraph, AccessToken: graphTok, RefreshToken: "r-" + graphTok, ExpiresAt: exp, CalendarIDs: []string{"primary"}},
		"calendly":  {Provider: "calendly", AccessToken: calendlyTok, Scope: "user"},
	}
	connect := func(name string) int {
		t.Helper()
		code, body := e.admin("POST", "/admin/workspaces/"+e.ws+"/connections", imports[name])
		if code != http.StatusCreated && e.faults[name].mode.Load() == int32(pass) {
			t.Fatalf("import %s: %d %s", name, code, body)
		}
		return code
	}
	connect("hubspot")
	e.eventually("company index loaded", func() bool {
		st, err := e.p.WorkspaceStatus(e.ctx, e.ws)
		return err == nil && st.Index.LoadedAt != nil
	})
	for _, name := range []string{"google", "microsoft", "calendly"} {
		connect(name)
	}
	calOf := map[string]string{}
	for _, name := range []string{"google", "microsoft", "calendly"} {
		e.eventually(name+" calendar synced", func() bool {
			var id string
			e.pool.QueryRow(e.ctx, `SELECT c.id FROM calendars c JOIN connections k ON k.id = c.connection_id
				WHERE c.workspace_id = $1 AND k.provider = $2 AND c.last_synced_at IS NOT NULL AND c.cursor IS NOT NULL`, e.ws, name).Scan(&id)
			calOf[name] = id
			return id != ""
		})
	}
	// The cursors (Google's sync token, Graph's delta link, Calendly's) are
	// secrets too: their query values, or the whole opaque token.
	rows, err := e.pool.Query(e.ctx, `SELECT cursor FROM calendars WHERE workspace_id = $1 AND cursor IS NOT NULL`, e.ws)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		if u, err := url.Parse(c); err == nil && u.Scheme != "" {
			for _, vs := range u.Query() {
				for _, v := range vs {
					if len(v) >= 8 {
						secrets = append(secrets, v)
					}
				}
			}
		} else if len(c) >= 8 {
			secrets = append(secrets, c)
		}
	}
	rows.Close()

	events := 0
	guestEvent := func() string {
		events++
		title := fmt.Sprintf("Acme call %d", events)
		s := start.Add(time.Duration(events) * time.Hour)
		if _, err := e.google.Insert(leakGoogle, calendartest.EventSpec{Summary: title, Start: s, End: s.Add(30 * time.Minute),
			Attendees: []calendartest.Attendee{att(leakGoogle), att(leakGuest)}}); err != nil {
			t.Fatal(err)
		}
		return title
	}
	logged := func(title string) bool {
		for _, m := range e.hub.Meetings() {
			if m.Properties[crm.PropTitle] == title {
				return true
			}
		}
		return false
	}
	deadLetters := func() int {
		return e.count(`SELECT count(*) FROM dead_letters WHERE workspace_id = $1 OR workspace_id IS NULL`, e.ws)
	}
	connStatus := func(name string) string {
		return e.scalar(`SELECT status FROM connections WHERE workspace_id = $1 AND provider = $2 AND replaced_by IS NULL ORDER BY created_at DESC LIMIT 1`, e.ws, name)
	}
	reimport := func(name string) {
		t.Helper()
		connect(name)
		e.eventually(name+" active again", func() bool { return connStatus(name) == "active" })
	}

	var queued []string
	for _, mode := range []faultMode{refuse, status5, status4, status401} {
		// Calendars: a sync through the failing provider.
		for _, name := range []string{"google", "microsoft", "calendly"} {
			f := e.faults[name]
			cal := calOf[name]
			dead := deadLetters()
			f.set(mode)
			hits := len(f.faulted())
			if err := e.p.RequestSync(e.ctx, e.ws, cal); err != nil {
				t.Fatal(err)
			}
			e.eventually(fmt.Sprintf("%s sync failed (%v)", name, mode), func() bool {
				return len(f.faulted()) > hits && e.count(`SELECT count(*) FROM calendars WHERE id = $1 AND last_error IS NOT NULL`, cal) == 1 &&
					(mode == refuse || mode == status5 || deadLetters() > dead)
			})
			queued = append(queued, queueErrors(t, e)...) // what the queue UI shows while it retries
			if name != "calendly" {
				// An import asks the provider once before it stores
				// anything: the admin API answers what it said.
				if code := connect(name); code < 400 {
					t.Errorf("%s import while it fails (%v): %d, want the provider's refusal", name, mode, code)
				}
				// The probe passes and the channels fail: the import is
				// stored and opens them in the background
				// (connection:setup), which calls and fails.
				if _, err := e.pool.Exec(e.ctx, `UPDATE calendars SET channel_id = NULL, channel_token_hash = NULL, channel_expires_at = NULL WHERE id = $1`, cal); err != nil {
					t.Fatal(err)
				}
				f.onlyOpen.Store(true)
				hits := len(f.faulted())
				if code := connect(name); code != http.StatusCreated {
					t.Errorf("%s import while its channels fail (%v): %d, want 201 (set up in the background)", name, mode, code)
				}
				e.eventually(fmt.Sprintf("%s setup failed (%v)", name, mode), func() bool {
					for _, p := range f.faulted()[hits:] {
						if opensChannel(p) {
							return true
						}
					}
					return false
				})
				f.onlyOpen.Store(false)
				queued = append(queued, queueErrors(t, e)...)
			}
			if name == "calendly" {
				// Calendly's import asks the provider at once: the admin
				// API answers what it said.
				if code := connect(name); code < 400 {
					t.Errorf("calendly import while it fails (%v): %d", mode, code)
				}
			}
			f.set(pass)
			if connStatus(name) != "active" {
				reimport(name)
			}
			if err := e.p.RequestSync(e.ctx, e.ws, cal); err != nil {
				t.Fatal(err)
			}
			e.eventually(name+" syncs again", func() bool {
				return e.count(`SELECT count(*) FROM calendars WHERE id = $1 AND last_error IS NULL`, cal) == 1
			})
		}

		// HubSpot: a CRM write, and an import, through the failing portal.
		f := e.faults["hubspot"]
		dead := deadLetters()
		title := guestEvent()
		f.set(mode)
		hits := len(f.faulted())
		if err := e.p.RequestSync(e.ctx, e.ws, calOf["google"]); err != nil {
			t.Fatal(err)
		}
		e.eventually(fmt.Sprintf("hubspot write failed (%v)", mode), func() bool {
			if len(f.faulted()) <= hits {
				return false
			}
			switch mode {
			case refuse, status5:
				return strings.Contains(e.logs.String(), `"task":"crm:write:batch"`)
			case status401:
				return connStatus("hubspot") == "needs_reauth"
			}
			return deadLetters() > dead
		})
		queued = append(queued, queueErrors(t, e)...)
		if code := connect("hubspot"); code < 400 {
			t.Errorf("hubspot import while it fails (%v): %d", mode, code)
		}
		f.set(pass)
		if connStatus("hubspot") != "active" {
			reimport("hubspot")
		}
		if mode != status4 {
			e.eventually(title+" logged after the failure", func() bool { return logged(title) })
		}
	}

	// Everything an error text reaches.
	var texts []string
	texts = append(texts, strings.Split(e.logs.String(), "\n")...)
	for _, q := range []string{
		`SELECT coalesce(last_error, '') FROM calendars WHERE workspace_id = $1`,
		`SELECT coalesce(last_error, '') FROM connections WHERE workspace_id = $1`,
		`SELECT reason FROM dead_letters WHERE workspace_id = $1`,
		`SELECT coalesce(last_error, '') FROM meetings WHERE workspace_id = $1`,
	} {
		rows, err := e.pool.Query(e.ctx, q, e.ws)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			texts = append(texts, q+": "+s)
		}
		rows.Close()
	}
	e.admin("GET", "/admin/workspaces/"+e.ws, nil)
	e.admin("GET", "/admin/workspaces/"+e.ws+"/calendars", nil)
	e.admin("GET", "/admin/workspaces/"+e.ws+"/meetings?limit=500", nil)
	e.admin("GET", "/admin/dead-letters?limit=500", nil)
	for _, a := range e.answers {
		texts = append(texts, "admin API: "+a)
	}
	texts = append(texts, queued...)
	texts = append(texts, queueErrors(t, e)...)

	for _, f := range e.faults {
		f.mu.Lock()
		secrets = append(secrets, f.secrets...)
		f.mu.Unlock()
	}
	var dls []string
	for _, s := range texts {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(s, secret) {
				t.Errorf("%q leaks into: %.400s", secret, s)
			}
		}
		if strings.Contains(s, "error") || strings.Contains(s, "reason") {
			dls = append(dls, s)
		}
	}
	if len(dls) == 0 {
		t.Fatal("no error text was recorded: the test failed nothing")
	}
	if t.Failed() {
		t.Logf("%d texts checked", len(texts))
	}
}

// queueErrors reads the errors the queue stored with retried and archived
// tasks (the Asynq web UI shows them).
func queueErrors(t *testing.T, e *leakEnv) []string {
	t.Helper()
	insp := pipelineInspector(e.rdb)
	var out []string
	for _, q := range []string{pipeline.QueueSync, pipeline.QueueCRM, pipeline.QueueLink, pipeline.QueueMaintenance} {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListRetryTasks, insp.ListArchivedTasks} {
			tasks, err := list(q, asynq.PageSize(1000))
			if err != nil {
				continue
			}
			for _, ti := range tasks {
				out = append(out, "queue "+q+" task "+ti.Type+": "+ti.LastErr)
			}
		}
	}
	return out
}
