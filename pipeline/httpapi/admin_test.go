package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/credentials"
)

// adminEndpoints is every admin endpoint with a good request.
var adminEndpoints = []struct {
	name, method, path, body string
	status                   int
	hasBody                  bool
}{
	{"create workspace", "POST", "/admin/workspaces", `{"name":"Acme","internal_domains":["acme.example"]}`, 201, true},
	{"workspace status", "GET", "/admin/workspaces/ws-1", "", 200, false},
	{"add connection", "POST", "/admin/workspaces/ws-1/connections",
		`{"provider":"hubspot","access_token":"at-1","refresh_token":"rt-1","expires_at":"2026-03-25T14:00:00Z"}`, 201, true},
	{"calendars", "GET", "/admin/workspaces/ws-1/calendars", "", 200, false},
	{"sync", "POST", "/admin/workspaces/ws-1/calendars/cal-1/sync", "", 202, false},
	{"reconcile", "POST", "/admin/reconcile", `{"workspace_id":"ws-1","dry_run":true}`, 202, true},
	{"reconcile wait", "POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1"}`, 200, true},
	{"meetings", "GET", "/admin/workspaces/ws-1/meetings?state=logged&limit=2", "", 200, false},
	{"meeting", "GET", "/admin/workspaces/ws-1/meetings/" + strings.Repeat("0", 63) + "1", "", 200, false},
	{"dead letters", "GET", "/admin/dead-letters?limit=2", "", 200, false},
	{"retry dead letter", "POST", "/admin/dead-letters/1/retry", "", 202, false},
	{"queues without redis", "GET", "/admin/queues/", "", 503, false},
	{"rotate without vault", "POST", "/admin/keys/rotate", "", 501, false},
}

func decodeJSON[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("response %q is not the JSON wanted: %v", body, err)
	}
	return v
}

func checkError(t *testing.T, status int, body string, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d (body %s)", status, wantStatus, body)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" || e.Code == "" {
		t.Errorf("error body %q is not {\"error\",\"code\"}", body)
		return
	}
	if wantCode != "" && e.Code != wantCode {
		t.Errorf("code %q, want %q (body %s)", e.Code, wantCode, body)
	}
}

func TestAdminEndpointsAuth(t *testing.T) {
	t.Parallel()
	for _, ep := range adminEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.admin(ep.method, ep.path, ep.body)
			if w.Code != ep.status {
				t.Fatalf("good request: status %d, want %d: %s", w.Code, ep.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			for name, hdr := range map[string][]string{
				"missing":      nil,
				"wrong token":  {"Authorization", "Bearer nope"},
				"token prefix": {"Authorization", "Bearer " + adminToken[:5]},
				"no scheme":    {"Authorization", adminToken},
				"basic":        {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))},
				"empty bearer": {"Authorization", "Bearer "},
			} {
				w := e.do(ep.method, ep.path, ep.body, hdr...)
				checkError(t, w.Code, w.Body.String(), http.StatusUnauthorized, "")
				if w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s: no WWW-Authenticate", name)
				}
			}

			disabled := newEnv(t, func(c *Config) { c.AdminToken = "" })
			w = disabled.do(ep.method, ep.path, ep.body, "Authorization", "Bearer ")
			checkError(t, w.Code, w.Body.String(), http.StatusUnauthorized, "admin_disabled")
			w = disabled.admin(ep.method, ep.path, ep.body)
			checkError(t, w.Code, w.Body.String(), http.StatusUnauthorized, "admin_disabled")
		})
	}
}

func TestAdminBodies(t *testing.T) {
	t.Parallel()
	for _, ep := range adminEndpoints {
		if !ep.hasBody {
			continue
		}
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var obj map[string]any
			if err := json.Unmarshal([]byte(ep.body), &obj); err != nil {
				t.Fatal(err)
			}
			wrong := map[string]any{}
			for k := range obj {
				wrong[k] = map[string]any{}
			}
			wrongType, _ := json.Marshal(wrong)
			obj["surprise"] = 1
			unknown, _ := json.Marshal(obj)
			obj["padding"] = strings.Repeat("x", 5<<10)
			delete(obj, "surprise")
			oversize, _ := json.Marshal(obj)
			for _, tc := range []struct {
				name, body string
				status     int
				code       string
			}{
				{"malformed", `{"name":`, 400, "bad_request"},
				{"not an object", `[1,2]`, 400, "bad_request"},
				{"wrong types", string(wrongType), 400, "bad_request"},
				{"empty", ``, 400, "bad_request"},
				{"trailing data", ep.body + `{}`, 400, "bad_request"},
				{"unknown field", string(unknown), 400, "bad_request"},
				{"oversize", string(oversize), 413, "too_large"},
			} {
				w := e.admin(ep.method, ep.path, tc.body)
				checkError(t, w.Code, w.Body.String(), tc.status, tc.code)
				if tc.name == "unknown field" && !strings.Contains(w.Body.String(), "surprise") {
					t.Errorf("unknown field error does not name it: %s", w.Body)
				}
			}
			if s := e.svc.snapshot(); len(s.added) != 0 || len(s.reconciles) != 0 {
				t.Errorf("a bad body reached the service: %+v", s)
			}
		})
	}
}

func TestAdminResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	w := e.admin("POST", "/admin/workspaces", `{"name":"Acme","internal_domains":["acme.example"]}`)
	ws := decodeJSON[pipeline.Workspace](t, w.Body.String())
	if w.Code != 201 || ws.ID == "" || ws.Name != "Acme" || w.Header().Get("Location") != "/admin/workspaces/"+ws.ID {
		t.Errorf("create workspace: %d %s (Location %q)", w.Code, w.Body, w.Header().Get("Location"))
	}
	for body, want := range map[string]int{
		`{"name":""}`:                                   400,
		`{"internal_domains":["a.example"]}`:            400,
		`{"name":"taken"}`:                              409,
		`{"name":"x","internal_domains":["localhost"]}`: 400,
	} {
		w := e.admin("POST", "/admin/workspaces", body)
		checkError(t, w.Code, w.Body.String(), want, "")
	}

	w = e.admin("GET", "/admin/workspaces/ws-1", "")
	st := decodeJSON[pipeline.WorkspaceStatus](t, w.Body.String())
	if st.ID != "ws-1" || len(st.Calendars) != 1 {
		t.Errorf("workspace status: %s", w.Body)
	}
	w = e.admin("GET", "/admin/workspaces/nope", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")

	// Internal errors: 500 without internals, logged with the request id.
	w = e.admin("GET", "/admin/workspaces/boom", "", "X-Request-ID", "req-boom-1")
	checkError(t, w.Code, w.Body.String(), 500, "internal")
	if strings.Contains(w.Body.String(), "hunter2") || strings.Contains(w.Body.String(), "10.0.0.7") {
		t.Errorf("500 leaks internals: %s", w.Body)
	}
	if !strings.Contains(w.Body.String(), "req-boom-1") || !strings.Contains(e.logs.String(), "req-boom-1") {
		t.Errorf("request id not in the 500 body and log")
	}

	// A panic: 500 without internals, and the server lives on.
	w = e.admin("GET", "/admin/workspaces/panic", "")
	checkError(t, w.Code, w.Body.String(), 500, "internal")
	if strings.Contains(w.Body.String(), "hunter2") {
		t.Errorf("panic leaks: %s", w.Body)
	}
	if w := e.admin("GET", "/admin/workspaces/ws-1", ""); w.Code != 200 {
		t.Errorf("after a panic: %d", w.Code)
	}

	// Connections.
	w = e.admin("POST", "/admin/workspaces/ws-1/connections",
		`{"provider":"google","account_email":"rep@northwind.test","access_token":"ya29.secret-access","refresh_token":"1//secret-refresh","expires_at":"2026-03-25T14:00:00Z","calendar_ids":["primary"]}`)
	if w.Code != 201 {
		t.Fatalf("add google connection: %d %s", w.Code, w.Body)
	}
	want := pipeline.ConnectionInput{Provider: "google", AccountEmail: "rep@northwind.test", AccessToken: "ya29.secret-access",
		RefreshToken: "1//secret-refresh", ExpiresAt: time.Date(2026, 3, 25, 14, 0, 0, 0, time.UTC), CalendarIDs: []string{"primary"}}
	if got := e.svc.snapshot().added; len(got) != 1 || got[0].workspace != "ws-1" || !cmp.Equal(got[0].in, want) {
		t.Errorf("AddConnection got %+v, want %+v", got, want)
	}
	for body, status := range map[string]int{
		`{"provider":"outlook","access_token":"a"}`:                         400,
		`{"access_token":"a"}`:                                              400,
		`{"provider":"hubspot"}`:                                            400,
		`{"provider":"google","access_token":"a"}`:                          400, // no account_email
		`{"provider":"hubspot","access_token":"a","expires_at":"tomorrow"}`: 400,
	} {
		w := e.admin("POST", "/admin/workspaces/ws-1/connections", body)
		checkError(t, w.Code, w.Body.String(), status, "")
	}
	w = e.admin("POST", "/admin/workspaces/nope/connections", `{"provider":"hubspot","access_token":"a"}`)
	checkError(t, w.Code, w.Body.String(), 404, "not_found")

	// Calendars: a bare array.
	w = e.admin("GET", "/admin/workspaces/ws-1/calendars", "")
	var cals []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &cals); err != nil || len(cals) != 1 {
		t.Fatalf("calendars: %s", w.Body)
	}
	for _, k := range []string{"id", "connection_id", "calendar_id", "status", "last_synced_at", "channel_expires_at", "last_error"} {
		if _, ok := cals[0][k]; !ok {
			t.Errorf("calendar lacks %q: %s", k, w.Body)
		}
	}
	w = e.admin("GET", "/admin/workspaces/ws-new-1/calendars", "")
	if strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("no calendars: %q, want []", w.Body)
	}

	// Sync.
	w = e.admin("POST", "/admin/workspaces/ws-1/calendars/cal-1/sync", "")
	if w.Code != 202 || !cmp.Equal(e.svc.snapshot().syncs, []string{"ws-1/cal-1"}) {
		t.Errorf("sync: %d %s, syncs %v", w.Code, w.Body, e.svc.snapshot().syncs)
	}
	w = e.admin("POST", "/admin/workspaces/ws-1/calendars/cal-x/sync", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")

	// Reconcile.
	w = e.admin("POST", "/admin/reconcile", `{"workspace_id":"ws-1","calendar_id":"cal-1","dry_run":true}`)
	started := decodeJSON[map[string]string](t, w.Body.String())
	if w.Code != 202 || started["id"] == "" || len(started) != 1 {
		t.Fatalf("reconcile: %d %s", w.Code, w.Body)
	}
	if got := e.svc.snapshot().reconciles[0]; !cmp.Equal(got, pipeline.ReconcileRequest{WorkspaceID: "ws-1", CalendarID: "cal-1", DryRun: true}) {
		t.Errorf("StartReconcile got %+v", got)
	}
	w = e.admin("GET", "/admin/reconcile/"+started["id"], "")
	if rep := decodeJSON[pipeline.ReconcileReport](t, w.Body.String()); w.Code != 200 || rep.Status != "running" {
		t.Errorf("reconcile run: %d %s", w.Code, w.Body)
	}
	w = e.admin("POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1"}`)
	var rep map[string]any
	json.Unmarshal(w.Body.Bytes(), &rep)
	for _, k := range []string{"id", "status", "checked", "created", "updated", "cancelled", "unchanged", "errors"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q: %s", k, w.Body)
		}
	}
	if w.Code != 200 || rep["status"] != "done" {
		t.Errorf("reconcile wait: %d %s", w.Code, w.Body)
	}
	w = e.admin("POST", "/admin/reconcile?wait=maybe", `{"workspace_id":"ws-1"}`)
	checkError(t, w.Code, w.Body.String(), 400, "invalid")
	w = e.admin("POST", "/admin/reconcile", `{"dry_run":true}`)
	checkError(t, w.Code, w.Body.String(), 400, "invalid")
	w = e.admin("POST", "/admin/reconcile", `{"workspace_id":"nope"}`)
	checkError(t, w.Code, w.Body.String(), 404, "not_found")
	w = e.admin("GET", "/admin/reconcile/run-404", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")

	// Meetings and their pages.
	var keys []string
	after := ""
	for range 10 {
		w = e.admin("GET", "/admin/workspaces/ws-1/meetings?limit=2&after="+after, "")
		page := decodeJSON[struct {
			Items []pipeline.MeetingEntry `json:"items"`
			Next  *string                 `json:"next"`
		}](t, w.Body.String())
		if w.Code != 200 || page.Next == nil {
			t.Fatalf("meetings page: %d %s", w.Code, w.Body)
		}
		for _, m := range page.Items {
			keys = append(keys, m.Key)
		}
		if after = *page.Next; after == "" {
			break
		}
	}
	if len(keys) != 5 {
		t.Errorf("paged through %d meetings, want 5", len(keys))
	}
	w = e.admin("GET", "/admin/workspaces/ws-1/meetings/"+keys[0], "")
	if d := decodeJSON[pipeline.MeetingDetail](t, w.Body.String()); w.Code != 200 || d.Key != keys[0] || len(d.Trace) == 0 {
		t.Errorf("meeting: %d %s", w.Code, w.Body)
	}
	w = e.admin("GET", "/admin/workspaces/ws-1/meetings/"+strings.Repeat("f", 64), "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")
	w = e.admin("GET", "/admin/workspaces/ws-1/meetings?state=gone", "")
	checkError(t, w.Code, w.Body.String(), 400, "invalid")
	w = e.admin("GET", "/admin/workspaces/ws-1/meetings?after=zzz", "")
	checkError(t, w.Code, w.Body.String(), 400, "invalid")
	w = e.admin("GET", "/admin/workspaces/ws-1/meetings?state=failed", "")
	if strings.TrimSpace(w.Body.String()) != `{"items":[],"next":""}` {
		t.Errorf("empty page: %s", w.Body)
	}
	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		w = e.admin("GET", "/admin/workspaces/ws-1/meetings?limit="+bad, "")
		checkError(t, w.Code, w.Body.String(), 400, "invalid")
	}
	before := len(e.svc.snapshot().pages)
	e.admin("GET", "/admin/workspaces/ws-1/meetings", "")
	e.admin("GET", "/admin/workspaces/ws-1/meetings?limit=100000", "")
	pages := e.svc.snapshot().pages[before:]
	if len(pages) != 2 || pages[0].Limit != 50 || pages[1].Limit != 500 {
		t.Errorf("limits passed: %+v, want 50 (default) and 500 (max)", pages)
	}

	// Dead letters.
	w = e.admin("GET", "/admin/dead-letters?limit=2", "")
	dl := decodeJSON[struct {
		Items []pipeline.DeadLetter `json:"items"`
		Next  string                `json:"next"`
	}](t, w.Body.String())
	if len(dl.Items) != 2 || dl.Next == "" {
		t.Errorf("dead letters: %s", w.Body)
	}
	w = e.admin("GET", "/admin/dead-letters?after="+dl.Next, "")
	if d := decodeJSON[struct {
		Items []pipeline.DeadLetter `json:"items"`
	}](t, w.Body.String()); len(d.Items) != 1 || d.Items[0].ID != 3 {
		t.Errorf("second dead-letter page: %s", w.Body)
	}
	w = e.admin("POST", "/admin/dead-letters/2/retry", "")
	if w.Code != 202 {
		t.Errorf("retry: %d %s", w.Code, w.Body)
	}
	w = e.admin("POST", "/admin/dead-letters/2/retry", "")
	checkError(t, w.Code, w.Body.String(), 409, "conflict")
	w = e.admin("POST", "/admin/dead-letters/99/retry", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")
	for _, bad := range []string{"abc", "0", "-3", "99999999999999999999"} {
		w = e.admin("POST", "/admin/dead-letters/"+bad+"/retry", "")
		checkError(t, w.Code, w.Body.String(), 400, "invalid")
	}

	// Unknown endpoints and methods: JSON errors, behind auth.
	w = e.admin("GET", "/admin/nothing-here", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")
	w = e.do("GET", "/admin/nothing-here", "")
	checkError(t, w.Code, w.Body.String(), 401, "unauthorized")
	w = e.admin("DELETE", "/admin/workspaces/ws-1", "")
	checkError(t, w.Code, w.Body.String(), 405, "method_not_allowed")
	if w.Header().Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	w = e.do("GET", "/nothing", "")
	checkError(t, w.Code, w.Body.String(), 404, "not_found")
	w = e.do("GET", "/webhooks/google", "")
	checkError(t, w.Code, w.Body.String(), 405, "method_not_allowed")

	// No token reaches the logs.
	if logs := e.logs.String(); strings.Contains(logs, "secret-access") || strings.Contains(logs, "secret-refresh") {
		t.Errorf("a token reached the logs:\n%s", logs)
	}
}

var _ KeyRotator = (*credentials.Vault)(nil)

type fakeRotator struct{ n int }

func (f *fakeRotator) Rotate(context.Context) (int, error) { return f.n, nil }

func TestRotateKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Keys = &fakeRotator{n: 3} })
	w := e.admin("POST", "/admin/keys/rotate", "")
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"rotated":3}` {
		t.Errorf("rotate: %d %s", w.Code, w.Body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if w := e.do("GET", "/healthz", ""); w.Code != 200 || strings.TrimSpace(w.Body.String()) != "ok" {
		t.Errorf("healthz: %d %q", w.Code, w.Body)
	}
	if w := e.do("GET", "/readyz", ""); w.Code != 200 {
		t.Errorf("readyz: %d %s", w.Code, w.Body)
	}
	e.svc.mu.Lock()
	e.svc.readyErr = errorString("migrations are pending: run rapport migrate")
	e.svc.mu.Unlock()
	w := e.admin("GET", "/readyz", "") // the reason is for the admin only (TestReadyzQuiet)
	checkError(t, w.Code, w.Body.String(), 503, "not_ready")
	if !strings.Contains(w.Body.String(), "migrations are pending") {
		t.Errorf("readyz does not say why: %s", w.Body)
	}
	w = e.do("GET", "/metrics", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `rapport_http_requests_total{route="GET /readyz",status="503"} 1`) {
		t.Errorf("metrics: %d\n%s", w.Code, w.Body)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do("GET", "/healthz", "", "X-Request-ID", "abc-123")
	if got := w.Header().Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("X-Request-ID %q, want the caller's", got)
	}
	w = e.do("GET", "/healthz", "")
	gen := w.Header().Get("X-Request-ID")
	if len(gen) < 16 {
		t.Errorf("generated request id %q", gen)
	}
	w = e.do("GET", "/healthz", "", "X-Request-ID", "bad id\twith spaces")
	if got := w.Header().Get("X-Request-ID"); got == "" || strings.ContainsAny(got, " \t") {
		t.Errorf("unsafe request id kept: %q", got)
	}
	if !strings.Contains(e.logs.String(), `"request_id":"abc-123"`) {
		t.Errorf("request id not logged:\n%s", e.logs)
	}
}

func TestQueuesUI(t *testing.T) {
	t.Parallel()
	opt := asynq.RedisClientOpt{Addr: testenv.RedisAddr(), DB: testenv.RedisDB(t)}
	e := newEnv(t, func(c *Config) { c.RedisConnOpt = opt })

	w := e.admin("GET", "/admin/queues/", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<html") || !strings.Contains(w.Body.String(), "/admin/queues") {
		t.Fatalf("queue UI: %d %.300s", w.Code, w.Body)
	}
	w = e.admin("GET", "/admin/queues/api/queues", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "queues") {
		t.Errorf("queue UI API: %d %.300s", w.Code, w.Body)
	}
	// HTTP Basic, even with the right token, is refused: a browser
	// replays it cross-site. The UI takes the bearer header or the
	// console's session cookie.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", basic}} {
		w := e.do("GET", "/admin/queues/", "", hdr...)
		checkError(t, w.Code, w.Body.String(), 401, "unauthorized")
		if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("queue UI 401 does not ask for a bearer token: %q", w.Header().Get("WWW-Authenticate"))
		}
		if w := e.do("GET", "/admin/queues/api/queues", "", hdr...); w.Code != 401 {
			t.Errorf("queue API without auth: %d", w.Code)
		}
	}
	w = e.do("GET", "/admin/workspaces/ws-1", "", "Authorization", basic)
	checkError(t, w.Code, w.Body.String(), 401, "unauthorized")
	// The bare root redirects into the UI, behind auth too.
	if w := e.admin("GET", "/admin/queues", ""); w.Code/100 != 3 || w.Header().Get("Location") != "/admin/queues/" {
		t.Errorf("/admin/queues: %d → %q", w.Code, w.Header().Get("Location"))
	}
	if w := e.do("GET", "/admin/queues", ""); w.Code != 401 {
		t.Errorf("/admin/queues without auth: %d", w.Code)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	svc := newFakeService()
	for name, cfg := range map[string]Config{
		"no service":     {PublicURL: "http://x"},
		"no public url":  {Service: svc},
		"relative url":   {Service: svc, PublicURL: "/rapport"},
		"short statekey": {Service: svc, PublicURL: "http://x", StateKey: []byte("short")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
