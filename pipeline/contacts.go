package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// This file resolves CRM contacts by e-mail through a Redis cache shared by
// the decide step and the write path. When — and only when — the rules in
// force read a contact property, a sync page resolves the external
// attendees of its company-matched events before deciding them: one batch
// read per 100 addresses not cached, with the declared contact properties.
// The contact ids it learns are the write path's cache entries, so the
// write that follows reads nothing again.

// contactKey is the cache entry of an address's contact id ("" for no
// contact); the address is hashed, since Redis keys show up in monitoring
// tools.
func contactKey(connID, email string) string {
	h := sha256.Sum256([]byte(email))
	return "rapport:contact:" + connID + ":" + hex.EncodeToString(h[:12])
}

// contactPropsKey is the cache entry of the values of a set of contact
// properties, beside the id's entry.
func contactPropsKey(connID, email string, props []string) string {
	p := sha256.Sum256([]byte(strings.Join(props, ",")))
	return contactKey(connID, email) + ":p:" + hex.EncodeToString(p[:4])
}

// contactPropsTTL is how long contact property values are cached: a job
// title changes more often than a contact's id, so for less than
// contactCacheTTL. An address without a contact is cached for
// contactMissTTL, as the write path does.
const contactPropsTTL = time.Hour

// decidedContacts are the contacts of a page's attendees, as
// rules.Input's Contacts and ContactProperties.
type decidedContacts struct {
	ids   map[string]string
	props map[string]map[string]string
	// reads counts the CRM calls spent (one per 100 addresses read).
	reads int
}

// decideContacts resolves the contacts of the external attendees of the
// page's company-matched events, with the declared contact properties,
// when the rules read one; otherwise it reads nothing.
func (s *syncer) decideContacts(ctx context.Context, sc *pageContext, events []calendar.Event) (decidedContacts, error) {
	if sc.crmConn == "" || !sc.rules.ReadsContactProperties() {
		return decidedContacts{}, nil
	}
	return s.resolveForDecision(ctx, sc.crm, contactAddresses(sc, events), contactPropsOf(sc))
}

// contactPropsOf lists the declared contact properties, sorted and unique.
func contactPropsOf(sc *pageContext) []string {
	_, props := sc.rules.CRMProperties()
	slices.Sort(props)
	return slices.Compact(props)
}

// contactAddresses lists the addresses whose contacts the rules may read:
// the external attendees (and organizer) whose domain matched a company,
// of events decided by the rules. They are the addresses a logged
// meeting associates as contacts.
func contactAddresses(sc *pageContext, events []calendar.Event) []string {
	cl := matching.Classifier{Internal: sc.cal.Internal, Blocked: sc.rules.Blocked(), FreeMail: sc.rules.FreeMail(), Index: sc.index}
	var out []string
	add := func(c matching.Class) {
		if c.Valid && c.External() && len(c.Companies) > 0 {
			out = append(out, c.Email)
		}
	}
	for i := range events {
		ev := &events[i]
		if ev.ICalUID == "" || ev.OutOfWindow {
			continue
		}
		for _, a := range ev.Attendees {
			add(cl.Classify(a))
		}
		if ev.Organizer.Email != "" {
			add(cl.Classify(ev.Organizer))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// resolveForDecision returns the contacts of emails with the values of
// props, from the cache and one batch read (per 100) of the rest. A CRM
// failure is told in the sync's terms: it never marks the calendar's
// connection.
func (c *core) resolveForDecision(ctx context.Context, conn ledger.CRMConn, emails, props []string) (decidedContacts, error) {
	out := decidedContacts{ids: map[string]string{}, props: map[string]map[string]string{}}
	if len(emails) == 0 {
		return out, nil
	}
	keys := make([]string, 0, 2*len(emails))
	for _, e := range emails {
		keys = append(keys, contactKey(conn.ID, e), contactPropsKey(conn.ID, e, props))
	}
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("read contact cache: %w", err)
	}
	var misses []string
	for i, e := range emails {
		id, idOK := vals[2*i].(string)
		switch {
		case vals[2*i] == nil:
			misses = append(misses, e)
		case idOK && id == "":
			// Known to have no contact.
		default:
			raw, ok := vals[2*i+1].(string)
			var values map[string]string
			if !ok || json.Unmarshal([]byte(raw), &values) != nil {
				misses = append(misses, e)
				continue
			}
			out.ids[e], out.props[e] = id, values
		}
	}
	if len(misses) == 0 {
		return out, nil
	}
	if conn.Status != "" && conn.Status != plan.ConnActive {
		return out, &retryAfter{wait: time.Minute, err: fmt.Errorf("the CRM connection %s is %s: the rules read contact properties, which cannot be read until it is re-authorised", conn.ID, conn.Status)}
	}
	sink, err := c.sink(ctx, conn)
	if err != nil {
		return out, err
	}
	found, err := sink.ContactsByEmail(ctx, misses, props)
	c.countCRM(conn.Provider, "contacts.batch.read", err)
	out.reads = (len(misses) + batchSize - 1) / batchSize
	if err != nil {
		return out, c.decideTimeCRMError(ctx, conn, err)
	}
	pipe := c.rdb.Pipeline()
	for _, e := range misses {
		ct, ok := found[e]
		if !ok {
			pipe.Set(ctx, contactKey(conn.ID, e), "", contactMissTTL)
			continue
		}
		values := ct.Properties
		if values == nil {
			values = map[string]string{}
		}
		b, _ := json.Marshal(values)
		out.ids[e], out.props[e] = ct.ID, values
		pipe.Set(ctx, contactKey(conn.ID, e), ct.ID, contactCacheTTL)
		pipe.Set(ctx, contactPropsKey(conn.ID, e, props), b, contactPropsTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.log.WarnContext(ctx, "write contact cache", slog.Any("error", err))
	}
	return out, nil
}

// decideTimeCRMError turns a failed CRM read of a sync into the sync's
// error: a rate limit waits; a refused token marks the CRM connection (not
// the calendar's) and waits for its re-authorisation; anything else is
// retried.
func (c *core) decideTimeCRMError(ctx context.Context, conn ledger.CRMConn, err error) error {
	switch verdictOf(err) {
	case wait:
		return &retryAfter{wait: provider.WaitOf(err), err: err}
	case park:
		if mErr := c.cfg.Vault.MarkNeedsReauth(ctx, conn.ID, ledger.Truncate(scrub(err.Error()), 300)); mErr != nil {
			c.log.ErrorContext(ctx, "mark connection needs_reauth", slog.String("connection_id", conn.ID), slog.Any("error", mErr))
		}
		return &retryAfter{wait: time.Minute, err: fmt.Errorf("the CRM connection %s needs re-authorisation to read contact properties", conn.ID)}
	}
	return fmt.Errorf("read CRM contacts for the rules: %s", scrub(err.Error()))
}
