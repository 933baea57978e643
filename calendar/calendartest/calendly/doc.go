// Package calendly owns the fake Calendly API v2 used by tests, `rapport
// demo` and `rapport bench`. Server speaks Calendly's wire format: the
// OAuth token endpoint (authorization_code and refresh_token grants with
// single-use, rotating refresh tokens and invalid_grant), personal access
// tokens, token scopes (403 Insufficient scope), /users/me, organization
// memberships with roles, event types, scheduled events and their invitees
// with Calendly's pagination (pagination.next_page_token / next_page),
// calendar_event on the Event resource, listed and fetched (webhook
// payloads do not carry it; SetListOmitsCalendarEvent keeps it to GET by
// uuid only), and webhook subscriptions: create (409 Already Exists for a URL
// already subscribed in the organization, 403 for a scope the user may not
// subscribe to or a free plan), list, get, delete, and a state that turns
// disabled after deliveries failed for 24 hours of its clock.
//
// A small Go API books, cancels and reschedules meetings as invitees and
// hosts do. Each change is delivered, synchronously and signed with
// Calendly-Webhook-Signature, to the subscriptions that see it; a
// reschedule's two deliveries (invitee.canceled of the old event,
// invitee.created of the new) can be ordered either way, duplicated, held
// back or dropped, and SetSigning sends forged, stale, future, unsigned or
// tampered deliveries. Fail and FailOn inject 429 storms (with
// X-RateLimit-* headers), 5xx, 401 and 403 answers; Calls counts requests
// by endpoint.
package calendly
