package microsoft_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/microsoft"
)

// receiver is the webhook endpoint as the pipeline would run it: Parser
// answers handshakes, notifications are recorded.
type receiver struct {
	mu         sync.Mutex
	handshakes []string // paths
	got        []calendar.Notification
	echo       func(string) string // what to answer a handshake with
	block      chan struct{}       // when set, handshakes wait for it
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, microsoft.MaxWebhookBody+1))
	reply, ns, err := microsoft.Parser{}.ParseWebhook(calendar.WebhookRequest{
		Header: r.Header, Query: r.URL.Query(), Body: body, Received: time.Now(),
		Path: strings.TrimPrefix(r.URL.Path, "/webhooks/microsoft"),
	})
	switch {
	case err != nil:
		http.Error(w, "malformed", http.StatusBadRequest)
	case reply != nil:
		rc.mu.Lock()
		rc.handshakes = append(rc.handshakes, r.URL.Path)
		echo, block := rc.echo, rc.block
		rc.mu.Unlock()
		if block != nil {
			<-block
		}
		if echo != nil {
			reply.Body = echo(reply.Body)
		}
		w.Header().Set("Content-Type", reply.ContentType)
		w.WriteHeader(reply.Status)
		_, _ = io.WriteString(w, reply.Body)
	default:
		rc.mu.Lock()
		rc.got = append(rc.got, ns...)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}
}

func (rc *receiver) notifications() []calendar.Notification {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]calendar.Notification(nil), rc.got...)
}

func (rc *receiver) handshakePaths() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.handshakes...)
}

// TestSubscriptions opens, notifies, renews and deletes subscriptions on
// the fake, through the validation handshake on both addresses.
func TestSubscriptions(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	ctx := context.Background()
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	req := calendar.WatchRequest{CalendarID: "primary", Address: hook.URL + "/webhooks/microsoft", LifecycleAddress: hook.URL + "/webhooks/microsoft/lifecycle"}

	ch, err := e.src.Watch(ctx, req)
	check(t, err)
	if ch.ID == "" || len(ch.Token) != 43 || ch.ResourceID != "/me/events" {
		t.Fatalf("channel %+v", ch)
	}
	if want := t0.Add(10000 * time.Minute); !ch.Expiration.Equal(want) {
		t.Errorf("expiration %v, want %v", ch.Expiration, want)
	}
	if d := cmp.Diff([]string{"/webhooks/microsoft", "/webhooks/microsoft/lifecycle"}, rc.handshakePaths()); d != "" {
		t.Fatalf("handshakes (-want +got):\n%s", d)
	}
	subs := e.srv.Subscriptions(alice)
	if len(subs) != 1 || subs[0].ID != ch.ID || subs[0].LifecycleNotificationURL != req.LifecycleAddress {
		t.Fatalf("subscriptions %+v", subs)
	}
	stored := calendar.HashToken(ch.Token) // all the database keeps

	id1 := must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{Subject: "a", Start: t0, End: t0.Add(time.Hour)}))
	id2 := must[string](t)(e.srv.Insert(alice, graph.Primary, graph.EventSpec{Subject: "b", Start: t0, End: t0.Add(time.Hour)}))
	check(t, e.srv.Notify(alice, graph.Primary, id1, id2))
	ns := rc.notifications()
	if len(ns) != 2 {
		t.Fatalf("%d notifications, want one per item", len(ns))
	}
	for _, n := range ns {
		if n.ChannelID != ch.ID || n.State != calendar.StateChanged || !calendar.VerifyToken(n.Token, stored) || !n.Expiration.Equal(ch.Expiration) {
			t.Fatalf("notification %+v", n)
		}
	}

	e.clock.Advance(72 * time.Hour)
	renewed, err := e.src.Renew(ctx, ch)
	check(t, err)
	if want := t0.Add(72*time.Hour + 10000*time.Minute); !renewed.Expiration.Equal(want) || renewed.ID != ch.ID || renewed.Token != ch.Token {
		t.Fatalf("renewed %+v, want expiration %v", renewed, want)
	}

	for _, lc := range []struct {
		event string
		state calendar.NotificationState
	}{
		{"reauthorizationRequired", calendar.StateReauthorize},
		{"missed", calendar.StateMissed},
		{"subscriptionRemoved", calendar.StateRemoved},
	} {
		check(t, e.srv.Lifecycle(ch.ID, lc.event))
		ns := rc.notifications()
		if n := ns[len(ns)-1]; n.State != lc.state || n.ChannelID != ch.ID || !calendar.VerifyToken(n.Token, stored) {
			t.Fatalf("%s: %+v", lc.event, n)
		}
	}
	// Graph dropped it: renewing says so, and a new one is opened.
	if _, err := e.src.Renew(ctx, ch); calendar.ClassOf(err) != calendar.NotFound {
		t.Fatalf("renew removed subscription: %v", err)
	}

	t.Run("auto notify", func(t *testing.T) {
		ch2, err := e.src.Watch(ctx, req)
		check(t, err)
		e.srv.SetAutoNotify(true)
		defer e.srv.SetAutoNotify(false)
		before := len(rc.notifications())
		check(t, e.srv.Rename(alice, id1, "renamed"))
		e.srv.Flush()
		ns := rc.notifications()
		if len(ns) != before+1 || ns[len(ns)-1].ChannelID != ch2.ID {
			t.Fatalf("notifications %d → %d", before, len(ns))
		}
		check(t, e.src.StopWatch(ctx, ch2))
		if subs := e.srv.Subscriptions(alice); len(subs) != 0 {
			t.Fatalf("after stop: %+v", subs)
		}
		check(t, e.src.StopWatch(ctx, ch2)) // gone already: not an error
	})

	t.Run("other calendar", func(t *testing.T) {
		check(t, e.srv.AddCalendar(alice, "AAMkCal2="))
		ch3, err := e.src.Watch(ctx, calendar.WatchRequest{CalendarID: "AAMkCal2=", Address: req.Address})
		check(t, err)
		if ch3.ResourceID != "/me/calendars/AAMkCal2=/events" {
			t.Fatalf("resource %q", ch3.ResourceID)
		}
	})
}

// TestSubscriptionHandshakeFails: Graph refuses a subscription whose
// address echoes the wrong token or answers too late.
func TestSubscriptionHandshakeFails(t *testing.T) {
	e := newEnv(t, microsoft.Config{})
	ctx := context.Background()

	wrong := &receiver{echo: func(string) string { return "not the token" }}
	hook := httptest.NewServer(wrong)
	defer hook.Close()
	_, err := e.src.Watch(ctx, calendar.WatchRequest{CalendarID: "primary", Address: hook.URL + "/webhooks/microsoft"})
	if calendar.ClassOf(err) != calendar.Permanent {
		t.Fatalf("wrong echo: %v", err)
	}

	block := make(chan struct{})
	slow := &receiver{block: block}
	slowHook := httptest.NewServer(slow)
	defer slowHook.Close()
	defer close(block) // runs first: lets the blocked handshake finish
	e.srv.SetValidationTimeout(20 * time.Millisecond)
	_, err = e.src.Watch(ctx, calendar.WatchRequest{CalendarID: "primary", Address: slowHook.URL + "/webhooks/microsoft"})
	if calendar.ClassOf(err) != calendar.Permanent {
		t.Fatalf("slow echo: %v", err)
	}
	if subs := e.srv.Subscriptions(alice); len(subs) != 0 {
		t.Fatalf("failed handshakes left subscriptions: %+v", subs)
	}
	if n := e.srv.Calls()[graph.EndpointSubscribe]; n != 2 {
		t.Fatalf("%d creations: a failed one must not be retried", n)
	}
}

func webhook(q url.Values, body string) calendar.WebhookRequest {
	return calendar.WebhookRequest{Header: http.Header{}, Query: q, Body: []byte(body)}
}

func item(fields string) string {
	return `{"subscriptionId":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07","clientState":"secretClientValue",` +
		`"subscriptionExpirationDateTime":"2026-03-27T18:23:45.9356913Z",` + fields + `}`
}

func TestParseWebhook(t *testing.T) {
	p := microsoft.Parser{}
	token := "Validation: Testing client application reachability for subscription Request-Id: 3b3f9821-ce3f-23d9-879b-00a23f3 5f1a"
	for _, path := range []string{"", "/lifecycle"} {
		r := webhook(url.Values{"validationToken": {token}}, "")
		r.Path = path
		reply, ns, err := p.ParseWebhook(r)
		check(t, err)
		if reply == nil || reply.Status != 200 || !strings.HasPrefix(reply.ContentType, "text/plain") || reply.Body != token || ns != nil {
			t.Fatalf("handshake on %q: %+v %v", path, reply, ns)
		}
	}

	exp := time.Date(2026, 3, 27, 18, 23, 45, 935691300, time.UTC)
	n := func(state calendar.NotificationState) calendar.Notification {
		return calendar.Notification{ChannelID: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", Token: "secretClientValue", State: state, Expiration: exp}
	}
	ok := []struct {
		name string
		body string
		want []calendar.Notification
	}{
		{"one change", `{"value":[` + item(`"changeType":"updated","resource":"Users/x/Events/y","resourceData":{"id":"y"},"tenantId":"t"`) + `]}`,
			[]calendar.Notification{n(calendar.StateChanged)}},
		{"several changes", `{"value":[` + item(`"changeType":"created"`) + `,` + item(`"changeType":"deleted"`) + `,` + item(`"changeType":"updated"`) + `]}`,
			[]calendar.Notification{n(calendar.StateChanged), n(calendar.StateChanged), n(calendar.StateChanged)}},
		{"reauthorizationRequired", `{"value":[` + item(`"lifecycleEvent":"reauthorizationRequired"`) + `]}`, []calendar.Notification{n(calendar.StateReauthorize)}},
		{"subscriptionRemoved", `{"value":[` + item(`"lifecycleEvent":"subscriptionRemoved"`) + `]}`, []calendar.Notification{n(calendar.StateRemoved)}},
		{"missed", `{"value":[` + item(`"lifecycleEvent":"missed"`) + `]}`, []calendar.Notification{n(calendar.StateMissed)}},
		{"mixed", `{"value":[` + item(`"changeType":"updated"`) + `,` + item(`"lifecycleEvent":"missed"`) + `]}`,
			[]calendar.Notification{n(calendar.StateChanged), n(calendar.StateMissed)}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			reply, ns, err := p.ParseWebhook(webhook(nil, tt.body))
			check(t, err)
			if reply != nil {
				t.Fatalf("reply %+v", reply)
			}
			if d := cmp.Diff(tt.want, ns); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}

	many := make([]string, 1001)
	for i := range many {
		many[i] = item(`"changeType":"updated"`)
	}
	bad := []struct {
		name string
		req  calendar.WebhookRequest
	}{
		{"empty body", webhook(nil, "")},
		{"not json", webhook(nil, "{")},
		{"no value", webhook(nil, `{}`)},
		{"value not array", webhook(nil, `{"value":{}}`)},
		{"empty value", webhook(nil, `{"value":[]}`)},
		{"item not object", webhook(nil, `{"value":[1]}`)},
		{"no subscription id", webhook(nil, `{"value":[{"changeType":"updated"}]}`)},
		{"no change type", webhook(nil, `{"value":[`+item(`"resource":"x"`)+`]}`)},
		{"unknown change type", webhook(nil, `{"value":[`+item(`"changeType":"moved"`)+`]}`)},
		{"unknown lifecycle event", webhook(nil, `{"value":[`+item(`"lifecycleEvent":"renewed"`)+`]}`)},
		{"bad expiration", webhook(nil, `{"value":[{"subscriptionId":"s","changeType":"updated","subscriptionExpirationDateTime":"soon"}]}`)},
		{"long client state", webhook(nil, `{"value":[{"subscriptionId":"s","changeType":"updated","clientState":"`+strings.Repeat("x", 129)+`"}]}`)},
		{"control byte in id", webhook(nil, `{"value":[{"subscriptionId":"s\u0001","changeType":"updated"}]}`)},
		{"too many items", webhook(nil, `{"value":[`+strings.Join(many, ",")+`]}`)},
		{"oversized body", webhook(nil, `{"value":[`+item(`"changeType":"updated","pad":"`+strings.Repeat("x", microsoft.MaxWebhookBody)+`"`)+`]}`)},
		{"empty validation token", webhook(url.Values{"validationToken": {""}}, "")},
		{"repeated validation token", webhook(url.Values{"validationToken": {"a", "b"}}, "")},
		{"long validation token", webhook(url.Values{"validationToken": {strings.Repeat("v", 1025)}}, "")},
		{"validation token with newline", webhook(url.Values{"validationToken": {"a\r\nSet-Cookie: x"}}, "")},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			reply, ns, err := p.ParseWebhook(tt.req)
			if !errors.Is(err, calendar.ErrMalformed) || reply != nil || ns != nil {
				t.Fatalf("err %v reply %+v ns %v", err, reply, ns)
			}
		})
	}
}

func FuzzParseWebhook(f *testing.F) {
	f.Add("", `{"value":[`+item(`"changeType":"updated"`)+`]}`)
	f.Add("", `{"value":[`+item(`"lifecycleEvent":"missed"`)+`,`+item(`"changeType":"created,deleted"`)+`]}`)
	f.Add("Validation: Testing client application reachability", "")
	f.Add("", `{"value":[{"subscriptionId":"","clientState":"\u0000"}]}`)
	f.Add("\x00", `[]`)
	f.Add("", `{"value":[null]}`)
	f.Fuzz(func(t *testing.T, token, body string) {
		var q url.Values
		if token != "" {
			q = url.Values{"validationToken": {token}}
		}
		reply, ns, err := microsoft.Parser{}.ParseWebhook(webhook(q, body))
		if err != nil {
			if !errors.Is(err, calendar.ErrMalformed) || reply != nil || ns != nil {
				t.Fatalf("error %v with results %+v %v", err, reply, ns)
			}
			return
		}
		if reply != nil {
			if token == "" || reply.Body != token || reply.Status != 200 || len(ns) != 0 {
				t.Fatalf("reply %+v for token %q", reply, token)
			}
			return
		}
		if len(ns) == 0 || len(ns) > 1000 {
			t.Fatalf("%d notifications", len(ns))
		}
		for _, n := range ns {
			if n.ChannelID == "" || len(n.Token) > 128 {
				t.Fatalf("notification %+v", n)
			}
			switch n.State {
			case calendar.StateChanged, calendar.StateMissed, calendar.StateReauthorize, calendar.StateRemoved:
			default:
				t.Fatalf("state %q", n.State)
			}
		}
		_ = fmt.Sprint(ns)
	})
}
