package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/hubspot"
	prov "github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeService is an in-memory Service. Workspace "boom" fails with an
// internal error whose text must never reach a response.
type fakeService struct {
	mu          sync.Mutex
	nextID      int
	workspaces  map[string]pipeline.Workspace
	added       []addedConnection
	calendars   map[string][]pipeline.CalendarStatus
	syncs       []string // "ws/calendar" asked by the admin API
	runs        map[string]pipeline.ReconcileReport
	reconciles  []pipeline.ReconcileRequest
	meetings    map[string][]pipeline.MeetingEntry
	pages       []pipeline.Page
	deadLetters []pipeline.DeadLetter
	retried     map[int64]bool
	channels    map[string]fakeChannel
	enqueued    []string // calendars whose sync a notification enqueued
	crmChanged  []string
	readyErr    error
	links       map[string]*fakeLink
	// hubspotSecret verifies HubSpot webhooks; empty: not configured.
	hubspotSecret string
}

type fakeLink struct {
	pipeline.ConnectLink
	used bool
}

var _ Service = (*fakeService)(nil)

type addedConnection struct {
	workspace string
	in        pipeline.ConnectionInput
}

type fakeChannel struct{ token, resource, calendar string }

var errInternal = errors.New("dial tcp 10.0.0.7:5432: password=hunter2 authentication failed")

func newFakeService() *fakeService {
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	f := &fakeService{
		workspaces: map[string]pipeline.Workspace{
			"ws-1": {ID: "ws-1", Name: "Northwind", InternalDomains: []string{"northwind.test"}, CreatedAt: created},
		},
		calendars: map[string][]pipeline.CalendarStatus{
			"ws-1": {{ID: "cal-1", ConnectionID: "conn-1", CalendarID: "primary", Status: "active"}},
		},
		runs:          map[string]pipeline.ReconcileReport{},
		links:         map[string]*fakeLink{},
		hubspotSecret: hubspotSecret,
		meetings:      map[string][]pipeline.MeetingEntry{},
		retried:       map[int64]bool{},
		channels: map[string]fakeChannel{
			"ch-1": {token: "tok-1", resource: "res-1", calendar: "cal-1"},
		},
	}
	for i := range 5 {
		f.meetings["ws-1"] = append(f.meetings["ws-1"], pipeline.MeetingEntry{
			Key: fmt.Sprintf("%064x", i+1), State: "logged", CRMMeetingID: strconv.Itoa(900 + i),
			Rule: "customer-meeting", RulesVersion: "v1", DecidedAt: created,
		})
	}
	for i := range 3 {
		f.deadLetters = append(f.deadLetters, pipeline.DeadLetter{
			ID: int64(i + 1), TaskType: "crm:write", TaskID: fmt.Sprintf("t-%d", i+1), Queue: "crm",
			Ref: []byte(`{}`), Class: "permanent", Reason: "validation error", CreatedAt: created,
		})
	}
	return f
}

func (f *fakeService) workspace(id string) error {
	if id == "panic" {
		panic("fake service panicked with password=hunter2")
	}
	if id == "boom" {
		return errInternal
	}
	if _, ok := f.workspaces[id]; !ok {
		return fmt.Errorf("workspace %q: %w", id, pipeline.ErrNotFound)
	}
	return nil
}

func (f *fakeService) CreateWorkspace(ctx context.Context, name string, internal []string) (pipeline.Workspace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "taken" {
		return pipeline.Workspace{}, fmt.Errorf("workspace %q exists: %w", name, pipeline.ErrConflict)
	}
	for _, d := range internal {
		if !strings.Contains(d, ".") {
			return pipeline.Workspace{}, fmt.Errorf("internal domain %q: %w", d, pipeline.ErrInvalid)
		}
	}
	f.nextID++
	ws := pipeline.Workspace{ID: fmt.Sprintf("ws-new-%d", f.nextID), Name: name, InternalDomains: internal, CreatedAt: time.Now().UTC()}
	f.workspaces[ws.ID] = ws
	return ws, nil
}

func (f *fakeService) CreateConnectLink(ctx context.Context, ws string, in pipeline.ConnectLinkInput) (pipeline.ConnectLink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return pipeline.ConnectLink{}, err
	}
	switch in.Provider {
	case "google", "hubspot", "microsoft", "calendly":
	default:
		return pipeline.ConnectLink{}, fmt.Errorf("provider %q: %w", in.Provider, pipeline.ErrInvalid)
	}
	f.nextID++
	l := pipeline.ConnectLink{ID: fmt.Sprintf("link-%d", f.nextID), WorkspaceID: ws, Provider: in.Provider, Account: in.Account,
		AllowExternalAccount: in.AllowExternalAccount, Replace: in.Replace, ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Second)}
	f.links[l.ID] = &fakeLink{ConnectLink: l}
	return l, nil
}

func (f *fakeService) UseConnectLink(ctx context.Context, id string) (pipeline.ConnectLink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[id]
	if l == nil || l.used {
		return pipeline.ConnectLink{}, fmt.Errorf("link used or expired: %w", pipeline.ErrForbidden)
	}
	l.used = true
	return l.ConnectLink, nil
}

func (f *fakeService) WorkspaceStatus(ctx context.Context, id string) (pipeline.WorkspaceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(id); err != nil {
		return pipeline.WorkspaceStatus{}, err
	}
	return pipeline.WorkspaceStatus{Workspace: f.workspaces[id], Calendars: f.calendars[id],
		Connections: []pipeline.ConnectionStatus{}}, nil
}

func (f *fakeService) AddConnection(ctx context.Context, ws string, in pipeline.ConnectionInput) (pipeline.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return pipeline.Connection{}, err
	}
	switch {
	case in.Provider != "google" && in.Provider != "hubspot":
		return pipeline.Connection{}, fmt.Errorf("provider %q: want google or hubspot: %w", in.Provider, pipeline.ErrInvalid)
	case in.Provider == "google" && in.AccountEmail == "":
		return pipeline.Connection{}, fmt.Errorf("account_email is required: %w", pipeline.ErrInvalid)
	}
	f.added = append(f.added, addedConnection{ws, in})
	account := in.AccountEmail
	if in.Provider == "hubspot" {
		account = "4711"
	}
	return pipeline.Connection{ID: fmt.Sprintf("conn-%d", len(f.added)+1), Provider: in.Provider, Account: account, Status: "active"}, nil
}

func (f *fakeService) Calendars(ctx context.Context, ws string) ([]pipeline.CalendarStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return nil, err
	}
	return f.calendars[ws], nil
}

func (f *fakeService) RequestSync(ctx context.Context, ws, cal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return err
	}
	for _, c := range f.calendars[ws] {
		if c.ID == cal {
			f.syncs = append(f.syncs, ws+"/"+cal)
			return nil
		}
	}
	return fmt.Errorf("calendar %q: %w", cal, pipeline.ErrNotFound)
}

func (f *fakeService) StartReconcile(ctx context.Context, req pipeline.ReconcileRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(req.WorkspaceID); err != nil {
		return "", err
	}
	f.reconciles = append(f.reconciles, req)
	id := fmt.Sprintf("run-%d", len(f.reconciles))
	f.runs[id] = pipeline.ReconcileReport{ID: id, Status: "running", Errors: []string{}}
	return id, nil
}

func (f *fakeService) RunReconcile(ctx context.Context, req pipeline.ReconcileRequest) (pipeline.ReconcileReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(req.WorkspaceID); err != nil {
		return pipeline.ReconcileReport{}, err
	}
	f.reconciles = append(f.reconciles, req)
	id := fmt.Sprintf("run-%d", len(f.reconciles))
	rep := pipeline.ReconcileReport{ID: id, Status: "done", Checked: 7, Created: 1, Unchanged: 6, Errors: []string{}}
	f.runs[id] = rep
	return rep, nil
}

func (f *fakeService) ReconcileRun(ctx context.Context, id string) (pipeline.ReconcileReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rep, ok := f.runs[id]
	if !ok {
		return rep, fmt.Errorf("reconciliation run %q: %w", id, pipeline.ErrNotFound)
	}
	return rep, nil
}

// fakePage pages by position; the cursor is the index of the next item.
func fakePage[T any](all []T, p pipeline.Page) ([]T, string, error) {
	start := 0
	if p.After != "" {
		n, err := strconv.Atoi(p.After)
		if err != nil || n < 0 || n > len(all) {
			return nil, "", fmt.Errorf("bad cursor %q: %w", p.After, pipeline.ErrInvalid)
		}
		start = n
	}
	end := min(start+p.Limit, len(all))
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return all[start:end], next, nil
}

func (f *fakeService) Meetings(ctx context.Context, ws, state string, p pipeline.Page) ([]pipeline.MeetingEntry, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return nil, "", err
	}
	f.pages = append(f.pages, p)
	var all []pipeline.MeetingEntry
	for _, m := range f.meetings[ws] {
		if state == "" || m.State == state {
			all = append(all, m)
		}
	}
	return fakePage(all, p)
}

func (f *fakeService) Meeting(ctx context.Context, ws, key string) (pipeline.MeetingDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.workspace(ws); err != nil {
		return pipeline.MeetingDetail{}, err
	}
	for _, m := range f.meetings[ws] {
		if m.Key == key {
			return pipeline.MeetingDetail{MeetingEntry: m, Trace: []byte(`{"rule":"customer-meeting","domains":["acme.example"]}`),
				Copies: []pipeline.MeetingCopy{}}, nil
		}
	}
	return pipeline.MeetingDetail{}, fmt.Errorf("meeting %q: %w", key, pipeline.ErrNotFound)
}

func (f *fakeService) DeadLetters(ctx context.Context, p pipeline.Page) ([]pipeline.DeadLetter, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages = append(f.pages, p)
	return fakePage(f.deadLetters, p)
}

func (f *fakeService) RetryDeadLetter(ctx context.Context, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id > int64(len(f.deadLetters)) {
		return fmt.Errorf("dead letter %d: %w", id, pipeline.ErrNotFound)
	}
	if f.retried[id] {
		return fmt.Errorf("dead letter %d was retried: %w", id, pipeline.ErrConflict)
	}
	f.retried[id] = true
	return nil
}

// Notify mirrors the pipeline's webhook handling for Google: parse, find
// the channel, verify its token, queue a sync for a change. A handshake
// provider ("echo") answers its validation token, as Graph needs.
func (f *fakeService) Notify(ctx context.Context, provider string, req calendar.WebhookRequest) (*calendar.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if provider == "hubspot" {
		portals, err := hubspot.Provider{ClientSecret: f.hubspotSecret}.CompaniesChanged(crm.WebhookRequest{
			Method: req.Method, URL: req.URL, Header: req.Header, Body: req.Body, Received: req.Received})
		if errors.Is(err, prov.ErrNotConfigured) {
			return nil, fmt.Errorf("%v: %w", err, pipeline.ErrNotConfigured)
		}
		if err != nil {
			return nil, err
		}
		f.crmChanged = append(f.crmChanged, portals...)
		return nil, nil
	}
	if provider == "echo" {
		if v := req.Query.Get("validationToken"); v != "" {
			return &calendar.Reply{Status: 200, ContentType: "text/plain; charset=utf-8", Body: v}, nil
		}
		return nil, fmt.Errorf("echo wants a validation token: %w", pipeline.ErrInvalid)
	}
	if provider != "google" {
		return nil, fmt.Errorf("provider %q: %w", provider, pipeline.ErrNotFound)
	}
	_, ns, err := google.Parser{}.ParseWebhook(req)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, pipeline.ErrInvalid)
	}
	n := ns[0]
	ch, ok := f.channels[n.ChannelID]
	if !ok || ch.resource != n.ResourceID {
		return nil, fmt.Errorf("channel %q: %w", n.ChannelID, pipeline.ErrNotFound)
	}
	if !calendar.VerifyToken(n.Token, calendar.HashToken(ch.token)) {
		return nil, fmt.Errorf("channel %q: %w", n.ChannelID, pipeline.ErrForbidden)
	}
	if n.State == calendar.StateChanged {
		f.enqueued = append(f.enqueued, ch.calendar)
	}
	return nil, nil
}

func (f *fakeService) CRMChanged(ctx context.Context, portalID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crmChanged = append(f.crmChanged, portalID)
	return nil
}

func (f *fakeService) Ready(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readyErr
}

// calls is a copy of what the service was asked.
type calls struct {
	added      []addedConnection
	syncs      []string
	reconciles []pipeline.ReconcileRequest
	pages      []pipeline.Page
	enqueued   []string
	crmChanged []string
}

func (f *fakeService) snapshot() calls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return calls{
		added: append([]addedConnection(nil), f.added...), syncs: append([]string(nil), f.syncs...),
		reconciles: append([]pipeline.ReconcileRequest(nil), f.reconciles...), pages: append([]pipeline.Page(nil), f.pages...),
		enqueued: append([]string(nil), f.enqueued...), crmChanged: append([]string(nil), f.crmChanged...),
	}
}

// ---- test server

const adminToken = "admin-s3cret-token"

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
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

type env struct {
	t     testing.TB
	svc   *fakeService
	h     http.Handler
	clock *clock
	logs  *syncBuffer
	reg   *prometheus.Registry
}

const hubspotSecret = "hubspot-client-secret"

func newEnv(t testing.TB, mutate ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, svc: newFakeService(), clock: &clock{now: time.Now()}, logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	cfg := Config{
		Service:      e.svc,
		AdminToken:   adminToken,
		PublicURL:    "https://rapport.example",
		StateKey:     bytes.Repeat([]byte{7}, 32),
		Gatherer:     e.reg,
		Registerer:   e.reg,
		Logger:       slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:        e.clock.Now,
		MaxBodyBytes: 4 << 10,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.(*Server).Close() })
	e.h = h
	return e
}

// do serves one request; headers come in name, value pairs.
func (e *env) do(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

// admin serves one request with the admin token.
func (e *env) admin(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(method, target, body, append([]string{"Authorization", "Bearer " + adminToken}, headers...)...)
}
