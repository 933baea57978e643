package calendar

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Class is what kind of failure an error is, which decides what the pipeline
// does with it.
type Class int

// Error classes.
const (
	// Transient failures (5xx, timeouts, connection errors) are retried with
	// backoff.
	Transient Class = iota + 1
	// RateLimited failures are retried after Error.Wait.
	RateLimited
	// Auth failures mean the credentials no longer work; the connection needs
	// re-authorisation.
	Auth
	// Permanent failures will not succeed on retry.
	Permanent
	// NotFound means the calendar or event no longer exists.
	NotFound
	// CursorExpired means the sync cursor is no longer valid; a full listing
	// is needed.
	CursorExpired
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case Auth:
		return "auth"
	case Permanent:
		return "permanent"
	case NotFound:
		return "not_found"
	case CursorExpired:
		return "cursor_expired"
	}
	return "unknown"
}

// Error is a classified provider error.
type Error struct {
	Class Class
	// Wait is how long to wait before retrying, when the provider said.
	Wait time.Duration
	// Op names the failed operation, e.g. "events.list".
	Op  string
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Op, e.Class, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err, Transient for an unclassified error.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Transient
}

// WaitOf returns the wait the provider asked for, or zero.
func WaitOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.Wait
	}
	return 0
}

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
