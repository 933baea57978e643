package microsoft_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/microsoft"
	"github.com/rapportsync/rapport/internal/provider"
)

// TestWriteBack patches Rapport's ids onto copies and reads them back in
// Event.Private.
func TestWriteBack(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	f := seed(t, e)
	ctx := context.Background()
	_, cursor, _ := listAll(t, e.src, calendar.ListRequest{})

	props := map[string]string{calendar.PropMeetingID: "301", calendar.PropKey: "key-kickoff"}
	check(t, e.src.PatchPrivate(ctx, "primary", f.single, props))
	stored := must[map[string]string](t)(e.srv.Props(alice, f.single))
	if d := cmp.Diff(map[string]string{microsoft.ExtPropMeetingID: "301", microsoft.ExtPropKey: "key-kickoff"}, stored); d != "" {
		t.Fatalf("stored properties (-want +got):\n%s", d)
	}
	e.srv.ResetCalls()
	got, cursor2, _ := listAll(t, e.src, calendar.ListRequest{Cursor: cursor})
	want := kickoff(f)
	want.Private = props
	if d := cmp.Diff([]calendar.Event{want}, got, ignoreStamps); d != "" {
		t.Fatalf("after write-back (-want +got):\n%s", d)
	}
	if c := e.srv.Calls(); c[graph.EndpointDelta] != 1 || c[graph.EndpointGet] != 1 {
		t.Errorf("calls %v: one delta, one GET for the properties", c)
	}

	// An occurrence becomes an exception when patched, and keeps its
	// identity.
	check(t, e.src.PatchPrivate(ctx, "primary", f.occ[0], map[string]string{calendar.PropKey: "key-standup-0"}))
	if k := must[string](t)(e.srv.Kind(alice, f.occ[0])); k != "exception" {
		t.Fatalf("patched occurrence is %s", k)
	}
	got, _, _ = listAll(t, e.src, calendar.ListRequest{Cursor: cursor2})
	wantOcc := standup(f, 0, f.origs[0])
	wantOcc.Private = map[string]string{calendar.PropKey: "key-standup-0"}
	if d := cmp.Diff([]calendar.Event{wantOcc}, got, ignoreStamps); d != "" {
		t.Fatalf("patched occurrence (-want +got):\n%s", d)
	}

	// A full listing reads them back too.
	full, _, _ := listAll(t, e.src, calendar.ListRequest{})
	if p := byID(full)[f.single].Private; !cmp.Equal(p, props) {
		t.Fatalf("full listing: private %v", p)
	}

	e.srv.ResetCalls()
	if err := e.src.PatchPrivate(ctx, "primary", f.single, map[string]string{"other": "x"}); calendar.ClassOf(err) != calendar.Permanent {
		t.Fatalf("unknown key: %v", err)
	}
	if n := e.srv.Calls()[graph.EndpointPatch]; n != 0 {
		t.Fatalf("unknown key sent: %d calls", n)
	}
	check(t, e.srv.Delete(alice, f.later))
	if err := e.src.PatchPrivate(ctx, "primary", f.later, props); calendar.ClassOf(err) != calendar.NotFound {
		t.Fatalf("deleted event: %v", err)
	}
	check(t, e.src.PatchPrivate(ctx, "primary", f.single, nil))
}

// fakeLimiter answers scripted waits and records what it was asked.
type fakeLimiter struct {
	mu    sync.Mutex
	waits []time.Duration
	keys  []string
	limit provider.Limit
}

func (l *fakeLimiter) Allow(ctx context.Context, key string, lim provider.Limit) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	l.limit = lim
	if len(l.waits) == 0 {
		return 0, nil
	}
	w := l.waits[0]
	l.waits = l.waits[1:]
	return w, nil
}

// TestMailboxBudget: every request takes from the connection's budget; a
// short wait is slept, a long one fails fast as RateLimited.
func TestMailboxBudget(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	var seen []string
	lim := &fakeLimiter{waits: []time.Duration{time.Second, 0, 10 * time.Minute}}
	cfg := e.cfg
	cfg.OnRequest = func(endpoint string, status int) { seen = append(seen, endpoint+" "+http.StatusText(status)) }
	src := must[*microsoft.Source](t)(microsoft.New(cfg, calendar.Conn{ID: conn, Account: alice, Tokens: staticTokens(e.token), Limiter: lim}))
	req := calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)}
	if _, err := src.List(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if w := e.sleep.all(); len(w) != 1 || w[0] != time.Second {
		t.Fatalf("waits %v", w)
	}
	_, err := src.List(context.Background(), req)
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) != 10*time.Minute {
		t.Fatalf("long budget wait: %v", err)
	}
	if n := e.srv.Calls()[graph.EndpointDelta]; n != 1 {
		t.Fatalf("%d delta calls, want 1: a spent budget sends nothing", n)
	}
	if lim.keys[0] != "microsoft:"+conn || lim.limit.Rate != 9000 || lim.limit.Period != 10*time.Minute {
		t.Fatalf("limiter asked %v %+v", lim.keys, lim.limit)
	}
	if len(seen) != 1 || seen[0] != "calendarView.delta OK" {
		t.Fatalf("OnRequest saw %v", seen)
	}
}

// preferZone rewrites the time zone Rapport asks for, so Graph answers in a
// Windows zone.
type preferZone struct {
	zone string
	base http.RoundTripper
}

func (p preferZone) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Prefer", strings.ReplaceAll(r.Header.Get("Prefer"), `outlook.timezone="UTC"`, `outlook.timezone="`+p.zone+`"`))
	return p.base.RoundTrip(r)
}

// TestWindowsZoneAnswers: events written in a Windows zone normalise to
// the same instants as in UTC.
func TestWindowsZoneAnswers(t *testing.T) {
	e := newEnv(t, microsoft.Config{SkipPrivate: true})
	seed(t, e)
	utc, _, _ := listAll(t, e.src, calendar.ListRequest{})
	for _, zone := range []string{"Pacific Standard Time", "Tokyo Standard Time", "W. Europe Standard Time"} {
		cfg := e.cfg
		cfg.HTTPClient = &http.Client{Transport: preferZone{zone: zone, base: http.DefaultTransport}}
		src := must[*microsoft.Source](t)(microsoft.New(cfg, calendar.Conn{ID: "z", Account: alice, Tokens: staticTokens(e.token)}))
		got, _, _ := listAll(t, src, calendar.ListRequest{})
		if d := cmp.Diff(byID(utc), byID(got)); d != "" {
			t.Fatalf("%s (-utc +zone):\n%s", zone, d)
		}
	}
}

// TestOAuth runs the connection's token flow against the fake identity
// platform: code exchange, account from the id_token, refresh with
// rotation, and a revoked grant surfacing as Auth without API calls.
func TestOAuth(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	ctx := context.Background()
	oc := &oauth2.Config{ClientID: "client", ClientSecret: "secret", Scopes: microsoft.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.AuthURL(), TokenURL: e.srv.TokenURL(), AuthStyle: microsoft.Endpoint.AuthStyle}}
	tok, err := oc.Exchange(ctx, e.srv.AuthCode(alice))
	check(t, err)
	if acct := must[string](t)(microsoft.AccountFromToken(tok)); acct != alice {
		t.Fatalf("account %q", acct)
	}
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Hour)
	refreshed, err := oc.TokenSource(ctx, &expired).Token()
	check(t, err)
	if refreshed.RefreshToken == tok.RefreshToken || refreshed.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	// The spent refresh token is refused.
	if _, err := oc.TokenSource(ctx, &expired).Token(); err == nil {
		t.Fatal("spent refresh token accepted")
	}
	src := must[*microsoft.Source](t)(microsoft.New(e.cfg, calendar.Conn{ID: "o", Account: alice, Tokens: oc.TokenSource(ctx, refreshed)}))
	if _, err := src.List(ctx, calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.srv.RevokeGrant(alice)
	stale := *refreshed
	stale.Expiry = time.Now().Add(-time.Hour)
	e.srv.ResetCalls()
	src = must[*microsoft.Source](t)(microsoft.New(e.cfg, calendar.Conn{ID: "o", Account: alice, Tokens: oc.TokenSource(ctx, &stale)}))
	_, err = src.List(ctx, calendar.ListRequest{CalendarID: "primary", TimeMin: t0, TimeMax: t0.Add(time.Hour)})
	var re *oauth2.RetrieveError
	if calendar.ClassOf(err) != calendar.Auth || !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("revoked grant: %v", err)
	}
	if strings.Contains(err.Error(), stale.RefreshToken) || strings.Contains(err.Error(), "AADSTS") {
		t.Fatalf("error text leaks: %v", err)
	}
	if n := e.srv.Calls()[graph.EndpointDelta]; n != 0 {
		t.Fatalf("%d API calls with a revoked grant", n)
	}
}
