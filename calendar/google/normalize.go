package google

import (
	"fmt"
	"maps"
	"time"

	gcal "google.golang.org/api/calendar/v3"

	"github.com/rapportsync/rapport/calendar"
)

const dateLayout = "2006-01-02"

// normalize turns a Google event into a calendar.Event. calendarTZ is the
// calendar's zone from the list answer, used when the event names none.
func normalize(e *gcal.Event, calendarTZ string) (calendar.Event, error) {
	if e.Id == "" {
		return calendar.Event{}, fmt.Errorf("event without id")
	}
	// A cancelled instance of a live series, or a deleted event, may carry
	// nothing but its identity. Keep exactly that, so Event.Minimal holds.
	if e.Status == "cancelled" && e.Start == nil {
		ev := calendar.Event{ID: e.Id, Status: calendar.StatusCancelled, RecurringEventID: e.RecurringEventId, Source: providerName}
		if e.OriginalStartTime != nil {
			t, _, err := instant(e.OriginalStartTime)
			if err != nil {
				return calendar.Event{}, fmt.Errorf("event %s: original start: %w", e.Id, err)
			}
			ev.OriginalStart = t
		}
		return ev, nil
	}
	if e.Start == nil {
		return calendar.Event{}, fmt.Errorf("event %s: no start", e.Id)
	}

	ev := calendar.Event{
		Source:           providerName,
		ID:               e.Id,
		ICalUID:          e.ICalUID,
		RecurringEventID: e.RecurringEventId,
		Status:           status(e.Status),
		Title:            e.Summary,
		Description:      e.Description,
		Location:         e.Location,
		TimeZone:         e.Start.TimeZone,
		Visibility:       orDefault(e.Visibility),
		EventType:        orDefault(e.EventType),
		AttendeesOmitted: e.AttendeesOmitted,
		ConferenceURL:    conferenceURL(e),
		ETag:             e.Etag,
	}
	if ev.TimeZone == "" {
		ev.TimeZone = calendarTZ
	}

	var err error
	var allDay bool
	if ev.Start, allDay, err = instant(e.Start); err != nil {
		return calendar.Event{}, fmt.Errorf("event %s: start: %w", e.Id, err)
	}
	if allDay {
		ev.AllDay = true
		ev.StartDate = e.Start.Date
		ev.EndDate = ev.Start.AddDate(0, 0, 1).Format(dateLayout)
		if e.End != nil && e.End.Date != "" {
			ev.EndDate = e.End.Date
		}
		end, err := time.Parse(dateLayout, ev.EndDate)
		if err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: end: %w", e.Id, err)
		}
		ev.End = end
	} else {
		ev.End = ev.Start
		if e.End != nil {
			if ev.End, _, err = instant(e.End); err != nil {
				return calendar.Event{}, fmt.Errorf("event %s: end: %w", e.Id, err)
			}
		}
	}
	if e.OriginalStartTime != nil {
		if ev.OriginalStart, _, err = instant(e.OriginalStartTime); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: original start: %w", e.Id, err)
		}
	}
	if e.Updated != "" {
		if ev.Updated, err = time.Parse(time.RFC3339Nano, e.Updated); err != nil {
			return calendar.Event{}, fmt.Errorf("event %s: updated: %w", e.Id, err)
		}
		ev.Updated = ev.Updated.UTC()
	}

	for _, a := range e.Attendees {
		if a == nil {
			continue
		}
		ev.Attendees = append(ev.Attendees, calendar.Attendee{
			Email:     a.Email,
			Name:      a.DisplayName,
			Organizer: a.Organizer,
			Self:      a.Self,
			Resource:  a.Resource,
			Optional:  a.Optional,
			Response:  response(a.ResponseStatus),
		})
	}
	if o := e.Organizer; o != nil {
		ev.Organizer = calendar.Attendee{Email: o.Email, Name: o.DisplayName, Self: o.Self, Organizer: true}
		for _, a := range ev.Attendees {
			if a.Organizer {
				ev.Organizer.Response = a.Response
				break
			}
		}
	}
	if e.ExtendedProperties != nil && len(e.ExtendedProperties.Private) > 0 {
		ev.Private = maps.Clone(e.ExtendedProperties.Private)
	}
	return ev, nil
}

// instant reads a start, end or original start: a UTC instant, and whether
// it is an all-day date (then midnight UTC of that date).
func instant(dt *gcal.EventDateTime) (time.Time, bool, error) {
	if dt.DateTime != "" {
		t, err := time.Parse(time.RFC3339, dt.DateTime)
		if err != nil {
			return time.Time{}, false, err
		}
		return t.UTC(), false, nil
	}
	if dt.Date != "" {
		t, err := time.Parse(dateLayout, dt.Date)
		return t, true, err
	}
	return time.Time{}, false, fmt.Errorf("neither dateTime nor date")
}

func status(s string) calendar.Status {
	if s == "" {
		return calendar.StatusConfirmed
	}
	return calendar.Status(s)
}

func response(s string) calendar.Response {
	switch s {
	case "", "needsAction":
		return calendar.ResponseNeedsAction
	}
	return calendar.Response(s)
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

// conferenceURL is the Meet link, or else the video entry point of the
// conference data (Zoom, Teams, ... add-ons).
func conferenceURL(e *gcal.Event) string {
	if e.HangoutLink != "" {
		return e.HangoutLink
	}
	if e.ConferenceData != nil {
		for _, ep := range e.ConferenceData.EntryPoints {
			if ep != nil && ep.EntryPointType == "video" && ep.Uri != "" {
				return ep.Uri
			}
		}
	}
	return ""
}
