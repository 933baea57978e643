package calendar

import (
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/rapportsync/rapport/internal/provider"
)

// Class is what kind of failure an error is (shared with crm: one type).
type Class = provider.Class

// Error classes.
const (
	Transient     = provider.Transient
	RateLimited   = provider.RateLimited
	Auth          = provider.Auth
	Permanent     = provider.Permanent
	NotFound      = provider.NotFound
	CursorExpired = provider.CursorExpired
)

// Error is a classified provider error.
type Error = provider.Error

// ClassOf returns the class of err, Transient for an unclassified error.
func ClassOf(err error) Class { return provider.ClassOf(err) }

// WaitOf returns the wait the provider asked for, or zero.
func WaitOf(err error) time.Duration { return provider.WaitOf(err) }

// HashToken returns the hash of a channel token, the only form stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// VerifyToken compares a notification's token with the stored hash in
// constant time.
func VerifyToken(token string, hash []byte) bool {
	return subtle.ConstantTimeCompare(HashToken(token), hash) == 1
}
