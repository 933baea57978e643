package crm

import (
	"time"

	"github.com/rapportsync/rapport/internal/provider"
)

// Class is what kind of failure an error is (shared with calendar: one
// type).
type Class = provider.Class

// Error classes.
const (
	Transient   = provider.Transient
	RateLimited = provider.RateLimited
	Auth        = provider.Auth
	Permanent   = provider.Permanent
	NotFound    = provider.NotFound
)

// Error is a classified provider error.
type Error = provider.Error

// ClassOf returns the class of err, Transient for an unclassified error.
func ClassOf(err error) Class { return provider.ClassOf(err) }

// WaitOf returns the wait the provider asked for, or zero.
func WaitOf(err error) time.Duration { return provider.WaitOf(err) }
