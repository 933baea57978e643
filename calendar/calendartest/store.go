package calendartest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teambition/rrule-go"
)

// Expansion limits of a recurring series: instances are materialised from the
// series start up to expansionHorizon after the later of the start and the
// server clock's now, and at most maxInstances of them. Google also expands
// open-ended series over a limited window only.
const (
	expansionHorizon = 400 * 24 * time.Hour
	maxInstances     = 1000
)

const (
	instanceTimeFormat = "20060102T150405Z"
	instanceDateFormat = "20060102"
	dateFormat         = "2006-01-02"
	updatedFormat      = "2006-01-02T15:04:05.000Z"
)

// calendarState is one calendar: the authoritative series (single events and
// recurring masters with their overrides) and the served items derived from
// them, indexed by change sequence.
type calendarState struct {
	id         string
	tz         string
	loc        *time.Location
	resourceID string

	mu     sync.Mutex
	seq    int64  // last change sequence number handed out
	gen    uint32 // bumped to invalidate every sync token
	series map[string]*series
	items  map[string]*item
	// log holds one entry per change in sequence order. An entry is stale
	// when its item changed again later; stale entries are skipped and
	// compacted away from time to time.
	log   []logEntry
	stale int
}

type logEntry struct {
	seq int64
	it  *item
}

type itemKind uint8

const (
	kindSingle   itemKind = iota // a non-recurring event
	kindMaster                   // a recurring series, listed with singleEvents=false
	kindInstance                 // an instance of a series, listed with singleEvents=true
)

// item is one served event representation with its encoded body.
type item struct {
	id        string
	kind      itemKind
	seriesID  string
	exception bool // an instance that is an exception; listed in both views
	live      bool // not cancelled
	minimal   bool // served as a minimal cancelled record
	start     time.Time
	end       time.Time // time filters; last known for tombstones
	orig      *DateTime // originalStartTime of an instance
	hash      uint64
	seq       int64
	updated   time.Time
	body      []byte
}

// inView reports whether the item is listed with singleEvents=single.
func (it *item) inView(single bool) bool {
	switch it.kind {
	case kindSingle:
		return true
	case kindMaster:
		return !single
	}
	return single || it.exception
}

// series is an event as its calendar's owner created it: a single event or a
// recurring series with per-instance overrides.
type series struct {
	id        string
	spec      EventSpec
	created   time.Time
	deleted   bool
	sequence  int64
	overrides map[string]*override // by instance id
	instances map[string]bool      // every instance id ever served
}

// override is an exception of one instance: moved or otherwise changed
// (spec) or cancelled.
type override struct {
	orig      time.Time
	spec      EventSpec
	cancelled bool
}

func (s *series) recurring() bool { return len(s.spec.Recurrence) > 0 }

func newCalendarState(id, tz string, loc *time.Location, resourceID string) *calendarState {
	return &calendarState{
		id:         id,
		tz:         tz,
		loc:        loc,
		resourceID: resourceID,
		series:     make(map[string]*series),
		items:      make(map[string]*item),
	}
}

// zone returns the location events in spec are expanded and written in.
func (c *calendarState) zone(spec *EventSpec) *time.Location {
	if spec.TimeZone == "" {
		return c.loc
	}
	if loc, err := time.LoadLocation(spec.TimeZone); err == nil {
		return loc
	}
	return c.loc
}

// materialize brings the served items of s up to date with s, giving every
// item whose representation changed a new sequence number, etag and updated
// time. Instances that no longer exist become minimal cancelled records.
func (c *calendarState) materialize(s *series, now time.Time) error {
	if !s.recurring() {
		if s.deleted {
			c.put(now, Event{ID: s.id, Status: "cancelled"}, itemMeta{kind: kindSingle, seriesID: s.id})
			return nil
		}
		ev := c.wire(s, &s.spec, s.id)
		c.put(now, ev, c.meta(kindSingle, s.id, &s.spec, nil))
		return nil
	}

	var occs []time.Time
	if !s.deleted {
		var err error
		if occs, err = c.expand(&s.spec, now); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(occs))
	for _, occ := range occs {
		id := instanceID(s.id, occ, s.spec.allDay())
		seen[id] = true
		s.instances[id] = true
		orig := c.dateTime(&s.spec, occ)
		if ov := s.overrides[id]; ov != nil {
			if ov.cancelled {
				c.tombstone(now, id, s.id, orig, true)
				continue
			}
			ev := c.wire(s, &ov.spec, id)
			ev.RecurringEventID, ev.OriginalStartTime = s.id, orig
			c.put(now, ev, c.meta(kindInstance, s.id, &ov.spec, orig).asException())
			continue
		}
		spec := s.spec.instance(occ)
		ev := c.wire(s, &spec, id)
		ev.RecurringEventID, ev.OriginalStartTime = s.id, orig
		c.put(now, ev, c.meta(kindInstance, s.id, &spec, orig))
	}
	for id := range s.instances {
		if seen[id] {
			continue
		}
		if it := c.items[id]; it != nil {
			c.tombstone(now, id, s.id, it.orig, it.exception)
		}
	}

	// The master comes last: its time span depends on its instances.
	if s.deleted {
		c.put(now, Event{ID: s.id, Status: "cancelled"}, itemMeta{kind: kindMaster, seriesID: s.id})
		return nil
	}
	ev := c.wire(s, &s.spec, s.id)
	ev.Recurrence = s.spec.Recurrence
	m := c.meta(kindMaster, s.id, &s.spec, nil)
	m.start, m.end = c.seriesSpan(s)
	c.put(now, ev, m)
	return nil
}

// tombstone serves id as a minimal cancelled instance record, the only shape
// Google guarantees for cancelled instances.
func (c *calendarState) tombstone(now time.Time, id, seriesID string, orig *DateTime, exception bool) {
	m := itemMeta{kind: kindInstance, seriesID: seriesID, orig: orig, exception: exception}
	if it := c.items[id]; it != nil {
		m.start, m.end = it.start, it.end
	}
	c.put(now, Event{ID: id, Status: "cancelled", RecurringEventID: seriesID, OriginalStartTime: orig}, m)
}

type itemMeta struct {
	kind       itemKind
	seriesID   string
	live       bool
	exception  bool
	start, end time.Time
	orig       *DateTime
}

func (m itemMeta) asException() itemMeta { m.exception = true; return m }

func (c *calendarState) meta(kind itemKind, seriesID string, spec *EventSpec, orig *DateTime) itemMeta {
	start, end := c.span(spec)
	return itemMeta{kind: kind, seriesID: seriesID, live: spec.Status != "cancelled", start: start, end: end, orig: orig}
}

// put stores ev as the representation of item ev.ID. If it differs from the
// current one, the item gets the next sequence number.
func (c *calendarState) put(now time.Time, ev Event, m itemMeta) {
	content, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("calendartest: encode event %s: %v", ev.ID, err)) // plain data; cannot fail
	}
	h := fnv.New64a()
	_, _ = h.Write(content)
	sum := h.Sum64()

	it := c.items[ev.ID]
	if it != nil && it.hash == sum && it.live == m.live && it.exception == m.exception {
		return
	}
	if it == nil {
		it = &item{id: ev.ID}
		c.items[ev.ID] = it
	} else {
		c.stale++
	}
	c.seq++
	it.kind, it.seriesID, it.live, it.exception = m.kind, m.seriesID, m.live, m.exception
	it.minimal = ev.Start == nil
	it.start, it.end, it.orig = m.start, m.end, m.orig
	it.hash, it.seq, it.updated = sum, c.seq, now

	// Splice kind, etag and updated in front of the content, which always
	// starts with `{"id":`.
	etag := `"` + strconv.FormatInt(now.UnixMilli(), 10) + strconv.FormatInt(c.seq, 10) + `"`
	var b strings.Builder
	b.Grow(len(content) + 96)
	b.WriteString(`{"kind":"calendar#event","etag":`)
	eb, _ := json.Marshal(etag)
	b.Write(eb)
	if ev.Start != nil { // minimal records carry no updated time
		b.WriteString(`,"updated":"`)
		b.WriteString(now.UTC().Format(updatedFormat))
		b.WriteString(`"`)
	}
	b.WriteByte(',')
	b.Write(content[1:])
	it.body = []byte(b.String())

	c.log = append(c.log, logEntry{c.seq, it})
	if c.stale > 1024 && c.stale > len(c.items) {
		c.compact()
	}
}

func (c *calendarState) compact() {
	log := make([]logEntry, 0, len(c.items))
	for _, e := range c.log {
		if e.it.seq == e.seq {
			log = append(log, e)
		}
	}
	c.log, c.stale = log, 0
}

// wire renders spec as the event id of series s, without kind, etag and
// updated.
func (c *calendarState) wire(s *series, spec *EventSpec, id string) Event {
	ev := Event{
		ID:               id,
		Status:           spec.Status,
		HTMLLink:         "https://www.google.com/calendar/event?eid=" + id,
		Created:          s.created.UTC().Format(updatedFormat),
		Summary:          spec.Summary,
		Description:      spec.Description,
		Location:         spec.Location,
		Start:            c.startOf(spec),
		End:              c.endOf(spec),
		Transparency:     spec.Transparency,
		ICalUID:          spec.ICalUID,
		Sequence:         s.sequence,
		AttendeesOmitted: spec.AttendeesOmitted,
		HangoutLink:      spec.HangoutLink,
		Reminders:        &Reminders{UseDefault: true},
		EventType:        spec.EventType,
	}
	if ev.Status == "" {
		ev.Status = "confirmed"
	}
	if ev.EventType == "" {
		ev.EventType = "default"
	}
	if spec.Visibility != "default" {
		ev.Visibility = spec.Visibility
	}
	org := Person{Email: c.id, Self: true}
	if spec.Organizer != nil {
		org = *spec.Organizer
		org.Self = org.Self || strings.EqualFold(org.Email, c.id)
	}
	ev.Organizer, ev.Creator = &org, &org
	for _, a := range spec.Attendees {
		a.Self = a.Self || strings.EqualFold(a.Email, c.id)
		if a.ResponseStatus == "" {
			a.ResponseStatus = "needsAction"
		}
		ev.Attendees = append(ev.Attendees, a)
	}
	if len(spec.Private) > 0 || len(spec.Shared) > 0 {
		ev.ExtendedProperties = &ExtendedProperties{Private: spec.Private, Shared: spec.Shared}
	}
	if u := spec.HangoutLink; u != "" {
		ev.ConferenceData = &ConferenceData{
			ConferenceID:       strings.TrimPrefix(u, "https://meet.google.com/"),
			ConferenceSolution: &ConferenceSolution{Name: "Google Meet"},
			EntryPoints:        []EntryPoint{{EntryPointType: "video", URI: u, Label: strings.TrimPrefix(u, "https://")}},
		}
	} else if u := spec.ConferenceURL; u != "" {
		ev.ConferenceData = &ConferenceData{
			ConferenceSolution: &ConferenceSolution{Name: "Zoom Meeting"},
			EntryPoints: []EntryPoint{
				{EntryPointType: "phone", URI: "tel:+1-555-0100", Label: "+1 555-0100"},
				{EntryPointType: "video", URI: u, Label: strings.TrimPrefix(u, "https://")},
			},
		}
	}
	return ev
}

func (c *calendarState) startOf(spec *EventSpec) *DateTime {
	if spec.allDay() {
		return &DateTime{Date: spec.StartDate}
	}
	return &DateTime{DateTime: spec.Start.In(c.zone(spec)).Format(time.RFC3339), TimeZone: spec.TimeZone}
}

func (c *calendarState) endOf(spec *EventSpec) *DateTime {
	if spec.allDay() {
		return &DateTime{Date: spec.endDate().Format(dateFormat)}
	}
	return &DateTime{DateTime: spec.End.In(c.zone(spec)).Format(time.RFC3339), TimeZone: spec.TimeZone}
}

// dateTime renders an occurrence as originalStartTime.
func (c *calendarState) dateTime(spec *EventSpec, occ time.Time) *DateTime {
	if spec.allDay() {
		return &DateTime{Date: occ.Format(dateFormat)}
	}
	return &DateTime{DateTime: occ.In(c.zone(spec)).Format(time.RFC3339), TimeZone: spec.TimeZone}
}

// span returns the instants timeMin and timeMax filter on. All-day events
// span whole days of the calendar's zone.
func (c *calendarState) span(spec *EventSpec) (time.Time, time.Time) {
	if spec.allDay() {
		s, e := spec.startDate(), spec.endDate()
		return time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, c.loc).UTC(),
			time.Date(e.Year(), e.Month(), e.Day(), 0, 0, 0, 0, c.loc).UTC()
	}
	return spec.Start.UTC(), spec.End.UTC()
}

// seriesSpan is the span of a series master for time filters: from its start
// to the end of its last instance, or forever for an open-ended series.
func (c *calendarState) seriesSpan(s *series) (time.Time, time.Time) {
	start, end := c.span(&s.spec)
	for _, line := range s.spec.Recurrence {
		u := strings.ToUpper(line)
		if strings.HasPrefix(u, "RRULE") && !strings.Contains(u, "COUNT=") && !strings.Contains(u, "UNTIL=") {
			return start, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
	}
	var last time.Time
	for id := range s.instances {
		if it := c.items[id]; it != nil && it.live && it.end.After(last) {
			last = it.end
		}
	}
	if last.After(end) {
		end = last
	}
	return start, end
}

// expand returns the occurrences (original starts) of a recurring spec.
func (c *calendarState) expand(spec *EventSpec, now time.Time) ([]time.Time, error) {
	set, err := parseRecurrence(spec, c.zone(spec))
	if err != nil {
		return nil, err
	}
	from := set.GetDTStart()
	if now.After(from) {
		from = now
	}
	horizon := from.Add(expansionHorizon)
	var occs []time.Time
	next := set.Iterator()
	for len(occs) < maxInstances {
		t, ok := next()
		if !ok || t.After(horizon) {
			break
		}
		occs = append(occs, t)
	}
	return occs, nil
}

// parseRecurrence reads RRULE, RDATE and EXDATE lines. An all-day series
// recurs on dates, computed at midnight UTC.
func parseRecurrence(spec *EventSpec, loc *time.Location) (*rrule.Set, error) {
	dtstart := spec.Start.In(loc)
	if spec.allDay() {
		loc = time.UTC
		dtstart = spec.startDate()
	}
	set := &rrule.Set{}
	rules := 0
	for _, line := range spec.Recurrence {
		line = strings.TrimSpace(line)
		i := strings.IndexAny(line, ";:")
		if i <= 0 {
			return nil, fmt.Errorf("recurrence line %q: no property name", line)
		}
		name, value := strings.ToUpper(line[:i]), line[i+1:]
		switch name {
		case "RRULE":
			opt, err := rrule.StrToROptionInLocation(value, loc)
			if err != nil {
				return nil, fmt.Errorf("recurrence line %q: %w", line, err)
			}
			opt.Dtstart = dtstart
			r, err := rrule.NewRRule(*opt)
			if err != nil {
				return nil, fmt.Errorf("recurrence line %q: %w", line, err)
			}
			set.RRule(r)
			rules++
		case "EXDATE", "RDATE":
			ts, err := rrule.StrToDatesInLoc(value, loc)
			if err != nil {
				return nil, fmt.Errorf("recurrence line %q: %w", line, err)
			}
			for _, t := range ts {
				if name == "EXDATE" {
					set.ExDate(t)
				} else {
					set.RDate(t)
				}
			}
		default:
			return nil, fmt.Errorf("recurrence line %q: unsupported property %s", line, name)
		}
	}
	if rules != 1 {
		return nil, fmt.Errorf("recurrence needs exactly one RRULE line, got %d", rules)
	}
	set.DTStart(dtstart)
	return set, nil
}

// instanceID is Google's id of an instance: the series id, "_" and the
// original start in UTC basic format (or the date of an all-day instance).
func instanceID(seriesID string, occ time.Time, allDay bool) string {
	if allDay {
		return seriesID + "_" + occ.Format(instanceDateFormat)
	}
	return seriesID + "_" + occ.UTC().Format(instanceTimeFormat)
}

// splitInstanceID parses an instance id into its series id and original start.
func splitInstanceID(id string) (string, time.Time, bool) {
	i := strings.LastIndexByte(id, '_')
	if i <= 0 {
		return "", time.Time{}, false
	}
	suffix := id[i+1:]
	for _, f := range []string{instanceTimeFormat, instanceDateFormat} {
		if len(suffix) == len(f) {
			if t, err := time.Parse(f, suffix); err == nil {
				return id[:i], t, true
			}
		}
	}
	return "", time.Time{}, false
}

// listState is what a page token or sync token carries.
type listState struct {
	Cal         string `json:"c"`
	Incremental bool   `json:"i,omitempty"`
	Gen         uint32 `json:"g,omitempty"`
	After       int64  `json:"a,omitempty"` // position: last sequence number covered
	Snap        int64  `json:"s,omitempty"` // listing covers sequence numbers ≤ Snap
	Single      bool   `json:"e,omitempty"`
	ShowDeleted bool   `json:"d,omitempty"`
	TimeMin     int64  `json:"n,omitempty"` // Unix ns, 0 = none
	TimeMax     int64  `json:"x,omitempty"`
	Empty       int    `json:"m,omitempty"` // empty pages served before the next full one
	Issued      int64  `json:"t,omitempty"` // Unix ms, sync tokens only
}

// page returns up to max item bodies of a listing from st, and the state of
// the next page (ok false when this is the last page).
func (c *calendarState) page(st listState, max int) (bodies [][]byte, next listState, more bool) {
	i := sort.Search(len(c.log), func(i int) bool { return c.log[i].seq > st.After })
	next = st
	for ; i < len(c.log) && c.log[i].seq <= st.Snap; i++ {
		e := c.log[i]
		it := e.it
		if it.seq != e.seq {
			continue
		}
		if len(bodies) == max {
			return bodies, next, true
		}
		next.After = e.seq
		if !it.inView(st.Single) || !st.Incremental && !c.inFullListing(it, st) {
			continue
		}
		bodies = append(bodies, it.body)
	}
	return bodies, next, false
}

// inFullListing applies showDeleted and the time filters of a full listing.
func (c *calendarState) inFullListing(it *item, st listState) bool {
	if !it.live && !st.ShowDeleted {
		// Google still lists cancelled exceptions of a live series when
		// neither singleEvents nor showDeleted is set.
		if st.Single || it.kind != kindInstance {
			return false
		}
		if m := c.items[it.seriesID]; m == nil || !m.live {
			return false
		}
	}
	if st.TimeMin != 0 && !it.end.After(time.Unix(0, st.TimeMin)) {
		return false
	}
	if st.TimeMax != 0 && !it.start.Before(time.Unix(0, st.TimeMax)) {
		return false
	}
	return true
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}
