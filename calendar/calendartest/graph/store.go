package graph

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors of the Go API.
var (
	ErrUnknownMailbox  = errors.New("graph: unknown mailbox")
	ErrUnknownCalendar = errors.New("graph: unknown calendar")
	ErrUnknownEvent    = errors.New("graph: unknown event")
	ErrExists          = errors.New("graph: already exists")
	ErrInvalidSpec     = errors.New("graph: invalid event spec")
)

// Primary is the calendar id of a mailbox's default calendar in this API
// (Graph's /me/calendar).
const Primary = "primary"

// Person is an organizer or attendee.
type Person struct {
	Address string
	Name    string
}

// Attendee is an invitee. Type is required (default), optional or
// resource; Response is none (default), accepted, tentativelyAccepted,
// declined or notResponded.
type Attendee struct {
	Person
	Type     string
	Response string
}

// Recurrence repeats an event every Interval days (default 1), Count times.
type Recurrence struct {
	Interval int
	Count    int
}

// EventSpec describes an event as its organizer sets it up.
type EventSpec struct {
	// ID is Graph's event id; generated when empty.
	ID string
	// ExternalUID is the iCalendar UID of an invitation that came from
	// outside Exchange (from Google, say): the event's global object id then
	// carries it after "vCal-Uid". Empty: Exchange made up the id.
	ExternalUID string
	Subject     string
	Body        string
	Location    string
	// Start and End are the instants of a timed event. For an all-day
	// event they are midnight UTC of its first and (exclusive) last date.
	Start, End time.Time
	AllDay     bool
	// TimeZone is the Windows zone the organizer wrote the event in
	// (originalStartTimeZone); default the mailbox's.
	TimeZone string
	// Organizer defaults to the mailbox's owner.
	Organizer *Person
	Attendees []Attendee
	// Sensitivity is normal (default), personal, private or confidential.
	Sensitivity string
	// ShowAs is busy (default), free, tentative, oof or workingElsewhere.
	ShowAs           string
	OnlineMeetingURL string
	// Response is the mailbox's own answer (responseStatus).
	Response   string
	Recurrence *Recurrence
}

func (e EventSpec) clone() EventSpec {
	e.Attendees = slices.Clone(e.Attendees)
	if e.Organizer != nil {
		o := *e.Organizer
		e.Organizer = &o
	}
	if e.Recurrence != nil {
		r := *e.Recurrence
		e.Recurrence = &r
	}
	return e
}

type mailbox struct {
	address   string
	userID    string
	tz        string
	gen       int // delta tokens of an older generation are expired
	calendars map[string]*calendarState
}

type calendarState struct {
	id    string
	items map[string]*item
}

// item is one event Graph serves: a single event, a series master, an
// occurrence or an exception.
type item struct {
	id        string
	calendar  string
	kind      string // singleInstance, seriesMaster, occurrence, exception
	masterID  string
	orig      time.Time // original start of an occurrence or exception
	spec      EventSpec // content; for an occurrence: the master's with its own times
	goid      []byte
	deleted   bool
	cancelled bool
	props     map[string]string
	created   time.Time
	modified  time.Time
	changeKey string
	versions  []version
	occs      []string // a master's occurrences and exceptions
}

// version is the item's place in delta views after a change.
type version struct {
	seq        int64
	start, end time.Time
	live       bool
}

func (it *item) live() bool { return !it.deleted && it.kind != "seriesMaster" }

// at returns the item's version as of seq (ok false: it did not exist).
func (it *item) at(seq int64) (version, bool) {
	var v version
	ok := false
	for _, x := range it.versions {
		if x.seq > seq {
			break
		}
		v, ok = x, true
	}
	return v, ok
}

// AddMailbox creates a mailbox with a default calendar, whose events are
// written in the Windows zone tz (e.g. "W. Europe Standard Time"), and
// returns an access token for it.
func (s *Server) AddMailbox(address, tz string) (string, error) {
	key := strings.ToLower(address)
	if tz == "" {
		tz = "UTC"
	}
	if _, err := windowsLocation(tz); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mailboxes[key] != nil {
		return "", fmt.Errorf("mailbox %q: %w", address, ErrExists)
	}
	mb := &mailbox{address: address, userID: newGUID(), tz: tz, calendars: map[string]*calendarState{}}
	mb.calendars[Primary] = &calendarState{id: Primary, items: map[string]*item{}}
	s.mailboxes[key] = mb
	tok := "eyJ0eXAiOiJKV1Qi." + randomToken(24)
	s.access[tok] = key
	return tok, nil
}

// AccessToken returns a fresh access token for a mailbox.
func (s *Server) AccessToken(address string) (string, error) {
	key := strings.ToLower(address)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mailboxes[key] == nil {
		return "", fmt.Errorf("mailbox %q: %w", address, ErrUnknownMailbox)
	}
	tok := "eyJ0eXAiOiJKV1Qi." + randomToken(24)
	s.access[tok] = key
	return tok, nil
}

// AddCalendar adds a calendar to a mailbox.
func (s *Server) AddCalendar(address, calendarID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxes[strings.ToLower(address)]
	if mb == nil {
		return fmt.Errorf("mailbox %q: %w", address, ErrUnknownMailbox)
	}
	if mb.calendars[calendarID] != nil {
		return fmt.Errorf("calendar %q: %w", calendarID, ErrExists)
	}
	mb.calendars[calendarID] = &calendarState{id: calendarID, items: map[string]*item{}}
	return nil
}

// ExpireDelta expires every delta token and round in progress of a
// mailbox: their next request answers 410 syncStateNotFound.
func (s *Server) ExpireDelta(address string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxes[strings.ToLower(address)]
	if mb == nil {
		return fmt.Errorf("mailbox %q: %w", address, ErrUnknownMailbox)
	}
	mb.gen++
	return nil
}

// lookup finds a mailbox and an item; s.mu must be held.
func (s *Server) lookup(address, eventID string) (*mailbox, *calendarState, *item, error) {
	mb := s.mailboxes[strings.ToLower(address)]
	if mb == nil {
		return nil, nil, nil, fmt.Errorf("mailbox %q: %w", address, ErrUnknownMailbox)
	}
	for _, c := range mb.calendars {
		if it := c.items[eventID]; it != nil && !it.deleted {
			return mb, c, it, nil
		}
	}
	return mb, nil, nil, fmt.Errorf("event %q: %w", eventID, ErrUnknownEvent)
}

// Insert creates an event on a calendar of a mailbox (a series when
// spec.Recurrence is set) and returns its id (the master's for a series).
func (s *Server) Insert(address, calendarID string, spec EventSpec) (string, error) {
	spec = spec.clone()
	if spec.End.Before(spec.Start) || spec.Start.IsZero() {
		return "", fmt.Errorf("%w: start and end required, end not before start", ErrInvalidSpec)
	}
	if spec.Recurrence != nil && spec.Recurrence.Count < 1 {
		return "", fmt.Errorf("%w: recurrence count must be positive", ErrInvalidSpec)
	}
	s.mu.Lock()
	mb := s.mailboxes[strings.ToLower(address)]
	if mb == nil {
		s.mu.Unlock()
		return "", fmt.Errorf("mailbox %q: %w", address, ErrUnknownMailbox)
	}
	c := mb.calendars[calendarID]
	if c == nil {
		s.mu.Unlock()
		return "", fmt.Errorf("calendar %q: %w", calendarID, ErrUnknownCalendar)
	}
	if spec.TimeZone == "" {
		spec.TimeZone = mb.tz
	}
	if spec.Organizer == nil {
		spec.Organizer = &Person{Address: mb.address}
	}
	if spec.ID == "" {
		spec.ID = s.newID()
	}
	if c.items[spec.ID] != nil {
		s.mu.Unlock()
		return "", fmt.Errorf("event %q: %w", spec.ID, ErrExists)
	}
	now := s.now()
	goid := GlobalObjectID(spec.ExternalUID, time.Time{}, now)
	kind := "singleInstance"
	if spec.Recurrence != nil {
		kind = "seriesMaster"
	}
	it := &item{id: spec.ID, calendar: c.id, kind: kind, spec: spec, goid: goid, created: now}
	c.items[it.id] = it
	s.touch(it, now)
	if spec.Recurrence != nil {
		iv := max(spec.Recurrence.Interval, 1)
		for i := range spec.Recurrence.Count {
			orig := spec.Start.AddDate(0, 0, i*iv)
			occ := &item{
				id: s.occurrenceID(it.id, orig), calendar: c.id, kind: "occurrence", masterID: it.id, orig: orig,
				spec: withTimes(spec, orig, orig.Add(spec.End.Sub(spec.Start))), goid: goid, created: now,
			}
			occ.spec.Recurrence = nil
			c.items[occ.id] = occ
			it.occs = append(it.occs, occ.id)
			s.touch(occ, now)
		}
	}
	s.mu.Unlock()
	s.changed(mb.address, c.id, spec.ID)
	return spec.ID, nil
}

func withTimes(spec EventSpec, start, end time.Time) EventSpec {
	spec = spec.clone()
	spec.Start, spec.End = start, end
	return spec
}

// touch records a change of it: a new change key, modification time and
// delta version. s.mu must be held.
func (s *Server) touch(it *item, now time.Time) {
	s.seq++
	it.modified = now
	it.changeKey = strconv.FormatInt(s.seq, 36) + randomToken(4)
	it.versions = append(it.versions, version{seq: s.seq, start: it.spec.Start, end: it.spec.End, live: it.live()})
}

func (s *Server) newID() string {
	n := s.ids.Add(1)
	return fmt.Sprintf("AAMkAGI2TAAA%08d=", n)
}

func (s *Server) occurrenceID(masterID string, orig time.Time) string {
	return strings.TrimSuffix(masterID, "=") + "ABEM" + orig.UTC().Format("20060102T150405") + "="
}

// OccurrenceID returns the id of the occurrence of a series that was to
// start at originalStart.
func (s *Server) OccurrenceID(address, masterID string, originalStart time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, m, err := s.lookup(address, masterID)
	if err != nil {
		return "", err
	}
	for _, id := range m.occs {
		if it := s.mailboxes[strings.ToLower(address)].calendars[m.calendar].items[id]; it != nil && it.orig.Equal(originalStart) {
			return id, nil
		}
	}
	return "", fmt.Errorf("occurrence of %q at %s: %w", masterID, originalStart.Format(time.RFC3339), ErrUnknownEvent)
}

// update applies fn to an item (a whole series when eventID is a master:
// its occurrences follow, exceptions keep their own times).
func (s *Server) update(address, eventID string, fn func(*EventSpec) error) error {
	s.mu.Lock()
	mb, c, it, err := s.lookup(address, eventID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	spec := it.spec.clone()
	if err := fn(&spec); err != nil {
		s.mu.Unlock()
		return err
	}
	now := s.now()
	if it.kind == "occurrence" && (!spec.Start.Equal(it.spec.Start) || !spec.End.Equal(it.spec.End) || spec.Subject != it.spec.Subject ||
		!slices.Equal(spec.Attendees, it.spec.Attendees)) {
		it.kind = "exception"
	}
	if it.kind == "seriesMaster" {
		shift := spec.Start.Sub(it.spec.Start)
		dur := spec.End.Sub(spec.Start)
		for _, id := range it.occs {
			occ := c.items[id]
			if occ == nil || occ.deleted {
				continue
			}
			start, end := occ.spec.Start, occ.spec.End
			if occ.kind == "occurrence" {
				start, end = occ.orig.Add(shift), occ.orig.Add(shift).Add(dur)
			}
			o := withTimes(spec, start, end)
			o.Recurrence = nil
			if occ.kind == "exception" {
				o.Subject, o.Attendees = occ.spec.Subject, occ.spec.Attendees
			}
			occ.spec = o
			s.touch(occ, now)
		}
	}
	it.spec = spec
	s.touch(it, now)
	s.mu.Unlock()
	s.changed(mb.address, c.id, eventID)
	return nil
}

// Move changes the start and end of an event, a whole series (its
// occurrences shift with it) or one occurrence (which becomes an exception
// keeping its original start).
func (s *Server) Move(address, eventID string, start, end time.Time) error {
	return s.update(address, eventID, func(e *EventSpec) error {
		if end.Before(start) {
			return fmt.Errorf("%w: end before start", ErrInvalidSpec)
		}
		e.Start, e.End = start, end
		return nil
	})
}

// Rename changes the subject of an event, a series or an occurrence.
func (s *Server) Rename(address, eventID, subject string) error {
	return s.update(address, eventID, func(e *EventSpec) error { e.Subject = subject; return nil })
}

// AddAttendee invites one more attendee.
func (s *Server) AddAttendee(address, eventID string, a Attendee) error {
	return s.update(address, eventID, func(e *EventSpec) error {
		e.Attendees = append(e.Attendees, a)
		return nil
	})
}

// RemoveAttendee removes an attendee by address.
func (s *Server) RemoveAttendee(address, eventID, attendee string) error {
	return s.update(address, eventID, func(e *EventSpec) error {
		n := len(e.Attendees)
		e.Attendees = slices.DeleteFunc(e.Attendees, func(a Attendee) bool { return strings.EqualFold(a.Address, attendee) })
		if len(e.Attendees) == n {
			return fmt.Errorf("attendee %q: %w", attendee, ErrUnknownEvent)
		}
		return nil
	})
}

// MoveOccurrence moves one occurrence of a series, making it an exception.
func (s *Server) MoveOccurrence(address, masterID string, originalStart, start, end time.Time) error {
	id, err := s.OccurrenceID(address, masterID, originalStart)
	if err != nil {
		return err
	}
	return s.Move(address, id, start, end)
}

// CancelOccurrence cancels one occurrence of a series: Graph deletes it, and
// delta views carry it as @removed.
func (s *Server) CancelOccurrence(address, masterID string, originalStart time.Time) error {
	id, err := s.OccurrenceID(address, masterID, originalStart)
	if err != nil {
		return err
	}
	return s.Delete(address, id)
}

// Cancel marks an event (or a series and its occurrences) cancelled, as an
// attendee's copy is when the organizer cancels: it stays, isCancelled.
func (s *Server) Cancel(address, eventID string) error {
	return s.mutate(address, eventID, func(it *item) { it.cancelled = true })
}

// Delete deletes an event, a whole series or one occurrence.
func (s *Server) Delete(address, eventID string) error {
	return s.mutate(address, eventID, func(it *item) { it.deleted = true })
}

func (s *Server) mutate(address, eventID string, fn func(*item)) error {
	s.mu.Lock()
	mb, c, it, err := s.lookup(address, eventID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	now := s.now()
	fn(it)
	s.touch(it, now)
	for _, id := range it.occs {
		if occ := c.items[id]; occ != nil && !occ.deleted {
			fn(occ)
			s.touch(occ, now)
		}
	}
	s.mu.Unlock()
	s.changed(mb.address, c.id, eventID)
	return nil
}

// Props returns an event's single-value extended properties by id.
func (s *Server) Props(address, eventID string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, it, err := s.lookup(address, eventID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(it.props))
	for k, v := range it.props {
		out[k] = v
	}
	return out, nil
}

// Kind returns an event's type: singleInstance, seriesMaster, occurrence
// or exception.
func (s *Server) Kind(address, eventID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, it, err := s.lookup(address, eventID)
	if err != nil {
		return "", err
	}
	return it.kind, nil
}

var goidHeader = []byte{0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0xE0, 0x00, 0x74, 0xC5, 0xB7, 0x10, 0x1A, 0x82, 0xE0, 0x08}

// GlobalObjectID builds an Exchange global object id (MS-OXOCAL
// PidLidGlobalObjectId): for an invitation from outside Exchange it
// carries externalUID after "vCal-Uid" and a version; otherwise 16 random
// bytes. A non-zero instance sets the instance date bytes, as occurrences'
// and exceptions' ids have them.
func GlobalObjectID(externalUID string, instance, created time.Time) []byte {
	b := make([]byte, 0, 64+len(externalUID))
	b = append(b, goidHeader...)
	b = append(b, 0, 0, 0, 0)
	var ft [8]byte
	if externalUID == "" && !created.IsZero() {
		// FILETIME: 100 ns ticks since 1601.
		binary.LittleEndian.PutUint64(ft[:], uint64(created.UnixNano()/100+116444736000000000))
	}
	b = append(b, ft[:]...)
	b = append(b, make([]byte, 8)...)
	var data []byte
	if externalUID != "" {
		data = append([]byte("vCal-Uid"), 1, 0, 0, 0)
		data = append(data, externalUID...)
		data = append(data, 0)
	} else {
		data = make([]byte, 16)
		_, _ = rand.Read(data)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	return withInstance(b, instance)
}

// withInstance returns a copy of goid with the instance date bytes set.
func withInstance(goid []byte, instance time.Time) []byte {
	out := slices.Clone(goid)
	if !instance.IsZero() {
		y, m, d := instance.UTC().Date()
		binary.BigEndian.PutUint16(out[16:18], uint16(y))
		out[18], out[19] = byte(m), byte(d)
	}
	return out
}

func goidHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
