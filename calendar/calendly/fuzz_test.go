package calendly_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	fake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/calendar/calendly"
)

// FuzzParseWebhook feeds arbitrary paths and bodies to ParseWebhook: it
// must never panic, must fail only with ErrMalformed, and what it accepts
// must be bounded: one notification naming the path's channel and at most
// three scheduled event URIs. Seeds are in testdata/fuzz/FuzzParseWebhook.
func FuzzParseWebhook(f *testing.F) {
	ev := "https://api.calendly.com/scheduled_events/00000000-0000-4000-8000-000000000001"
	f.Add("/ch-1", []byte(`{"event":"invitee.created","created_at":"2026-03-20T09:00:00.000000Z","payload":{"event":"`+ev+`","old_invitee":null}}`))
	f.Add("/ch-1", []byte(`{"event":"invitee.canceled","payload":{"event":"`+ev+`","rescheduled":true,"new_invitee":"`+ev+`2/invitees/I2"}}`))
	f.Add("/", []byte(`{}`))
	f.Add("/x", []byte(`{"event":"invitee.created","payload":{"scheduled_event":{"uri":"`+ev+`"}}}`))
	f.Add("/x", []byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		reply, ns, err := calendly.Parser{}.ParseWebhook(calendar.WebhookRequest{Path: path, Body: body})
		if reply != nil {
			t.Fatal("reply")
		}
		if err != nil {
			if !errors.Is(err, calendar.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if ns != nil {
				t.Fatal("notifications with an error")
			}
			return
		}
		if len(ns) > 1 {
			t.Fatalf("%d notifications", len(ns))
		}
		for _, n := range ns {
			if "/"+n.ChannelID != path || n.State != calendar.StateChanged {
				t.Fatalf("notification %+v from path %q", n, path)
			}
			if len(n.EventIDs) == 0 || len(n.EventIDs) > 3 {
				t.Fatalf("%d event ids", len(n.EventIDs))
			}
			for _, id := range n.EventIDs {
				if len(id) > 512 || !strings.Contains(id, "/scheduled_events/") {
					t.Fatalf("event id %q", id)
				}
			}
		}
	})
}

// FuzzVerifySignature feeds arbitrary signature headers: it must never
// panic, and must accept only what the key signed.
func FuzzVerifySignature(f *testing.F) {
	key := []byte("fuzz-key")
	now := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	body := []byte(`{"event":"invitee.created"}`)
	good := fake.Sign(key, now, body)
	f.Add(good, body)
	f.Add("t=1,v1=00", body)
	f.Add("t=,v1=", []byte{})
	f.Add(good+","+good, body)
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		h := http.Header{}
		h.Set(calendly.SignatureHeader, header)
		err := calendly.Parser{}.VerifySignature(calendar.WebhookRequest{Header: h, Body: b, Received: now}, key)
		if err != nil {
			if !errors.Is(err, calendly.ErrSignature) {
				t.Fatalf("error %v does not wrap ErrSignature", err)
			}
			return
		}
		if string(b) != string(body) {
			t.Fatalf("accepted a body the key did not sign: %q with %q", b, header)
		}
	})
}
