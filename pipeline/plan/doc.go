// Package plan holds Rapport's decisions as pure functions: what a page of
// calendar events does to the ledger (record, write, link, cancel, nothing)
// and what a batch of CRM writes sends (create, update, cancel, adopt,
// wait). Nothing here does I/O; the pipeline reads the ledger, calls a
// planner, and carries out the plan. The ledger's row types and states live
// here too, since the decisions are about them; package ledger persists
// them.
package plan
