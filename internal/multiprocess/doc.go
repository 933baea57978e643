// Package multiprocess holds the end-to-end test of Rapport deployed as
// several processes — `rapport serve` and two or more `rapport worker` —
// built from cmd/rapport and run as real subprocesses against one
// PostgreSQL database, one Redis database and the fake providers, which
// run in the test process. It kills a worker with SIGKILL in the middle of
// a backfill, stops another with SIGTERM while it writes, and checks that
// nothing is lost or doubled and that the schedules run once per period.
// It has no non-test code.
package multiprocess
