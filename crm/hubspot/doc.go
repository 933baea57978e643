// Package hubspot implements crm.Sink against HubSpot's CRM API over plain
// net/http: typed requests and responses for exactly the endpoints Rapport
// uses (the 2026-03 date-versioned paths), batches split at 100 inputs with
// 207 partial failures mapped back to their inputs by objectWriteTraceId,
// HubSpot's errors translated into crm's classes, retries with backoff, and a
// client-side rate limiter per portal shared by every process through Redis
// (redis_rate's GCRA), kept under HubSpot's ten-second burst with a margin
// and under the separate search limit.
//
// The package does not obtain or refresh tokens: it takes an
// oauth2.TokenSource and asks it for a token before each request.
package hubspot
