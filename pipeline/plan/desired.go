package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/rules"
)

// MeetingKey is sha256(workspace id, iCalUID, original start of the
// instance): every copy of one meeting on several calendars has the same key,
// and each instance of a recurring series has its own.
func MeetingKey(workspaceID, iCalUID string, originalStart time.Time) string {
	h := sha256.New()
	h.Write([]byte(workspaceID))
	h.Write([]byte{0})
	h.Write([]byte(iCalUID))
	h.Write([]byte{0})
	if !originalStart.IsZero() {
		h.Write([]byte(originalStart.UTC().Format(time.RFC3339)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Desired is what the CRM should hold for one meeting, computed from one
// copy of its event. It travels in the crm:write payload (sealed in Redis)
// and is never stored: the ledger keeps only its hash.
type Desired struct {
	// Props are the meeting's properties as Rapport would create them.
	Props map[string]string `json:"props"`
	// CompanyIDs are the matched companies; ContactEmails the external
	// attendees of matched companies, resolved to contacts at write time.
	CompanyIDs    []string `json:"company_ids"`
	ContactEmails []string `json:"contact_emails"`
	// OwnerEmails are the candidates for the CRM owner, best first.
	OwnerEmails []string `json:"owner_emails"`
	ICalUID     string   `json:"ical_uid"`
	Cancel      bool     `json:"cancel"`
}

// DesiredOf builds the desired CRM state of a meeting from one copy and
// its decision.
func DesiredOf(key string, ev *calendar.Event, d *rules.Decision, now time.Time) Desired {
	outcome := crm.OutcomeScheduled
	if ev.End.Before(now) {
		outcome = crm.OutcomeCompleted
	}
	w := Desired{
		Props: map[string]string{
			crm.PropKey:         key,
			crm.PropTimestamp:   isoMillis(ev.Start),
			crm.PropTitle:       ev.Title,
			crm.PropStart:       isoMillis(ev.Start),
			crm.PropEnd:         isoMillis(ev.End),
			crm.PropLocation:    ev.Location,
			crm.PropExternalURL: ev.ConferenceURL,
			crm.PropOutcome:     outcome,
			crm.PropBody:        body(ev),
		},
		ICalUID:       ev.ICalUID,
		ContactEmails: slices.Clone(d.ContactEmails),
		OwnerEmails:   slices.Clone(d.OwnerEmails),
	}
	for _, c := range d.Companies {
		w.CompanyIDs = append(w.CompanyIDs, c.ID)
	}
	slices.Sort(w.CompanyIDs)
	w.CompanyIDs = slices.Compact(w.CompanyIDs)
	slices.Sort(w.ContactEmails)
	w.ContactEmails = slices.Compact(w.ContactEmails)
	return w
}

// Hash is the hash of the calendar-owned state: the properties a calendar
// change may overwrite, the cancellation and the associations. Two desired
// states with equal hashes need no CRM call between them.
func (w *Desired) Hash(own Ownership) string {
	h := sha256.New()
	keys := make([]string, 0, len(w.Props))
	for k := range w.Props {
		if own.Updatable(k) && k != crm.PropOutcome {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		h.Write([]byte(k + "=" + w.Props[k] + "\x00"))
	}
	if w.Cancel {
		h.Write([]byte("cancel\x00"))
	}
	h.Write([]byte("companies=" + strings.Join(w.CompanyIDs, ",") + "\x00"))
	h.Write([]byte("contacts=" + strings.Join(w.ContactEmails, ",") + "\x00"))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// SameInstant reports whether two property values are equal, comparing
// times as instants: HubSpot may answer an RFC 3339 time in another form,
// or in milliseconds since the epoch.
func SameInstant(a, b string) bool {
	if a == b {
		return true
	}
	ta, ok1 := parseInstant(a)
	tb, ok2 := parseInstant(b)
	return ok1 && ok2 && ta.Equal(tb)
}

func parseInstant(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), true
	}
	return time.Time{}, false
}

func isoMillis(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// Ownership is the field ownership of ARCHITECTURE section 4 (the rules
// file's `ownership:` section, defaulting to that table). It is enforced
// here and only here: CreateProps and UpdateProps are the only ways meeting
// properties reach the CRM, and no path writes contact or company records.
type Ownership struct{ rules.Ownership }

// Updatable reports whether a calendar change may overwrite prop.
func (o Ownership) Updatable(prop string) bool { return o.Of(prop) == rules.OwnerCalendar }

// CreateProps are the properties of a new meeting: every property Rapport
// writes, with the owner when the organizer maps to one.
func (o Ownership) CreateProps(w *Desired, ownerID string) map[string]string {
	props := make(map[string]string, len(w.Props)+1)
	for k, v := range w.Props {
		if v != "" && (k == crm.PropKey || o.Of(k) != "") {
			props[k] = truncateText(v)
		}
	}
	if w.Cancel {
		props[crm.PropOutcome] = crm.OutcomeCanceled
	}
	if ownerID != "" && o.Of(crm.PropOwner) != "" {
		props[crm.PropOwner] = ownerID
	}
	return props
}

// UpdateProps are the properties an update of an existing meeting sends:
// only calendar-owned ones. The outcome is set to CANCELED when the event is
// cancelled, whoever owns it, and set back when Rapport's own cancellation is
// undone; otherwise it is the CRM's.
func (o Ownership) UpdateProps(w *Desired, wasCancelled bool) map[string]string {
	props := map[string]string{}
	for k, v := range w.Props {
		if o.Updatable(k) && k != crm.PropOutcome {
			props[k] = truncateText(v)
		}
	}
	switch {
	case w.Cancel:
		props[crm.PropOutcome] = crm.OutcomeCanceled
	case wasCancelled:
		props[crm.PropOutcome] = w.Props[crm.PropOutcome]
	}
	return props
}

// MaxText is HubSpot's limit on a text property's length, in characters.
const MaxText = 65536

// truncateText cuts a text to the CRM's limit on a character boundary.
func truncateText(s string) string {
	if len(s) <= MaxText {
		return s
	}
	n := 0
	for i := range s {
		if n == MaxText {
			return s[:i]
		}
		n++
	}
	return s
}

// Drifted reports whether the CRM's calendar-owned properties differ from
// the calendar's. Times are compared as instants.
func Drifted(own Ownership, w Desired, m crm.Meeting) bool {
	for _, k := range own.CalendarOwned() {
		if k == crm.PropOutcome {
			continue
		}
		if !SameInstant(w.Props[k], m.Properties[k]) {
			return true
		}
	}
	return false
}

// body is the meeting's description: the event's, followed by a booking's
// answers to its questions. The CRM owns it after creation.
func body(ev *calendar.Event) string {
	if ev.Booking == nil || len(ev.Booking.Answers) == 0 {
		return ev.Description
	}
	var b strings.Builder
	b.WriteString(ev.Description)
	for _, a := range ev.Booking.Answers {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(a.Question + ": " + a.Answer)
	}
	return b.String()
}

// MatchHash identifies a copy by its workspace, start instant and the
// addresses of its organizer and attendees (rooms aside): a booking and
// the calendar event it put on its host's calendar hash alike. Only the
// hash is stored, never the addresses. Empty for a copy without them.
func MatchHash(ws string, ev *calendar.Event) string {
	if ev.Start.IsZero() {
		return ""
	}
	var addrs []string
	add := func(a calendar.Attendee) {
		if e := strings.ToLower(strings.TrimSpace(a.Email)); e != "" && !a.Resource {
			addrs = append(addrs, e)
		}
	}
	add(ev.Organizer)
	for _, a := range ev.Attendees {
		add(a)
	}
	if len(addrs) < 2 {
		return ""
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	h := sha256.New()
	h.Write([]byte(ws + "\x00" + ev.Start.UTC().Format(time.RFC3339) + "\x00" + strings.Join(addrs, "\x00")))
	return hex.EncodeToString(h.Sum(nil))[:32]
}
