package calendartest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of the Go API.
var (
	ErrUnknownCalendar = errors.New("calendartest: unknown calendar")
	ErrUnknownEvent    = errors.New("calendartest: unknown event")
	ErrExists          = errors.New("calendartest: already exists")
	ErrInvalidSpec     = errors.New("calendartest: invalid event spec")
)

// EventSpec describes an event as its organizer sets it up. Either Start and
// End (a timed event) or StartDate (an all-day event) must be set.
type EventSpec struct {
	// ID is the event id (Google's base32hex alphabet: 0-9 and a-v, 5 to
	// 1024 characters); generated when empty. Copies of one meeting on
	// several attendees' calendars share the id and the iCalUID.
	ID string
	// ICalUID defaults to ID + "@google.com".
	ICalUID string
	// Status is confirmed (default), tentative or cancelled.
	Status      string
	Summary     string
	Description string
	Location    string
	// Start and End are the instants of a timed event, written in TimeZone
	// (or the calendar's zone).
	Start time.Time
	End   time.Time
	// StartDate and EndDate ("2006-01-02", end exclusive, default the next
	// day) make an all-day event.
	StartDate string
	EndDate   string
	// TimeZone is the IANA zone of start and end. Optional for a single
	// event (the wire then carries no timeZone and clients fall back to the
	// calendar's); a recurring series defaults to the calendar's zone, in
	// which its rule is expanded.
	TimeZone string
	// Attendees; an attendee whose email is the calendar id is marked self.
	Attendees        []Attendee
	AttendeesOmitted bool
	// Organizer defaults to the calendar's owner (self).
	Organizer *Person
	// Visibility is default, public, private or confidential.
	Visibility string
	// EventType defaults to "default"; outOfOffice, focusTime,
	// workingLocation, birthday, fromGmail.
	EventType    string
	Transparency string
	// Recurrence holds RRULE, EXDATE and RDATE lines, as in the API.
	Recurrence []string
	// HangoutLink is a Google Meet link (also written as conference data).
	HangoutLink string
	// ConferenceURL is a third-party video link, written as conference data
	// only.
	ConferenceURL string
	// Private and Shared are the extended properties.
	Private map[string]string
	Shared  map[string]string
}

func (e *EventSpec) allDay() bool { return e.StartDate != "" }

func (e *EventSpec) startDate() time.Time {
	t, _ := time.Parse(dateFormat, e.StartDate)
	return t
}

func (e *EventSpec) endDate() time.Time {
	if e.EndDate == "" {
		return e.startDate().AddDate(0, 0, 1)
	}
	t, _ := time.Parse(dateFormat, e.EndDate)
	return t
}

// instance returns the spec of the occurrence of a series starting at occ
// (midnight UTC of its date for an all-day series). The result shares maps
// and slices with e; clone e first to change them.
func (e EventSpec) instance(occ time.Time) EventSpec {
	if e.allDay() {
		days := e.endDate().Sub(e.startDate())
		e.StartDate, e.EndDate = occ.Format(dateFormat), occ.Add(days).Format(dateFormat)
	} else {
		e.Start, e.End = occ, occ.Add(e.End.Sub(e.Start))
	}
	e.Recurrence = nil
	return e
}

func (e EventSpec) clone() EventSpec {
	e.Attendees = slices.Clone(e.Attendees)
	e.Recurrence = slices.Clone(e.Recurrence)
	e.Private = copyMap(e.Private)
	e.Shared = copyMap(e.Shared)
	if e.Organizer != nil {
		o := *e.Organizer
		e.Organizer = &o
	}
	return e
}

// validate checks a spec and fills in defaults that depend on the calendar.
func (c *calendarState) validate(e *EventSpec, recurring bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: event %q: %s", ErrInvalidSpec, e.ID, fmt.Sprintf(format, args...))
	}
	if !validEventID(e.ID) {
		return bad("id must be 5 to 1024 characters of 0-9 and a-v")
	}
	switch e.Status {
	case "", "confirmed", "tentative", "cancelled":
	default:
		return bad("status %q", e.Status)
	}
	switch e.Visibility {
	case "", "default", "public", "private", "confidential":
	default:
		return bad("visibility %q", e.Visibility)
	}
	if e.TimeZone != "" {
		if _, err := time.LoadLocation(e.TimeZone); err != nil {
			return bad("time zone: %v", err)
		}
	}
	if e.allDay() {
		if !e.Start.IsZero() || !e.End.IsZero() {
			return bad("both times and dates set")
		}
		if _, err := time.Parse(dateFormat, e.StartDate); err != nil {
			return bad("start date: %v", err)
		}
		if e.EndDate != "" {
			if _, err := time.Parse(dateFormat, e.EndDate); err != nil {
				return bad("end date: %v", err)
			}
		}
		if !e.endDate().After(e.startDate()) {
			return bad("end date not after start date")
		}
	} else {
		if e.Start.IsZero() || e.End.IsZero() {
			return bad("start and end (or start date) required")
		}
		// Google keeps second precision.
		e.Start, e.End = e.Start.Truncate(time.Second), e.End.Truncate(time.Second)
		if e.End.Before(e.Start) {
			return bad("end before start")
		}
	}
	for _, a := range e.Attendees {
		if a.Email == "" {
			return bad("attendee without email")
		}
	}
	if recurring {
		if e.TimeZone == "" && !e.allDay() {
			e.TimeZone = c.tz
		}
		if _, err := parseRecurrence(e, c.zone(e)); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

func validEventID(id string) bool {
	if len(id) < 5 || len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'v') {
			return false
		}
	}
	return true
}

// InstanceID returns Google's id of the instance of a series that originally
// started at originalStart: "<seriesID>_20260325T140000Z". For an all-day
// series pass the date at midnight UTC; use AllDayInstanceID.
func InstanceID(seriesID string, originalStart time.Time) string {
	return instanceID(seriesID, originalStart, false)
}

// AllDayInstanceID returns the id of the instance of an all-day series on
// date ("2006-01-02"): "<seriesID>_20260325".
func AllDayInstanceID(seriesID, date string) string {
	return seriesID + "_" + strings.ReplaceAll(date, "-", "")
}

// AddCalendar creates an empty calendar with the IANA time zone tz.
func (s *Server) AddCalendar(id, tz string) error {
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "" {
		return fmt.Errorf("calendartest: calendar %q: time zone %q: %v", id, tz, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cals[id]; ok {
		return fmt.Errorf("calendar %q: %w", id, ErrExists)
	}
	s.cals[id] = newCalendarState(id, tz, loc, s.newID("rs"))
	return nil
}

// RemoveCalendar deletes a calendar, as when its owner deletes it or the
// account loses access to it: every request for it answers 404 and its
// push channels stop. AddCalendar may create it again, as a new calendar.
func (s *Server) RemoveCalendar(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cals[id]; !ok {
		return fmt.Errorf("calendartest: no calendar %q", id)
	}
	delete(s.cals, id)
	for chID, ch := range s.channels {
		if ch.calendarID == id {
			delete(s.channels, chID)
		}
	}
	return nil
}

// ExpireTokens invalidates every sync token of a calendar, including the
// page tokens of incremental listings in progress: their next request
// answers 410 fullSyncRequired, as when Google evicts a token.
func (s *Server) ExpireTokens(calendarID string) error {
	c, err := s.calendar(calendarID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
	return nil
}

func (s *Server) calendar(id string) (*calendarState, error) {
	s.mu.Lock()
	c := s.cals[id]
	s.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("calendar %q: %w", id, ErrUnknownCalendar)
	}
	return c, nil
}

// Insert creates an event (a recurring series when spec.Recurrence is set)
// and returns it as Google would (the series master for a series).
func (s *Server) Insert(calendarID string, spec EventSpec) (Event, error) {
	c, err := s.calendar(calendarID)
	if err != nil {
		return Event{}, err
	}
	spec = spec.clone()
	if spec.ID == "" {
		spec.ID = s.newID("ev")
	}
	if spec.ICalUID == "" {
		spec.ICalUID = spec.ID + "@google.com"
	}
	c.mu.Lock()
	ev, err := c.insert(spec, s.now())
	c.mu.Unlock()
	if err == nil {
		s.changed(calendarID)
	}
	return ev, err
}

func (c *calendarState) insert(spec EventSpec, now time.Time) (Event, error) {
	if _, ok := c.series[spec.ID]; ok {
		return Event{}, fmt.Errorf("event %q on %q: %w", spec.ID, c.id, ErrExists)
	}
	if err := c.validate(&spec, len(spec.Recurrence) > 0); err != nil {
		return Event{}, err
	}
	ser := &series{
		id:        spec.ID,
		spec:      spec,
		created:   now,
		overrides: make(map[string]*override),
		instances: make(map[string]bool),
	}
	if err := c.materialize(ser, now); err != nil {
		return Event{}, err
	}
	c.series[ser.id] = ser
	return c.get(ser.id)
}

// InsertCopy puts a copy of an event of another calendar on calendarID, with
// the same id and iCalUID, as Google does for an invited colleague. Private
// extended properties and per-instance exceptions are not copied.
func (s *Server) InsertCopy(calendarID, fromCalendarID, eventID string) (Event, error) {
	from, err := s.calendar(fromCalendarID)
	if err != nil {
		return Event{}, err
	}
	from.mu.Lock()
	ser := from.series[eventID]
	var spec EventSpec
	if ser != nil && !ser.deleted {
		spec = ser.spec.clone()
	}
	from.mu.Unlock()
	if ser == nil || ser.deleted {
		return Event{}, fmt.Errorf("event %q on %q: %w", eventID, fromCalendarID, ErrUnknownEvent)
	}
	spec.Private = nil
	if spec.Organizer == nil {
		spec.Organizer = &Person{Email: fromCalendarID}
	} else {
		spec.Organizer.Self = false
	}
	for i := range spec.Attendees {
		spec.Attendees[i].Self = false
	}
	return s.Insert(calendarID, spec)
}

// Get returns an event (a single event, a series master or an instance) as
// events.get would, cancelled ones included.
func (s *Server) Get(calendarID, eventID string) (Event, error) {
	c, err := s.calendar(calendarID)
	if err != nil {
		return Event{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.get(eventID)
}

func (c *calendarState) get(id string) (Event, error) {
	it := c.items[id]
	if it == nil {
		return Event{}, fmt.Errorf("event %q on %q: %w", id, c.id, ErrUnknownEvent)
	}
	var ev Event
	if err := json.Unmarshal(it.body, &ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Update changes an event with fn: a single event, a whole series (by its
// id) or one instance (by its instance id, which makes it an exception).
func (s *Server) Update(calendarID, eventID string, fn func(*EventSpec)) (Event, error) {
	c, err := s.calendar(calendarID)
	if err != nil {
		return Event{}, err
	}
	c.mu.Lock()
	ev, err := c.update(eventID, s.now(), func(spec *EventSpec, _ *override) error {
		fn(spec)
		return nil
	})
	c.mu.Unlock()
	if err == nil {
		s.changed(calendarID)
	}
	return ev, err
}

// update applies fn to a copy of the spec eventID resolves to and commits it
// if it validates. For an instance, ov is the override being changed.
func (c *calendarState) update(eventID string, now time.Time, fn func(*EventSpec, *override) error) (Event, error) {
	ser, ov, err := c.resolve(eventID)
	if err != nil {
		return Event{}, err
	}
	if ov == nil {
		spec := ser.spec.clone()
		if err := fn(&spec, nil); err != nil {
			return Event{}, err
		}
		spec.ID, spec.ICalUID = ser.spec.ID, ser.spec.ICalUID
		if err := c.validate(&spec, len(spec.Recurrence) > 0); err != nil {
			return Event{}, err
		}
		if len(spec.Recurrence) > 0 != ser.recurring() {
			return Event{}, fmt.Errorf("%w: event %q: cannot turn a single event into a series or back", ErrInvalidSpec, eventID)
		}
		if !spec.Start.Equal(ser.spec.Start) || !spec.End.Equal(ser.spec.End) ||
			spec.StartDate != ser.spec.StartDate || spec.EndDate != ser.spec.EndDate ||
			!slices.Equal(spec.Recurrence, ser.spec.Recurrence) {
			ser.sequence++
		}
		ser.spec = spec
	} else {
		if ov.cancelled {
			return Event{}, fmt.Errorf("instance %q on %q is cancelled: %w", eventID, c.id, ErrUnknownEvent)
		}
		next := &override{orig: ov.orig, spec: ov.spec.clone()}
		if err := fn(&next.spec, next); err != nil {
			return Event{}, err
		}
		next.spec.ID, next.spec.ICalUID, next.spec.Recurrence = ser.spec.ID, ser.spec.ICalUID, nil
		if err := c.validate(&next.spec, false); err != nil {
			return Event{}, err
		}
		ser.overrides[eventID] = next
	}
	if err := c.materialize(ser, now); err != nil {
		return Event{}, err
	}
	return c.get(eventID)
}

// resolve finds the series of eventID and, for an instance id, its override
// (a fresh one copied from the series when the instance has none yet).
func (c *calendarState) resolve(eventID string) (*series, *override, error) {
	unknown := fmt.Errorf("event %q on %q: %w", eventID, c.id, ErrUnknownEvent)
	if ser := c.series[eventID]; ser != nil {
		if ser.deleted {
			return nil, nil, unknown
		}
		return ser, nil, nil
	}
	seriesID, orig, ok := splitInstanceID(eventID)
	ser := c.series[seriesID]
	it := c.items[eventID]
	if !ok || ser == nil || ser.deleted || it == nil || it.kind != kindInstance {
		return nil, nil, unknown
	}
	if ov := ser.overrides[eventID]; ov != nil {
		return ser, ov, nil
	}
	if !it.live && ser.spec.Status != "cancelled" {
		// A minimal record of an instance that no longer exists.
		return nil, nil, unknown
	}
	return ser, &override{orig: orig, spec: ser.spec.clone().instance(orig)}, nil
}

// Move changes the start and end of a timed single event or of a whole
// series (whose instances then get new ids: the old ones are cancelled).
func (s *Server) Move(calendarID, eventID string, start, end time.Time) (Event, error) {
	return s.Update(calendarID, eventID, func(e *EventSpec) { e.Start, e.End = start, end })
}

// Rename changes the summary of an event, a series or one instance.
func (s *Server) Rename(calendarID, eventID, summary string) (Event, error) {
	return s.Update(calendarID, eventID, func(e *EventSpec) { e.Summary = summary })
}

// SetAttendees replaces the attendees of an event, a series or one instance.
func (s *Server) SetAttendees(calendarID, eventID string, attendees []Attendee) (Event, error) {
	return s.Update(calendarID, eventID, func(e *EventSpec) { e.Attendees = slices.Clone(attendees) })
}

// MoveInstance moves one instance of a series, making it an exception that
// keeps its original start.
func (s *Server) MoveInstance(calendarID, seriesID string, originalStart, start, end time.Time) (Event, error) {
	return s.Update(calendarID, InstanceID(seriesID, originalStart), func(e *EventSpec) { e.Start, e.End = start, end })
}

// CancelInstance cancels one instance of a series; incremental listings then
// carry it as a minimal cancelled record.
func (s *Server) CancelInstance(calendarID, seriesID string, originalStart time.Time) error {
	return s.Cancel(calendarID, InstanceID(seriesID, originalStart))
}

// Cancel sets an event's or a series' status to cancelled; listings keep its
// content. For an instance id it cancels that instance (a minimal record).
func (s *Server) Cancel(calendarID, eventID string) error {
	return s.mutate(calendarID, eventID, func(ser *series, ov *override) {
		if ov != nil {
			ov.cancelled = true
		} else {
			ser.spec.Status = "cancelled"
		}
	})
}

// Delete deletes an event or a whole series: incremental listings carry the
// event (every instance of a series) as a minimal cancelled record. For an
// instance id it cancels that instance.
func (s *Server) Delete(calendarID, eventID string) error {
	return s.mutate(calendarID, eventID, func(ser *series, ov *override) {
		if ov != nil {
			ov.cancelled = true
		} else {
			ser.deleted = true
		}
	})
}

func (s *Server) mutate(calendarID, eventID string, fn func(*series, *override)) error {
	c, err := s.calendar(calendarID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	err = c.mutate(eventID, s.now(), fn)
	c.mu.Unlock()
	if err == nil {
		s.changed(calendarID)
	}
	return err
}

func (c *calendarState) mutate(eventID string, now time.Time, fn func(*series, *override)) error {
	ser, ov, err := c.resolve(eventID)
	if err != nil {
		return err
	}
	fn(ser, ov)
	if ov != nil {
		ser.overrides[eventID] = ov
	}
	return c.materialize(ser, now)
}
