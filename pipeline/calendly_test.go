package pipeline_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	cfake "github.com/rapportsync/rapport/calendar/calendartest/calendly"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

// bookings is a Calendly account on the fake: rep's "Demo" event type,
// connected with a personal access token.
type bookings struct {
	host cfake.User
	demo cfake.EventType
	conn pipeline.Connection
}

func (h *harness) connectCalendly() bookings {
	h.t.Helper()
	org := h.cly.AddOrganization(cfake.PlanTeams)
	b := bookings{host: h.cly.AddUser(org, rep, "Rita Rep", cfake.RoleOwner)}
	b.demo = h.cly.AddEventType(b.host, "Demo", "solo")
	pat := h.cly.AddPAT(b.host)
	var err error
	b.conn, err = h.p.AddConnection(h.ctx, h.ws, pipeline.ConnectionInput{Provider: "calendly", AccessToken: pat, Scope: "user"})
	if err != nil {
		h.t.Fatalf("connect Calendly: %v", err)
	}
	return b
}

func (b bookings) book(h *harness, start time.Time, invitee string, answers ...cfake.Answer) cfake.Booking {
	h.t.Helper()
	bk, ds := h.cly.Book(cfake.BookingSpec{EventType: b.demo, Hosts: []cfake.User{b.host}, Start: start, End: start.Add(30 * time.Minute),
		Invitee: cfake.InviteeSpec{Email: invitee, Name: "Buyer", Answers: answers}})
	for _, d := range ds {
		if d.Status != http.StatusOK {
			h.t.Fatalf("delivery of %s answered %d (%v)", d.Event, d.Status, d.Err)
		}
	}
	return bk
}

// watchCancellations records every CRM write that sets the outcome to
// CANCELED.
func watchCancellations(h *harness) func() int {
	var mu sync.Mutex
	n := 0
	h.hub.FailInputs(func(endpoint string, _ int, props map[string]string) bool {
		if props[crm.PropOutcome] == crm.OutcomeCanceled {
			mu.Lock()
			n++
			mu.Unlock()
		}
		return false
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func seedAcme(h *harness) {
	acme := h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	h.hub.AddContact("buyer@acme.example", "Bea Buyer", acme)
}

// TestCalendlyBookingLogged: a booking becomes one HubSpot meeting with the
// invitee's answers in its body, reached through Calendly's signed webhook.
func TestCalendlyBookingLogged(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	seedAcme(h)
	h.startWorker()
	h.connectHubSpot()
	b := h.connectCalendly()
	h.settle()
	start := time.Now().UTC().Truncate(time.Hour).Add(50 * time.Hour)
	b.book(h, start, "buyer@acme.example", cfake.Answer{Question: "What would you like to see?", Answer: "Pricing"})
	h.settle()
	ms := h.byTitle("Demo")
	if len(ms) != 1 {
		t.Fatalf("%d meetings titled Demo, want one", len(ms))
	}
	m := ms[0]
	if m.Properties[crm.PropStart] != iso(start) || !strings.Contains(m.Properties[crm.PropBody], "What would you like to see?: Pricing") {
		t.Errorf("meeting %v", m.Properties)
	}
	if len(m.CompanyIDs) != 1 || len(m.ContactIDs) != 1 {
		t.Errorf("associations %v %v", m.CompanyIDs, m.ContactIDs)
	}
}

// TestCalendlyReschedule: a reschedule — the old booking cancelled and the
// new one created, in either order, duplicated — moves the one meeting;
// it is never cancelled and never doubled. A plain cancellation cancels.
func TestCalendlyReschedule(t *testing.T) {
	for _, createdFirst := range []bool{false, true} {
		name := "canceled first"
		if createdFirst {
			name = "created first"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			seedAcme(h)
			h.startWorker()
			h.connectHubSpot()
			b := h.connectCalendly()
			start := time.Now().UTC().Truncate(time.Hour).Add(50 * time.Hour)
			bk := b.book(h, start, "buyer@acme.example")
			h.settle()
			m := h.one("Demo")
			cancels := watchCancellations(h)
			later := start.Add(24 * time.Hour)
			moved, _ := h.cly.Reschedule(bk.InviteeURI, cfake.RescheduleSpec{Start: later, End: later.Add(30 * time.Minute), CreatedFirst: createdFirst, Duplicate: true})
			h.settle()
			ms := h.byTitle("Demo")
			if len(ms) != 1 || ms[0].ID != m.ID {
				t.Fatalf("after the reschedule HubSpot holds %d Demo meetings (%v), want the one", len(ms), ms)
			}
			if ms[0].Properties[crm.PropStart] != iso(later) || ms[0].Properties[crm.PropOutcome] == crm.OutcomeCanceled {
				t.Errorf("meeting after the reschedule %v", ms[0].Properties)
			}
			if n := cancels(); n != 0 {
				t.Errorf("%d writes cancelled the meeting during the reschedule", n)
			}
			h.cly.CancelInvitee(moved.InviteeURI, "no longer needed")
			h.settle()
			h.eventually("cancelled", func() bool {
				got, _ := h.hub.Meeting(m.ID)
				return got.Properties[crm.PropOutcome] == crm.OutcomeCanceled
			})
		})
	}
}

// TestCalendlyDroppedDeliveryRecovered: a delivery Calendly never made is
// recovered by the reconciliation, which lists the bookings again.
func TestCalendlyDroppedDeliveryRecovered(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	seedAcme(h)
	h.startWorker()
	h.connectHubSpot()
	b := h.connectCalendly()
	h.settle()
	start := time.Now().UTC().Truncate(time.Hour).Add(50 * time.Hour)
	bk := b.book(h, start, "buyer@acme.example")
	h.settle()
	later := start.Add(48 * time.Hour)
	h.cly.Reschedule(bk.InviteeURI, cfake.RescheduleSpec{Start: later, End: later.Add(30 * time.Minute), Drop: cfake.Created})
	h.settle()
	rep, err := h.p.RunReconcile(h.ctx, pipeline.ReconcileRequest{WorkspaceID: h.ws})
	if err != nil || rep.Status != "done" {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	h.settle()
	ms := h.byTitle("Demo")
	if len(ms) != 1 || ms[0].Properties[crm.PropStart] != iso(later) || ms[0].Properties[crm.PropOutcome] == crm.OutcomeCanceled {
		t.Fatalf("after the dropped delivery and a reconciliation: %d meetings %v", len(ms), ms)
	}
}

// TestCalendlyForgedDeliveries: unsigned, forged, stale deliveries and
// ones for an unknown channel are refused, and queue nothing.
func TestCalendlyForgedDeliveries(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	seedAcme(h)
	h.startWorker()
	h.connectHubSpot()
	b := h.connectCalendly()
	h.settle()
	queued := func() int {
		n, _ := h.queueSize(pipeline.QueueSync)
		return n
	}
	for _, mode := range []cfake.SigningMode{cfake.SignNone, cfake.SignWrongKey, cfake.SignStale, cfake.SignFuture, cfake.SignTamperedBody} {
		h.cly.SetSigning(mode)
		start := time.Now().UTC().Truncate(time.Hour).Add(60 * time.Hour)
		_, ds := h.cly.Book(cfake.BookingSpec{EventType: b.demo, Hosts: []cfake.User{b.host}, Start: start, End: start.Add(30 * time.Minute),
			Invitee: cfake.InviteeSpec{Email: "buyer@acme.example", Name: "Buyer"}})
		for _, d := range ds {
			if d.Status != http.StatusUnauthorized && d.Status != http.StatusForbidden {
				t.Errorf("signing mode %v: delivery answered %d, want 401 or 403", mode, d.Status)
			}
		}
		if n := queued(); n != 0 {
			t.Errorf("signing mode %v: %d syncs queued", mode, n)
		}
	}
	h.cly.SetSigning(cfake.SignValid)
	// A delivery addressed to a calendar that has no channel.
	body, _ := json.Marshal(map[string]any{"event": "invitee.created", "payload": map[string]any{}})
	resp, err := http.Post(h.web.URL+"/webhooks/calendly/"+strings.Repeat("0", 8)+"-0000-0000-0000-000000000000", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown channel: %d", resp.StatusCode)
	}
	if n := len(h.byTitle("Demo")); n != 0 {
		t.Errorf("%d meetings from refused deliveries", n)
	}
}

// TestBookingAndCalendarCopyAreOneMeeting: a booking and the event it put
// on the host's Google calendar are one HubSpot meeting, whichever arrives
// first.
func TestBookingAndCalendarCopyAreOneMeeting(t *testing.T) {
	for _, bookingFirst := range []bool{true, false} {
		name := "calendar first"
		if bookingFirst {
			name = "booking first"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			seedAcme(h)
			h.addCalendar(rep)
			h.startWorker()
			h.connectHubSpot()
			start := time.Now().UTC().Truncate(time.Hour).Add(50 * time.Hour)
			insertCopy := func() string {
				ev, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Demo with Buyer", Start: start, End: start.Add(30 * time.Minute),
					Attendees: []calendartest.Attendee{att(rep), att("buyer@acme.example")}})
				if err != nil {
					t.Fatal(err)
				}
				return ev.ID
			}
			var gID string
			if !bookingFirst {
				gID = insertCopy()
				h.connectGoogle(rep, "tok-rep")
				h.settle()
			}
			b := h.connectCalendly()
			// Calendar first, the booking names the event it put on the
			// host's calendar; booking first, it is known by its start and
			// attendees only.
			var calEvent *cfake.CalendarEvent
			if !bookingFirst {
				calEvent = &cfake.CalendarEvent{Kind: "google", ExternalID: gID}
			}
			_, ds := h.cly.Book(cfake.BookingSpec{EventType: b.demo, Hosts: []cfake.User{b.host}, Start: start, End: start.Add(30 * time.Minute),
				Invitee:       cfake.InviteeSpec{Email: "buyer@acme.example", Name: "Buyer", Answers: []cfake.Answer{{Question: "Team size", Answer: "40"}}},
				CalendarEvent: calEvent})
			for _, d := range ds {
				if d.Status != http.StatusOK {
					t.Fatalf("delivery answered %d", d.Status)
				}
			}
			h.settle()
			if bookingFirst {
				insertCopy()
				h.connectGoogle(rep, "tok-rep")
				h.settle()
			}
			total := len(h.hub.Meetings())
			if total != 1 {
				t.Fatalf("HubSpot holds %d meetings for one booked meeting, want one: %v", total, h.hub.Meetings())
			}
		})
	}
}

// TestCalendlyFreeMailBookingSkipped: a booking by a free-mail invitee is
// skipped by the default rules, and the explanation says why.
func TestCalendlyFreeMailBookingSkipped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	seedAcme(h)
	h.startWorker()
	h.connectHubSpot()
	b := h.connectCalendly()
	h.settle()
	b.book(h, time.Now().UTC().Truncate(time.Hour).Add(50*time.Hour), "someone@gmail.com")
	h.settle()
	if n := len(h.hub.Meetings()); n != 0 {
		t.Fatalf("%d meetings logged for a free-mail booking", n)
	}
	entries, _, err := h.p.Meetings(h.ctx, h.ws, "", pipeline.Page{})
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger %v %v", entries, err)
	}
	d, err := h.p.Meeting(h.ctx, h.ws, entries[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	var trace struct {
		Attendees []struct {
			Domain   string `json:"domain"`
			FreeMail bool   `json:"free_mail"`
		} `json:"attendees"`
	}
	json.Unmarshal(d.Trace, &trace)
	free := false
	for _, a := range trace.Attendees {
		free = free || (a.Domain == "gmail.com" && a.FreeMail)
	}
	if !free || strings.Contains(string(d.Trace), "someone@") {
		t.Errorf("trace %s: want gmail.com classed free mail and no address", d.Trace)
	}
}
