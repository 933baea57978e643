// Package crmtest is a fake HubSpot for tests, `rapport demo` and `rapport
// bench`: an httptest server speaking HubSpot's wire format for the
// endpoints Rapport uses — companies list and search, contacts batch read
// by e-mail, meetings batch create/update/upsert/read/search and single
// get/patch/delete, v4 associations, meeting property definitions, owners
// and account info — with HubSpot's behaviours that matter to a client: the
// rolling ten-second limit and the search limit with HubSpot's 429 bodies
// and X-HubSpot-RateLimit-* headers, 207 partial failures mapped by
// objectWriteTraceId, validation errors, search that sees writes only after
// a lag and caps results at 10,000, unique-value properties switchable per
// portal, and injectable faults (5xx, 423, hangs, failed inputs, revoked
// tokens). It counts calls per endpoint for benchmarks, and serves an HTML
// timeline per company for the demo.
//
// Where HubSpot's exact behaviour is unconfirmed (e.g. whether meetings
// accept a unique property, the context keys of association errors), the
// fake picks one and says so in a comment.
package crmtest
