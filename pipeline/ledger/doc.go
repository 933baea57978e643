// Package ledger is the one owner of Rapport's state in PostgreSQL: every
// SQL statement on workspaces, connections, calendars (cursors, dirty
// counters, channels), meetings, meeting copies, dead letters,
// reconciliation runs, connect links and the company index lives here,
// behind typed methods. No other package writes those tables.
//
// The ledger keeps identifiers, cursors, hashes and decisions, never
// calendar content: no titles, descriptions or attendee addresses.
package ledger
