package ledger

import (
	"context"
	"time"
)

// Gauges are the ledger's state that /metrics exports, read at scrape
// time so that they are right whichever process did the work.
type Gauges struct {
	// SyncAge is the time since each calendar's last finished sync.
	SyncAge map[string]time.Duration
	// ChannelsExpiring counts channels expiring within the horizon.
	ChannelsExpiring int
	// NeedsReauth counts connections needing re-authorisation, by provider.
	NeedsReauth map[string]int
	// CalendarsGone counts calendars the provider says no longer exist.
	CalendarsGone int
	// OpenDeadLetters counts dead letters not yet retried.
	OpenDeadLetters int
}

// Gauges reads the metrics state.
func (s *Store) Gauges(ctx context.Context, now time.Time, horizon time.Duration) (Gauges, error) {
	g := Gauges{SyncAge: map[string]time.Duration{}, NeedsReauth: map[string]int{}}
	rows, err := s.db.Query(ctx, `SELECT id::text, last_synced_at FROM calendars WHERE last_synced_at IS NOT NULL`)
	if err != nil {
		return g, err
	}
	for rows.Next() {
		var id string
		var at time.Time
		if rows.Scan(&id, &at) == nil {
			g.SyncAge[id] = now.Sub(at)
		}
	}
	rows.Close()
	if err := s.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE channel_expires_at < $1), count(*) FILTER (WHERE status = 'gone') FROM calendars`,
		now.Add(horizon)).Scan(&g.ChannelsExpiring, &g.CalendarsGone); err != nil {
		return g, err
	}
	rows, err = s.db.Query(ctx, `SELECT provider, count(*) FROM connections WHERE status = 'needs_reauth' GROUP BY provider`)
	if err != nil {
		return g, err
	}
	for rows.Next() {
		var prov string
		var n int
		if rows.Scan(&prov, &n) == nil {
			g.NeedsReauth[prov] = n
		}
	}
	rows.Close()
	err = s.db.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE retried_at IS NULL`).Scan(&g.OpenDeadLetters)
	return g, err
}
