package calendly_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar/calendartest/calendly"
)

var t0 = time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)

type fixture struct {
	srv   *calendly.Server
	org   calendly.Org
	admin calendly.User
	rep   calendly.User
	demo  calendly.EventType
	now   time.Time
	mu    sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: calendly.NewServer(), now: t0}
	t.Cleanup(f.srv.Close)
	f.srv.SetClock(f.clock)
	f.org = f.srv.AddOrganization(calendly.PlanStandard)
	f.admin = f.srv.AddUser(f.org, "admin@northwind.test", "Ada Admin", calendly.RoleOwner)
	f.rep = f.srv.AddUser(f.org, "rep@northwind.test", "Rey Rep", calendly.RoleUser)
	f.demo = f.srv.AddEventType(f.rep, "Demo", "solo")
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// get sends an API request and decodes the answer into out.
func (f *fixture) get(t *testing.T, tok, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, f.srv.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestOAuthRotatesRefreshTokens(t *testing.T) {
	f := newFixture(t)
	id, secret := f.srv.ClientCredentials()
	cfg := &oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: "https://rapport.test/cb",
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.AuthURL(), TokenURL: f.srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader}}
	ctx := context.Background()
	code := f.srv.AuthorizeCode(f.rep, "https://rapport.test/cb")
	tok, err := cfg.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token %+v", tok)
	}
	if _, err := cfg.Exchange(ctx, code); err == nil {
		t.Fatal("a code worked twice")
	}
	var me struct{ Resource struct{ URI string } }
	if st := f.get(t, tok.AccessToken, "GET", "users/me", nil, &me); st != 200 || me.Resource.URI != f.rep.URI {
		t.Fatalf("users/me %d %+v", st, me)
	}

	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Hour) // force a refresh
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.RefreshToken == old || fresh.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: old}).Token()
	var rerr *oauth2.RetrieveError
	if !errors.As(err, &rerr) || rerr.ErrorCode != "invalid_grant" {
		t.Fatalf("reused refresh token: %v", err)
	}

	f.advance(2 * time.Hour)
	if st := f.get(t, fresh.AccessToken, "GET", "users/me", nil, nil); st != 401 {
		t.Fatalf("expired access token answered %d", st)
	}
}

func TestScopesAndPermissions(t *testing.T) {
	f := newFixture(t)
	narrow := f.srv.AddPAT(f.rep, "users:read")
	var e struct {
		Title          string
		RequiredScopes []string `json:"required_scopes"`
	}
	if st := f.get(t, narrow, "GET", "scheduled_events?user="+url.QueryEscape(f.rep.URI), nil, &e); st != 403 || e.Title != "Insufficient scope" {
		t.Fatalf("missing scope: %d %+v", st, e)
	}
	rep := f.srv.AddPAT(f.rep)
	if st := f.get(t, rep, "GET", "scheduled_events?organization="+url.QueryEscape(f.org.URI), nil, &e); st != 403 || e.Title != "Permission Denied" {
		t.Fatalf("organization listing by a plain user: %d %+v", st, e)
	}
	if st := f.get(t, rep, "POST", "webhook_subscriptions", map[string]any{
		"url": "https://rapport.test/h", "events": []string{"invitee.created"}, "organization": f.org.URI, "scope": "organization",
	}, &e); st != 403 {
		t.Fatalf("organization subscription by a plain user: %d", st)
	}
}

func TestEventsPaginate(t *testing.T) {
	f := newFixture(t)
	tok := f.srv.AddPAT(f.admin)
	for i := range 5 {
		f.srv.Book(calendly.BookingSpec{EventType: f.demo, Start: t0.Add(time.Duration(i) * time.Hour),
			Invitee: calendly.InviteeSpec{Email: "x@acme.example", Name: "X"}})
	}
	q := "scheduled_events?count=2&organization=" + url.QueryEscape(f.org.URI)
	var uris []string
	for page := 0; ; page++ {
		var res struct {
			Collection []struct {
				URI           string
				CalendarEvent *json.RawMessage `json:"calendar_event"`
			}
			Pagination struct {
				NextPageToken *string `json:"next_page_token"`
				NextPage      *string `json:"next_page"`
			}
		}
		if st := f.get(t, tok, "GET", q, nil, &res); st != 200 {
			t.Fatalf("page %d: %d", page, st)
		}
		for _, e := range res.Collection {
			uris = append(uris, e.URI)
		}
		if res.Pagination.NextPageToken == nil {
			break
		}
		if !strings.Contains(*res.Pagination.NextPage, *res.Pagination.NextPageToken) {
			t.Fatal("next_page does not carry the token")
		}
		q = "scheduled_events?count=2&organization=" + url.QueryEscape(f.org.URI) + "&page_token=" + *res.Pagination.NextPageToken
	}
	if len(uris) != 5 {
		t.Fatalf("listed %d events, want 5", len(uris))
	}
	bad := "scheduled_events?count=2&user=" + url.QueryEscape(f.rep.URI) + "&page_token=" + "AAAA"
	if st := f.get(t, tok, "GET", bad, nil, nil); st != 400 {
		t.Fatalf("bad page token answered %d", st)
	}
}

type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	status int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	st := r.status
	r.mu.Unlock()
	if st == 0 {
		st = 200
	}
	w.WriteHeader(st)
}

func TestSubscriptionsConflictAndDisable(t *testing.T) {
	f := newFixture(t)
	tok := f.srv.AddPAT(f.admin)
	rcv := &recorder{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	body := map[string]any{"url": hook.URL + "/webhooks/calendly/c1", "events": []string{"invitee.created", "invitee.canceled"},
		"organization": f.org.URI, "scope": "organization", "signing_key": "k"}
	var created struct{ Resource struct{ URI, State string } }
	if st := f.get(t, tok, "POST", "webhook_subscriptions", body, &created); st != 201 || created.Resource.State != "active" {
		t.Fatalf("create %d %+v", st, created)
	}
	if st := f.get(t, tok, "POST", "webhook_subscriptions", body, nil); st != 409 {
		t.Fatalf("duplicate url answered %d", st)
	}

	b, ds := f.srv.Book(calendly.BookingSpec{EventType: f.demo, Start: t0.Add(time.Hour), Invitee: calendly.InviteeSpec{Email: "x@acme.example"}})
	if len(ds) != 1 || ds[0].Status != 200 || ds[0].Header.Get(calendly.SignatureHeader) != calendly.Sign([]byte("k"), t0, ds[0].Body) {
		t.Fatalf("delivery %+v", ds)
	}
	var payload struct {
		Event   string
		Payload struct {
			Event          string
			ScheduledEvent map[string]any `json:"scheduled_event"`
		}
	}
	_ = json.Unmarshal(ds[0].Body, &payload)
	if payload.Event != "invitee.created" || payload.Payload.Event != b.EventURI {
		t.Fatalf("payload %+v", payload)
	}
	if _, ok := payload.Payload.ScheduledEvent["calendar_event"]; ok {
		t.Fatal("webhook payload carries calendar_event")
	}

	rcv.mu.Lock()
	rcv.status = 500
	rcv.mu.Unlock()
	f.srv.CancelInvitee(b.InviteeURI, "")
	f.advance(24 * time.Hour)
	b2, _ := f.srv.Book(calendly.BookingSpec{EventType: f.demo, Start: t0.Add(30 * time.Hour), Invitee: calendly.InviteeSpec{Email: "y@acme.example"}})
	_ = b2
	sub, _ := f.srv.SubscriptionByURI(created.Resource.URI)
	if sub.State != "disabled" {
		t.Fatalf("after 24 h of failures the subscription is %s", sub.State)
	}
	if _, ds := f.srv.Book(calendly.BookingSpec{EventType: f.demo, Start: t0.Add(40 * time.Hour), Invitee: calendly.InviteeSpec{Email: "z@acme.example"}}); len(ds) != 0 {
		t.Fatal("a disabled subscription received a delivery")
	}
}

func TestRescheduleDeliveries(t *testing.T) {
	f := newFixture(t)
	tok := f.srv.AddPAT(f.admin)
	rcv := &recorder{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	f.get(t, tok, "POST", "webhook_subscriptions", map[string]any{"url": hook.URL + "/h", "events": []string{"invitee.created", "invitee.canceled"},
		"organization": f.org.URI, "scope": "user", "user": f.rep.URI, "signing_key": "k"}, nil)
	b, _ := f.srv.Book(calendly.BookingSpec{EventType: f.demo, Start: t0.Add(time.Hour), Invitee: calendly.InviteeSpec{Email: "x@acme.example"}})
	nb, ds := f.srv.Reschedule(b.InviteeURI, calendly.RescheduleSpec{Start: t0.Add(3 * time.Hour), CreatedFirst: true, Duplicate: true, Hold: calendly.Canceled})
	if len(ds) != 2 || ds[0].Event != "invitee.created" || ds[1].Event != "invitee.created" {
		t.Fatalf("deliveries %+v", ds)
	}
	late := f.srv.DeliverHeld()
	if len(late) != 2 || late[0].Event != "invitee.canceled" {
		t.Fatalf("held %+v", late)
	}
	var inv struct {
		Resource struct {
			Rescheduled bool
			NewInvitee  *string `json:"new_invitee"`
			Status      string
		}
	}
	f.get(t, tok, "GET", strings.TrimPrefix(b.InviteeURI, f.srv.URL()), nil, &inv)
	if !inv.Resource.Rescheduled || inv.Resource.Status != "canceled" || *inv.Resource.NewInvitee != nb.InviteeURI {
		t.Fatalf("old invitee %+v", inv)
	}
	var ev struct{ Resource struct{ Status string } }
	f.get(t, tok, "GET", strings.TrimPrefix(b.EventURI, f.srv.URL()), nil, &ev)
	if ev.Resource.Status != "canceled" {
		t.Fatalf("old event is %s", ev.Resource.Status)
	}
}

func TestRateLimitFault(t *testing.T) {
	f := newFixture(t)
	tok := f.srv.AddPAT(f.admin)
	f.srv.SetRateLimitReset(7 * time.Second)
	f.srv.FailOn(calendly.EndpointMe, calendly.FaultRateLimited, 2)
	req, _ := http.NewRequest("GET", f.srv.URL()+"users/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := range 3 {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 429
		if i == 2 {
			want = 200
		}
		if resp.StatusCode != want || (want == 429 && resp.Header.Get("X-RateLimit-Reset") != "7") {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if got := f.srv.Calls()[calendly.EndpointMe]; got != 3 {
		t.Fatalf("calls %d", got)
	}
}
