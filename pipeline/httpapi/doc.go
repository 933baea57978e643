// Package httpapi is the HTTP surface of `rapport serve`: the provider
// webhooks (verify, enqueue through the Service, answer at once — never do
// the work inline), the OAuth connect flows for Google and HubSpot (signed,
// expiring state bound to the workspace, PKCE S256), the admin API of
// CONTRACT.md behind a constant-time bearer check, the operator console
// (server-rendered pages under /admin/console/ with a signed session
// cookie and CSRF tokens; console.go, auth.go), the Asynq web UI at
// /admin/queues/, /metrics, /healthz and /readyz. Every /admin/ answer
// carries anti-framing and no-sniff headers, and every state-changing
// /admin/ request must come from the public URL's origin.
//
// It owns no state: everything goes through the Service interface, which the
// pipeline implements. Request bodies are size-limited and decoded strictly;
// errors are JSON {"error", "code"} mapped from the pipeline's error classes
// in one table (statusOf). Every request gets a request id (X-Request-ID, or
// a generated one) that tags its log lines; logs carry ids only, never
// tokens, codes, query strings or bodies.
package httpapi
