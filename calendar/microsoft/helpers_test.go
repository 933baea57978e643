package microsoft_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/microsoft"
)

const (
	alice = "alice@example.com"
	conn  = "conn-1"
)

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

// clock is a settable clock shared by the fake and the test.
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

type env struct {
	srv   *graph.Server
	src   *microsoft.Source
	clock *clock
	sleep *sleeper
	token string
	cfg   microsoft.Config
}

// newEnv starts a fake Graph with alice's mailbox (in W. Europe time) and a
// Source on it.
func newEnv(t *testing.T, cfg microsoft.Config) *env {
	t.Helper()
	srv := graph.NewServer()
	t.Cleanup(srv.Close)
	clk := &clock{t: t0}
	srv.SetClock(clk.Now)
	tok, err := srv.AddMailbox(alice, "W. Europe Standard Time")
	check(t, err)
	sl := &sleeper{}
	cfg.BaseURL = srv.URL()
	cfg.Clock = clk.Now
	if cfg.Sleep == nil {
		cfg.Sleep = sl.Sleep
	}
	src, err := microsoft.New(cfg, calendar.Conn{ID: conn, Account: alice, Tokens: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})})
	check(t, err)
	return &env{srv: srv, src: src, clock: clk, sleep: sl, token: tok, cfg: cfg}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		check(t, err)
		return v
	}
}

// window is the sync window of the tests: a week back, a month ahead.
func window() (time.Time, time.Time) { return t0.Add(-7 * 24 * time.Hour), t0.Add(30 * 24 * time.Hour) }

// listAll lists every page from req and returns the events, the cursor and
// the pages.
func listAll(t *testing.T, src *microsoft.Source, req calendar.ListRequest) ([]calendar.Event, string, []calendar.Page) {
	t.Helper()
	if req.CalendarID == "" {
		req.CalendarID = microsoft.PrimaryCalendar
	}
	if req.TimeMin.IsZero() {
		req.TimeMin, req.TimeMax = window()
	}
	var events []calendar.Event
	var pages []calendar.Page
	for i := 0; ; i++ {
		if i > 1000 {
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
		if p.NextCursor == "" {
			t.Fatal("last page without cursor")
		}
		return events, p.NextCursor, pages
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
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.ID)
	}
	sort.Strings(out)
	return out
}
