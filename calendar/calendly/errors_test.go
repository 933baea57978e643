package calendly_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
	"github.com/rapportsync/rapport/internal/provider"
)

// TestRateLimitStorm: 429s with X-RateLimit-Reset are waited out inside
// the call when short, and returned as RateLimited with the wait when
// they outlast the retries or MaxWait.
func TestRateLimitStorm(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	ctx := context.Background()
	e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	req := calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0}

	e.srv.SetRateLimitReset(2 * time.Second)
	e.srv.Fail(fake.FaultRateLimited, 3)
	events, _ := listAll(t, src, req)
	if len(events) != 1 {
		t.Fatalf("%d events after a short storm", len(events))
	}
	waits := e.sleep.all()
	if len(waits) != 3 || waits[0] < 2*time.Second {
		t.Fatalf("waits %v, want three of at least the reset", waits)
	}

	e.srv.ResetCalls()
	e.srv.FailOn(fake.EndpointEvents, fake.FaultRateLimited, 10)
	_, err := src.List(ctx, req)
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) != 2*time.Second {
		t.Fatalf("long storm: %v (wait %v)", err, calendar.WaitOf(err))
	}
	if n := e.srv.Calls()[fake.EndpointEvents]; n != 4 {
		t.Errorf("%d requests in a storm, want 1 + 3 retries", n)
	}

	e.srv.ResetCalls()
	e.srv.SetRateLimitReset(120 * time.Second)
	e.srv.FailOn(fake.EndpointEvents, fake.FaultRateLimited, 1)
	_, err = src.List(ctx, req)
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) != 120*time.Second {
		t.Fatalf("long reset: %v", err)
	}
	if n := e.srv.Calls()[fake.EndpointEvents]; n != 1 {
		t.Errorf("a wait beyond MaxWait was retried: %d requests", n)
	}
}

// TestTransientRetried: a 500 is retried; one that persists is
// Transient.
func TestTransientRetried(t *testing.T) {
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	e.srv.FailOn(fake.EndpointMe, fake.FaultServerError, 2)
	b := e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	_, err := src.List(context.Background(), calendar.ListRequest{EventIDs: []string{b.EventUUID}})
	check(t, err)
	e.srv.FailOn(fake.EndpointEvent, fake.FaultServerError, 4)
	_, err = src.List(context.Background(), calendar.ListRequest{EventIDs: []string{b.EventUUID}})
	if calendar.ClassOf(err) != calendar.Transient {
		t.Fatalf("persistent 500: %v", err)
	}
}

// TestAuthFailures: a revoked token, a token without the scopes, and a
// refresh token Calendly refuses are all Auth, and no error text carries a
// token, an e-mail address or a query.
func TestAuthFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "buyer@acme.example"}})
	req := calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0}

	src, tok := e.open(t, e.admin)
	e.srv.RevokeToken(tok)
	_, err := src.List(ctx, req)
	if calendar.ClassOf(err) != calendar.Auth {
		t.Fatalf("revoked token: %v", err)
	}
	assertSafe(t, err, tok)

	narrow, narrowTok := e.open(t, e.admin, "users:read")
	_, err = narrow.List(ctx, req)
	if calendar.ClassOf(err) != calendar.Auth || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("insufficient scope: %v", err)
	}
	assertSafe(t, err, narrowTok)

	// OAuth: the refresh token was used already (rotated away).
	id, secret := e.srv.ClientCredentials()
	cfg := calendly.OAuthConfig(id, secret, "https://rapport.test/cb", e.srv.AuthURL(), e.srv.TokenURL())
	first, err := cfg.Exchange(ctx, e.srv.AuthorizeCode(e.admin, "https://rapport.test/cb"))
	check(t, err)
	expired := *first
	expired.Expiry = time.Unix(1, 0)                // long past on any clock
	_, err = cfg.TokenSource(ctx, &expired).Token() // rotates first.RefreshToken away
	check(t, err)
	stale, err := e.prov.Open(ctx, calendar.Conn{ID: "c", Tokens: cfg.TokenSource(ctx, &expired)})
	check(t, err)
	_, err = stale.List(ctx, req)
	var rerr *oauth2.RetrieveError
	if calendar.ClassOf(err) != calendar.Auth || !errors.As(err, &rerr) || rerr.ErrorCode != "invalid_grant" {
		t.Fatalf("reused refresh token: %v", err)
	}
	assertSafe(t, err, first.RefreshToken, first.AccessToken)

	// 401 from the API on a live OAuth token.
	e.srv.RevokeUser(e.admin)
	live, err := e.prov.Open(ctx, calendar.Conn{ID: "c", Tokens: oauth2.StaticTokenSource(first)})
	check(t, err)
	if _, err := live.List(ctx, req); calendar.ClassOf(err) != calendar.Auth {
		t.Fatalf("revoked user: %v", err)
	}
}

func assertSafe(t *testing.T, err error, secrets ...string) {
	t.Helper()
	s := err.Error()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("error text carries a token: %s", s)
		}
	}
	if strings.Contains(s, "@") || strings.Contains(s, "?") {
		t.Errorf("error text carries an address or a query: %s", s)
	}
}

// limiter is a provider.Limiter answering scripted waits.
type limiter struct {
	mu    sync.Mutex
	keys  []string
	waits []time.Duration
}

func (l *limiter) Allow(ctx context.Context, key string, lim provider.Limit) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	if lim != calendly.DefaultLimit {
		return 0, errors.New("unexpected limit")
	}
	if len(l.waits) == 0 {
		return 0, nil
	}
	w := l.waits[0]
	l.waits = l.waits[1:]
	return w, nil
}

// TestLimiter paces requests through Conn.Limiter under the connection's
// key: a short wait is slept, a long one fails the call before any
// request.
func TestLimiter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lim := &limiter{waits: []time.Duration{time.Second}}
	src, err := e.prov.Open(ctx, calendar.Conn{ID: "conn-42", Limiter: lim,
		Tokens: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: e.srv.AddPAT(e.admin)})})
	check(t, err)
	_, err = src.List(ctx, calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0})
	check(t, err)
	if len(lim.keys) != 2 || lim.keys[0] != "calendly:conn-42" {
		t.Fatalf("limiter keys %v", lim.keys)
	}
	if w := e.sleep.all(); len(w) != 1 || w[0] != time.Second {
		t.Fatalf("sleeps %v", w)
	}

	e.srv.ResetCalls()
	lim.waits = []time.Duration{time.Hour}
	_, err = src.List(ctx, calendar.ListRequest{CalendarID: e.org.URI, TimeMin: t0})
	if calendar.ClassOf(err) != calendar.RateLimited || calendar.WaitOf(err) != time.Hour {
		t.Fatalf("long limiter wait: %v", err)
	}
	if n := e.srv.Calls()[fake.EndpointEvents]; n != 0 {
		t.Errorf("%d requests despite the limiter", n)
	}
}

// TestConfigValidation refuses settings that cannot work.
func TestConfigValidation(t *testing.T) {
	for _, cfg := range []calendly.Config{
		{BaseURL: "api.calendly.com"},
		{BaseURL: "https://api.calendly.com/?x=1"},
		{PageSize: 101},
		{BaseBackoff: time.Second, MaxBackoff: time.Millisecond},
		{Limit: provider.Limit{Rate: 1}},
	} {
		if _, err := calendly.NewProvider(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := calendly.New(calendly.Config{}, calendar.Conn{}); err == nil {
		t.Error("a Source without tokens")
	}
	p, err := calendly.NewProvider(calendly.Config{})
	check(t, err)
	if p.Name() != "calendly" {
		t.Errorf("name %q", p.Name())
	}
	oc := calendly.OAuthConfig("id", "secret", "https://rapport.test/cb", "", "")
	if oc.Endpoint.AuthURL != calendly.DefaultAuthURL || oc.Endpoint.TokenURL != calendly.DefaultTokenURL ||
		oc.Endpoint.AuthStyle != oauth2.AuthStyleInHeader || len(oc.Scopes) != len(calendly.Scopes) {
		t.Errorf("oauth config %+v", oc)
	}
}
