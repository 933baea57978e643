// Package google owns Rapport's Google Calendar source: it lists changes of a
// calendar with events.list (singleEvents, sync tokens, paging) and
// normalises Google's events to calendar.Event, opens and stops push channels
// (events.watch, channels.stop), parses and verifies push notifications, and
// writes Rapport's CRM ids into an event copy's private extended properties
// (events.patch). It runs on google.golang.org/api/calendar/v3, which does not
// retry Calendar calls: backoff with jitter on rate limits and transient
// failures is done here, and every error leaves the package classified as a
// calendar.Error.
package google
