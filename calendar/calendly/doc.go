// Package calendly owns Rapport's Calendly source: it lists a connection's
// scheduled events with their invitees and normalises them to
// calendar.Event, creates and deletes the webhook subscription that
// announces bookings and cancellations, parses and verifies webhook
// deliveries, and answers who a token belongs to and which scope it may
// use. It speaks Calendly API v2 over net/http; rate limits and transient
// failures are retried here with backoff, and every error leaves the
// package classified as a calendar.Error.
//
// # Connections and calendars
//
// A connection (an OAuth token, refreshed with single-use rotating refresh
// tokens, or a personal access token that neither expires nor refreshes;
// the package only sees an oauth2.TokenSource) has one calendar: its
// scheduling scope. The calendar id is the organization URI for scope
// organization (every member's events; the token's user must be an owner
// or admin, which ResolveScope checks) or the user URI for scope user (the
// events the user hosts).
//
// # Listing, and the cursor marker
//
// Calendly has no sync token. List with an empty Cursor lists the
// scope's scheduled events starting in the window (GET /scheduled_events,
// min_start_time widened by a day so that events ending in the window are
// listed, then filtered on their end), active and canceled, page by page
// (Calendly's page_token travels in ListRequest.PageToken), each with its
// invitees (GET /scheduled_events/{uuid}/invitees) and its event type's
// name (GET /event_types/{uuid}, cached for an hour). The Event resource
// carries calendar_event; should a listing's items leave the field out,
// each is completed with GET /scheduled_events/{uuid}. The last page carries NextCursor ListingCursor; a List with that
// cursor is simply a full listing again, so a periodic "incremental" sync
// is a reconciliation of the window. Deletions cannot be seen: a scheduled
// event is canceled, never removed, so a listing shows cancellations as
// events with Status cancelled.
//
// List with ListRequest.EventIDs (scheduled event URIs or uuids, as
// notifications carry them) fetches exactly those events with GET
// /scheduled_events/{uuid}, which, unlike webhook payloads, carries
// calendar_event, and their invitees; the page has no cursor and no page
// token. An event Calendly no longer has comes back as a minimal
// cancellation (ID and Status only).
//
// # Identity
//
// An Event's ID is the scheduled event's uuid. Its ICalUID is
// "calendly:" + the uuid of the booking's root scheduled event: the event
// itself, or, when it was created by rescheduling, the first event of the
// chain of reschedules (see below). Every copy of one booking, before and
// after any number of reschedules, thus has one ICalUID, and so one
// meeting key. Booking.CalendarEventKind and CalendarEventID name the
// event Calendly put on the host's calendar (calendar_event), which is the
// same meeting as the booking.
//
// # Reschedules
//
// Calendly reschedules by canceling the old scheduled event
// (invitee.canceled with rescheduled true and new_invitee) and creating a
// new one (invitee.created with old_invitee), deliveries in either order,
// possibly duplicated, one possibly late or lost. The HubSpot meeting must
// move, never be canceled and created again. So:
//
//   - The new event's ICalUID is its root's: the adapter follows
//     old_invitee back (GET the old invitee, whose own old_invitee leads
//     further), at most 16 reschedules, caching each event's root (the
//     links never change). Only movable events chain: a "solo" event type
//     (one invitee per event), or, when the event type is unknown, an
//     event with exactly one invitee. A group event is a slot invitees
//     join and leave; it keeps its own uuid as root.
//   - The old event comes back with Status cancelled and
//     Booking.Rescheduled true. For a Calendly event, Rescheduled means
//     exactly that: "this copy is gone because its booking moved to
//     another event with the same ICalUID; the meeting lives on". The
//     pipeline drops the copy and does not cancel the meeting. A plain
//     cancellation (rescheduled false, or a canceled group event) is
//     Status cancelled with Rescheduled false: the meeting is canceled. A
//     live event, moved or not, always has Rescheduled false, so a moved
//     booking canceled later is an ordinary cancellation.
//   - A notification of either side names both events (the payload's and
//     the one its new_invitee or old_invitee belongs to), so either
//     delivery alone brings both copies up to date; duplicates fetch the
//     same state twice, and a lost delivery is caught by the other or by
//     the next listing.
//
// # Normalisation
//
// Source "calendly"; Title the event name; Start and End in UTC; Status
// cancelled when the event is canceled or no invitee is active any more,
// else confirmed; Location the location string (address, phone, free
// text) and ConferenceURL its join_url (Zoom, Google Meet, Teams, Webex,
// GoTo); Organizer the first host of event_memberships; Attendees the
// hosts (accepted), the active invitees (accepted; every invitee of a
// canceled event) and the event_guests (needs_action), one per e-mail
// address. Self marks the host who is the token's user. Description is
// empty: the booking's content is in Booking (EventType, every shown
// invitee's answers in question order, the first utm_* value of each
// key). Visibility and EventType are "default"; ETag changes with the
// event or any invitee.
//
// # Webhooks
//
// Watch creates the subscription (invitee.created, invitee.canceled) with
// a signing key generated here and returned once as Channel.Token; Channel
// .ID is the subscription URI. The pipeline gives each channel its own
// address, {public}/webhooks/calendly/{channel}, so ParseWebhook takes the
// channel from the path, never from the body. A 409 (the address is
// already subscribed) is adopted by replacement: Calendly's signing keys
// are write-only, so the existing subscription is found by listing the
// scope's subscriptions, deleted and created again with a key Rapport
// knows (FindSubscription finds one without replacing it).
// SubscriptionState tells a disabled subscription (Calendly disables one
// after 24 hours of failed deliveries and never re-enables it) or a
// deleted one (NotFound): open a new one on a new address, then stop the
// old, and list in full. VerifySignature checks Calendly-Webhook-Signature
// (t=<unix>,v1=<hex HMAC-SHA256(key, t + "." + body)>) in constant time
// and rejects signatures older than 3 minutes or more than 30 seconds
// ahead of the receive time. A subscription created with an OAuth token is
// signed with the key Rapport gave it; should Calendly sign it with the
// OAuth application's key instead, the pipeline verifies with
// RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY as a fallback.
//
// # Errors and rate limits
//
// One table (classifyAnswer) maps answers to classes: 429 RateLimited with
// the wait from Retry-After or X-RateLimit-Reset; 401 Auth; 403
// Insufficient scope Auth (authorise again), other 403s Permanent (a role
// or a plan that does not allow it); 404 NotFound; 5xx Transient. A
// refresh token Calendly refuses (invalid_grant) is Auth. Error texts
// carry no tokens, e-mail addresses or query strings. Requests are paced
// through calendar.Conn.Limiter under "calendly:"+Conn.ID (DefaultLimit,
// half of Calendly's 500 requests a minute per user).
package calendly
