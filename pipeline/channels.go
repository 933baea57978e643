package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/calendar"
)

// webhookAddress is where Google delivers notifications.
func (p *Pipeline) webhookAddress() string {
	return strings.TrimRight(p.cfg.PublicURL, "/") + "/webhooks/google"
}

// openChannel opens a new watch channel for a calendar whose channel is
// missing or expires within renewWithin, stores it, and only then stops the
// old one, so no change falls between the two. A lease keeps two processes
// (a renewal and a new connection) from opening two channels.
func (p *Pipeline) openChannel(ctx context.Context, calID string) error {
	l, ok, err := p.tryLease(ctx, "channel:"+calID)
	if err != nil || !ok {
		return err // someone else is opening it
	}
	defer l.release(ctx)
	cal, err := p.calendarRow(ctx, calID)
	if err != nil {
		return err
	}
	if cal.ChannelID != "" && cal.ChannelExpiresAt != nil && cal.ChannelExpiresAt.After(p.now().Add(renewWithin)) {
		return nil // opened meanwhile
	}
	src, err := p.source(ctx, cal.ConnectionID)
	if err != nil {
		return err
	}
	ch, err := src.(calendar.Watcher).Watch(ctx, calendar.WatchRequest{CalendarID: cal.CalendarID, Address: p.webhookAddress()})
	p.metrics.googleCalls.WithLabelValues("events.watch", classLabel(err)).Inc()
	if err != nil {
		return fmt.Errorf("watch calendar %s: %w", cal.ID, err)
	}
	_, err = p.db.Exec(ctx, `UPDATE calendars SET channel_id = $2, channel_resource_id = $3, channel_token_hash = $4, channel_expires_at = $5 WHERE id = $1`,
		cal.ID, ch.ID, ch.ResourceID, calendar.HashToken(ch.Token), ch.Expiration)
	if err != nil {
		return fmt.Errorf("store channel of %s: %w", cal.ID, err)
	}
	if cal.ChannelID != "" {
		err := src.(calendar.Watcher).StopWatch(ctx, calendar.Channel{ID: cal.ChannelID, ResourceID: cal.ChannelResourceID})
		p.metrics.googleCalls.WithLabelValues("channels.stop", classLabel(err)).Inc()
		if err != nil {
			// The old channel expires by itself; its notifications now
			// answer 404.
			p.log.WarnContext(ctx, "stop old channel", slog.String("calendar_id", cal.ID), slog.Any("error", err))
		}
	}
	return nil
}

// renewWithin: channels expiring within this are renewed.
const renewWithin = 24 * time.Hour

// handleRenew renews every channel expiring within a day (and opens the
// ones missing).
func (p *Pipeline) handleRenew(ctx context.Context, t *asynq.Task) error {
	rows, err := p.db.Query(ctx, calSelect+` WHERE k.status = 'active' AND c.status <> 'paused' AND (c.channel_expires_at IS NULL OR c.channel_expires_at < $1)`,
		p.now().Add(renewWithin))
	if err != nil {
		return err
	}
	cals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (calRow, error) { return scanCal(r) })
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cals {
		if err := p.openChannel(ctx, c.ID); err != nil {
			if calendar.ClassOf(err) == calendar.Auth {
				_ = p.cfg.Vault.MarkNeedsReauth(ctx, c.ConnectionID, truncate(err.Error(), 300))
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GoogleNotification verifies a push notification against the stored
// channel and, for a change, marks the calendar dirty and enqueues its
// sync. It does no other work: the webhook answers at once.
func (p *Pipeline) GoogleNotification(ctx context.Context, n calendar.Notification) error {
	var calID, resourceID string
	var hash []byte
	err := p.db.QueryRow(ctx, `SELECT id, coalesce(channel_resource_id, ''), channel_token_hash FROM calendars WHERE channel_id = $1`, n.ChannelID).
		Scan(&calID, &resourceID, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("channel %q: %w", n.ChannelID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("find channel: %w", err)
	}
	if !calendar.VerifyToken(n.Token, hash) || (resourceID != "" && n.ResourceID != resourceID) {
		return fmt.Errorf("channel %q: token or resource does not match: %w", n.ChannelID, ErrInvalid)
	}
	if n.State == calendar.StateSync {
		return nil
	}
	return p.markDirty(ctx, calID, false, p.now())
}
