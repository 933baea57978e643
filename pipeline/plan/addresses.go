package plan

import (
	"strings"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/rules"
)

// addresses returns the contact addresses (external attendees of matched
// companies) and the owner candidates of an event, from its decision's
// attendee classes.
func addresses(ev *calendar.Event, d *rules.Decision) (contacts, owners []string) {
	for i, a := range d.Attendees {
		if i >= len(ev.Attendees) {
			break // the owner and organizer appended to the trace
		}
		if a.External && len(a.Companies) > 0 {
			contacts = append(contacts, strings.ToLower(ev.Attendees[i].Email))
		}
	}
	if isInternal(d, ev.Organizer.Email, ev) {
		owners = append(owners, strings.ToLower(ev.Organizer.Email))
	}
	for i, a := range d.Attendees {
		if i < len(ev.Attendees) && a.Internal && !a.Resource {
			owners = append(owners, strings.ToLower(ev.Attendees[i].Email))
		}
	}
	return contacts, owners
}

// isInternal reports whether addr is one of the event's attendees that the
// decision classified internal, or the organizer when classified so.
func isInternal(d *rules.Decision, addr string, ev *calendar.Event) bool {
	if addr == "" {
		return false
	}
	for i, a := range ev.Attendees {
		if strings.EqualFold(a.Email, addr) && i < len(d.Attendees) {
			return d.Attendees[i].Internal
		}
	}
	if n := len(d.Attendees); n > len(ev.Attendees) {
		return d.Attendees[n-1].Internal && d.Attendees[n-1].Organizer
	}
	return false
}
