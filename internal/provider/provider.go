// Package provider holds what every provider adapter shares, whatever it
// speaks to: the classes of failure the pipeline acts on, the error that
// carries one, and the rate limiter adapters pace themselves with. It
// depends on nothing of Rapport's, so calendar, crm and their adapters can
// all use it.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Class is what kind of failure an error is, which decides what the
// pipeline does with it (pipeline's one table of actions).
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
	// NotFound means the calendar, event or record no longer exists.
	NotFound
	// CursorExpired means a sync cursor is no longer valid; a full listing
	// is needed.
	CursorExpired
)

var classNames = map[Class]string{
	Transient: "transient", RateLimited: "rate_limited", Auth: "auth",
	Permanent: "permanent", NotFound: "not_found", CursorExpired: "cursor_expired",
}

func (c Class) String() string {
	if s, ok := classNames[c]; ok {
		return s
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

// Label is an error's class for metrics labels: "ok" for nil, "error" for
// an unclassified error.
func Label(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class.String()
	}
	return "error"
}

// Limit is a rate: Rate requests per Period after a Burst (a GCRA).
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// Limiter paces requests against a provider's budget. The pipeline hands
// adapters one backed by Redis, so every process shares each budget.
type Limiter interface {
	// Allow takes one request from key's budget. It returns zero when the
	// request may go, else how long to wait before asking again.
	Allow(ctx context.Context, key string, l Limit) (time.Duration, error)
}

// RequestError is a webhook request a provider's adapter refuses: the
// status and code to answer, and why, in words for the caller.
type RequestError struct {
	Status int
	Code   string
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

// ErrNotConfigured: the provider lacks a setting the operation needs (a
// webhook secret, an OAuth client).
var ErrNotConfigured = errors.New("not configured")
