package calendly_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
)

// watched is a connection with its subscription open on a hook.
type watched struct {
	*env
	src  *calendly.Source
	hook *hook
	ch   calendar.Channel
}

func newWatched(t *testing.T) *watched {
	t.Helper()
	e := newEnv(t)
	src, _ := e.open(t, e.admin)
	h := newHook(t, e.clk)
	ch, err := src.Watch(context.Background(), calendar.WatchRequest{CalendarID: e.org.URI, Address: h.address("ch-7f3a")})
	check(t, err)
	return &watched{env: e, src: src, hook: h, ch: ch}
}

// TestWebhookBookingEndToEnd books a meeting, receives the signed
// delivery, verifies and parses it as the pipeline does and fetches the
// event it names.
func TestWebhookBookingEndToEnd(t *testing.T) {
	w := newWatched(t)
	if !strings.Contains(w.ch.ID, "/webhook_subscriptions/") || len(w.ch.Token) != 43 || w.ch.ResourceID != w.org.URI {
		t.Fatalf("channel %+v", w.ch)
	}
	b := w.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "buyer@acme.example", Name: "Bea"},
		CalendarEvent: &fake.CalendarEvent{Kind: "google", ExternalID: "g1"}})
	reqs := w.hook.take()
	if len(reqs) != 1 {
		t.Fatalf("%d deliveries", len(reqs))
	}
	_, ns, err := calendly.Parser{}.ParseWebhook(reqs[0])
	check(t, err)
	want := []calendar.Notification{{ChannelID: "ch-7f3a", State: calendar.StateChanged, EventIDs: []string{b.EventURI}}}
	if d := cmp.Diff(want, ns); d != "" {
		t.Fatalf("notifications (-want +got):\n%s", d)
	}
	evs := handle(t, w.src, w.ch.Token, reqs)
	if len(evs) != 1 || evs[0].ID != b.EventUUID || evs[0].Booking.CalendarEventID != "g1" {
		t.Fatalf("fetched %+v", evs)
	}
}

// TestVerifySignature checks real deliveries signed every way the fake
// can, and crafted headers, against the channel's key.
func TestVerifySignature(t *testing.T) {
	w := newWatched(t)
	key := []byte(w.ch.Token)
	deliver := func(mode fake.SigningMode) calendar.WebhookRequest {
		t.Helper()
		w.srv.SetSigning(mode)
		w.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "x@acme.example"}})
		reqs := w.hook.take()
		if len(reqs) != 1 {
			t.Fatalf("%d deliveries", len(reqs))
		}
		return reqs[0]
	}
	valid := deliver(fake.SignValid)
	withHeader := func(v string) calendar.WebhookRequest {
		r := valid
		r.Header = http.Header{}
		if v != "" {
			r.Header.Set(calendly.SignatureHeader, v)
		}
		return r
	}
	sig := valid.Header.Get(calendly.SignatureHeader)
	tpart, v1, _ := strings.Cut(sig, ",")
	at := func(d time.Duration) calendar.WebhookRequest {
		r := valid
		r.Received = valid.Received.Add(d)
		return r
	}
	tampered := valid
	tampered.Body = append(append([]byte(nil), valid.Body...), ' ')

	tests := []struct {
		name string
		req  calendar.WebhookRequest
		key  []byte
		want error
	}{
		{"valid", valid, key, nil},
		{"valid 3 minutes later", at(3 * time.Minute), key, nil},
		{"replayed after 3 minutes", at(3*time.Minute + time.Second), key, calendly.ErrSignatureStale},
		{"received 30 s before it was signed", at(-30 * time.Second), key, nil},
		{"signed in the future", at(-31 * time.Second), key, calendly.ErrSignatureStale},
		{"forged: wrong key", deliver(fake.SignWrongKey), key, calendly.ErrSignatureMismatch},
		{"stale", deliver(fake.SignStale), key, calendly.ErrSignatureStale},
		{"future", deliver(fake.SignFuture), key, calendly.ErrSignatureStale},
		{"unsigned", deliver(fake.SignNone), key, calendly.ErrSignatureMissing},
		{"body tampered", deliver(fake.SignTamperedBody), key, calendly.ErrSignatureMismatch},
		{"body changed after receipt", tampered, key, calendly.ErrSignatureMismatch},
		{"verified with another key", valid, []byte("app-level-key"), calendly.ErrSignatureMismatch},
		{"no key", valid, nil, calendly.ErrSignature},
		{"order swapped", withHeader(v1 + "," + tpart), key, nil},
		{"spaces after commas", withHeader(tpart + ", " + v1), key, nil},
		{"extra scheme ignored", withHeader(tpart + ",v0=abc," + v1), key, nil},
		{"no t", withHeader(v1), key, calendly.ErrSignatureMissing},
		{"no v1", withHeader(tpart), key, calendly.ErrSignatureMissing},
		{"two t", withHeader(tpart + "," + tpart + "," + v1), key, calendly.ErrSignatureMissing},
		{"short v1", withHeader(tpart + ",v1=abcd"), key, calendly.ErrSignatureMissing},
		{"non-hex v1", withHeader(tpart + ",v1=" + strings.Repeat("zz", 32)), key, calendly.ErrSignatureMissing},
		{"negative t", withHeader("t=-1," + v1), key, calendly.ErrSignatureMissing},
		{"garbage", withHeader("sha256=deadbeef"), key, calendly.ErrSignatureMissing},
		{"oversized", withHeader(tpart + "," + v1 + strings.Repeat(",v9=x", 200)), key, calendly.ErrSignatureMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := calendly.Parser{}.VerifySignature(tc.req, tc.key)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, calendly.ErrSignature) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("repeated header", func(t *testing.T) {
		r := valid
		r.Header = valid.Header.Clone()
		r.Header.Add(calendly.SignatureHeader, sig)
		if err := w.prov.VerifySignature(r, key); !errors.Is(err, calendly.ErrSignatureMissing) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("far future, properly signed", func(t *testing.T) {
		r := valid
		r.Header = http.Header{}
		r.Header.Set(calendly.SignatureHeader, fake.Sign(key, time.Unix(999999999999, 0), r.Body))
		if err := w.prov.VerifySignature(r, key); !errors.Is(err, calendly.ErrSignatureStale) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("no receive time", func(t *testing.T) {
		r := valid
		r.Received = time.Time{}
		if err := w.prov.VerifySignature(r, key); !errors.Is(err, calendly.ErrSignature) {
			t.Fatalf("err %v", err)
		}
	})
}

// TestAppSigningKeyFallback: a subscription created with an OAuth token
// and no signing key is signed with the application's key; the channel's
// key fails and the app-level key (RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY)
// verifies.
func TestAppSigningKeyFallback(t *testing.T) {
	e := newEnv(t)
	h := newHook(t, e.clk)
	id, secret := e.srv.ClientCredentials()
	code := e.srv.AuthorizeCode(e.admin, "https://rapport.test/cb")
	cfg := calendly.OAuthConfig(id, secret, "https://rapport.test/cb", e.srv.AuthURL(), e.srv.TokenURL())
	tok, err := cfg.Exchange(context.Background(), code)
	check(t, err)
	// Subscribe the way an OAuth app without its own key does.
	req, _ := http.NewRequest("POST", e.srv.URL()+"webhook_subscriptions", strings.NewReader(
		`{"url":"`+h.address("app")+`","events":["invitee.created"],"organization":"`+e.org.URI+`","scope":"organization"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create %d", resp.StatusCode)
	}
	e.book(t, fake.BookingSpec{Start: t0.Add(time.Hour), Invitee: fake.InviteeSpec{Email: "x@acme.example"}})
	r := h.take()[0]
	if err := e.prov.VerifySignature(r, []byte("some channel key")); !errors.Is(err, calendly.ErrSignatureMismatch) {
		t.Fatalf("channel key: %v", err)
	}
	if err := e.prov.VerifySignature(r, []byte(e.srv.AppSigningKey())); err != nil {
		t.Fatalf("app key: %v", err)
	}
}

// TestParseWebhookShapes covers what ParseWebhook accepts and refuses.
func TestParseWebhookShapes(t *testing.T) {
	base := "https://api.calendly.com/scheduled_events/"
	ev := base + "EV1"
	tests := []struct {
		name    string
		path    string
		body    string
		want    []calendar.Notification
		wantErr bool
	}{
		{"created", "/c1", `{"event":"invitee.created","payload":{"event":"` + ev + `","old_invitee":null}}`,
			[]calendar.Notification{{ChannelID: "c1", State: calendar.StateChanged, EventIDs: []string{ev}}}, false},
		{"canceled by reschedule names the new event", "/c1",
			`{"event":"invitee.canceled","payload":{"event":"` + ev + `","rescheduled":true,"new_invitee":"` + base + `EV2/invitees/I2"}}`,
			[]calendar.Notification{{ChannelID: "c1", State: calendar.StateChanged, EventIDs: []string{ev, base + "EV2"}}}, false},
		{"created by reschedule names the old event", "/c1",
			`{"event":"invitee.created","payload":{"event":"` + ev + `","old_invitee":"` + base + `EV0/invitees/I0"}}`,
			[]calendar.Notification{{ChannelID: "c1", State: calendar.StateChanged, EventIDs: []string{ev, base + "EV0"}}}, false},
		{"event from scheduled_event", "/c1", `{"event":"invitee.created","payload":{"scheduled_event":{"uri":"` + ev + `"}}}`,
			[]calendar.Notification{{ChannelID: "c1", State: calendar.StateChanged, EventIDs: []string{ev}}}, false},
		{"unparseable link ignored", "/c1", `{"event":"invitee.created","payload":{"event":"` + ev + `","old_invitee":"nonsense"}}`,
			[]calendar.Notification{{ChannelID: "c1", State: calendar.StateChanged, EventIDs: []string{ev}}}, false},
		{"other event acknowledged", "/c1", `{"event":"routing_form_submission.created","payload":{}}`, nil, false},
		{"no channel", "", `{"event":"invitee.created","payload":{"event":"` + ev + `"}}`, nil, true},
		{"bare slash", "/", `{"event":"invitee.created","payload":{"event":"` + ev + `"}}`, nil, true},
		{"nested path", "/c1/x", `{"event":"invitee.created","payload":{"event":"` + ev + `"}}`, nil, true},
		{"long channel", "/" + strings.Repeat("a", 129), `{"event":"invitee.created","payload":{"event":"` + ev + `"}}`, nil, true},
		{"empty body", "/c1", ``, nil, true},
		{"not JSON", "/c1", `<xml/>`, nil, true},
		{"no event", "/c1", `{"payload":{"event":"` + ev + `"}}`, nil, true},
		{"no payload", "/c1", `{"event":"invitee.created"}`, nil, true},
		{"no scheduled event", "/c1", `{"event":"invitee.created","payload":{"email":"x@y"}}`, nil, true},
		{"payload event not a scheduled event", "/c1", `{"event":"invitee.created","payload":{"event":"https://api.calendly.com/users/U"}}`, nil, true},
		{"oversized", "/c1", `{"event":"invitee.created","payload":{"event":"` + ev + `","x":"` + strings.Repeat("a", calendly.MaxWebhookBody) + `"}}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply, ns, err := calendly.Parser{}.ParseWebhook(calendar.WebhookRequest{Path: tc.path, Body: []byte(tc.body)})
			if reply != nil {
				t.Fatal("reply")
			}
			if tc.wantErr {
				if !errors.Is(err, calendar.ErrMalformed) {
					t.Fatalf("err %v, want ErrMalformed", err)
				}
				return
			}
			check(t, err)
			if d := cmp.Diff(tc.want, ns); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestRescheduleKeepsTheMeeting reschedules a booking with its two
// deliveries in either order, duplicated, one late or lost: whatever
// arrives, the new event has the old one's ICalUID, the old one is a
// cancelled copy marked Rescheduled, the new one is confirmed.
func TestRescheduleKeepsTheMeeting(t *testing.T) {
	cases := []struct {
		name string
		spec fake.RescheduleSpec
	}{
		{"canceled first", fake.RescheduleSpec{}},
		{"created first", fake.RescheduleSpec{CreatedFirst: true}},
		{"duplicated", fake.RescheduleSpec{Duplicate: true, CreatedFirst: true}},
		{"canceled late", fake.RescheduleSpec{Hold: fake.Canceled}},
		{"created late", fake.RescheduleSpec{Hold: fake.Created}},
		{"canceled lost", fake.RescheduleSpec{Drop: fake.Canceled}},
		{"created lost", fake.RescheduleSpec{Drop: fake.Created}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatched(t)
			old := w.book(t, fake.BookingSpec{Start: t0.Add(24 * time.Hour), Invitee: fake.InviteeSpec{Email: "buyer@acme.example", Name: "Bea"}})
			first := handle(t, w.src, w.ch.Token, w.hook.take())
			if len(first) != 1 || first[0].ICalUID != "calendly:"+old.EventUUID {
				t.Fatalf("booking %+v", first)
			}
			spec := tc.spec
			spec.Start, spec.End = t0.Add(48*time.Hour), t0.Add(48*time.Hour+30*time.Minute)
			moved, _ := w.srv.Reschedule(old.InviteeURI, spec)
			w.srv.DeliverHeld()
			evs := handle(t, w.src, w.ch.Token, w.hook.take())

			got := byID(evs)
			o, n := got[old.EventUUID], got[moved.EventUUID]
			if o.ID == "" || n.ID == "" {
				t.Fatalf("both copies must be fetched, got %v", ids(evs))
			}
			if n.ICalUID != first[0].ICalUID || o.ICalUID != first[0].ICalUID {
				t.Errorf("ICalUIDs old %q new %q, want %q", o.ICalUID, n.ICalUID, first[0].ICalUID)
			}
			if o.Status != calendar.StatusCancelled || !o.Booking.Rescheduled {
				t.Errorf("old copy status %s rescheduled %v", o.Status, o.Booking.Rescheduled)
			}
			if n.Status != calendar.StatusConfirmed || n.Booking.Rescheduled || !n.Start.Equal(spec.Start) {
				t.Errorf("new copy %+v", n)
			}
			// Duplicates yield the same state, whatever the order.
			for _, e := range evs {
				want := got[e.ID]
				if d := cmp.Diff(want, e); d != "" {
					t.Errorf("two fetches of %s differ:\n%s", e.ID, d)
				}
			}
		})
	}
}

// TestRescheduleChainAndCancellations reschedules twice (the root is the
// first booking), then cancels the moved booking plainly (a cancellation,
// not a move); a group event is never chained.
func TestRescheduleChainAndCancellations(t *testing.T) {
	w := newWatched(t)
	ctx := context.Background()
	b0 := w.book(t, fake.BookingSpec{Start: t0.Add(24 * time.Hour), Invitee: fake.InviteeSpec{Email: "buyer@acme.example"}})
	b1, _ := w.srv.Reschedule(b0.InviteeURI, fake.RescheduleSpec{Start: t0.Add(48 * time.Hour)})
	b2, _ := w.srv.Reschedule(b1.InviteeURI, fake.RescheduleSpec{Start: t0.Add(72 * time.Hour)})
	w.hook.take()

	// A fresh provider (empty caches) resolving the newest first.
	prov, err := calendly.NewProvider(w.cfg)
	check(t, err)
	w.prov = prov
	src, _ := w.open(t, w.admin)
	w.srv.ResetCalls()
	page, err := src.List(ctx, calendar.ListRequest{EventIDs: []string{b2.EventURI}})
	check(t, err)
	if got := page.Events[0].ICalUID; got != "calendly:"+b0.EventUUID {
		t.Fatalf("twice-moved booking ICalUID %q, want the first booking's", got)
	}
	if n := w.srv.Calls()[fake.EndpointInvitee]; n != 2 {
		t.Errorf("%d invitee lookups to follow two reschedules", n)
	}
	w.srv.ResetCalls()
	page, err = src.List(ctx, calendar.ListRequest{EventIDs: []string{b1.EventURI, b0.EventURI}})
	check(t, err)
	for _, e := range page.Events {
		if e.ICalUID != "calendly:"+b0.EventUUID || e.Status != calendar.StatusCancelled || !e.Booking.Rescheduled {
			t.Errorf("moved-away copy %s: %s %s rescheduled=%v", e.ID, e.ICalUID, e.Status, e.Booking.Rescheduled)
		}
	}
	if n := w.srv.Calls()[fake.EndpointInvitee]; n != 0 {
		t.Errorf("cached roots looked up again: %d", n)
	}

	// The moved booking is canceled: an ordinary cancellation of the
	// meeting.
	w.srv.CancelInvitee(b2.InviteeURI, "no longer needed")
	// Its payload's old_invitee makes the notification name the
	// predecessor too, which is fetched unchanged.
	evs := byID(handle(t, src, w.ch.Token, w.hook.take()))
	if c := evs[b2.EventUUID]; c.Status != calendar.StatusCancelled || c.Booking.Rescheduled || c.ICalUID != "calendly:"+b0.EventUUID {
		t.Fatalf("plain cancellation %+v", c)
	}
	if p := evs[b1.EventUUID]; len(evs) != 2 || !p.Booking.Rescheduled {
		t.Fatalf("predecessor %+v of %d events", p, len(evs))
	}

	// A host cancels a group event; an invitee moves out of another.
	g := w.book(t, fake.BookingSpec{EventType: w.workshop, Start: t0.Add(5 * 24 * time.Hour), Invitee: fake.InviteeSpec{Email: "a@acme.example"}})
	w.srv.AddInvitee(g.EventUUID, fake.InviteeSpec{Email: "b@acme.example"})
	w.srv.CancelEvent(g.EventUUID, "host sick")
	g2 := w.book(t, fake.BookingSpec{EventType: w.workshop, Start: t0.Add(6 * 24 * time.Hour), Invitee: fake.InviteeSpec{Email: "c@acme.example"}})
	joined, _ := w.srv.AddInvitee(g2.EventUUID, fake.InviteeSpec{Email: "d@acme.example"})
	out, _ := w.srv.Reschedule(joined.InviteeURI, fake.RescheduleSpec{Start: t0.Add(7 * 24 * time.Hour)})
	w.hook.take()
	page, err = src.List(ctx, calendar.ListRequest{EventIDs: []string{g.EventUUID, g2.EventUUID, out.EventUUID}})
	check(t, err)
	got := byID(page.Events)
	if c := got[g.EventUUID]; c.Status != calendar.StatusCancelled || c.Booking.Rescheduled {
		t.Errorf("canceled group event %s rescheduled=%v", c.Status, c.Booking.Rescheduled)
	}
	if s := got[g2.EventUUID]; s.Status != calendar.StatusConfirmed || len(s.Attendees) != 2 {
		t.Errorf("group slot left by one invitee: %s %+v", s.Status, s.Attendees)
	}
	if n := got[out.EventUUID]; n.ICalUID != "calendly:"+out.EventUUID {
		t.Errorf("a group booking moved out chains to %q", n.ICalUID)
	}
}
