package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/pipeline/ledger"
)

// channelAction says what openChannel does with a channel.
type channelAction int

const (
	// renewIfDue renews a channel missing or expiring within renewWithin.
	renewIfDue channelAction = iota
	// renewNow renews it whatever its expiry (the provider asked).
	renewNow
	// reopen opens a new one (the provider dropped the old one).
	reopen
)

// renewWithin: channels expiring within this are renewed.
const renewWithin = 24 * time.Hour

// webhookAddress is where a provider delivers notifications.
func (c *core) webhookAddress(provider string) string {
	return strings.TrimRight(c.cfg.PublicURL, "/") + "/webhooks/" + provider
}

// openChannel opens a push channel for a calendar whose channel is missing
// or expires within renewWithin. A provider that renews in place (Graph)
// extends the channel; otherwise a new one opens, is stored, and only then
// is the old one stopped, so no change falls between the two. A lease
// keeps two processes (a renewal and a new connection) from opening two.
// A provider without push channels has nothing to open.
func (c *core) openChannel(ctx context.Context, calID string, how channelAction) (err error) {
	l, ok, err := c.tryLease(ctx, "channel:"+calID)
	if err != nil || !ok {
		return err // someone else is opening it
	}
	defer func() { l.releaseUnlessCrashed(ctx, err) }()
	cal, err := c.ledger.Calendar(ctx, calID)
	if err != nil {
		return err
	}
	if how == renewIfDue && cal.ChannelID != "" && cal.ChannelExpiresAt != nil && cal.ChannelExpiresAt.After(c.now().Add(renewWithin)) {
		return nil // opened meanwhile
	}
	src, err := c.source(ctx, cal)
	if err != nil {
		return err
	}
	w, ok := src.(calendar.Watcher)
	if !ok {
		return nil
	}
	old := calendar.Channel{ID: cal.ChannelID, ResourceID: cal.ChannelResourceID}
	if r, ok := src.(calendar.Renewer); ok && cal.ChannelID != "" && how != reopen {
		ch, err := r.Renew(ctx, old)
		c.metrics.calendarOps.WithLabelValues(cal.Provider, "renew", classLabel(err)).Inc()
		if err == nil {
			return c.ledger.RenewChannel(ctx, cal.ID, ch.Expiration)
		}
		if calendar.ClassOf(err) != calendar.NotFound {
			return fmt.Errorf("renew channel of calendar %s: %w", cal.ID, err)
		}
		// The subscription is gone: open a new one.
	}
	addr := c.webhookAddress(cal.Provider)
	_, signs := src.(calendar.SignatureVerifier)
	if !signs {
		prov, _ := c.cfg.Providers.Calendar(cal.Provider)
		_, signs = prov.(calendar.SignatureVerifier)
	}
	if signs {
		// A provider that signs its deliveries is told which channel a
		// delivery is for by the address it was given: the calendar's.
		addr += "/" + cal.ID
	}
	ch, err := w.Watch(ctx, calendar.WatchRequest{CalendarID: cal.CalendarID, Address: addr, LifecycleAddress: addr + "/lifecycle"})
	c.metrics.calendarOps.WithLabelValues(cal.Provider, "watch", classLabel(err)).Inc()
	if err != nil {
		return fmt.Errorf("watch calendar %s: %w", cal.ID, err)
	}
	if err := c.crashAt("renew.watched"); err != nil {
		return err
	}
	secret := calendar.HashToken(ch.Token)
	if signs {
		// The signing key itself is needed to verify; it is kept sealed.
		if secret, err = c.cfg.Vault.Seal(channelAD(cal.ID), []byte(ch.Token)); err != nil {
			return fmt.Errorf("seal the signing key of calendar %s: %w", cal.ID, err)
		}
	}
	if err := c.ledger.StoreChannel(ctx, cal.ID, ch.ID, ch.ResourceID, secret, ch.Expiration); err != nil {
		return err
	}
	if err := c.crashAt("renew.stored"); err != nil {
		return err
	}
	if old.ID != "" && old.ID != ch.ID {
		err := w.StopWatch(ctx, old)
		c.metrics.calendarOps.WithLabelValues(cal.Provider, "stop", classLabel(err)).Inc()
		if err != nil {
			// The old channel expires by itself; its notifications now
			// answer 404.
			c.log.WarnContext(ctx, "stop old channel", slog.String("calendar_id", cal.ID), slog.String("error", scrub(err.Error())))
		}
	}
	return nil
}

// renewPayload names one calendar whose channel the provider asked to be
// renewed or reopened; empty, the schedule's sweep of every channel.
type renewPayload struct {
	CalendarID string `json:"calendar_id,omitempty"`
	// Reopen opens a new channel even if the stored one looks current (the
	// provider removed it).
	Reopen bool `json:"reopen,omitempty"`
}

// handleRenew renews every channel expiring within a day (and opens the
// ones missing), or the one channel the payload names.
func (c *core) handleRenew(ctx context.Context, t *asynq.Task) error {
	var pl renewPayload
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &pl); err != nil {
			return c.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
		}
	}
	if pl.CalendarID != "" {
		how := renewNow
		if pl.Reopen {
			how = reopen
		}
		err := c.openChannel(ctx, pl.CalendarID, how)
		if errors.Is(err, ledger.ErrNotFound) {
			return nil
		}
		if err != nil {
			cal, cErr := c.ledger.Calendar(ctx, pl.CalendarID)
			if cErr != nil {
				return err
			}
			return c.fail(ctx, t, subject{cal.WorkspaceID, cal.ConnectionID}, err)
		}
		return nil
	}
	cals, err := c.ledger.ChannelsToRenew(ctx, c.now().Add(renewWithin))
	if err != nil {
		return err
	}
	var errs []error
	for _, cal := range cals {
		if err := c.openChannel(ctx, cal.ID, renewIfDue); err != nil {
			if crashed(err) {
				return err
			}
			if calendar.ClassOf(err) == calendar.Auth {
				_ = c.cfg.Vault.MarkNeedsReauth(ctx, cal.ConnectionID, ledger.Truncate(scrub(err.Error()), 300))
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Notify handles a provider's push request: it parses it, answers a
// handshake, verifies each notification against its stored channel (the
// token's hash in constant time, or the provider's signature), and for a
// change marks the calendar dirty and queues its sync. It does no other
// work, so the webhook answers at once. An unknown provider or channel is
// ErrNotFound, a malformed request ErrInvalid, a forged one ErrForbidden;
// nothing is queued for any of them.
func (p *Pipeline) Notify(ctx context.Context, name string, req calendar.WebhookRequest) (*calendar.Reply, error) {
	if cp, ok := p.cfg.Providers.CRM(name); ok {
		return nil, p.crmNotify(ctx, cp, req)
	}
	prov, ok := p.cfg.Providers.Calendar(name)
	if !ok {
		return nil, fmt.Errorf("provider %q: %w", name, ErrNotFound)
	}
	parser, ok := prov.(calendar.WebhookParser)
	if !ok {
		return nil, fmt.Errorf("%s sends no webhooks: %w", name, ErrNotFound)
	}
	verifier, signs := prov.(calendar.SignatureVerifier)
	if signs {
		// Verify before parsing: the address Rapport registered names the
		// calendar, whose sealed key must sign the body.
		calID, _, _ := strings.Cut(strings.TrimPrefix(req.Path, "/"), "/")
		if err := p.verifySigned(ctx, name, calID, verifier, req); err != nil {
			return nil, err
		}
	}
	reply, ns, err := parser.ParseWebhook(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", err.Error(), ErrInvalid)
	}
	if reply != nil {
		return reply, nil
	}
	// Verify every notification before acting on any.
	type change struct {
		calID, channelID string
		state            calendar.NotificationState
		eventIDs         []string
	}
	var changes []change
	for _, n := range ns {
		var ch ledger.Channel
		if signs {
			// Signed deliveries name their channel by the address Rapport
			// registered: the calendar's id.
			ch, err = p.ledger.ChannelOfCalendar(ctx, n.ChannelID)
		} else {
			ch, err = p.ledger.ChannelByID(ctx, n.ChannelID)
		}
		if errors.Is(err, ledger.ErrNotFound) || (err == nil && ch.Provider != name) {
			return nil, fmt.Errorf("channel %q: %w", n.ChannelID, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if ch.ResourceID != "" && n.ResourceID != "" && n.ResourceID != ch.ResourceID {
			// A channel of another resource: not one we know.
			return nil, fmt.Errorf("channel %q of another resource: %w", n.ChannelID, ErrNotFound)
		}
		if !signs && !calendar.VerifyToken(n.Token, ch.Secret) {
			return nil, fmt.Errorf("channel %q: the token does not match: %w", n.ChannelID, ErrForbidden)
		}
		changes = append(changes, change{ch.CalendarID, n.ChannelID, n.State, n.EventIDs})
	}
	for _, c := range changes {
		switch c.state {
		case calendar.StateSync:
		case calendar.StateReauthorize, calendar.StateRemoved:
			// One task per channel and state: a removal right after a
			// renewal of the same channel is its own task, not a duplicate.
			reopen := c.state == calendar.StateRemoved
			id := "renew:" + c.calID + ":" + string(c.state) + ":" + c.channelID + ":" + bucket(p.now(), time.Minute)
			if err := p.enqueue(ctx, TaskRenew, renewPayload{CalendarID: c.calID, Reopen: reopen}, asynq.Queue(QueueMaintenance),
				asynq.TaskID(id), asynq.MaxRetry(10)); err != nil {
				return nil, err
			}
			if reopen {
				if err := p.markDirty(ctx, c.calID, false, p.now()); err != nil {
					return nil, err
				}
			}
		default:
			if len(c.eventIDs) > 0 {
				if err := p.enqueueFetch(ctx, c.calID, c.eventIDs, p.now()); err != nil {
					return nil, err
				}
				continue
			}
			if err := p.markDirty(ctx, c.calID, false, p.now()); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// channelAD binds a sealed signing key to its calendar.
func channelAD(calID string) string { return "channel:" + calID }

// crmNotify handles a CRM's webhook: companies changed in some portals,
// whose workspaces refresh their company index.
func (p *Pipeline) crmNotify(ctx context.Context, cp crm.Provider, req calendar.WebhookRequest) error {
	wp, ok := cp.(crm.WebhookParser)
	if !ok {
		return fmt.Errorf("%s sends no webhooks: %w", cp.Name(), ErrNotFound)
	}
	portals, err := wp.CompaniesChanged(crm.WebhookRequest{Method: req.Method, URL: req.URL, Header: req.Header, Body: req.Body, Received: req.Received})
	if errors.Is(err, provider.ErrNotConfigured) {
		return fmt.Errorf("%v: %w", err, ErrNotConfigured)
	}
	if err != nil {
		return err
	}
	for _, portal := range portals {
		if err := p.CRMChanged(ctx, portal); err != nil {
			return err
		}
	}
	return nil
}

// verifySigned checks a signed delivery against the signing key of the
// calendar its address names.
func (p *Pipeline) verifySigned(ctx context.Context, provider, calID string, v calendar.SignatureVerifier, req calendar.WebhookRequest) error {
	ch, err := p.ledger.ChannelOfCalendar(ctx, calID)
	if errors.Is(err, ledger.ErrNotFound) || (err == nil && ch.Provider != provider) {
		return fmt.Errorf("channel %q: %w", calID, ErrNotFound)
	}
	if err != nil {
		return err
	}
	key, err := p.cfg.Vault.Open(channelAD(ch.CalendarID), ch.Secret)
	if err != nil {
		p.log.ErrorContext(ctx, "open a channel's signing key", slog.String("calendar_id", ch.CalendarID), slog.String("error", err.Error()))
		return fmt.Errorf("channel %q: its signing key cannot be opened: %w", calID, ErrForbidden)
	}
	if err := v.VerifySignature(req, key); err != nil {
		return fmt.Errorf("channel %q: %v: %w", calID, err, ErrForbidden)
	}
	return nil
}
