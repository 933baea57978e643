package calendly

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rapportsync/rapport/calendar"
)

const (
	// maxRescheduleDepth bounds how many reschedules root follows back.
	maxRescheduleDepth = 16
	// eventTypeTTL is how long an event type's name is cached.
	eventTypeTTL = time.Hour
	// maxCacheEntries bounds each cache; a full cache is emptied.
	maxCacheEntries = 10000
)

// ICalUIDPrefix starts every Calendly booking's ICalUID.
const ICalUIDPrefix = "calendly:"

// cache holds what does not change, or rarely: event types' names and
// kinds, and the root of each scheduled event's reschedule chain. The
// Provider shares one between its Sources.
type cache struct {
	clock func() time.Time

	mu    sync.Mutex
	types map[string]eventTypeInfo // by event type uuid
	roots map[string]string        // scheduled event uuid → root uuid
}

type eventTypeInfo struct {
	name, kind string
	known      bool // false when Calendly has no such event type (any more)
	at         time.Time
}

func newCache(clock func() time.Time) *cache {
	return &cache{clock: clock, types: make(map[string]eventTypeInfo), roots: make(map[string]string)}
}

func (c *cache) eventType(id string) (eventTypeInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.types[id]
	if !ok || c.clock().Sub(t.at) > eventTypeTTL {
		return eventTypeInfo{}, false
	}
	return t, true
}

func (c *cache) setEventType(id string, t eventTypeInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.types) >= maxCacheEntries {
		clear(c.types)
	}
	t.at = c.clock()
	c.types[id] = t
}

func (c *cache) root(event string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.roots[event]
	return r, ok
}

func (c *cache) setRoots(events []string, root string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.roots)+len(events) > maxCacheEntries {
		clear(c.roots)
	}
	for _, e := range events {
		c.roots[e] = root
	}
}

// eventType returns an event type's name and kind. One Calendly no longer
// has (a deleted event type, a one-off meeting's) or the token may not
// read (a colleague's) is returned as unknown, not as an error.
func (s *Source) eventType(ctx context.Context, uri string) (eventTypeInfo, error) {
	id := lastSegment(uri, "event_types")
	if id == "" {
		return eventTypeInfo{}, nil
	}
	if t, ok := s.cache.eventType(id); ok {
		return t, nil
	}
	var res resource[eventTypeResource]
	err := s.c.do(ctx, opGetEventType, http.MethodGet, "event_types/"+id, nil, nil, &res)
	switch {
	case calendar.ClassOf(err) == calendar.NotFound:
		s.cache.setEventType(id, eventTypeInfo{})
		return eventTypeInfo{}, nil
	case reasonOf(err) == reasonRole:
		// Another connection may read it: not cached.
		return eventTypeInfo{}, nil
	case err != nil:
		return eventTypeInfo{}, err
	}
	t := eventTypeInfo{name: res.Resource.Name, kind: res.Resource.Kind, known: true}
	s.cache.setEventType(id, t)
	return t, nil
}

// movable reports whether an event's booking moves as a whole when its
// invitee reschedules: a "solo" event type (one invitee per event:
// one-on-one, round robin, collective), or, when the event type is
// unknown, an event with exactly one invitee. A group event is a slot
// invitees join and leave; it never moves.
func movable(et eventTypeInfo, invs []invitee) bool {
	return len(invs) == 1 && et.kind != "group"
}

// root returns the uuid of the first scheduled event of a booking: a
// movable event whose invitee came from a reschedule (old_invitee) has its
// predecessor's root. It follows at most maxRescheduleDepth reschedules
// back, one request each (GET the old invitee), and caches the answer for
// every event on the way: old_invitee links never change.
func (s *Source) root(ctx context.Context, event string, et eventTypeInfo, invs []invitee) (string, error) {
	if r, ok := s.cache.root(event); ok {
		return r, nil
	}
	if !movable(et, invs) {
		return event, nil
	}
	chain := []string{event}
	cur, link := event, deref(invs[0].OldInvitee)
	for depth := 0; link != "" && depth < maxRescheduleDepth; depth++ {
		oldEvent, oldInv, ok := inviteeRef(link)
		if !ok || oldEvent == cur {
			break
		}
		if r, ok := s.cache.root(oldEvent); ok {
			cur = r
			break
		}
		var res resource[invitee]
		err := s.c.do(ctx, opGetInvitee, http.MethodGet, "scheduled_events/"+oldEvent+"/invitees/"+oldInv, nil, nil, &res)
		if calendar.ClassOf(err) == calendar.NotFound {
			// The earlier booking's data is gone: it is the root we can see.
			cur = oldEvent
			chain = append(chain, oldEvent)
			break
		}
		if err != nil {
			return "", err
		}
		cur = oldEvent
		chain = append(chain, oldEvent)
		link = deref(res.Resource.OldInvitee)
	}
	s.cache.setRoots(chain, cur)
	return cur, nil
}

// normalize turns a scheduled event and its invitees into a
// calendar.Event (see the package documentation for the rules).
func normalize(ev scheduledEvent, invs []invitee, et eventTypeInfo, root, ownerURI string) (calendar.Event, error) {
	id := eventUUID(ev.URI)
	start, err := parseTime(ev.StartTime)
	if err != nil {
		return calendar.Event{}, fmt.Errorf("event %s: start_time: %w", id, err)
	}
	end, err := parseTime(ev.EndTime)
	if err != nil {
		return calendar.Event{}, fmt.Errorf("event %s: end_time: %w", id, err)
	}
	if end.Before(start) {
		return calendar.Event{}, fmt.Errorf("event %s ends before it starts", id)
	}
	e := calendar.Event{
		ID:         id,
		ICalUID:    ICalUIDPrefix + root,
		Status:     calendar.StatusConfirmed,
		Title:      ev.Name,
		Start:      start,
		End:        end,
		Visibility: "default",
		EventType:  "default",
		Source:     ProviderName,
		ETag:       etag(ev, invs),
	}
	if ev.UpdatedAt != "" {
		if e.Updated, err = parseTime(ev.UpdatedAt); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: updated_at: %w", id, err)
		}
	}

	var active []invitee
	for _, inv := range invs {
		if inv.Status == "active" {
			active = append(active, inv)
		}
	}
	// The booking is gone when the event is canceled, or when every
	// invitee left it (a group slot everyone canceled or moved away from).
	shown := active
	if ev.Status == "canceled" || len(active) == 0 {
		e.Status = calendar.StatusCancelled
		shown = invs
	}

	if l := ev.Location; l != nil {
		e.Location = strings.TrimSpace(l.Location)
		e.ConferenceURL = l.JoinURL
	}

	seen := make(map[string]bool)
	add := func(a calendar.Attendee) {
		key := strings.ToLower(strings.TrimSpace(a.Email))
		if key == "" || seen[key] {
			return
		}
		seen[key] = true
		e.Attendees = append(e.Attendees, a)
	}
	for i, m := range ev.EventMemberships {
		a := calendar.Attendee{Email: m.UserEmail, Name: m.UserName, Organizer: i == 0,
			Self: ownerURI != "" && m.User == ownerURI, Response: calendar.ResponseAccepted}
		if i == 0 {
			e.Organizer = a
		}
		add(a)
	}
	for _, inv := range shown {
		add(calendar.Attendee{Email: inv.Email, Name: inv.Name, Response: calendar.ResponseAccepted})
	}
	for _, g := range ev.EventGuests {
		add(calendar.Attendee{Email: g.Email, Response: calendar.ResponseNeedsAction})
	}

	b := &calendar.Booking{EventType: et.name}
	if ce := ev.CalendarEvent.value; ce != nil {
		b.CalendarEventKind, b.CalendarEventID = ce.Kind, ce.ExternalID
	}
	for _, inv := range shown {
		qas := inv.QuestionsAndAnswers
		sort.SliceStable(qas, func(i, j int) bool { return qas[i].Position < qas[j].Position })
		for _, qa := range qas {
			b.Answers = append(b.Answers, calendar.Answer{Question: qa.Question, Answer: qa.Answer})
		}
		for k, v := range inv.Tracking {
			if !strings.HasPrefix(k, "utm_") || deref(v) == "" {
				continue
			}
			if b.UTM == nil {
				b.UTM = make(map[string]string)
			}
			if _, ok := b.UTM[k]; !ok {
				b.UTM[k] = *v
			}
		}
	}
	// This copy was canceled because its booking moved to another event,
	// which carries the same ICalUID: the meeting lives on there.
	b.Rescheduled = e.Status == calendar.StatusCancelled && movable(et, invs) && invs[0].Rescheduled
	e.Booking = b
	return e, nil
}

// etag changes whenever the event or any of its invitees does (a group
// event's updated_at need not move when an invitee joins).
func etag(ev scheduledEvent, invs []invitee) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(ev)
	for _, inv := range invs {
		_ = json.NewEncoder(h).Encode(inv)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
