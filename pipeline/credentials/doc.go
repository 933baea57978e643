// Package credentials is the token vault, the one place that touches OAuth
// tokens. Tokens are sealed with AES-256-GCM under a key id from
// RAPPORT_ENCRYPTION_KEYS (decrypt with any configured key, encrypt with the
// first; Rotate re-encrypts everything with the first) and stored in the
// connections table, with the connection id as additional data so that a
// ciphertext copied to another row does not open. The vault hands out a valid
// access token on demand, refreshing it 30 s before expiry with one refresh at
// a time per connection across goroutines (singleflight) and processes (a
// PostgreSQL advisory lock, then a reload: another process may have refreshed
// already), persists rotated refresh tokens, refreshes ahead of expiry on a
// schedule with per-connection jitter, and marks a connection needs_reauth
// when its grant is gone — after which it never calls the token endpoint for
// that connection again until the connection is re-authorised with Put.
package credentials
