package pipeline_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/calendar/calendartest/graph"
	"github.com/rapportsync/rapport/calendar/microsoft"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline"
)

const msUser = "ms@northwind.test"

// addMailbox adds a Microsoft 365 mailbox to the fake Graph and returns
// its access token.
func (h *harness) addMailbox(address string) string {
	h.t.Helper()
	tok, err := h.graph.AddMailbox(address, "W. Europe Standard Time")
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// connectMicrosoft imports a Microsoft 365 connection of a mailbox's
// primary calendar.
func (h *harness) connectMicrosoft(address, token string) pipeline.Connection {
	h.t.Helper()
	c, err := h.p.AddConnection(h.ctx, h.ws, pipeline.ConnectionInput{Provider: "microsoft", AccountEmail: address,
		AccessToken: token, RefreshToken: "r-" + token, ExpiresAt: time.Now().Add(24 * time.Hour), CalendarIDs: []string{"primary"}})
	if err != nil {
		h.t.Fatalf("connect Microsoft %s: %v", address, err)
	}
	return c
}

func msAtt(address string) graph.Attendee {
	return graph.Attendee{Person: graph.Person{Address: address}, Type: "required", Response: "accepted"}
}

// linkedOnGraph reports whether an event on the fake Graph carries the
// CRM id written back.
func (h *harness) linkedOnGraph(address, eventID, crmID string) bool {
	props, err := h.graph.Props(address, eventID)
	return err == nil && props[microsoft.ExtPropMeetingID] == crmID && props[microsoft.ExtPropKey] != ""
}

// TestMicrosoftMeetingLifecycle: a Microsoft 365 calendar's customer
// meeting is logged once with its ids written back, and follows the live
// changes (move, rename, attendee added, cancel) through Graph's
// notifications; internal meetings are not logged.
func TestMicrosoftMeetingLifecycle(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	acme := h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	h.hub.AddContact("cfo@acme.example", "Ada CFO", acme)
	tok := h.addMailbox(msUser)
	base := time.Now().UTC().Truncate(time.Hour).Add(48 * time.Hour)
	id, err := h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme MS renewal", Start: base, End: base.Add(time.Hour),
		Attendees: []graph.Attendee{msAtt("cfo@acme.example")}, OnlineMeetingURL: "https://teams.microsoft.com/l/meetup-join/abc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Team sync", Start: base.Add(3 * time.Hour), End: base.Add(4 * time.Hour),
		Attendees: []graph.Attendee{msAtt("ae@northwind.test")}}); err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	h.connectHubSpot()
	h.connectMicrosoft(msUser, tok)
	h.settle()
	m := h.one("Acme MS renewal")
	if n := len(h.hub.Meetings()); n != 1 {
		t.Fatalf("HubSpot holds %d meetings, want 1 (the internal one is skipped)", n)
	}
	if m.Properties[crm.PropExternalURL] != "https://teams.microsoft.com/l/meetup-join/abc" || len(m.CompanyIDs) != 1 {
		t.Errorf("meeting %+v", m)
	}
	h.eventually("ids written back to the Graph event", func() bool { return h.linkedOnGraph(msUser, id, m.ID) })
	if len(h.graph.Subscriptions(msUser)) != 1 {
		t.Fatalf("subscriptions %v, want one", h.graph.Subscriptions(msUser))
	}

	h.graph.SetAutoNotify(true)
	moved := base.Add(26 * time.Hour)
	if err := h.graph.Move(msUser, id, moved, moved.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.eventually("moved in HubSpot", func() bool {
		got, _ := h.hub.Meeting(m.ID)
		return got.Properties[crm.PropStart] == iso(moved)
	})
	if err := h.graph.Rename(msUser, id, "Acme MS renewal (final)"); err != nil {
		t.Fatal(err)
	}
	h.eventually("renamed in HubSpot", func() bool {
		got, _ := h.hub.Meeting(m.ID)
		return got.Properties[crm.PropTitle] == "Acme MS renewal (final)"
	})
	if err := h.graph.Cancel(msUser, id); err != nil {
		t.Fatal(err)
	}
	h.eventually("cancelled in HubSpot", func() bool {
		got, _ := h.hub.Meeting(m.ID)
		return got.Properties[crm.PropOutcome] == crm.OutcomeCanceled
	})
	h.settle()
	if n := len(h.hub.Meetings()); n != 1 {
		t.Errorf("HubSpot holds %d meetings after the changes, want the one", n)
	}
}

// TestMeetingAcrossGoogleAndMicrosoft: one invitation with a copy on a
// Google calendar and one on a Microsoft 365 calendar is one HubSpot
// meeting, whichever side organised it; both copies carry its id.
func TestMeetingAcrossGoogleAndMicrosoft(t *testing.T) {
	for _, organizer := range []string{"google", "microsoft"} {
		t.Run("organised on "+organizer, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			acme := h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
			h.hub.AddContact("cfo@acme.example", "Ada CFO", acme)
			h.addCalendar(rep)
			tok := h.addMailbox(msUser)
			start := time.Now().UTC().Truncate(time.Hour).Add(72 * time.Hour)
			var gID, msID string
			switch organizer {
			case "google":
				ev, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Acme cross-provider", Start: start, End: start.Add(time.Hour),
					Attendees: []calendartest.Attendee{att(rep), att(msUser), att("cfo@acme.example")}})
				if err != nil {
					t.Fatal(err)
				}
				gID = ev.ID
				// The invitation reaches Exchange keeping its UID.
				msID, err = h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme cross-provider", Start: start, End: start.Add(time.Hour),
					ExternalUID: ev.ICalUID, Organizer: &graph.Person{Address: rep},
					Attendees: []graph.Attendee{msAtt(rep), msAtt(msUser), msAtt("cfo@acme.example")}})
				if err != nil {
					t.Fatal(err)
				}
			case "microsoft":
				var err error
				msID, err = h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme cross-provider", Start: start, End: start.Add(time.Hour),
					Attendees: []graph.Attendee{msAtt(rep), msAtt("cfo@acme.example")}})
				if err != nil {
					t.Fatal(err)
				}
				// Exchange sends the invitation to Google with its own UID:
				// what the adapter reads from Graph.
				uid := graphUID(t, h, tok, msID)
				ev, err := h.google.Insert(rep, calendartest.EventSpec{Summary: "Acme cross-provider", Start: start, End: start.Add(time.Hour), ICalUID: uid,
					Organizer: &calendartest.Person{Email: msUser}, Attendees: []calendartest.Attendee{att(msUser), att(rep), att("cfo@acme.example")}})
				if err != nil {
					t.Fatal(err)
				}
				gID = ev.ID
			}
			h.startWorker()
			h.connectHubSpot()
			h.connectGoogle(rep, "tok-rep")
			h.connectMicrosoft(msUser, tok)
			h.settle()
			m := h.one("Acme cross-provider")
			if n := len(h.hub.Meetings()); n != 1 {
				t.Fatalf("HubSpot holds %d meetings, want one", n)
			}
			h.eventually("both copies carry the id", func() bool {
				g, err := h.google.Get(rep, gID)
				return err == nil && g.ExtendedProperties != nil && g.ExtendedProperties.Private[calendar.PropMeetingID] == m.ID &&
					h.linkedOnGraph(msUser, msID, m.ID)
			})
		})
	}
}

// graphUID reads an event's iCalendar UID as the Microsoft adapter reports
// it: what Google knows the invitation by.
func graphUID(t *testing.T, h *harness, token, eventID string) string {
	t.Helper()
	src, err := microsoft.New(microsoft.Config{BaseURL: h.graph.URL()}, calendar.Conn{ID: "probe", Account: msUser, Tokens: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	page, err := src.List(h.ctx, calendar.ListRequest{CalendarID: "primary", TimeMin: now.Add(-24 * time.Hour), TimeMax: now.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.Events {
		if ev.ID == eventID {
			return ev.ICalUID
		}
	}
	t.Fatalf("event %s not listed", eventID)
	return ""
}

// TestMicrosoftSubscriptionLifecycle: Graph's lifecycle notifications renew
// or recreate the subscription and sync; a notification with a wrong
// clientState, a malformed one and one for an unknown subscription queue
// nothing.
func TestMicrosoftSubscriptionLifecycle(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tok := h.addMailbox(msUser)
	h.startWorker()
	h.connectMicrosoft(msUser, tok)
	h.settle()
	subs := h.graph.Subscriptions(msUser)
	if len(subs) != 1 {
		t.Fatalf("subscriptions %v", subs)
	}
	first := subs[0]
	var stored time.Time
	h.pool.QueryRow(h.ctx, `SELECT channel_expires_at FROM calendars WHERE workspace_id = $1`, h.ws).Scan(&stored)
	if !stored.Equal(first.Expiration) {
		t.Errorf("stored expiry %v, Graph's %v", stored, first.Expiration)
	}

	// Forged and broken notifications: nothing queued.
	dirty := func() int64 {
		var n int64
		h.pool.QueryRow(h.ctx, `SELECT dirty FROM calendars WHERE workspace_id = $1`, h.ws).Scan(&n)
		return n
	}
	before := dirty()
	post := func(path string, body any) int {
		b, _ := json.Marshal(body)
		resp, err := http.Post(h.web.URL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	item := func(sub, state string) map[string]any {
		return map[string]any{"value": []any{map[string]any{"subscriptionId": sub, "clientState": state, "changeType": "updated",
			"resource": "Users/x/Events/y", "resourceData": map[string]any{"id": "y"}}}}
	}
	if code := post("/webhooks/microsoft", item(first.ID, "not-the-client-state")); code != http.StatusForbidden {
		t.Errorf("wrong clientState: %d, want 403", code)
	}
	if code := post("/webhooks/microsoft", item("no-such-subscription", "x")); code != http.StatusNotFound {
		t.Errorf("unknown subscription: %d, want 404", code)
	}
	if code := post("/webhooks/microsoft", "not an object"); code != http.StatusBadRequest {
		t.Errorf("malformed: %d, want 400", code)
	}
	if got := dirty(); got != before {
		t.Errorf("refused notifications moved the dirty counter %d → %d", before, got)
	}

	// reauthorizationRequired renews the subscription in place.
	if err := h.graph.Lifecycle(first.ID, "reauthorizationRequired"); err != nil {
		t.Fatal(err)
	}
	h.eventually("subscription renewed", func() bool {
		var at time.Time
		h.pool.QueryRow(h.ctx, `SELECT channel_expires_at FROM calendars WHERE workspace_id = $1`, h.ws).Scan(&at)
		s := h.graph.Subscriptions(msUser)
		return len(s) == 1 && s[0].ID == first.ID && at.Equal(s[0].Expiration) && h.graph.Calls()[graph.EndpointRenew] > 0
	})
	// subscriptionRemoved: a new subscription, and a sync.
	synced := dirty()
	if err := h.graph.Lifecycle(first.ID, "subscriptionRemoved"); err != nil {
		t.Fatal(err)
	}
	h.eventually("subscription recreated", func() bool {
		s := h.graph.Subscriptions(msUser)
		return len(s) == 1 && s[0].ID != first.ID
	})
	h.eventually("synced after the removal", func() bool { return dirty() > synced })
	// missed: a sync.
	synced = dirty()
	if err := h.graph.Lifecycle(h.graph.Subscriptions(msUser)[0].ID, "missed"); err != nil {
		t.Fatal(err)
	}
	h.eventually("synced after missed notifications", func() bool { return dirty() > synced })
}

// TestMicrosoftDeltaExpiredAndThrottled: an expired delta token (410)
// relists in full, a throttling storm (429 with Retry-After) is waited
// out, and every meeting is still written once.
func TestMicrosoftDeltaExpiredAndThrottled(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	tok := h.addMailbox(msUser)
	base := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	for i := range 5 {
		s := base.Add(time.Duration(i) * 24 * time.Hour)
		if _, err := h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme call", Start: s, End: s.Add(time.Hour),
			Attendees: []graph.Attendee{msAtt("buyer@acme.example")}}); err != nil {
			t.Fatal(err)
		}
	}
	h.graph.Throttle(4, time.Second)
	h.startWorker()
	h.connectHubSpot()
	h.connectMicrosoft(msUser, tok)
	h.settle()
	if n := len(h.byTitle("Acme call")); n != 5 {
		t.Fatalf("%d meetings after a throttled backfill, want 5", n)
	}
	if err := h.graph.ExpireDelta(msUser); err != nil {
		t.Fatal(err)
	}
	late := base.Add(10 * 24 * time.Hour)
	if _, err := h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme late call", Start: late, End: late.Add(time.Hour),
		Attendees: []graph.Attendee{msAtt("buyer@acme.example")}}); err != nil {
		t.Fatal(err)
	}
	cal := h.calendarRowOf(msUser)
	if err := h.p.RequestSync(h.ctx, h.ws, cal); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.eventually("the late call logged after the full relisting", func() bool { return len(h.byTitle("Acme late call")) == 1 })
	if n := len(h.byTitle("Acme call")); n != 5 {
		t.Errorf("%d meetings after relisting, want the same 5", n)
	}
}

// TestMicrosoftRevokedToken: a token Graph refuses parks the connection
// (needs re-authorisation); importing it again resumes it.
func TestMicrosoftRevokedToken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	tok := h.addMailbox(msUser)
	h.startWorker()
	h.connectHubSpot()
	c := h.connectMicrosoft(msUser, tok)
	h.settle()
	h.graph.Revoke(tok)
	start := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Hour)
	if _, err := h.graph.Insert(msUser, graph.Primary, graph.EventSpec{Subject: "Acme after revoke", Start: start, End: start.Add(time.Hour),
		Attendees: []graph.Attendee{msAtt("buyer@acme.example")}}); err != nil {
		t.Fatal(err)
	}
	if err := h.p.RequestSync(h.ctx, h.ws, h.calendarRowOf(msUser)); err != nil {
		t.Fatal(err)
	}
	h.eventually("connection needs re-authorisation", func() bool {
		var st string
		h.pool.QueryRow(h.ctx, `SELECT status FROM connections WHERE id = $1`, c.ID).Scan(&st)
		return st == "needs_reauth"
	})
	fresh, err := h.graph.AccessToken(msUser) // as a re-authorisation gives
	if err != nil {
		t.Fatal(err)
	}
	h.connectMicrosoft(msUser, fresh)
	h.settle()
	h.eventually("logged after re-authorisation", func() bool { return len(h.byTitle("Acme after revoke")) == 1 })
}

// calendarRowOf returns the row id of an account's calendar.
func (h *harness) calendarRowOf(account string) string {
	h.t.Helper()
	var id string
	if err := h.pool.QueryRow(h.ctx, `SELECT c.id FROM calendars c JOIN connections k ON k.id = c.connection_id
		WHERE c.workspace_id = $1 AND k.account = $2 LIMIT 1`, h.ws, account).Scan(&id); err != nil {
		h.t.Fatalf("calendar of %s: %v", account, err)
	}
	return id
}
