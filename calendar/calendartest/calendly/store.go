package calendly

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is a user's role in its organization.
type Role string

// Organization roles. Listing an organization's events and subscribing to
// them needs an owner or admin.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
	RoleOwner Role = "owner"
)

// Plans. Webhook subscriptions need a paid plan.
const (
	PlanFree     = "free"
	PlanStandard = "standard"
	PlanTeams    = "teams"
)

// Org is an organization, as tests refer to it.
type Org struct{ URI, UUID string }

// User is a Calendly user, as tests refer to it.
type User struct{ URI, UUID, Email, Name, OrgURI string }

// EventType is a booking page's event type, as tests refer to it.
type EventType struct{ URI, UUID, Name string }

// Answer is an invitee's answer to a booking question.
type Answer struct{ Question, Answer string }

// InviteeSpec is the person who books.
type InviteeSpec struct {
	Email, Name string
	// Timezone is an IANA zone; default UTC.
	Timezone string
	Answers  []Answer
	// UTM holds utm_source, utm_medium, utm_campaign, utm_content,
	// utm_term (others are ignored, as Calendly drops them).
	UTM map[string]string
}

// BookingSpec is what an invitee books.
type BookingSpec struct {
	EventType EventType
	// Hosts are the event's memberships; the first is the primary host.
	// Default: the event type's owner.
	Hosts      []User
	Start, End time.Time
	Invitee    InviteeSpec
	// Guests are the extra e-mail addresses the invitee added.
	Guests        []string
	Location      *Location
	CalendarEvent *CalendarEvent
}

// Booking names what a booking created.
type Booking struct {
	EventURI, EventUUID     string
	InviteeURI, InviteeUUID string
}

type org struct {
	uuid, plan string
	created    time.Time
}

type user struct {
	uuid, org, email, name, tz string
	role                       Role
	created                    time.Time
}

type eventType struct {
	uuid, org, owner, name, kind string
	duration                     int
	created                      time.Time
}

type event struct {
	uuid, org, name, eventType, status string
	start, end                         time.Time
	location                           *Location
	hosts                              []string // user uuids
	guests                             []string
	calendarEvent                      *CalendarEvent
	created, updated                   time.Time
	invitees                           []string // invitee uuids, booking order
	cancellation                       *wireCancellation
}

type invitee struct {
	uuid, event, email, name, tz, status string
	answers                              []Answer
	utm                                  map[string]string
	rescheduled                          bool
	oldInvitee, newInvitee               string // URIs
	created, updated                     time.Time
	cancellation                         *wireCancellation
}

func (s *Server) userURI(id string) string      { return s.URL() + "users/" + id }
func (s *Server) orgURI(id string) string       { return s.URL() + "organizations/" + id }
func (s *Server) eventTypeURI(id string) string { return s.URL() + "event_types/" + id }
func (s *Server) eventURI(id string) string     { return s.URL() + "scheduled_events/" + id }
func (s *Server) subURI(id string) string       { return s.URL() + "webhook_subscriptions/" + id }
func (s *Server) membershipURI(id string) string {
	return s.URL() + "organization_memberships/" + id
}
func (s *Server) inviteeURI(ev, id string) string {
	return s.eventURI(ev) + "/invitees/" + id
}

// uuidOf returns the last path segment of a Calendly URI under prefix
// (e.g. "users/"), or "" when uri is not such a URI of this server.
func (s *Server) uuidOf(uri, prefix string) string {
	rest, ok := strings.CutPrefix(uri, s.URL()+prefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return ""
	}
	return rest
}

// AddOrganization creates an organization on plan (PlanStandard, ...).
func (s *Server) AddOrganization(plan string) Org {
	id := s.newUUID()
	s.mu.Lock()
	s.orgs[id] = &org{uuid: id, plan: plan, created: s.now()}
	s.mu.Unlock()
	return Org{URI: s.orgURI(id), UUID: id}
}

// AddUser adds a user to an organization with a role.
func (s *Server) AddUser(o Org, email, name string, role Role) User {
	id := s.newUUID()
	s.mu.Lock()
	s.users[id] = &user{uuid: id, org: o.UUID, email: email, name: name, tz: "UTC", role: role, created: s.now()}
	s.mu.Unlock()
	return User{URI: s.userURI(id), UUID: id, Email: email, Name: name, OrgURI: o.URI}
}

// SetRole changes a user's role in its organization.
func (s *Server) SetRole(u User, role Role) {
	s.mu.Lock()
	if x := s.users[u.UUID]; x != nil {
		x.role = role
	}
	s.mu.Unlock()
}

// AddEventType adds an event type owned by owner; kind is "solo" (one
// invitee per event) or "group".
func (s *Server) AddEventType(owner User, name, kind string) EventType {
	id := s.newUUID()
	s.mu.Lock()
	s.eventTypes[id] = &eventType{uuid: id, org: s.users[owner.UUID].org, owner: owner.UUID, name: name, kind: kind, duration: 30, created: s.now()}
	s.mu.Unlock()
	return EventType{URI: s.eventTypeURI(id), UUID: id, Name: name}
}

// DeleteEventType removes an event type (GET answers 404 from now on);
// its events stay.
func (s *Server) DeleteEventType(et EventType) {
	s.mu.Lock()
	delete(s.eventTypes, et.UUID)
	s.mu.Unlock()
}

// Book creates a scheduled event with one invitee and delivers
// invitee.created to the subscriptions that see it.
func (s *Server) Book(spec BookingSpec) (Booking, []Delivery) {
	s.mu.Lock()
	et := s.eventTypes[spec.EventType.UUID]
	if et == nil {
		s.mu.Unlock()
		panic(fmt.Sprintf("calendly fake: unknown event type %s", spec.EventType.UUID))
	}
	ev := s.newEventLocked(et, spec)
	inv := s.newInviteeLocked(ev, spec.Invitee, "")
	sends := s.webhookLocked("invitee.created", inv)
	s.mu.Unlock()
	return Booking{EventURI: s.eventURI(ev.uuid), EventUUID: ev.uuid, InviteeURI: s.inviteeURI(ev.uuid, inv.uuid), InviteeUUID: inv.uuid},
		s.send(sends, sendPlan{})
}

// AddInvitee books one more invitee onto an existing (group) event.
func (s *Server) AddInvitee(eventUUID string, spec InviteeSpec) (Booking, []Delivery) {
	s.mu.Lock()
	ev := s.events[eventUUID]
	if ev == nil {
		s.mu.Unlock()
		panic(fmt.Sprintf("calendly fake: unknown event %s", eventUUID))
	}
	inv := s.newInviteeLocked(ev, spec, "")
	ev.updated = s.now()
	sends := s.webhookLocked("invitee.created", inv)
	s.mu.Unlock()
	return Booking{EventURI: s.eventURI(ev.uuid), EventUUID: ev.uuid, InviteeURI: s.inviteeURI(ev.uuid, inv.uuid), InviteeUUID: inv.uuid},
		s.send(sends, sendPlan{})
}

// CancelInvitee cancels one invitee's booking, as the invitee does. An
// event left without active invitees is canceled too.
func (s *Server) CancelInvitee(inviteeURI, reason string) []Delivery {
	s.mu.Lock()
	inv := s.inviteeByURILocked(inviteeURI)
	s.cancelInviteeLocked(inv, "invitee", inv.name, reason, false, "")
	sends := s.webhookLocked("invitee.canceled", inv)
	s.mu.Unlock()
	return s.send(sends, sendPlan{})
}

// CancelEvent cancels a whole event, as its host does: every active
// invitee is canceled and gets an invitee.canceled delivery.
func (s *Server) CancelEvent(eventUUID, reason string) []Delivery {
	s.mu.Lock()
	ev := s.events[eventUUID]
	var sends []pendingSend
	host := s.users[ev.hosts[0]]
	for _, id := range ev.invitees {
		inv := s.invitees[id]
		if inv.status != "active" {
			continue
		}
		s.cancelInviteeLocked(inv, "host", host.name, reason, false, "")
		sends = append(sends, s.webhookLocked("invitee.canceled", inv)...)
	}
	s.cancelEventLocked(ev, "host", host.name, reason)
	s.mu.Unlock()
	return s.send(sends, sendPlan{})
}

// Which names one of the two deliveries of a reschedule.
type Which int

// The deliveries of a reschedule.
const (
	Neither Which = iota
	Created
	Canceled
)

// RescheduleSpec says where a booking moves and how its two deliveries
// (invitee.canceled of the old event, invitee.created of the new one)
// arrive.
type RescheduleSpec struct {
	Start, End time.Time
	// CreatedFirst delivers invitee.created before invitee.canceled.
	CreatedFirst bool
	// Duplicate delivers each of the two twice.
	Duplicate bool
	// Hold keeps one of the two back until DeliverHeld.
	Hold Which
	// Drop never delivers one of the two.
	Drop Which
	// CalendarEvent is the new event's calendar copy (Calendly makes a
	// new one for the new time).
	CalendarEvent *CalendarEvent
}

// Reschedule moves an invitee's booking as Calendly does: the old invitee
// is canceled with rescheduled true and new_invitee set (its event is
// canceled when no active invitee is left), and a new scheduled event is
// created with a new invitee whose old_invitee points back.
func (s *Server) Reschedule(inviteeURI string, spec RescheduleSpec) (Booking, []Delivery) {
	s.mu.Lock()
	old := s.inviteeByURILocked(inviteeURI)
	oldEv := s.events[old.event]
	et := s.eventTypes[oldEv.eventType]
	if et == nil {
		et = &eventType{uuid: oldEv.eventType, name: oldEv.name}
	}
	hosts := make([]User, 0, len(oldEv.hosts))
	for _, h := range oldEv.hosts {
		hosts = append(hosts, User{UUID: h})
	}
	ev := s.newEventLocked(et, BookingSpec{
		Hosts: hosts, Start: spec.Start, End: spec.End,
		Guests: oldEv.guests, Location: oldEv.location, CalendarEvent: spec.CalendarEvent,
	})
	ev.name = oldEv.name
	inv := s.newInviteeLocked(ev, InviteeSpec{Email: old.email, Name: old.name, Timezone: old.tz, Answers: old.answers, UTM: old.utm}, inviteeURI)
	s.cancelInviteeLocked(old, "invitee", old.name, "", true, s.inviteeURI(ev.uuid, inv.uuid))
	canceled := s.webhookLocked("invitee.canceled", old)
	created := s.webhookLocked("invitee.created", inv)
	s.mu.Unlock()

	first, second := canceled, created
	if spec.CreatedFirst {
		first, second = created, canceled
	}
	var order []pendingSend
	for _, group := range [][]pendingSend{first, second} {
		for _, ps := range group {
			order = append(order, ps)
			if spec.Duplicate {
				order = append(order, ps)
			}
		}
	}
	plan := sendPlan{hold: spec.Hold, drop: spec.Drop}
	return Booking{EventURI: s.eventURI(ev.uuid), EventUUID: ev.uuid, InviteeURI: s.inviteeURI(ev.uuid, inv.uuid), InviteeUUID: inv.uuid},
		s.send(order, plan)
}

func (s *Server) newEventLocked(et *eventType, spec BookingSpec) *event {
	now := s.now()
	ev := &event{
		uuid: s.newUUID(), org: et.org, name: et.name, eventType: et.uuid, status: "active",
		start: spec.Start.UTC(), end: spec.End.UTC(), location: spec.Location,
		guests: slices.Clone(spec.Guests), calendarEvent: spec.CalendarEvent,
		created: now, updated: now,
	}
	if ev.end.IsZero() {
		ev.end = ev.start.Add(time.Duration(et.duration) * time.Minute)
	}
	for _, h := range spec.Hosts {
		ev.hosts = append(ev.hosts, h.UUID)
	}
	if len(ev.hosts) == 0 {
		ev.hosts = []string{et.owner}
	}
	if ev.org == "" {
		ev.org = s.users[ev.hosts[0]].org
	}
	s.events[ev.uuid] = ev
	return ev
}

func (s *Server) newInviteeLocked(ev *event, spec InviteeSpec, oldInvitee string) *invitee {
	now := s.now()
	inv := &invitee{
		uuid: s.newUUID(), event: ev.uuid, email: spec.Email, name: spec.Name, tz: spec.Timezone,
		status: "active", answers: slices.Clone(spec.Answers), utm: spec.UTM, oldInvitee: oldInvitee,
		created: now, updated: now,
	}
	if inv.tz == "" {
		inv.tz = "UTC"
	}
	s.invitees[inv.uuid] = inv
	ev.invitees = append(ev.invitees, inv.uuid)
	return inv
}

func (s *Server) inviteeByURILocked(uri string) *invitee {
	for _, inv := range s.invitees {
		if s.inviteeURI(inv.event, inv.uuid) == uri {
			return inv
		}
	}
	panic(fmt.Sprintf("calendly fake: unknown invitee %s", uri))
}

func (s *Server) cancelInviteeLocked(inv *invitee, by, byName, reason string, rescheduled bool, newInvitee string) {
	now := s.now()
	inv.status = "canceled"
	inv.rescheduled = rescheduled
	inv.newInvitee = newInvitee
	inv.updated = now
	inv.cancellation = &wireCancellation{CanceledBy: byName, Reason: strp(reason), CancelerType: by, CreatedAt: ts(now)}
	ev := s.events[inv.event]
	ev.updated = now
	for _, id := range ev.invitees {
		if s.invitees[id].status == "active" {
			return
		}
	}
	s.cancelEventLocked(ev, by, byName, reason)
}

func (s *Server) cancelEventLocked(ev *event, by, byName, reason string) {
	if ev.status == "canceled" {
		return
	}
	now := s.now()
	ev.status = "canceled"
	ev.updated = now
	ev.cancellation = &wireCancellation{CanceledBy: byName, Reason: strp(reason), CancelerType: by, CreatedAt: ts(now)}
}

// wire forms, built under s.mu.

func (s *Server) wireUserLocked(u *user) wireUser {
	return wireUser{
		URI: s.userURI(u.uuid), Name: u.name, Slug: strings.ToLower(strings.ReplaceAll(u.name, " ", "-")),
		Email: u.email, SchedulingURL: "https://calendly.com/" + u.uuid, Timezone: u.tz,
		CreatedAt: ts(u.created), UpdatedAt: ts(u.created), CurrentOrganization: s.orgURI(u.org),
		ResourceType: "User", Locale: "en",
	}
}

func (s *Server) wireEventLocked(ev *event, withCalendarEvent bool) wireEvent {
	w := wireEvent{
		URI: s.eventURI(ev.uuid), Name: ev.name, Status: ev.status,
		StartTime: ts(ev.start), EndTime: ts(ev.end), EventType: s.eventTypeURI(ev.eventType),
		Location: ev.location, CreatedAt: ts(ev.created), UpdatedAt: ts(ev.updated),
		EventMemberships: []wireMembershipRef{}, EventGuests: []wireGuest{},
		Cancellation: ev.cancellation,
	}
	limit := 1
	if et := s.eventTypes[ev.eventType]; et != nil && et.kind == "group" {
		limit = 10
	}
	w.InviteesCounter = wireCounter{Total: len(ev.invitees), Limit: limit}
	for _, id := range ev.invitees {
		if s.invitees[id].status == "active" {
			w.InviteesCounter.Active++
		}
	}
	for _, h := range ev.hosts {
		u := s.users[h]
		w.EventMemberships = append(w.EventMemberships, wireMembershipRef{User: s.userURI(h), UserEmail: u.email, UserName: u.name})
	}
	for _, g := range ev.guests {
		w.EventGuests = append(w.EventGuests, wireGuest{Email: g, CreatedAt: ts(ev.created), UpdatedAt: ts(ev.created)})
	}
	if withCalendarEvent {
		ce := ev.calendarEvent
		w.CalendarEvent = &ce
	}
	return w
}

func (s *Server) wireInviteeLocked(inv *invitee) wireInvitee {
	w := wireInvitee{
		URI: s.inviteeURI(inv.event, inv.uuid), Email: inv.email, Name: inv.name, Status: inv.status,
		QuestionsAndAnswers: []wireQA{}, Timezone: inv.tz, Event: s.eventURI(inv.event),
		CreatedAt: ts(inv.created), UpdatedAt: ts(inv.updated),
		Rescheduled: inv.rescheduled, OldInvitee: strp(inv.oldInvitee), NewInvitee: strp(inv.newInvitee),
		CancelURL:     "https://calendly.com/cancellations/" + inv.uuid,
		RescheduleURL: "https://calendly.com/reschedulings/" + inv.uuid,
		Cancellation:  inv.cancellation,
		Tracking: wireTracking{
			UTMCampaign: strp(inv.utm["utm_campaign"]), UTMSource: strp(inv.utm["utm_source"]),
			UTMMedium: strp(inv.utm["utm_medium"]), UTMContent: strp(inv.utm["utm_content"]),
			UTMTerm: strp(inv.utm["utm_term"]),
		},
	}
	for i, a := range inv.answers {
		w.QuestionsAndAnswers = append(w.QuestionsAndAnswers, wireQA{Question: a.Question, Answer: a.Answer, Position: i})
	}
	return w
}
