// Package probe holds the black-box security probes of issue 16: its tests
// build the rapport binary, start `rapport run` on loopback against a fresh
// database and Redis database, and send what an attacker or a clumsy
// operator would (malformed ids, NUL bytes, huge bodies, forged webhooks,
// OAuth starts without a connect link), asserting the answers and that
// nothing was queued or stored. It has no code of its own.
package probe
