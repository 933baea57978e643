package hubspot_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/internal/ratelimit"
	"github.com/rapportsync/rapport/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fast are options of a fake without rate limits, for tests about other
// things.
func fast(o crmtest.Options) crmtest.Options {
	if o.Limit == 0 {
		o.Limit = -1
	}
	if o.SearchPerSecond == 0 {
		o.SearchPerSecond = -1
	}
	return o
}

func newFake(t *testing.T, o crmtest.Options) *crmtest.Server {
	t.Helper()
	s := crmtest.NewServer(o)
	t.Cleanup(s.Close)
	return s
}

// newClient returns a client of the fake with a generous limiter and quick
// retries unless cfg says otherwise.
func newClient(t *testing.T, s *crmtest.Server, cfg hubspot.Config) *hubspot.Client {
	t.Helper()
	cfg.BaseURL = s.URL()
	if cfg.RateLimit == (hubspot.Limit{}) {
		cfg.RateLimit = hubspot.Limit{Requests: 100_000, Window: time.Second}
	}
	if cfg.SearchPerSecond == 0 {
		cfg.SearchPerSecond = 100_000
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 5 * time.Millisecond
	}
	c, err := hubspot.New(cfg, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "token"}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func prepare(t *testing.T, c *hubspot.Client) crm.Portal {
	t.Helper()
	p, err := c.Prepare(context.Background())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return p
}

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func meeting(i int) crm.Meeting {
	start := t0.Add(time.Duration(i) * time.Hour)
	return crm.Meeting{
		Key: fmt.Sprintf("key-%04d", i),
		Properties: map[string]string{
			crm.PropTimestamp: strconv.FormatInt(start.UnixMilli(), 10),
			crm.PropTitle:     fmt.Sprintf("Meeting %d", i),
			crm.PropStart:     start.Format(time.RFC3339),
			crm.PropEnd:       start.Add(30 * time.Minute).Format(time.RFC3339),
			crm.PropOutcome:   crm.OutcomeScheduled,
		},
	}
}

func meetings(n int) []crm.Meeting {
	ms := make([]crm.Meeting, n)
	for i := range ms {
		ms[i] = meeting(i)
	}
	return ms
}

// checkResults fails unless every result is a success whose id is the fake
// meeting carrying the input's key.
func checkResults(t *testing.T, s *crmtest.Server, ms []crm.Meeting, rs []crm.Result) {
	t.Helper()
	if len(rs) != len(ms) {
		t.Fatalf("%d results for %d inputs", len(rs), len(ms))
	}
	byID := map[string]crm.Meeting{}
	for _, m := range s.Meetings() {
		byID[m.ID] = m
	}
	for i, r := range rs {
		if r.Err != nil {
			t.Fatalf("input %d: %v", i, r.Err)
		}
		if got := byID[r.ID].Key; got != ms[i].Key {
			t.Fatalf("input %d (key %s): result id %s holds key %q", i, ms[i].Key, r.ID, got)
		}
	}
}

func TestCreateMeetingsSplitsBatchesAndAssociates(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	co := s.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.com"}})
	ct := s.AddContact("ann@acme.com", "Ann Lee", co)
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	ms := meetings(250)
	for i := range ms {
		ms[i].CompanyIDs = []string{co}
		ms[i].ContactIDs = []string{ct}
	}
	rs, err := c.CreateMeetings(context.Background(), ms, false)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, ms, rs)
	if got := s.Calls()["meetings.batch.create"]; got != 3 {
		t.Errorf("batch create calls = %d, want 3", got)
	}
	all := s.Meetings()
	if len(all) != 250 {
		t.Fatalf("fake holds %d meetings, want 250", len(all))
	}
	if diff := cmp.Diff([]string{co}, all[17].CompanyIDs); diff != "" {
		t.Errorf("companies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{ct}, all[17].ContactIDs); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
}

func TestCreateMeetingsPartialFailure(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)

	ms := meetings(100)
	bad := []int{7, 42, 99}
	for _, i := range bad {
		delete(ms[i].Properties, crm.PropTimestamp)
	}
	rs, err := c.CreateMeetings(ctx, ms, false)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i, r := range rs {
		if slices.Contains(bad, i) {
			if crm.ClassOf(r.Err) != crm.Permanent || r.ID != "" {
				t.Errorf("input %d: got %+v, want a permanent error", i, r)
			}
			var ae *hubspot.APIError
			if !errors.As(r.Err, &ae) || ae.Category != "VALIDATION_ERROR" || !strings.Contains(ae.Message, "hs_timestamp") {
				t.Errorf("input %d: error %v does not keep HubSpot's validation message", i, r.Err)
			}
			continue
		}
		if r.Err != nil || r.ID == "" || ids[r.ID] {
			t.Fatalf("input %d: %+v", i, r)
		}
		ids[r.ID] = true
	}
	if len(ids) != 97 {
		t.Fatalf("%d ids, want 97", len(ids))
	}

	// The caller fixes and retries only the failed ones: no duplicates.
	var retry []crm.Meeting
	for _, i := range bad {
		retry = append(retry, meeting(i))
	}
	rs2, err := c.CreateMeetings(ctx, retry, false)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, retry, rs2)
	assertNoDuplicateKeys(t, s, 100)
}

func TestCreateMeetingsInjected207(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	ms := meetings(100)
	s.Fail207(0, 50, 98)
	rs, err := c.CreateMeetings(ctx, ms, false)
	if err != nil {
		t.Fatal(err)
	}
	var failed []crm.Meeting
	for i, r := range rs {
		want := i == 0 || i == 50 || i == 98
		if want != (r.Err != nil) {
			t.Fatalf("input %d: %+v", i, r)
		}
		if want {
			if crm.ClassOf(r.Err) != crm.Transient {
				t.Errorf("input %d: class %v, want transient", i, crm.ClassOf(r.Err))
			}
			failed = append(failed, ms[i])
		}
	}
	rs2, err := c.CreateMeetings(ctx, failed, false)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, failed, rs2)
	assertNoDuplicateKeys(t, s, 100)
}

func assertNoDuplicateKeys(t *testing.T, s *crmtest.Server, want int) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range s.Meetings() {
		if seen[m.Key] {
			t.Errorf("key %s written twice", m.Key)
		}
		seen[m.Key] = true
	}
	if len(seen) != want {
		t.Errorf("fake holds %d keys, want %d", len(seen), want)
	}
}

func TestCreateIsNotReplayedAfterUnknownOutcome(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	s.FailNextOn("meetings.batch.create", 1, http.StatusInternalServerError)
	rs, err := c.CreateMeetings(ctx, meetings(150), false)
	if crm.ClassOf(err) != crm.Transient {
		t.Fatalf("err = %v, want transient", err)
	}
	if got := s.Calls()["meetings.batch.create"]; got != 1 {
		t.Errorf("batch create calls = %d, want 1 (no replay, no second chunk after a transient failure)", got)
	}
	for i, r := range rs {
		if r.Err == nil {
			t.Fatalf("input %d succeeded", i)
		}
	}

	// Reads are replayed.
	s.FailNext(2, http.StatusBadGateway)
	if _, err := c.Owners(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Calls()["owners.list"]; got != 3 {
		t.Errorf("owners calls = %d, want 3", got)
	}
}

func TestTimeoutIsTransientAndRetried(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}, PortalID: s.PortalID()})
	s.FailNext(1, crmtest.Hang)
	if _, err := c.Owners(ctx); err != nil {
		t.Fatalf("owners after one timeout: %v", err)
	}
	s.FailNext(10, crmtest.Hang)
	c2 := newClient(t, s, hubspot.Config{HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}, PortalID: s.PortalID(), MaxRetries: -1})
	_, err := c2.Owners(ctx)
	if crm.ClassOf(err) != crm.Transient {
		t.Fatalf("timeout: %v, want transient", err)
	}
}

func TestLockedWaitsTwoSeconds(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID(), MaxRetries: -1})
	s.FailNext(1, http.StatusLocked)
	_, err := c.Owners(context.Background())
	if crm.ClassOf(err) != crm.Transient || crm.WaitOf(err) < 2*time.Second {
		t.Fatalf("423: %v (wait %v), want transient with a wait of at least 2s", err, crm.WaitOf(err))
	}
}

func TestAuthErrors(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{AccessToken: "right"}))
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()}) // sends "token"
	_, err := c.Owners(context.Background())
	if crm.ClassOf(err) != crm.Auth {
		t.Fatalf("wrong token: %v, want auth", err)
	}
	if got := s.TotalCalls(); got != 1 {
		t.Errorf("calls = %d: auth errors must not be retried", got)
	}

	s2 := newFake(t, fast(crmtest.Options{}))
	c2 := newClient(t, s2, hubspot.Config{PortalID: s2.PortalID()})
	s2.Revoke()
	if _, err := c2.Owners(context.Background()); crm.ClassOf(err) != crm.Auth {
		t.Fatalf("revoked: %v, want auth", err)
	}

	failing := oauth2.ReuseTokenSource(nil, tokenSourceFunc(func() (*oauth2.Token, error) {
		return nil, &crm.Error{Class: crm.Auth, Op: "vault", Err: errors.New("refresh token revoked")}
	}))
	c3, err := hubspot.New(hubspot.Config{BaseURL: s2.URL(), PortalID: "1"}, failing)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Owners(context.Background()); crm.ClassOf(err) != crm.Auth {
		t.Fatalf("token source error: %v, want auth", err)
	}
}

type tokenSourceFunc func() (*oauth2.Token, error)

func (f tokenSourceFunc) Token() (*oauth2.Token, error) { return f() }

func TestNotFoundAndValidation(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	rs, err := c.UpdateMeetings(ctx, []crm.Meeting{{ID: "999999999", Properties: map[string]string{crm.PropTitle: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if crm.ClassOf(rs[0].Err) != crm.NotFound {
		t.Errorf("update of a deleted meeting: %v, want not found", rs[0].Err)
	}
	rs, err = c.CreateMeetings(ctx, []crm.Meeting{{Key: "k", Properties: map[string]string{crm.PropTimestamp: "1", "no_such_property": "x"}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	var ae *hubspot.APIError
	if crm.ClassOf(rs[0].Err) != crm.Permanent || !errors.As(rs[0].Err, &ae) || !strings.Contains(ae.Message, "no_such_property") {
		t.Errorf("unknown property: %v, want permanent with HubSpot's message", rs[0].Err)
	}
}

func TestRateLimit429RespectsWindow(t *testing.T) {
	// The client believes the portal allows 200 per 500ms; the fake allows
	// 10. The client must recover from the 429s by waiting, not hammer.
	window := 500 * time.Millisecond
	s := newFake(t, crmtest.Options{Limit: 10, Window: window})
	var waits atomic.Int64
	c := newClient(t, s, hubspot.Config{
		RateLimit:       hubspot.Limit{Requests: 200, Window: window},
		PortalID:        s.PortalID(),
		MaxRetries:      10,
		OnRateLimitWait: func(time.Duration) { waits.Add(1) },
	})
	const calls = 30
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Owners(context.Background())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
	}
	elapsed := time.Since(start)
	// 30 calls at 10 per rolling 500ms need at least two full windows.
	if elapsed < 2*window {
		t.Errorf("30 calls took %v: faster than the fake's limit allows", elapsed)
	}
	if n := s.RateLimited(); n > calls/2 {
		t.Errorf("%d 429s for %d calls: the client does not wait out the window", n, calls)
	}
	if waits.Load() == 0 {
		t.Error("OnRateLimitWait never called")
	}
	t.Logf("%d calls in %v, %d answered 429, %d rate-limit waits", calls, elapsed, s.RateLimited(), waits.Load())
}

// runConcurrently makes n Owners calls from each client at once.
func runConcurrently(t *testing.T, n int, clients ...*hubspot.Client) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n*len(clients))
	for _, c := range clients {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Owners(context.Background())
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
	}
}

func TestTwoClientsShareTheLimitThroughRedis(t *testing.T) {
	rdb := testenv.Redis(t)
	limit := hubspot.Limit{Requests: 20, Window: 500 * time.Millisecond}
	s := newFake(t, crmtest.Options{Limit: limit.Requests, Window: limit.Window})
	cfg := hubspot.Config{Limiter: ratelimit.NewRedis(rdb), RateLimit: limit, PortalID: s.PortalID(), MaxRetries: -1}
	a, b := newClient(t, s, cfg), newClient(t, s, cfg)
	start := time.Now()
	runConcurrently(t, 30, a, b)
	if n := s.RateLimited(); n != 0 {
		t.Errorf("fake answered %d requests with 429; the shared limiter should keep both clients under %s", n, limit)
	}
	if got := s.TotalCalls(); got != 60 {
		t.Errorf("fake saw %d calls, want 60", got)
	}
	t.Logf("60 calls from two clients in %v", time.Since(start))
}

func TestInProcessLimiterKeepsUnderLimit(t *testing.T) {
	limit := hubspot.Limit{Requests: 20, Window: 500 * time.Millisecond}
	s := newFake(t, crmtest.Options{Limit: limit.Requests, Window: limit.Window})
	c := newClient(t, s, hubspot.Config{RateLimit: limit, PortalID: s.PortalID(), MaxRetries: -1})
	runConcurrently(t, 40, c)
	if n := s.RateLimited(); n != 0 {
		t.Errorf("%d 429s", n)
	}
}

func TestSearchLimit(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1, SearchPerSecond: 5})
	c := newClient(t, s, hubspot.Config{SearchPerSecond: 5, PortalID: s.PortalID(), MaxRetries: -1})
	prepare(t, c)
	start := time.Now()
	for i := 0; i < 6; i++ {
		if _, err := c.FindMeetingsByKey(context.Background(), []string{"k"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.RateLimited(); n != 0 {
		t.Errorf("%d search 429s", n)
	}
	if time.Since(start) < time.Second {
		t.Errorf("6 searches in %v at 5/s", time.Since(start))
	}
}

func TestSearchLag(t *testing.T) {
	ctx := context.Background()
	lag := 30 * time.Second
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	s := newFake(t, fast(crmtest.Options{SearchLag: lag, Now: func() time.Time { return time.Unix(0, clock.Load()) }}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	m := meeting(1)
	m.Properties[crm.PropICalUID] = "uid-1@google.com"
	rs, err := c.CreateMeetings(ctx, []crm.Meeting{m}, false)
	if err != nil || rs[0].Err != nil {
		t.Fatal(err, rs[0].Err)
	}
	found, err := c.FindMeetingsByKey(ctx, []string{m.Key})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("found %v before the search lag passed", found)
	}
	clock.Add(int64(lag + time.Second)) // the fake's clock: no waiting
	found, err = c.FindMeetingsByKey(ctx, []string{m.Key, "other"})
	if err != nil {
		t.Fatal(err)
	}
	if got := found[m.Key].ID; got != rs[0].ID || len(found) != 1 {
		t.Fatalf("found %v, want %s", found, rs[0].ID)
	}
	if got := found[m.Key].Properties[crm.PropTitle]; got != "Meeting 1" {
		t.Errorf("title %q", got)
	}
	byUID, err := c.FindMeetingsByICalUID(ctx, []string{"uid-1@google.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(byUID["uid-1@google.com"]) != 1 || byUID["uid-1@google.com"][0].ID != rs[0].ID {
		t.Fatalf("by iCalUID: %v", byUID)
	}
}

func TestFindMeetingsByKeyManyValues(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	ms := meetings(450)
	for i := range ms {
		ms[i].Properties[crm.PropICalUID] = fmt.Sprintf("series-%d", i%2)
	}
	if _, err := c.CreateMeetings(ctx, ms, false); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(ms))
	for i, m := range ms {
		keys[i] = m.Key
	}
	found, err := c.FindMeetingsByKey(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 450 {
		t.Errorf("found %d of 450", len(found))
	}
	if got := s.Calls()["meetings.search"]; got != 5 {
		t.Errorf("searches = %d, want 5 (100 values each)", got)
	}
	byUID, err := c.FindMeetingsByICalUID(ctx, []string{"series-0", "series-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(byUID["series-0"]) != 225 || len(byUID["series-1"]) != 225 {
		t.Errorf("by iCalUID: %d and %d, want 225 each (paged by 200)", len(byUID["series-0"]), len(byUID["series-1"]))
	}
}

func TestPrepare(t *testing.T) {
	ctx := context.Background()
	for _, unique := range []bool{true, false} {
		t.Run(fmt.Sprintf("unique=%v", unique), func(t *testing.T) {
			s := newFake(t, fast(crmtest.Options{UniqueValueSupport: unique, PortalID: "4242"}))
			c := newClient(t, s, hubspot.Config{})
			p := prepare(t, c)
			if diff := cmp.Diff(crm.Portal{ID: "4242", UniqueKey: unique}, p); diff != "" {
				t.Errorf("portal (-want +got):\n%s", diff)
			}
			if u, ok := s.PropertyUnique(crm.PropKey); !ok || u != unique {
				t.Errorf("fake property: exists %v unique %v", ok, u)
			}
			wantCreates := 1
			if !unique {
				wantCreates = 2 // refused as unique, created plain
			}
			if got := s.Calls()["properties.create"]; got != wantCreates {
				t.Errorf("property creates = %d, want %d", got, wantCreates)
			}
			// A second Prepare (another process, a restart) reads the property.
			c2 := newClient(t, s, hubspot.Config{})
			p2, err := c2.Prepare(ctx)
			if err != nil || p2 != p {
				t.Fatalf("second prepare: %+v, %v", p2, err)
			}
			if got := s.Calls()["properties.create"]; got != wantCreates {
				t.Errorf("second prepare created the property again")
			}
		})
	}
}

func TestPrepareRejectsTokenOfAnotherPortal(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{PortalID: "1"}))
	c := newClient(t, s, hubspot.Config{PortalID: "2"})
	if _, err := c.Prepare(context.Background()); crm.ClassOf(err) != crm.Permanent {
		t.Fatalf("err = %v, want permanent", err)
	}
}

func TestUpsert(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{UniqueValueSupport: true}))
	co := s.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.com"}})
	ct1 := s.AddContact("ann@acme.com", "Ann Lee", co)
	ct2 := s.AddContact("bob@acme.com", "Bob Ray", co)
	c := newClient(t, s, hubspot.Config{})
	if p := prepare(t, c); !p.UniqueKey {
		t.Fatal("portal without unique key")
	}
	ms := meetings(150)
	for i := range ms {
		ms[i].CompanyIDs = []string{co}
		ms[i].ContactIDs = []string{ct1, ct2}
	}
	rs, err := c.CreateMeetings(ctx, ms, true)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, ms, rs)
	calls := s.Calls()
	if calls["meetings.batch.upsert"] != 2 || calls["associations.companies.batch.create"] != 2 || calls["associations.contacts.batch.create"] != 3 {
		t.Errorf("calls = %v, want 2 upserts, 2 company and 3 contact association calls", calls)
	}
	m, _ := s.Meeting(rs[3].ID)
	if diff := cmp.Diff([]string{ct1, ct2}, m.ContactIDs); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}

	// Upserting again (a retry whose outcome was unknown) updates, never
	// duplicates.
	for i := range ms {
		ms[i].Properties[crm.PropTitle] = "Renamed"
	}
	rs2, err := c.CreateMeetings(ctx, ms, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs2 {
		if rs2[i].ID != rs[i].ID {
			t.Fatalf("input %d: upsert gave id %s, first write %s", i, rs2[i].ID, rs[i].ID)
		}
	}
	assertNoDuplicateKeys(t, s, 150)
	if m, _ := s.Meeting(rs[0].ID); m.Properties[crm.PropTitle] != "Renamed" {
		t.Errorf("title not updated: %q", m.Properties[crm.PropTitle])
	}

	// Upsert is refused by a portal without the unique property.
	s2 := newFake(t, fast(crmtest.Options{}))
	c2 := newClient(t, s2, hubspot.Config{})
	prepare(t, c2)
	if _, err := c2.CreateMeetings(ctx, ms[:1], true); crm.ClassOf(err) != crm.Permanent {
		t.Errorf("upsert without unique property: %v, want permanent", err)
	}
}

func TestUniqueKeyConflictOnCreate(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{UniqueValueSupport: true}))
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	if _, err := c.CreateMeetings(ctx, meetings(2), false); err != nil {
		t.Fatal(err)
	}
	rs, err := c.CreateMeetings(ctx, []crm.Meeting{meeting(1), meeting(5)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if crm.ClassOf(rs[0].Err) != crm.Permanent || rs[1].Err != nil {
		t.Fatalf("results %+v: want the existing key refused and the new one written", rs)
	}
	assertNoDuplicateKeys(t, s, 3)
}

func TestUpdateReadAndAssociations(t *testing.T) {
	ctx := context.Background()
	s := newFake(t, fast(crmtest.Options{}))
	co1 := s.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.com"}})
	co2 := s.AddCompany(crm.Company{Name: "Beta", Domains: []string{"beta.io"}})
	ct := s.AddContact("ann@acme.com", "Ann Lee", co1)
	c := newClient(t, s, hubspot.Config{})
	prepare(t, c)
	ms := meetings(120)
	for i := range ms {
		ms[i].CompanyIDs = []string{co1}
	}
	rs, err := c.CreateMeetings(ctx, ms, false)
	if err != nil {
		t.Fatal(err)
	}
	s.SetMeetingProperty(rs[0].ID, crm.PropNotes, "notes by a user")
	var ups []crm.Meeting
	var ids []string
	var changes []crm.AssociationChange
	for i, r := range rs {
		ups = append(ups, crm.Meeting{ID: r.ID, Properties: map[string]string{crm.PropOutcome: crm.OutcomeCanceled}})
		ids = append(ids, r.ID)
		if i%2 == 0 {
			changes = append(changes, crm.AssociationChange{MeetingID: r.ID, CompanyIDs: []string{co2}, ContactIDs: []string{ct}})
		}
	}
	urs, err := c.UpdateMeetings(ctx, ups)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range urs {
		if r.Err != nil || r.ID != rs[i].ID {
			t.Fatalf("update %d: %+v", i, r)
		}
	}
	if err := c.AddAssociations(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAssociations(ctx, []crm.AssociationChange{{MeetingID: rs[2].ID, CompanyIDs: []string{co1}}}); err != nil {
		t.Fatal(err)
	}
	s.DeleteMeeting(rs[1].ID)
	got, err := c.ReadMeetings(ctx, ids, []string{crm.PropOutcome, crm.PropNotes})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 119 {
		t.Fatalf("read %d meetings, want 119 (one deleted)", len(got))
	}
	m0 := got[rs[0].ID]
	want := crm.Meeting{ID: rs[0].ID, Key: ms[0].Key, CompanyIDs: []string{co1, co2}, ContactIDs: []string{ct},
		Properties: map[string]string{crm.PropOutcome: crm.OutcomeCanceled, crm.PropNotes: "notes by a user", crm.PropKey: ms[0].Key}}
	if diff := cmp.Diff(want, m0, cmpProps()); diff != "" {
		t.Errorf("meeting 0 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{co2}, got[rs[2].ID].CompanyIDs); diff != "" {
		t.Errorf("meeting 2 companies (-want +got):\n%s", diff)
	}
	if got[rs[3].ID].ContactIDs != nil {
		t.Errorf("meeting 3 contacts: %v", got[rs[3].ID].ContactIDs)
	}
}

// cmpProps compares only the properties the test names in want.
func cmpProps() cmp.Option {
	return cmp.Transformer("props", func(m crm.Meeting) crm.Meeting {
		p := map[string]string{}
		for _, k := range []string{crm.PropOutcome, crm.PropNotes, crm.PropKey} {
			if v, ok := m.Properties[k]; ok {
				p[k] = v
			}
		}
		m.Properties = p
		return m
	})
}

func TestContactsByEmail(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	want := map[string]crm.Contact{}
	var emails []string
	for i := 0; i < 150; i++ {
		e := fmt.Sprintf("person%d@example.com", i)
		if i%5 != 0 {
			id := s.AddContact(e, fmt.Sprintf("Person %d", i), "")
			want[e] = crm.Contact{ID: id, Email: e, Name: fmt.Sprintf("Person %d", i)}
		}
		if i%2 == 0 {
			e = fmt.Sprintf("Person%d@Example.COM", i) // case does not matter
		}
		emails = append(emails, e)
	}
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()})
	got, err := c.ContactsByEmail(context.Background(), append(emails, emails[:10]...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
	if n := s.Calls()["contacts.batch.read"]; n != 2 {
		t.Errorf("batch reads = %d, want 2", n)
	}
}

// TestContactsByEmailNoneFound: a batch read none of whose addresses is a
// contact answers 404 OBJECT_NOT_FOUND for the whole call; that is "none
// found", answered at once, not an error to retry.
func TestContactsByEmailNoneFound(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	s.AddContact("known@example.com", "Known", "")
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID(), MaxRetries: 3})
	var emails []string
	for i := 0; i < 120; i++ {
		emails = append(emails, fmt.Sprintf("nobody%d@example.com", i))
	}
	got, err := c.ContactsByEmail(context.Background(), emails, nil)
	if err != nil {
		t.Fatalf("ContactsByEmail of unknown addresses: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("got %v, want no contacts", got)
	}
	if n := s.Calls()["contacts.batch.read"]; n != 2 {
		t.Errorf("batch reads = %d, want 2 (no retries)", n)
	}
	// A meeting read of ids that do not exist is answered the same way.
	ms, err := c.ReadMeetings(context.Background(), []string{"999999991", "999999992"}, []string{crm.PropTitle})
	if err != nil || len(ms) != 0 {
		t.Errorf("ReadMeetings of missing ids = %v, %v; want none, nil", ms, err)
	}
}

func TestCompaniesPaging(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	for i := 0; i < 250; i++ {
		s.AddCompany(crm.Company{Name: fmt.Sprintf("Co %d", i), Domains: []string{fmt.Sprintf("co%d.com", i), fmt.Sprintf("co%d.io", i), fmt.Sprintf("co%d.de", i)}})
	}
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()})
	var all []crm.Company
	after := ""
	pages := 0
	for {
		p, err := c.Companies(context.Background(), after, nil)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, p.Companies...)
		if after = p.Next; after == "" {
			break
		}
	}
	if len(all) != 250 || pages != 3 {
		t.Fatalf("%d companies in %d pages", len(all), pages)
	}
	if diff := cmp.Diff([]string{"co7.com", "co7.io", "co7.de"}, all[7].Domains); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	if all[7].Name != "Co 7" || all[7].UpdatedAt.IsZero() {
		t.Errorf("company 7: %+v", all[7])
	}
}

func TestCompaniesChangedSince(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 10,500 companies changed after the cursor (more than one search can
	// page through), 700 of them in the same millisecond, and 50 before it.
	want := map[string]bool{}
	for i := 0; i < 10_550; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		if i >= 3000 && i < 3700 {
			at = base.Add(3000 * time.Second)
		}
		id := s.AddCompany(crm.Company{Name: "c", Domains: []string{fmt.Sprintf("c%d.com", i)}, UpdatedAt: at})
		if i >= 50 {
			want[id] = true
		}
	}
	since := base.Add(49 * time.Second)
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()})
	got := map[string]bool{}
	var last time.Time
	after := ""
	for {
		p, err := c.CompaniesChangedSince(context.Background(), since, after, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, co := range p.Companies {
			if got[co.ID] {
				t.Fatalf("company %s returned twice", co.ID)
			}
			if co.UpdatedAt.Before(last) {
				t.Fatalf("not oldest first: %v after %v", co.UpdatedAt, last)
			}
			got[co.ID], last = true, co.UpdatedAt
		}
		if after = p.Next; after == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changed companies differ (%d want, %d got)", len(want), len(got))
	}
	t.Logf("%d companies in %d searches", len(got), s.Calls()["companies.search"])
}

func TestOwners(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	var want []crm.Owner
	for i := 0; i < 130; i++ {
		e := fmt.Sprintf("rep%d@us.com", i)
		want = append(want, crm.Owner{ID: s.AddOwner(e), Email: e})
	}
	c := newClient(t, s, hubspot.Config{PortalID: s.PortalID()})
	got, err := c.Owners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
}

func TestOnRequestHook(t *testing.T) {
	s := newFake(t, fast(crmtest.Options{}))
	var mu sync.Mutex
	seen := map[string]int{}
	c := newClient(t, s, hubspot.Config{OnRequest: func(ep string, status int, d time.Duration) {
		mu.Lock()
		seen[fmt.Sprintf("%s %d", ep, status)]++
		mu.Unlock()
	}})
	prepare(t, c)
	want := map[string]int{"account.details 200": 1, "properties.get 404": 1, "properties.create 400": 1, "properties.create 201": 1}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
