package calendly_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
)

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

// clock is a settable clock shared by the fake and the adapter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sleeper records the waits the adapter asks for and returns at once, so
// no test waits on the wall clock.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// env is a fake Calendly with an organization (Northwind: an owner, two
// reps), event types, and the adapter pointed at it.
type env struct {
	srv   *fake.Server
	clk   *clock
	sleep *sleeper
	cfg   calendly.Config
	prov  *calendly.Provider

	org        fake.Org
	admin, rep fake.User
	rep2       fake.User
	demo       fake.EventType // solo, hosted by rep
	workshop   fake.EventType // group, hosted by rep
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := fake.NewServer()
	t.Cleanup(srv.Close)
	clk := &clock{t: t0}
	srv.SetClock(clk.Now)
	e := &env{srv: srv, clk: clk, sleep: &sleeper{}}
	e.cfg = calendly.Config{
		BaseURL: srv.URL(), Clock: clk.Now, Sleep: e.sleep.Sleep,
		BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
	}
	var err error
	if e.prov, err = calendly.NewProvider(e.cfg); err != nil {
		t.Fatal(err)
	}
	e.org = srv.AddOrganization(fake.PlanTeams)
	e.admin = srv.AddUser(e.org, "ops@northwind.test", "Olga Ops", fake.RoleOwner)
	e.rep = srv.AddUser(e.org, "rep@northwind.test", "Rey Rep", fake.RoleUser)
	e.rep2 = srv.AddUser(e.org, "sam@northwind.test", "Sam Second", fake.RoleUser)
	e.demo = srv.AddEventType(e.rep, "Product demo", "solo")
	e.workshop = srv.AddEventType(e.rep, "Onboarding workshop", "group")
	return e
}

// open returns a Source for a personal access token of u.
func (e *env) open(t *testing.T, u fake.User, scopes ...string) (*calendly.Source, string) {
	t.Helper()
	tok := e.srv.AddPAT(u, scopes...)
	src, err := e.prov.Open(context.Background(), calendar.Conn{ID: "conn-1", Tokens: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})})
	if err != nil {
		t.Fatal(err)
	}
	return src.(*calendly.Source), tok
}

func (e *env) book(t *testing.T, spec fake.BookingSpec) fake.Booking {
	t.Helper()
	if spec.EventType.UUID == "" {
		spec.EventType = e.demo
	}
	b, _ := e.srv.Book(spec)
	return b
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listAll lists every page from req and returns the events and the pages.
func listAll(t *testing.T, src *calendly.Source, req calendar.ListRequest) ([]calendar.Event, []calendar.Page) {
	t.Helper()
	var events []calendar.Event
	var pages []calendar.Page
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("listing does not end")
		}
		p, err := src.List(context.Background(), req)
		if err != nil {
			t.Fatalf("list page %d: %v", i, err)
		}
		pages = append(pages, p)
		events = append(events, p.Events...)
		if p.NextPageToken != "" {
			if p.NextCursor != "" {
				t.Fatal("page has both a next page token and a cursor")
			}
			req.PageToken = p.NextPageToken
			continue
		}
		if p.NextCursor != calendly.ListingCursor {
			t.Fatalf("last page cursor %q, want %q", p.NextCursor, calendly.ListingCursor)
		}
		return events, pages
	}
}

func byID(evs []calendar.Event) map[string]calendar.Event {
	out := make(map[string]calendar.Event, len(evs))
	for _, e := range evs {
		out[e.ID] = e
	}
	return out
}

func ids(evs []calendar.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	sort.Strings(out)
	return out
}

// hook is the pipeline's webhook endpoint in miniature: it records what
// Calendly POSTs to /webhooks/calendly/{channel}, as WebhookRequests
// stamped with the shared clock.
type hook struct {
	srv *httptest.Server
	clk *clock

	mu     sync.Mutex
	status int
	reqs   []calendar.WebhookRequest
}

func newHook(t *testing.T, clk *clock) *hook {
	h := &hook{clk: clk}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) address(channel string) string { return h.srv.URL + "/webhooks/calendly/" + channel }

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, calendly.MaxWebhookBody+1))
	h.mu.Lock()
	h.reqs = append(h.reqs, calendar.WebhookRequest{
		Header:   r.Header.Clone(),
		Query:    r.URL.Query(),
		Path:     strings.TrimPrefix(r.URL.Path, "/webhooks/calendly"),
		Body:     body,
		Received: h.clk.Now(),
	})
	st := h.status
	h.mu.Unlock()
	if st == 0 {
		st = http.StatusOK
	}
	w.WriteHeader(st)
}

func (h *hook) setStatus(st int) {
	h.mu.Lock()
	h.status = st
	h.mu.Unlock()
}

// take returns the requests received since the last take.
func (h *hook) take() []calendar.WebhookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.reqs
	h.reqs = nil
	return out
}

// handle does what the pipeline does with deliveries: verify each with
// the channel's key, parse it, and fetch the events it names. It returns
// the fetched events in delivery order.
func handle(t *testing.T, src *calendly.Source, key string, reqs []calendar.WebhookRequest) []calendar.Event {
	t.Helper()
	var p calendly.Parser
	var out []calendar.Event
	for _, r := range reqs {
		if err := p.VerifySignature(r, []byte(key)); err != nil {
			t.Fatalf("verify delivery: %v", err)
		}
		_, ns, err := p.ParseWebhook(r)
		check(t, err)
		for _, n := range ns {
			page, err := src.List(context.Background(), calendar.ListRequest{EventIDs: n.EventIDs})
			check(t, err)
			if page.NextCursor != "" || page.NextPageToken != "" {
				t.Fatalf("fetch by id returned a cursor: %+v", page)
			}
			out = append(out, page.Events...)
		}
	}
	return out
}
