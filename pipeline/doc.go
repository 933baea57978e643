// Package pipeline composes the calendar sources, the CRM sink, matching and
// rules into Rapport's sync: the Asynq task types and their handlers, the
// meetings ledger and its per-calendar copies, exactly-once CRM writes, field
// ownership, retries and dead letters, the periodic schedules and
// reconciliation. It owns the database tables of the ledger, calendars and
// connections state; its subpackages hold the token vault (credentials) and
// the HTTP surface (httpapi).
package pipeline
