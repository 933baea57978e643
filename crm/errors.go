package crm

import (
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
	// NotFound means the record no longer exists.
	NotFound
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
	}
	return "unknown"
}

// Error is a classified provider error.
type Error struct {
	Class Class
	// Wait is how long to wait before retrying, when the provider said.
	Wait time.Duration
	// Op names the failed operation, e.g. "meetings.batch.create".
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
