// Package microsoft owns Rapport's Microsoft 365 calendar source, spoken to
// over Microsoft Graph v1.0 with net/http and small structs (no SDK). It
// lists changes of a calendar with calendarView delta queries bound to the
// sync window (cursors carry the window, and answer CursorExpired once it
// has slid on), tells events that left the window from deleted ones,
// normalises Graph events to calendar.Event with the same identity Google
// gives the same invitation (iCalendar UID decoded from Exchange's global
// object id, original start of an instance), writes Rapport's ids into
// single-value extended properties, opens, renews and deletes change
// notification subscriptions and parses their webhooks, including the
// validation handshake and lifecycle events.
//
// Every request goes through one client that paces the mailbox (at most four
// requests in flight per connection, and the connection's share of Graph's
// 10,000 requests per 10 minutes through calendar.Conn.Limiter), retries
// rate limits and transient failures with backoff, and classifies every
// failure as a calendar.Error whose text never carries a URL query, a token
// or an e-mail address.
package microsoft
