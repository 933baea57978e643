package pipeline

import "context"

// ScheduleTick is one tick of a worker's schedules, for tests that drive
// the schedules by an injected clock instead of waiting for them.
func (p *Pipeline) ScheduleTick(ctx context.Context) { p.scheduleTick(ctx) }
