package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/rapportsync/rapport/pipeline"
)

// pgLike is the fake service refusing what PostgreSQL refuses in a text
// parameter — a NUL byte or invalid UTF-8 — with an internal error, as the
// real ledger does.
type pgLike struct{ *fakeService }

var errBadText = errors.New(`ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`)

func badText(ss ...string) error {
	for _, s := range ss {
		if strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
			return errBadText
		}
	}
	return nil
}

func (p pgLike) CreateWorkspace(ctx context.Context, name string, domains []string) (pipeline.Workspace, error) {
	if err := badText(append([]string{name}, domains...)...); err != nil {
		return pipeline.Workspace{}, err
	}
	return p.fakeService.CreateWorkspace(ctx, name, domains)
}

func (p pgLike) WorkspaceStatus(ctx context.Context, id string) (pipeline.WorkspaceStatus, error) {
	if err := badText(id); err != nil {
		return pipeline.WorkspaceStatus{}, err
	}
	return p.fakeService.WorkspaceStatus(ctx, id)
}

func (p pgLike) AddConnection(ctx context.Context, ws string, in pipeline.ConnectionInput) (pipeline.Connection, error) {
	if err := badText(append([]string{ws, in.Provider, in.AccountEmail, in.AccessToken, in.RefreshToken}, in.CalendarIDs...)...); err != nil {
		return pipeline.Connection{}, err
	}
	return p.fakeService.AddConnection(ctx, ws, in)
}

func (p pgLike) Calendars(ctx context.Context, ws string) ([]pipeline.CalendarStatus, error) {
	if err := badText(ws); err != nil {
		return nil, err
	}
	return p.fakeService.Calendars(ctx, ws)
}

func (p pgLike) RequestSync(ctx context.Context, ws, cal string) error {
	if err := badText(ws, cal); err != nil {
		return err
	}
	return p.fakeService.RequestSync(ctx, ws, cal)
}

func (p pgLike) StartReconcile(ctx context.Context, req pipeline.ReconcileRequest) (string, error) {
	if err := badText(req.WorkspaceID, req.CalendarID); err != nil {
		return "", err
	}
	return p.fakeService.StartReconcile(ctx, req)
}

func (p pgLike) RunReconcile(ctx context.Context, req pipeline.ReconcileRequest) (pipeline.ReconcileReport, error) {
	if err := badText(req.WorkspaceID, req.CalendarID); err != nil {
		return pipeline.ReconcileReport{}, err
	}
	return p.fakeService.RunReconcile(ctx, req)
}

func (p pgLike) ReconcileRun(ctx context.Context, id string) (pipeline.ReconcileReport, error) {
	if err := badText(id); err != nil {
		return pipeline.ReconcileReport{}, err
	}
	return p.fakeService.ReconcileRun(ctx, id)
}

func (p pgLike) Meetings(ctx context.Context, ws, state string, pg pipeline.Page) ([]pipeline.MeetingEntry, string, error) {
	if err := badText(ws, state, pg.After); err != nil {
		return nil, "", err
	}
	return p.fakeService.Meetings(ctx, ws, state, pg)
}

func (p pgLike) Meeting(ctx context.Context, ws, key string) (pipeline.MeetingDetail, error) {
	if err := badText(ws, key); err != nil {
		return pipeline.MeetingDetail{}, err
	}
	return p.fakeService.Meeting(ctx, ws, key)
}

func (p pgLike) CreateConnectLink(ctx context.Context, ws string, in pipeline.ConnectLinkInput) (pipeline.ConnectLink, error) {
	if err := badText(ws, in.Provider, in.Account); err != nil {
		return pipeline.ConnectLink{}, err
	}
	return p.fakeService.CreateConnectLink(ctx, ws, in)
}

// TestBadTextRefused: a NUL byte or invalid UTF-8 in a path id, a query
// value or a JSON string is a 400, on every route, before the service
// sees it (PostgreSQL would answer an internal error: a 500).
func TestBadTextRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Service = pgLike{c.Service.(*fakeService)} })
	key := strings.Repeat("0", 63) + "1"
	for _, bad := range []string{"%00", "%FF", "a%00b", "%C3%28", "%0A"} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/admin/workspaces/" + bad, ""},
			{"GET", "/admin/workspaces/" + bad + "/calendars", ""},
			{"POST", "/admin/workspaces/" + bad + "/connections", `{"provider":"hubspot","access_token":"a"}`},
			{"POST", "/admin/workspaces/" + bad + "/connect-links", `{"provider":"google"}`},
			{"POST", "/admin/workspaces/ws-1/calendars/" + bad + "/sync", ""},
			{"GET", "/admin/workspaces/ws-1/meetings/" + bad, ""},
			{"GET", "/admin/workspaces/" + bad + "/meetings/" + key, ""},
			{"GET", "/admin/workspaces/ws-1/meetings?after=" + bad, ""},
			{"GET", "/admin/workspaces/ws-1/meetings?state=" + bad, ""},
			{"POST", "/admin/dead-letters/" + bad + "/retry", ""},
			{"GET", "/admin/dead-letters?after=" + bad, ""},
			{"GET", "/admin/reconcile/" + bad, ""},
			{"GET", "/oauth/google/start?workspace=" + bad, ""},
			{"GET", "/oauth/hubspot/callback?state=" + bad + "&code=x", ""},
			{"POST", "/webhooks/calendly/" + bad, `{}`},
		} {
			w := e.admin(c.method, c.path, c.body)
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s %s: %d %s, want 400", c.method, c.path, w.Code, w.Body)
			}
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/admin/workspaces", `{"name":"a\u0000b","internal_domains":["acme.example"]}`},
		{"POST", "/admin/workspaces", `{"name":"Acme","internal_domains":["acme.example\u0000"]}`},
		{"POST", "/admin/workspaces", "{\"name\":\"Acme\xff\",\"internal_domains\":[\"acme.example\"]}"},
		{"POST", "/admin/workspaces/ws-1/connections", `{"provider":"google","account_email":"a@northwind.test","access_token":"t","calendar_ids":["x\u0000"]}`},
		{"POST", "/admin/workspaces/ws-1/connections", "{\"provider\":\"hubspot\",\"access_token\":\"t\xc3\x28\"}"},
		{"POST", "/admin/workspaces/ws-1/connect-links", `{"provider":"google","account":"\u0000"}`},
		{"POST", "/admin/reconcile", `{"workspace_id":"ws-1\u0000"}`},
		{"POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1","calendar_id":"\u0000"}`},
	} {
		w := e.admin(c.method, c.path, c.body)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s %s %q: %d %s, want 400", c.method, c.path, c.body, w.Code, w.Body)
		}
	}
	if got := e.svc.snapshot(); len(got.added) != 0 || len(got.syncs) != 0 || len(got.reconciles) != 0 {
		t.Errorf("the service acted on refused requests: %+v", got)
	}
}

// failingBody fails its read with a socket error, as a slow client's body
// does at the server's read deadline.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) {
	return 0, errors.New("read tcp 10.20.30.40:8080->198.51.100.7:53122: i/o timeout")
}

// TestBadRequestBodiesQuiet: a 400 never echoes a socket address.
func TestBadRequestBodiesQuiet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/admin/workspaces", "/admin/reconcile", "/webhooks/google", "/webhooks/hubspot"} {
		req := httptest.NewRequest("POST", path, io.NopCloser(failingBody{}))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code < 400 || strings.Contains(w.Body.String(), "10.20.30.40") || strings.Contains(w.Body.String(), "198.51.100.7") {
			t.Errorf("POST %s with a failing body: %d %s", path, w.Code, w.Body)
		}
	}
}

// TestReadyzQuiet: /readyz says ready or not ready; what failed (user,
// database, host) only to the admin.
func TestReadyzQuiet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := `postgresql: failed to connect to user=rapport database=rapport host=10.0.0.7: password authentication failed`
	e.svc.mu.Lock()
	e.svc.readyErr = errorString(secret)
	e.svc.mu.Unlock()
	w := e.do("GET", "/readyz", "")
	checkError(t, w.Code, w.Body.String(), http.StatusServiceUnavailable, "not_ready")
	for _, s := range []string{"10.0.0.7", "user=", "rapport database", "password"} {
		if strings.Contains(w.Body.String(), s) {
			t.Errorf("unauthenticated /readyz shows %q: %s", s, w.Body)
		}
	}
	w = e.do("GET", "/readyz", "", "Authorization", "Bearer wrong-token-0123456789")
	if strings.Contains(w.Body.String(), "10.0.0.7") {
		t.Errorf("/readyz with a wrong token shows the reason: %s", w.Body)
	}
	w = e.admin("GET", "/readyz", "")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "password authentication failed") {
		t.Errorf("admin /readyz does not say why: %d %s", w.Code, w.Body)
	}
}

// blockingReconciles holds RunReconcile until released.
type blockingReconciles struct {
	*fakeService
	entered chan struct{}
	release chan struct{}
}

func (b blockingReconciles) RunReconcile(ctx context.Context, req pipeline.ReconcileRequest) (pipeline.ReconcileReport, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.fakeService.RunReconcile(ctx, req)
}

// TestSyncReconcilesCapped: at most two reconciliations run with
// ?wait=true at once; a third is told to come back (429, Retry-After),
// while queued ones are still accepted.
func TestSyncReconcilesCapped(t *testing.T) {
	t.Parallel()
	b := blockingReconciles{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(c *Config) {
		b.fakeService = c.Service.(*fakeService)
		c.Service = b
	})
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.admin("POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1"}`).Code
		}()
	}
	<-b.entered
	<-b.entered
	third := make(chan *httptest.ResponseRecorder, 1)
	go func() { third <- e.admin("POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1"}`) }()
	var w *httptest.ResponseRecorder
	select {
	case w = <-third:
	case <-b.entered:
		close(b.release)
		t.Fatal("a third reconciliation ran with wait=true while two were running")
	}
	checkError(t, w.Code, w.Body.String(), http.StatusTooManyRequests, "too_many_requests")
	if w.Header().Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if w := e.admin("POST", "/admin/reconcile", `{"workspace_id":"ws-1"}`); w.Code != http.StatusAccepted {
		t.Errorf("a queued reconciliation while two run: %d %s", w.Code, w.Body)
	}
	close(b.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a running reconciliation answered %d", c)
		}
	}
	go func() { <-b.entered }()
	if w := e.admin("POST", "/admin/reconcile?wait=true", `{"workspace_id":"ws-1"}`); w.Code != http.StatusOK {
		t.Errorf("after the two finished: %d %s", w.Code, w.Body)
	}
}
