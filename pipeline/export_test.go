package pipeline

import (
	"context"
	"time"
)

// ScheduleTick is one tick of a worker's schedules, for tests that drive
// the schedules by an injected clock instead of waiting for them.
func (p *Pipeline) ScheduleTick(ctx context.Context) { p.scheduleTick(ctx) }

// SetCrash installs the crash hook: when f returns true at a named point
// (CrashPoints), the handler stops there as if its process died.
func (c *Config) SetCrash(f func(point string) bool) { c.crash = f }

// SetLeaseTTL shortens how long a dead process's leases and create
// attempts outlive it, so that tests of crashes need not wait 20 s.
func (c *Config) SetLeaseTTL(d time.Duration) { c.leaseTTL, c.attemptTTL = d, d }
