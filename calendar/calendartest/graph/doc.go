// Package graph owns the fake Microsoft Graph server used by tests of the
// Microsoft 365 calendar adapter (and, later, the demo and bench). Server
// speaks Graph v1.0's wire format for what Rapport uses: per-mailbox
// calendars whose events are single, recurring (occurrences, moved
// exceptions, cancelled occurrences) or cancelled; calendarView delta
// rounds with pages (@odata.nextLink, @odata.deltaLink, Prefer:
// odata.maxpagesize), @removed entries for events deleted or moved out of
// the window, delta tokens that expire (410 syncStateNotFound), and
// occurrences as stripped as Graph sends them; GET and PATCH of events
// with single-value extended properties read back through $expand (which
// calendarView delta refuses, as Graph's documentation says); Windows zone
// names when Prefer: outlook.timezone asks for one; subscriptions whose
// creation performs the validation handshake against both addresses and
// fails as Graph does on a wrong or slow echo, renewal and deletion, and
// change and lifecycle notifications delivered to them; 429 with
// Retry-After (an injectable storm, and the four-requests-per-mailbox
// limit), 401 for revoked tokens; and the identity platform's token
// endpoint (authorization_code, refresh_token with rotation, invalid_grant
// once revoked).
//
// Its Go API mirrors calendartest.Server: AddMailbox, AddCalendar, Insert,
// Move, Rename, Cancel, Delete, AddAttendee, RemoveAttendee,
// MoveOccurrence, CancelOccurrence, Notify, Lifecycle, SetAutoNotify,
// Calls, FailNext, Throttle, Revoke.
package graph
