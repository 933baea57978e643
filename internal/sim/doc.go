// Package sim runs Rapport against simulated providers: the fake Google
// Calendar and HubSpot servers filled with a generated sample company. It
// is `rapport demo` and `rapport bench`, and tests reuse it.
package sim

import (
	"errors"
	"io"
)

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// ErrReported is a failure whose details were printed already.
var ErrReported = errors.New("failed")

// UsageError is bad usage of a command's flags.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }
