// Package credentials is the token vault, the one place that touches OAuth
// tokens. Tokens are sealed with AES-256-GCM under a key id from
// RAPPORT_ENCRYPTION_KEYS (decrypt with any configured key, encrypt with the
// first) and stored in the connections table. The vault hands out a valid
// access token on demand, refreshing it shortly before expiry with one refresh
// at a time per connection across goroutines and processes, persists rotated
// refresh tokens, and marks a connection needs_reauth when its grant is gone.
package credentials
