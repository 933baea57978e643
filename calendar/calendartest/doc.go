// Package calendartest owns the fake Google Calendar v3 server used by tests,
// `rapport demo` and `rapport bench`. Server speaks the Calendar v3 wire
// format faithfully enough that google.golang.org/api/calendar/v3 cannot tell
// it from Google: events.list with paging, sync tokens (410 fullSyncRequired
// when they expire), singleEvents expansion of recurring series with moved and
// cancelled instances, events.get and events.patch, events.watch and
// channels.stop with push notifications carrying Google's headers, bearer
// token checks and switchable faults (rate limits, backend errors, revoked
// tokens, latency). A small Go API creates, moves, renames, cancels and
// deletes events, so a test can script what a calendar user does.
//
// Every change gets a per-calendar sequence number and the listing index is
// ordered by it, so an incremental listing costs O(changes), not O(events).
package calendartest
