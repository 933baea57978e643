package calendly

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
)

const (
	// maxEventIDs bounds one fetch by id (a webhook names one to three).
	maxEventIDs = 100
	// maxEventDuration widens a listing's min_start_time, which Calendly
	// applies to starts, so that events that started before the window but
	// end inside it are listed too.
	maxEventDuration = 24 * time.Hour
	// maxPages bounds one walk through a collection (100 items a page):
	// an event's invitees, a scope's subscriptions.
	maxPages = 50
)

var webhookEvents = []string{"invitee.created", "invitee.canceled"}

// Provider is the Calendly calendar provider: it opens a Source per
// connection, parses and verifies webhook deliveries, and answers the
// questions a connection import asks (Whoami, ResolveScope). Sources it
// opens share its caches (event type names, reschedule roots). It is safe
// for concurrent use.
type Provider struct {
	cfg    Config
	cache  *cache
	parser Parser
}

var (
	_ calendar.Provider          = (*Provider)(nil)
	_ calendar.WebhookParser     = (*Provider)(nil)
	_ calendar.SignatureVerifier = (*Provider)(nil)
)

// NewProvider returns the Calendly provider.
func NewProvider(cfg Config) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg, cache: newCache(cfg.Clock)}, nil
}

// Name implements calendar.Provider.
func (p *Provider) Name() string { return ProviderName }

// Open implements calendar.Provider: the Source of one connection.
func (p *Provider) Open(ctx context.Context, c calendar.Conn) (calendar.Source, error) {
	return newSource(p.cfg, c, p.cache)
}

// Source is one Calendly connection's scheduling scope: its scheduled
// events (Source), its webhook subscription (Watcher). It is safe for
// concurrent use.
type Source struct {
	c     *client
	cfg   Config
	cache *cache

	mu sync.Mutex
	me *user // the token's user, fetched once
}

var (
	_ calendar.Source  = (*Source)(nil)
	_ calendar.Watcher = (*Source)(nil)
)

// New returns the Source of one connection. c.Tokens is asked for a token
// on every request, so pass a caching source (oauth2.ReuseTokenSource, or
// the vault's); c.Limiter, when set, paces requests under
// "calendly:"+c.ID.
func New(cfg Config, c calendar.Conn) (*Source, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newSource(cfg, c, newCache(cfg.Clock))
}

func newSource(cfg Config, c calendar.Conn, ch *cache) (*Source, error) {
	if c.Tokens == nil {
		return nil, errors.New("calendly: token source required")
	}
	return &Source{c: newClient(cfg, c.Tokens, c.Limiter, "calendly:"+c.ID), cfg: cfg, cache: ch}, nil
}

// List returns one page of a scope's scheduled events, each with its
// invitees, as calendar.Events; or, with req.EventIDs, exactly those
// events (see the package documentation for both).
func (s *Source) List(ctx context.Context, req calendar.ListRequest) (calendar.Page, error) {
	if len(req.EventIDs) > 0 {
		return s.fetch(ctx, req.EventIDs)
	}
	param, err := scopeParam(req.CalendarID)
	if err != nil {
		return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opListEvents, Err: err}
	}
	q := url.Values{
		param:   {req.CalendarID},
		"count": {strconv.Itoa(s.cfg.PageSize)},
		"sort":  {"start_time:asc"},
	}
	if !req.TimeMin.IsZero() {
		q.Set("min_start_time", req.TimeMin.Add(-maxEventDuration).UTC().Format(time.RFC3339))
	}
	if !req.TimeMax.IsZero() {
		q.Set("max_start_time", req.TimeMax.UTC().Format(time.RFC3339))
	}
	if req.PageToken != "" {
		q.Set("page_token", req.PageToken)
	}
	var res collection[scheduledEvent]
	if err := s.c.do(ctx, opListEvents, http.MethodGet, "scheduled_events", q, nil, &res); err != nil {
		return calendar.Page{}, err
	}
	page := calendar.Page{NextPageToken: deref(res.Pagination.NextPageToken)}
	if page.NextPageToken == "" {
		page.NextCursor = ListingCursor
	}
	for _, ev := range res.Collection {
		if !ev.CalendarEvent.present {
			// This listing does not carry calendar_event; GET the event,
			// which does.
			uuid := eventUUID(ev.URI)
			if uuid == "" {
				return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opListEvents,
					Err: errors.New("scheduled event without a valid uri")}
			}
			var full resource[scheduledEvent]
			if err := s.c.do(ctx, opGetEvent, http.MethodGet, "scheduled_events/"+uuid, nil, nil, &full); err != nil {
				return calendar.Page{}, err
			}
			ev = full.Resource
		}
		e, err := s.complete(ctx, ev)
		if err != nil {
			return calendar.Page{}, err
		}
		if !req.TimeMin.IsZero() && !e.End.After(req.TimeMin) {
			continue
		}
		page.Events = append(page.Events, e)
	}
	return page, nil
}

// fetch returns the scheduled events named by ids (URIs or uuids): each
// with GET /scheduled_events/{uuid}, which carries calendar_event, and its
// invitees. An event Calendly no longer has is returned as a minimal
// cancellation.
func (s *Source) fetch(ctx context.Context, ids []string) (calendar.Page, error) {
	if len(ids) > maxEventIDs {
		return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opGetEvent,
			Err: fmt.Errorf("%d event ids asked for at once; at most %d", len(ids), maxEventIDs)}
	}
	var page calendar.Page
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		uuid := eventUUID(id)
		if uuid == "" {
			return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opGetEvent,
				Err: fmt.Errorf("%.80q is not a Calendly scheduled event URI or uuid", id)}
		}
		if seen[uuid] {
			continue
		}
		seen[uuid] = true
		var res resource[scheduledEvent]
		err := s.c.do(ctx, opGetEvent, http.MethodGet, "scheduled_events/"+uuid, nil, nil, &res)
		if calendar.ClassOf(err) == calendar.NotFound {
			page.Events = append(page.Events, calendar.Event{ID: uuid, Status: calendar.StatusCancelled, Source: ProviderName})
			continue
		}
		if err != nil {
			return calendar.Page{}, err
		}
		e, err := s.complete(ctx, res.Resource)
		if err != nil {
			return calendar.Page{}, err
		}
		page.Events = append(page.Events, e)
	}
	return page, nil
}

// complete reads what one scheduled event needs besides itself (its
// invitees, its event type, its reschedule root, the connection's user)
// and normalises it.
func (s *Source) complete(ctx context.Context, ev scheduledEvent) (calendar.Event, error) {
	uuid := eventUUID(ev.URI)
	if uuid == "" {
		return calendar.Event{}, &calendar.Error{Class: calendar.Permanent, Op: opListEvents,
			Err: errors.New("scheduled event without a valid uri")}
	}
	invs, err := s.invitees(ctx, uuid)
	if err != nil {
		return calendar.Event{}, err
	}
	et, err := s.eventType(ctx, ev.EventType)
	if err != nil {
		return calendar.Event{}, err
	}
	root, err := s.root(ctx, uuid, et, invs)
	if err != nil {
		return calendar.Event{}, err
	}
	me, err := s.owner(ctx)
	if err != nil {
		return calendar.Event{}, err
	}
	e, err := normalize(ev, invs, et, root, me.URI)
	if err != nil {
		return calendar.Event{}, &calendar.Error{Class: calendar.Permanent, Op: opGetEvent, Err: err}
	}
	return e, nil
}

// invitees returns every invitee of an event, active and canceled.
func (s *Source) invitees(ctx context.Context, eventUUID string) ([]invitee, error) {
	var out []invitee
	q := url.Values{"count": {"100"}}
	for range maxPages {
		var res collection[invitee]
		if err := s.c.do(ctx, opListInvitees, http.MethodGet, "scheduled_events/"+eventUUID+"/invitees", q, nil, &res); err != nil {
			return nil, err
		}
		out = append(out, res.Collection...)
		next := deref(res.Pagination.NextPageToken)
		if next == "" {
			return out, nil
		}
		q.Set("page_token", next)
	}
	return nil, &calendar.Error{Class: calendar.Permanent, Op: opListInvitees,
		Err: fmt.Errorf("event %s has more than %d pages of invitees", eventUUID, maxPages)}
}

// owner returns the token's user, once per Source.
func (s *Source) owner(ctx context.Context) (*user, error) {
	s.mu.Lock()
	me := s.me
	s.mu.Unlock()
	if me != nil {
		return me, nil
	}
	var res resource[user]
	if err := s.c.do(ctx, opMe, http.MethodGet, "users/me", nil, nil, &res); err != nil {
		return nil, err
	}
	if res.Resource.URI == "" {
		return nil, &calendar.Error{Class: calendar.Permanent, Op: opMe, Err: errors.New("answer carries no user uri")}
	}
	s.mu.Lock()
	s.me = &res.Resource
	s.mu.Unlock()
	return &res.Resource, nil
}

// scopeParam returns the /scheduled_events parameter a calendar id (a
// scope URI) goes in.
func scopeParam(calendarID string) (string, error) {
	switch {
	case lastSegment(calendarID, "organizations") != "":
		return "organization", nil
	case lastSegment(calendarID, "users") != "":
		return "user", nil
	}
	return "", fmt.Errorf("calendar id %.120q is neither a Calendly organization nor a user URI", calendarID)
}

// Watch creates the scope's webhook subscription for invitee.created and
// invitee.canceled, delivering to req.Address and signed with a key
// generated here: the Channel's Token, returned once (store it
// encrypted). Channel.ID is the subscription's URI, Channel.ResourceID the
// scope URI; a subscription does not expire.
//
// A subscription for the same address already existing (409) is adopted
// by replacement: it is found by listing the scope's subscriptions,
// deleted, and created again with a new key, because Calendly never
// returns a subscription's key and deliveries Rapport cannot verify are
// worthless. Events between the delete and the create are not delivered;
// the next reconciliation listing covers them.
func (s *Source) Watch(ctx context.Context, req calendar.WatchRequest) (calendar.Channel, error) {
	fail := func(class calendar.Class, err error) (calendar.Channel, error) {
		return calendar.Channel{}, &calendar.Error{Class: class, Op: opCreateWebhook, Err: err}
	}
	if req.Address == "" {
		return fail(calendar.Permanent, errors.New("address required"))
	}
	if u, err := url.Parse(req.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fail(calendar.Permanent, errors.New("address must be an absolute https URL"))
	}
	sc, err := s.subscriptionScope(ctx, req.CalendarID)
	if err != nil {
		return calendar.Channel{}, err
	}
	var kb [32]byte
	if _, err := rand.Read(kb[:]); err != nil {
		return fail(calendar.Transient, err)
	}
	key := base64.RawURLEncoding.EncodeToString(kb[:])
	body := map[string]any{
		"url":          req.Address,
		"events":       webhookEvents,
		"organization": sc.organization,
		"scope":        sc.scope,
		"signing_key":  key,
	}
	if sc.user != "" {
		body["user"] = sc.user
	}

	create := func() (subscription, error) {
		var res resource[subscription]
		err := s.c.do(ctx, opCreateWebhook, http.MethodPost, "webhook_subscriptions", nil, body, &res)
		if reasonOf(err) == reasonRole {
			hint := "user scope subscribes to the token's own user: connect with that user's token"
			if sc.scope == ScopeOrganization {
				hint = "organization scope needs an owner or admin of the Calendly organization: connect as one, or with scope user"
			}
			err = &calendar.Error{Class: calendar.Permanent, Op: opCreateWebhook, Err: fmt.Errorf("%w (%s)", errors.Unwrap(err), hint)}
		}
		return res.Resource, err
	}
	sub, err := create()
	if statusOf(err) == http.StatusConflict {
		existing, found, ferr := s.findSubscription(ctx, sc, req.Address)
		if ferr != nil {
			return calendar.Channel{}, ferr
		}
		if !found {
			return fail(calendar.Permanent, errors.New("a webhook subscription for this address exists but this connection cannot see it; use another address"))
		}
		s.cfg.Logger.InfoContext(ctx, "calendly: replacing an existing webhook subscription whose key is unknown",
			slog.String("subscription", existing.URI))
		if err := s.StopWatch(ctx, calendar.Channel{ID: existing.URI}); err != nil {
			return calendar.Channel{}, err
		}
		sub, err = create()
	}
	if err != nil {
		return calendar.Channel{}, err
	}
	if lastSegment(sub.URI, "webhook_subscriptions") == "" {
		return fail(calendar.Permanent, errors.New("answer carries no subscription uri"))
	}
	return calendar.Channel{ID: sub.URI, ResourceID: req.CalendarID, Token: key}, nil
}

type subScope struct{ scope, organization, user string }

// subscriptionScope maps a calendar id to a subscription's scope: an
// organization URI is organization scope; a user URI is user scope in the
// token user's organization.
func (s *Source) subscriptionScope(ctx context.Context, calendarID string) (subScope, error) {
	param, err := scopeParam(calendarID)
	if err != nil {
		return subScope{}, &calendar.Error{Class: calendar.Permanent, Op: opCreateWebhook, Err: err}
	}
	if param == "organization" {
		return subScope{scope: ScopeOrganization, organization: calendarID}, nil
	}
	me, err := s.owner(ctx)
	if err != nil {
		return subScope{}, err
	}
	return subScope{scope: ScopeUser, organization: me.CurrentOrganization, user: calendarID}, nil
}

// FindSubscription returns the scope's webhook subscription delivering to
// address, if there is one, as a Channel without a Token (Calendly never
// returns a key), and its state.
func (s *Source) FindSubscription(ctx context.Context, calendarID, address string) (ch calendar.Channel, state string, found bool, err error) {
	sc, err := s.subscriptionScope(ctx, calendarID)
	if err != nil {
		return calendar.Channel{}, "", false, err
	}
	sub, found, err := s.findSubscription(ctx, sc, address)
	if err != nil || !found {
		return calendar.Channel{}, "", false, err
	}
	return calendar.Channel{ID: sub.URI, ResourceID: calendarID}, sub.State, true, nil
}

func (s *Source) findSubscription(ctx context.Context, sc subScope, address string) (subscription, bool, error) {
	q := url.Values{"organization": {sc.organization}, "scope": {sc.scope}, "count": {"100"}}
	if sc.user != "" {
		q.Set("user", sc.user)
	}
	for range maxPages {
		var res collection[subscription]
		if err := s.c.do(ctx, opListWebhooks, http.MethodGet, "webhook_subscriptions", q, nil, &res); err != nil {
			return subscription{}, false, err
		}
		for _, sub := range res.Collection {
			if sub.CallbackURL == address {
				return sub, true, nil
			}
		}
		next := deref(res.Pagination.NextPageToken)
		if next == "" {
			break
		}
		q.Set("page_token", next)
	}
	return subscription{}, false, nil
}

// StopWatch deletes a channel's subscription. One Calendly no longer has
// is not an error.
func (s *Source) StopWatch(ctx context.Context, ch calendar.Channel) error {
	id := subscriptionID(ch.ID)
	if id == "" {
		return &calendar.Error{Class: calendar.Permanent, Op: opDeleteWebhook, Err: errors.New("channel id is not a webhook subscription URI")}
	}
	err := s.c.do(ctx, opDeleteWebhook, http.MethodDelete, "webhook_subscriptions/"+id, nil, nil, nil)
	if calendar.ClassOf(err) == calendar.NotFound {
		return nil
	}
	return err
}

// SubscriptionState returns a channel's subscription state:
// SubscriptionActive or SubscriptionDisabled. Calendly disables a
// subscription whose deliveries failed for 24 hours and never re-enables
// it; a disabled one, like one answering NotFound (deleted, or removed
// with its user), must be replaced: Watch a new address, store it, then
// StopWatch the old channel, and list the scope in full, as deliveries
// were lost.
func (s *Source) SubscriptionState(ctx context.Context, ch calendar.Channel) (string, error) {
	id := subscriptionID(ch.ID)
	if id == "" {
		return "", &calendar.Error{Class: calendar.Permanent, Op: opGetWebhook, Err: errors.New("channel id is not a webhook subscription URI")}
	}
	var res resource[subscription]
	if err := s.c.do(ctx, opGetWebhook, http.MethodGet, "webhook_subscriptions/"+id, nil, nil, &res); err != nil {
		return "", err
	}
	return res.Resource.State, nil
}

func subscriptionID(s string) string {
	if validID(s) {
		return s
	}
	return lastSegment(s, "webhook_subscriptions")
}

// Whoami returns who a token belongs to (GET /users/me): the user's URI,
// e-mail and current organization's URI. The connection import calls it
// first.
func (p *Provider) Whoami(ctx context.Context, tokens oauth2.TokenSource) (userURI, email, orgURI string, err error) {
	if tokens == nil {
		return "", "", "", errors.New("calendly: token source required")
	}
	c := newClient(p.cfg, tokens, nil, "")
	var res resource[user]
	if err := c.do(ctx, opMe, http.MethodGet, "users/me", nil, nil, &res); err != nil {
		return "", "", "", err
	}
	u := res.Resource
	if u.URI == "" || u.CurrentOrganization == "" {
		return "", "", "", &calendar.Error{Class: calendar.Permanent, Op: opMe, Err: errors.New("answer carries no user or organization uri")}
	}
	return u.URI, u.Email, u.CurrentOrganization, nil
}

var _ calendar.AccountResolver = (*Provider)(nil)

// ResolveAccount implements calendar.AccountResolver: the token's user
// e-mail is the connection's account, and its one calendar is the
// organization or the user its scope covers.
func (p *Provider) ResolveAccount(ctx context.Context, tokens oauth2.TokenSource, scope string) (string, []string, error) {
	if scope == "" {
		scope = ScopeUser
	}
	if scope != ScopeOrganization && scope != ScopeUser {
		return "", nil, &calendar.Error{Class: calendar.Permanent, Op: opMe, Err: fmt.Errorf("scope %.40q: want %q or %q", scope, ScopeOrganization, ScopeUser)}
	}
	_, email, _, err := p.Whoami(ctx, tokens)
	if err != nil {
		return "", nil, err
	}
	cal, err := p.ResolveScope(ctx, tokens, scope)
	if err != nil {
		return "", nil, err
	}
	return email, []string{cal}, nil
}

// ErrNotOrganizationAdmin is returned (inside a Permanent calendar.Error)
// by ResolveScope for organization scope when the token's user is neither
// owner nor admin of its organization.
var ErrNotOrganizationAdmin = errors.New("calendly: organization scope needs a token of an owner or admin of the Calendly organization; connect as one, or with scope user")

// ResolveScope checks that a token may use a connection scope
// (ScopeOrganization or ScopeUser) and returns the connection's calendar
// id: the organization URI, or the user URI. Organization scope needs the
// user's role to be owner or admin (GET /organization_memberships).
func (p *Provider) ResolveScope(ctx context.Context, tokens oauth2.TokenSource, scope string) (string, error) {
	if scope != ScopeOrganization && scope != ScopeUser {
		return "", fmt.Errorf("calendly: scope %.40q: want %q or %q", scope, ScopeOrganization, ScopeUser)
	}
	userURI, _, orgURI, err := p.Whoami(ctx, tokens)
	if err != nil {
		return "", err
	}
	if scope == ScopeUser {
		return userURI, nil
	}
	c := newClient(p.cfg, tokens, nil, "")
	var res collection[membership]
	q := url.Values{"user": {userURI}, "organization": {orgURI}}
	if err := c.do(ctx, opMemberships, http.MethodGet, "organization_memberships", q, nil, &res); err != nil {
		return "", err
	}
	for _, m := range res.Collection {
		if m.Organization == orgURI && (m.Role == "owner" || m.Role == "admin") {
			return orgURI, nil
		}
	}
	return "", &calendar.Error{Class: calendar.Permanent, Op: opMemberships, Err: ErrNotOrganizationAdmin}
}
