package calendly_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
)

// TestWatchCreatesSubscription checks the subscription Calendly got: the
// organization scope, both invitee events, the address, signed with the
// key returned as the channel's token.
func TestWatchCreatesSubscription(t *testing.T) {
	w := newWatched(t)
	subs := w.srv.Subscriptions(w.org)
	if len(subs) != 1 {
		t.Fatalf("%d subscriptions", len(subs))
	}
	s := subs[0]
	if s.URI != w.ch.ID || s.Scope != "organization" || s.CallbackURL != w.hook.address("ch-7f3a") || s.SigningKey != w.ch.Token || s.State != "active" {
		t.Fatalf("subscription %+v, channel %+v", s, w.ch)
	}

	// User scope for a rep's own connection.
	src, _ := w.open(t, w.rep)
	ch, err := src.Watch(context.Background(), calendar.WatchRequest{CalendarID: w.rep.URI, Address: w.hook.address("rep")})
	check(t, err)
	got, _ := w.srv.SubscriptionByURI(ch.ID)
	if got.Scope != "user" || got.SigningKey != ch.Token || ch.Token == w.ch.Token {
		t.Fatalf("user subscription %+v", got)
	}
}

// TestWatchConflictReplaces: a subscription for the address exists (an
// earlier Watch whose answer was lost); Watch finds it, replaces it, and
// returns a channel whose key verifies the deliveries.
func TestWatchConflictReplaces(t *testing.T) {
	w := newWatched(t)
	ctx := context.Background()
	found, state, ok, err := w.src.FindSubscription(ctx, w.org.URI, w.hook.address("ch-7f3a"))
	check(t, err)
	if !ok || found.ID != w.ch.ID || found.Token != "" || state != calendly.SubscriptionActive {
		t.Fatalf("FindSubscription %+v %q %v", found, state, ok)
	}

	w.srv.ResetCalls()
	ch, err := w.src.Watch(ctx, calendar.WatchRequest{CalendarID: w.org.URI, Address: w.hook.address("ch-7f3a")})
	check(t, err)
	calls := w.srv.Calls()
	if calls[fake.EndpointCreateWebhook] != 2 || calls[fake.EndpointListWebhooks] != 1 || calls[fake.EndpointDeleteWebhook] != 1 {
		t.Errorf("calls %v", calls)
	}
	if ch.ID == w.ch.ID || ch.Token == "" || ch.Token == w.ch.Token {
		t.Fatalf("replacement channel %+v (old %+v)", ch, w.ch)
	}
	subs := w.srv.Subscriptions(w.org)
	if len(subs) != 1 || subs[0].URI != ch.ID {
		t.Fatalf("subscriptions after replacement %+v", subs)
	}
	b := w.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "x@acme.example"}})
	evs := handle(t, w.src, ch.Token, w.hook.take())
	if len(evs) != 1 || evs[0].ID != b.EventUUID {
		t.Fatalf("delivery after replacement %+v", evs)
	}

	_, _, ok, err = w.src.FindSubscription(ctx, w.org.URI, w.hook.address("nothing-here"))
	if err != nil || ok {
		t.Fatalf("FindSubscription of an unknown address: %v %v", ok, err)
	}
}

// TestWatchConflictInvisible: the address is subscribed by someone this
// connection cannot see (another user's user-scope subscription).
func TestWatchConflictInvisible(t *testing.T) {
	e := newEnv(t)
	h := newHook(t, e.clk)
	other, _ := e.open(t, e.rep2)
	_, err := other.Watch(context.Background(), calendar.WatchRequest{CalendarID: e.rep2.URI, Address: h.address("shared")})
	check(t, err)
	src, _ := e.open(t, e.rep)
	_, err = src.Watch(context.Background(), calendar.WatchRequest{CalendarID: e.rep.URI, Address: h.address("shared")})
	if calendar.ClassOf(err) != calendar.Permanent || !strings.Contains(err.Error(), "cannot see") {
		t.Fatalf("err %v", err)
	}
}

// TestWatchForbidden: organization scope by a plain member, and a free
// plan, are Permanent with a sentence saying why; a token without
// webhooks:write is Auth.
func TestWatchForbidden(t *testing.T) {
	e := newEnv(t)
	h := newHook(t, e.clk)
	ctx := context.Background()

	src, _ := e.open(t, e.rep)
	_, err := src.Watch(ctx, calendar.WatchRequest{CalendarID: e.org.URI, Address: h.address("a")})
	if calendar.ClassOf(err) != calendar.Permanent || !strings.Contains(err.Error(), "owner or admin") {
		t.Fatalf("organization scope by a member: %v", err)
	}

	_, err = src.Watch(ctx, calendar.WatchRequest{CalendarID: e.rep2.URI, Address: h.address("a2")})
	if calendar.ClassOf(err) != calendar.Permanent || !strings.Contains(err.Error(), "own user") {
		t.Fatalf("user scope for another user: %v", err)
	}

	narrow, _ := e.open(t, e.rep, "users:read", "scheduled_events:read")
	_, err = narrow.Watch(ctx, calendar.WatchRequest{CalendarID: e.rep.URI, Address: h.address("b")})
	if calendar.ClassOf(err) != calendar.Auth || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("missing webhooks:write: %v", err)
	}

	freeOrg := e.srv.AddOrganization(fake.PlanFree)
	solo := e.srv.AddUser(freeOrg, "solo@freelance.example", "Solo", fake.RoleOwner)
	free, _ := e.open(t, solo)
	_, err = free.Watch(ctx, calendar.WatchRequest{CalendarID: solo.URI, Address: h.address("c")})
	if calendar.ClassOf(err) != calendar.Permanent || !strings.Contains(err.Error(), "paid plan") {
		t.Fatalf("free plan: %v", err)
	}

	_, err = src.Watch(ctx, calendar.WatchRequest{CalendarID: e.rep.URI, Address: "not a url"})
	if calendar.ClassOf(err) != calendar.Permanent {
		t.Fatalf("bad address: %v", err)
	}
}

// TestSubscriptionDisabledAndStopped: deliveries failing for 24 hours
// disable the subscription, which SubscriptionState reports; StopWatch
// deletes it, after which the state is NotFound and a second stop is
// fine.
func TestSubscriptionDisabledAndStopped(t *testing.T) {
	w := newWatched(t)
	ctx := context.Background()
	state, err := w.src.SubscriptionState(ctx, w.ch)
	check(t, err)
	if state != calendly.SubscriptionActive {
		t.Fatalf("state %q", state)
	}

	w.hook.setStatus(http.StatusServiceUnavailable)
	w.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	w.clk.Advance(12 * time.Hour)
	w.book(t, fake.BookingSpec{Start: t0.Add(30 * time.Hour), Invitee: fake.InviteeSpec{Email: "b@acme.example"}})
	if state, _ = w.src.SubscriptionState(ctx, w.ch); state != calendly.SubscriptionActive {
		t.Fatalf("disabled after 12 hours: %q", state)
	}
	w.clk.Advance(12 * time.Hour)
	w.book(t, fake.BookingSpec{Start: t0.Add(50 * time.Hour), Invitee: fake.InviteeSpec{Email: "c@acme.example"}})
	state, err = w.src.SubscriptionState(ctx, w.ch)
	check(t, err)
	if state != calendly.SubscriptionDisabled {
		t.Fatalf("after 24 hours of failures: %q", state)
	}

	check(t, w.src.StopWatch(ctx, w.ch))
	if _, err := w.src.SubscriptionState(ctx, w.ch); calendar.ClassOf(err) != calendar.NotFound {
		t.Fatalf("state of a deleted subscription: %v", err)
	}
	check(t, w.src.StopWatch(ctx, w.ch))
	if err := w.src.StopWatch(ctx, calendar.Channel{ID: "https://api.calendly.com/users/x"}); calendar.ClassOf(err) != calendar.Permanent {
		t.Fatalf("stop of a non-subscription: %v", err)
	}
}

// TestWhoamiAndResolveScope answers the connection import's questions.
func TestWhoamiAndResolveScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ts := func(u fake.User) oauth2.TokenSource {
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: e.srv.AddPAT(u)})
	}
	userURI, email, orgURI, err := e.prov.Whoami(ctx, ts(e.rep))
	check(t, err)
	if userURI != e.rep.URI || email != "rep@northwind.test" || orgURI != e.org.URI {
		t.Fatalf("whoami %q %q %q", userURI, email, orgURI)
	}

	for _, tc := range []struct {
		name  string
		user  fake.User
		scope string
		want  string
		class calendar.Class
	}{
		{"owner, organization", e.admin, calendly.ScopeOrganization, e.org.URI, 0},
		{"member, user", e.rep, calendly.ScopeUser, e.rep.URI, 0},
		{"member, organization", e.rep, calendly.ScopeOrganization, "", calendar.Permanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.prov.ResolveScope(ctx, ts(tc.user), tc.scope)
			if tc.class != 0 {
				if calendar.ClassOf(err) != tc.class || !errors.Is(err, calendly.ErrNotOrganizationAdmin) {
					t.Fatalf("err %v", err)
				}
				return
			}
			check(t, err)
			if got != tc.want {
				t.Fatalf("calendar id %q, want %q", got, tc.want)
			}
		})
	}
	e.srv.SetRole(e.rep, fake.RoleAdmin)
	if got, err := e.prov.ResolveScope(ctx, ts(e.rep), calendly.ScopeOrganization); err != nil || got != e.org.URI {
		t.Fatalf("admin: %q %v", got, err)
	}
	if _, err := e.prov.ResolveScope(ctx, ts(e.rep), "group"); err == nil {
		t.Fatal("unknown scope accepted")
	}
}
