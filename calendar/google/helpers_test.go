package google_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/calendar/google"
)

// clock is a settable clock shared by the fake and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

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

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

const accessToken = "ya29.test-token"

type env struct {
	srv   *calendartest.Server
	src   *google.Source
	clock *clock
}

// newEnv starts a fake Google and a Source on it with fast backoff.
func newEnv(t *testing.T, cfg google.Config) *env {
	t.Helper()
	srv := calendartest.NewServer()
	t.Cleanup(srv.Close)
	clk := newClock(t0)
	srv.SetClock(clk.Now)
	cfg.BaseURL = srv.URL()
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = time.Millisecond
		cfg.MaxBackoff = 4 * time.Millisecond
	}
	src, err := google.New(context.Background(), cfg, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken}))
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, src: src, clock: clk}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listAll lists every page from req and returns the events, the cursor and
// the pages.
func listAll(t *testing.T, src *google.Source, req calendar.ListRequest) ([]calendar.Event, string, []calendar.Page) {
	t.Helper()
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

func byID(evs []calendar.Event) []calendar.Event {
	out := append([]calendar.Event(nil), evs...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
