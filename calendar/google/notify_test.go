package google_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/calendar/google"
)

// receiver is a webhook endpoint that records what arrives.
type receiver struct {
	mu      sync.Mutex
	headers []http.Header
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) all() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// TestWatchAndNotifications opens a channel on the fake, receives its
// notifications with Google's headers and verifies them the way the webhook
// handler does.
func TestWatchAndNotifications(t *testing.T) {
	e := newEnv(t, google.Config{})
	ctx := context.Background()
	check(t, e.srv.AddCalendar(alice, "UTC"))
	rcv := &receiver{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()

	ch, err := e.src.Watch(ctx, calendar.WatchRequest{CalendarID: alice, Address: hook.URL + "/webhooks/google"})
	check(t, err)
	if len(ch.ID) != 32 || len(ch.Token) != 43 || ch.ResourceID == "" {
		t.Fatalf("channel %+v", ch)
	}
	if want := t0.Add(7 * 24 * time.Hour); !ch.Expiration.Equal(want) {
		t.Errorf("expiration %v, want %v from the answer", ch.Expiration, want)
	}
	stored := calendar.HashToken(ch.Token) // all the database keeps

	e.srv.Flush()
	must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{Summary: "x", Start: t0, End: t0.Add(time.Hour)}))
	check(t, e.srv.Notify(alice))
	got := rcv.all()
	if len(got) != 2 {
		t.Fatalf("%d notifications, want sync + exists", len(got))
	}
	var ns []calendar.Notification
	for _, h := range got {
		n, err := google.ParseNotification(h, nil)
		check(t, err)
		if err := google.Verify(n, ch.ResourceID, stored); err != nil {
			t.Fatalf("verify %+v: %v", n, err)
		}
		ns = append(ns, n)
	}
	want := []calendar.Notification{
		{ChannelID: ch.ID, Token: ch.Token, ResourceID: ch.ResourceID, State: calendar.StateSync, MessageNumber: 1, Expiration: ch.Expiration},
		{ChannelID: ch.ID, Token: ch.Token, ResourceID: ch.ResourceID, State: calendar.StateChanged, MessageNumber: 2, Expiration: ch.Expiration},
	}
	if d := cmp.Diff(want, ns); d != "" {
		t.Fatalf("notifications (-want +got):\n%s", d)
	}

	t.Run("bad token", func(t *testing.T) {
		if err := google.Verify(ns[1], ch.ResourceID, calendar.HashToken("guess")); !errors.Is(err, google.ErrBadToken) {
			t.Fatalf("err %v", err)
		}
		forged := ns[1]
		forged.Token = ""
		if err := google.Verify(forged, ch.ResourceID, stored); !errors.Is(err, google.ErrBadToken) {
			t.Fatalf("no token: err %v", err)
		}
	})
	t.Run("unknown channel", func(t *testing.T) {
		if err := google.Verify(ns[1], "", nil); !errors.Is(err, google.ErrUnknownChannel) {
			t.Fatalf("err %v", err)
		}
		if err := google.Verify(ns[1], "another-resource", stored); !errors.Is(err, google.ErrUnknownChannel) {
			t.Fatalf("other resource: err %v", err)
		}
	})
	t.Run("auto notify", func(t *testing.T) {
		e.srv.SetAutoNotify(true)
		defer e.srv.SetAutoNotify(false)
		must[calendartest.Event](t)(e.srv.Insert(alice, calendartest.EventSpec{Summary: "y", Start: t0, End: t0.Add(time.Hour)}))
		e.srv.Flush()
		hs := rcv.all()
		n, err := google.ParseNotification(hs[len(hs)-1], nil)
		check(t, err)
		if len(hs) != 3 || n.State != calendar.StateChanged || n.MessageNumber != 3 {
			t.Fatalf("%d notifications, last %+v", len(hs), n)
		}
	})

	check(t, e.src.StopWatch(ctx, ch))
	check(t, e.srv.Notify(alice))
	if n := len(rcv.all()); n != 3 {
		t.Fatalf("notification after stop: %d", n)
	}
	// Stopping again is not an error.
	check(t, e.src.StopWatch(ctx, ch))
	if n := e.srv.Calls()[calendartest.EndpointStop]; n != 2 {
		t.Errorf("%d stop calls", n)
	}
}

func validHeaders() http.Header {
	h := http.Header{}
	h.Set("X-Goog-Channel-ID", "0123456789abcdef0123456789abcdef")
	h.Set("X-Goog-Channel-Token", "tok_-x")
	h.Set("X-Goog-Channel-Expiration", "Tue, 19 Nov 2013 01:13:52 GMT")
	h.Set("X-Goog-Resource-ID", "ret08u3rv24htgh289g")
	h.Set("X-Goog-Resource-URI", "https://www.googleapis.com/calendar/v3/calendars/a/events?alt=json")
	h.Set("X-Goog-Resource-State", "exists")
	h.Set("X-Goog-Message-Number", "10")
	return h
}

func TestParseNotification(t *testing.T) {
	n, err := google.ParseNotification(validHeaders(), nil)
	check(t, err)
	want := calendar.Notification{
		ChannelID: "0123456789abcdef0123456789abcdef", Token: "tok_-x", ResourceID: "ret08u3rv24htgh289g",
		State: calendar.StateChanged, MessageNumber: 10, Expiration: time.Date(2013, 11, 19, 1, 13, 52, 0, time.UTC),
	}
	if d := cmp.Diff(want, n); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	var p calendar.WebhookParser = google.Parser{}
	if reply, ns, err := p.ParseWebhook(calendar.WebhookRequest{Header: validHeaders()}); err != nil || reply != nil || len(ns) != 1 || !cmp.Equal(ns[0], n) {
		t.Fatalf("Parser: %+v %v %v", ns, reply, err)
	}
	h := validHeaders()
	h.Del("X-Goog-Channel-ID")
	if _, _, err := p.ParseWebhook(calendar.WebhookRequest{Header: h}); !errors.Is(err, calendar.ErrMalformed) {
		t.Fatalf("malformed: %v, want calendar.ErrMalformed", err)
	}

	ok := []struct {
		name string
		edit func(http.Header)
		want func(*calendar.Notification)
	}{
		{"sync", func(h http.Header) { h.Set("X-Goog-Resource-State", "sync"); h.Set("X-Goog-Message-Number", "1") },
			func(n *calendar.Notification) { n.State, n.MessageNumber = calendar.StateSync, 1 }},
		{"not_exists", func(h http.Header) { h.Set("X-Goog-Resource-State", "not_exists") }, func(*calendar.Notification) {}},
		{"no token", func(h http.Header) { h.Del("X-Goog-Channel-Token") }, func(n *calendar.Notification) { n.Token = "" }},
		{"no expiration", func(h http.Header) { h.Del("X-Goog-Channel-Expiration") }, func(n *calendar.Notification) { n.Expiration = time.Time{} }},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			h := validHeaders()
			tt.edit(h)
			w := want
			tt.want(&w)
			n, err := google.ParseNotification(h, nil)
			check(t, err)
			if d := cmp.Diff(w, n); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}

	bad := []struct {
		name string
		edit func(http.Header)
	}{
		{"no channel id", func(h http.Header) { h.Del("X-Goog-Channel-ID") }},
		{"empty channel id", func(h http.Header) { h.Set("X-Goog-Channel-ID", "") }},
		{"long channel id", func(h http.Header) { h.Set("X-Goog-Channel-ID", string(make([]byte, 65))) }},
		{"channel id with space", func(h http.Header) { h.Set("X-Goog-Channel-ID", "a b") }},
		{"repeated channel id", func(h http.Header) { h.Add("X-Goog-Channel-ID", "other") }},
		{"no resource id", func(h http.Header) { h.Del("X-Goog-Resource-ID") }},
		{"no state", func(h http.Header) { h.Del("X-Goog-Resource-State") }},
		{"unknown state", func(h http.Header) { h.Set("X-Goog-Resource-State", "update") }},
		{"no message number", func(h http.Header) { h.Del("X-Goog-Message-Number") }},
		{"message number not a number", func(h http.Header) { h.Set("X-Goog-Message-Number", "ten") }},
		{"negative message number", func(h http.Header) { h.Set("X-Goog-Message-Number", "-1") }},
		{"signed message number", func(h http.Header) { h.Set("X-Goog-Message-Number", "+1") }},
		{"bad expiration", func(h http.Header) { h.Set("X-Goog-Channel-Expiration", "2013-11-19T01:13:52Z") }},
		{"token not printable", func(h http.Header) { h.Set("X-Goog-Channel-Token", "t\x01") }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			h := validHeaders()
			tt.edit(h)
			if _, err := google.ParseNotification(h, nil); !errors.Is(err, google.ErrMalformedNotification) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add("0123456789abcdef", "tok", "res1", "exists", "7", "Tue, 19 Nov 2013 01:13:52 GMT")
	f.Add("c", "", "r", "sync", "1", "")
	f.Add("c", "t", "r", "not_exists", "99999999999999999999", "Mon, 02 Jan 2006 15:04:05 MST")
	f.Add("", "\xff", "r r", "EXISTS", "-0", "garbage")
	f.Fuzz(func(t *testing.T, id, token, resource, state, num, exp string) {
		h := http.Header{}
		for k, v := range map[string]string{
			"X-Goog-Channel-ID": id, "X-Goog-Channel-Token": token, "X-Goog-Resource-ID": resource,
			"X-Goog-Resource-State": state, "X-Goog-Message-Number": num, "X-Goog-Channel-Expiration": exp,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}
		n, err := google.ParseNotification(h, []byte(token))
		if err != nil {
			if !errors.Is(err, google.ErrMalformedNotification) {
				t.Fatalf("error does not wrap ErrMalformedNotification: %v", err)
			}
			return
		}
		if n.ChannelID != id || n.ResourceID != resource || n.Token != token || len(id) == 0 || len(id) > 64 {
			t.Fatalf("fields not carried over: %+v", n)
		}
		if n.State != calendar.StateSync && n.State != calendar.StateChanged {
			t.Fatalf("state %q", n.State)
		}
		if n.MessageNumber < 0 || strconv.FormatInt(n.MessageNumber, 10) != trimZeros(num) {
			t.Fatalf("message number %d from %q", n.MessageNumber, num)
		}
		// What was accepted verifies against its own token and no other.
		if err := google.Verify(n, resource, calendar.HashToken(token)); err != nil {
			t.Fatalf("verify own token: %v", err)
		}
		if err := google.Verify(n, resource, calendar.HashToken(token+"x")); !errors.Is(err, google.ErrBadToken) {
			t.Fatalf("verify other token: %v", err)
		}
	})
}

// trimZeros normalises a decimal string the way ParseInt reads it.
func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}
