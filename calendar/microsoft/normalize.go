package microsoft

import (
	"errors"
	"fmt"
	"html"
	"regexp"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
)

// The single-value extended properties Rapport keeps its ids in
// (CONTRACT.md), by the calendar.Private key they are read back into.
const (
	propSet          = "{6b2c3a4e-5d0f-4c1a-9e7b-2f8d1c0a9b31}"
	ExtPropMeetingID = "String " + propSet + " Name " + calendar.PropMeetingID
	ExtPropKey       = "String " + propSet + " Name " + calendar.PropKey
)

var extProps = map[string]string{calendar.PropMeetingID: ExtPropMeetingID, calendar.PropKey: ExtPropKey}

// expandProps is the $expand that reads both properties back.
var expandProps = "singleValueExtendedProperties($filter=id eq '" + ExtPropMeetingID + "' or id eq '" + ExtPropKey + "')"

const (
	dateLayout  = "2006-01-02"
	graphLayout = "2006-01-02T15:04:05.9999999"
)

// normalize turns a Graph event into a calendar.Event. For an occurrence,
// master is its series master, whose content an occurrence shares (a delta
// answer may carry nothing else of it); account is the mailbox's address,
// the attendee marked Self.
func normalize(e *event, master *event, account string) (calendar.Event, error) {
	if e.ID == "" {
		return calendar.Event{}, errors.New("event without id")
	}
	if e.Start == nil || e.End == nil {
		return calendar.Event{}, fmt.Errorf("event %s: no start or end", e.ID)
	}
	c := e // content
	if e.Type == "occurrence" {
		if master == nil {
			return calendar.Event{}, fmt.Errorf("event %s: occurrence without its series master", e.ID)
		}
		c = master
	}
	ev := calendar.Event{
		ID:               e.ID,
		RecurringEventID: e.SeriesMasterID,
		Status:           calendar.StatusConfirmed,
		Title:            c.Subject,
		Description:      bodyText(c),
		Visibility:       visibility(c.Sensitivity),
		EventType:        "default",
		ShowAs:           showAs(c.ShowAs),
		ConferenceURL:    conferenceURL(c),
		ETag:             e.ETag,
		Source:           Name,
		TimeZone:         IANAZone(c.OriginalStartTimeZone),
	}
	if ev.ETag == "" {
		ev.ETag = e.ChangeKey
	}
	if e.IsCancelled || c.IsCancelled {
		ev.Status = calendar.StatusCancelled
	}
	if ev.ShowAs == "oof" {
		// Google's out-of-office events are Outlook's "away" ones.
		ev.EventType = "outOfOffice"
	}
	if c.Location != nil {
		ev.Location = c.Location.DisplayName
	}
	if ev.TimeZone == "" {
		ev.TimeZone = IANAZone(e.Start.TimeZone)
	}

	var err error
	if c.IsAllDay {
		ev.AllDay = true
		if ev.StartDate, err = datePart(e.Start.DateTime); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: start: %w", e.ID, err)
		}
		if ev.EndDate, err = datePart(e.End.DateTime); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: end: %w", e.ID, err)
		}
		ev.Start, _ = time.Parse(dateLayout, ev.StartDate)
		ev.End, _ = time.Parse(dateLayout, ev.EndDate)
	} else {
		if ev.Start, err = instant(e.Start); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: start: %w", e.ID, err)
		}
		if ev.End, err = instant(e.End); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: end: %w", e.ID, err)
		}
	}

	// Identity, as Google gives it for the same invitation: the series'
	// iCalendar UID and, for an instance, its original start.
	ev.ICalUID = ICalendarUID(firstNonEmpty(c.UID, c.ICalUID, e.UID, e.ICalUID))
	switch e.Type {
	case "occurrence":
		// An occurrence that has not moved starts where it always did.
		ev.OriginalStart = ev.Start
	case "exception":
		if e.OriginalStart != "" {
			t, err := time.Parse(time.RFC3339Nano, e.OriginalStart)
			if err != nil {
				return calendar.Event{}, fmt.Errorf("event %s: original start: %w", e.ID, err)
			}
			ev.OriginalStart = t.UTC()
			if c.IsAllDay {
				y, m, d := t.Date()
				ev.OriginalStart = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
			}
		} else {
			ev.OriginalStart = ev.Start
		}
	}
	// A stripped occurrence carries no time of change: its content's is
	// the master's.
	if modified := firstNonEmpty(e.LastModified, c.LastModified); modified != "" {
		if ev.Updated, err = time.Parse(time.RFC3339Nano, modified); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: lastModifiedDateTime: %w", e.ID, err)
		}
		ev.Updated = ev.Updated.UTC()
	}

	own := ""
	if c.ResponseStatus != nil {
		own = c.ResponseStatus.Response
	}
	if e.ResponseStatus != nil && e != c {
		own = e.ResponseStatus.Response
	}
	if o := c.Organizer; o != nil && o.EmailAddress.Address != "" {
		ev.Organizer = calendar.Attendee{
			Email: o.EmailAddress.Address, Name: o.EmailAddress.Name, Organizer: true,
			Self:     c.IsOrganizer || strings.EqualFold(o.EmailAddress.Address, account),
			Response: calendar.ResponseAccepted,
		}
	}
	// Google lists the organizer among the attendees of an event that has
	// any; Graph never does.
	if ev.Organizer.Email != "" && len(c.Attendees) > 0 {
		ev.Attendees = append(ev.Attendees, ev.Organizer)
	}
	for _, a := range c.Attendees {
		addr := a.EmailAddress.Address
		if addr == "" || strings.EqualFold(addr, ev.Organizer.Email) {
			continue
		}
		at := calendar.Attendee{
			Email:    addr,
			Name:     a.EmailAddress.Name,
			Resource: strings.EqualFold(a.Type, "resource"),
			Optional: strings.EqualFold(a.Type, "optional"),
			Self:     account != "" && strings.EqualFold(addr, account),
		}
		if a.Status != nil {
			at.Response = response(a.Status.Response)
		} else {
			at.Response = calendar.ResponseNeedsAction
		}
		if at.Self && own != "" {
			// The mailbox's own answer lives in responseStatus.
			at.Response = response(own)
		}
		ev.Attendees = append(ev.Attendees, at)
	}
	for _, p := range e.ExtendedProperties {
		for key, id := range extProps {
			if strings.EqualFold(p.ID, id) {
				if ev.Private == nil {
					ev.Private = make(map[string]string, 2)
				}
				ev.Private[key] = p.Value
			}
		}
	}
	return ev, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// instant reads Graph's {dateTime, timeZone} as a UTC instant. dateTime has
// no offset; timeZone is UTC (asked for), a Windows or an IANA name.
func instant(dt *dateTimeTZ) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, dt.DateTime); err == nil {
		return t.UTC(), nil
	}
	loc := time.UTC
	if z := IANAZone(dt.TimeZone); z != "" && z != "UTC" {
		l, err := time.LoadLocation(z)
		if err != nil {
			return time.Time{}, err
		}
		loc = l
	} else if z == "" && dt.TimeZone != "" {
		return time.Time{}, fmt.Errorf("unknown time zone %.64q", dt.TimeZone)
	}
	t, err := time.ParseInLocation(graphLayout, dt.DateTime, loc)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// datePart returns the date of an all-day event's start or end, which Graph
// writes as midnight of that date.
func datePart(v string) (string, error) {
	if len(v) < len(dateLayout) {
		return "", fmt.Errorf("bad date %.40q", v)
	}
	d := v[:len(dateLayout)]
	if _, err := time.Parse(dateLayout, d); err != nil {
		return "", err
	}
	return d, nil
}

func response(s string) calendar.Response {
	switch strings.ToLower(s) {
	case "accepted", "organizer":
		return calendar.ResponseAccepted
	case "tentativelyaccepted":
		return calendar.ResponseTentative
	case "declined":
		return calendar.ResponseDeclined
	}
	return calendar.ResponseNeedsAction
}

// visibility maps sensitivity to Google's visibility. "personal" hides
// the details in Outlook too, so it counts as private.
func visibility(s string) string {
	switch strings.ToLower(s) {
	case "private", "personal":
		return "private"
	case "confidential":
		return "confidential"
	}
	return "default"
}

func showAs(s string) string {
	switch s {
	case "free", "tentative", "busy", "oof", "workingElsewhere":
		return s
	}
	return ""
}

func conferenceURL(e *event) string {
	if e.OnlineMeeting != nil && e.OnlineMeeting.JoinURL != "" {
		return e.OnlineMeeting.JoinURL
	}
	return e.OnlineMeetingURL
}

var (
	htmlBreaks = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>|</li>`)
	htmlTags   = regexp.MustCompile(`(?s)<[^>]*>`)
	htmlHead   = regexp.MustCompile(`(?is)<(head|style|script)[^>]*>.*?</(head|style|script)>`)
)

// bodyText is the event's body as text. Rapport asks for text (Prefer:
// outlook.body-content-type="text"); an HTML body that comes anyway is
// stripped of its markup.
func bodyText(e *event) string {
	if e.Body == nil {
		return ""
	}
	if !strings.EqualFold(e.Body.ContentType, "html") {
		return e.Body.Content
	}
	s := htmlHead.ReplaceAllString(e.Body.Content, "")
	s = htmlBreaks.ReplaceAllString(s, "\n")
	s = htmlTags.ReplaceAllString(s, "")
	return strings.TrimSpace(html.UnescapeString(s))
}
