package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Aliases returns, for the keys that joined another meeting, that
// meeting's key.
func (s *Store) Aliases(ctx context.Context, ws string, keys []string) (map[string]string, error) {
	out := map[string]string{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT alias_key, meeting_key FROM meeting_aliases WHERE workspace_id = $1 AND alias_key = ANY($2)`, ws, keys)
	if err != nil {
		return nil, fmt.Errorf("read aliases: %w", err)
	}
	var a, k string
	if _, err := pgx.ForEachRow(rows, []any{&a, &k}, func() error { out[a] = k; return nil }); err != nil {
		return nil, fmt.Errorf("read aliases: %w", err)
	}
	return out, nil
}

// Partner is how a copy may find the meeting it belongs to across
// sources: a booking by the calendar event it put on its host's calendar
// or by its match hash; a calendar copy by a booking naming it, or by the
// same match hash.
type Partner struct {
	Booking bool
	// EventID is the copy's own event id (a calendar copy); ExternalID the
	// calendar event a booking names.
	EventID, ExternalID, MatchHash string
}

// PartnerKeys finds, for each copy, the key of the meeting it belongs to
// through its partner on another source; copies without one are absent.
func (s *Store) PartnerKeys(ctx context.Context, ws string, ps []Partner) (map[int]string, error) {
	out := map[int]string{}
	var ext, own, hashes []string
	for _, p := range ps {
		switch {
		case p.Booking && p.ExternalID != "":
			ext = append(ext, p.ExternalID)
		case !p.Booking && p.EventID != "":
			own = append(own, p.EventID)
		}
		if p.MatchHash != "" {
			hashes = append(hashes, p.MatchHash)
		}
	}
	// Calendar copies of the events bookings name, bookings naming these
	// calendar events, and copies of the other kind with the same hash.
	byEvent, byExternal, byHash := map[string]string{}, map[string]string{}, map[[2]string]string{}
	collect := func(sql string, args []any, put func(a, b, key string)) error {
		rows, err := s.db.Query(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("find partner copies: %w", err)
		}
		var a, b, key string
		_, err = pgx.ForEachRow(rows, []any{&a, &b, &key}, func() error { put(a, b, key); return nil })
		return err
	}
	if len(ext) > 0 {
		if err := collect(`SELECT c.event_id, '', m.meeting_key FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
			WHERE m.workspace_id = $1 AND c.event_id = ANY($2) AND NOT c.booking`, []any{ws, ext},
			func(a, _, k string) { byEvent[a] = k }); err != nil {
			return nil, err
		}
	}
	if len(own) > 0 {
		if err := collect(`SELECT c.external_event_id, '', m.meeting_key FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
			WHERE m.workspace_id = $1 AND c.external_event_id = ANY($2) AND c.booking`, []any{ws, own},
			func(a, _, k string) { byExternal[a] = k }); err != nil {
			return nil, err
		}
	}
	if len(hashes) > 0 {
		if err := collect(`SELECT c.match_hash, c.booking::text, m.meeting_key FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
			WHERE m.workspace_id = $1 AND c.match_hash = ANY($2) AND c.status <> 'cancelled'`, []any{ws, hashes},
			func(h, booking, k string) { byHash[[2]string{h, booking}] = k }); err != nil {
			return nil, err
		}
	}
	for i, p := range ps {
		var key string
		switch {
		case p.Booking && p.ExternalID != "":
			key = byEvent[p.ExternalID]
		case !p.Booking && p.EventID != "":
			key = byExternal[p.EventID]
		}
		if key == "" && p.MatchHash != "" {
			other := "true" // a calendar copy looks for a booking, and back
			if p.Booking {
				other = "false"
			}
			key = byHash[[2]string{p.MatchHash, other}]
		}
		if key != "" {
			out[i] = key
		}
	}
	return out, nil
}

// HasBookings reports whether a workspace holds any booking copy: only
// then do its calendar copies look for bookings to join.
func (s *Store) HasBookings(ctx context.Context, ws string) (bool, error) {
	var has bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM meeting_copies c JOIN calendars k ON k.id = c.calendar_id WHERE k.workspace_id = $1 AND c.booking)`, ws).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("find bookings: %w", err)
	}
	return has, nil
}

// AddAliases records that the copies of alias keys joined other meetings,
// in the page's transaction.
func (t *Tx) AddAliases(ctx context.Context, ws string, aliases map[string]string) error {
	for a, k := range aliases {
		if _, err := t.tx.Exec(ctx, `INSERT INTO meeting_aliases (workspace_id, alias_key, meeting_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, ws, a, k); err != nil {
			return fmt.Errorf("record alias: %w", err)
		}
	}
	return nil
}
