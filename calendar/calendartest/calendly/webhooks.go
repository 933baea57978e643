package calendly

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// SigningMode says how deliveries are signed, so a test can send what an
// attacker, a replay or a misconfiguration would.
type SigningMode int

// Signing modes.
const (
	// SignValid signs as Calendly does.
	SignValid SigningMode = iota
	// SignWrongKey signs with a key that is not the subscription's.
	SignWrongKey
	// SignStale signs with a timestamp ten minutes old (a replay).
	SignStale
	// SignFuture signs with a timestamp five minutes ahead.
	SignFuture
	// SignNone sends no Calendly-Webhook-Signature header.
	SignNone
	// SignTamperedBody signs the body, then changes it.
	SignTamperedBody
)

// SignatureHeader is the header carrying a delivery's signature.
const SignatureHeader = "Calendly-Webhook-Signature"

var webhookEvents = []string{
	"invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
	"routing_form_submission.created",
}

type subscription struct {
	uuid, org, user, scope, url string
	key                         string // signing_key given at creation
	appSigned                   bool   // created by an OAuth token without a key
	events                      []string
	creator                     string // user uuid
	created, updated            time.Time
	state                       string
	retryStarted                time.Time
}

// Subscription describes a webhook subscription, for tests.
type Subscription struct {
	URI, CallbackURL, Scope, State string
	// SigningKey is the key deliveries are signed with: the one given at
	// creation, or the application's; "" when deliveries are unsigned.
	SigningKey     string
	RetryStartedAt time.Time
}

// Delivery records one webhook POST the server made.
type Delivery struct {
	Subscription string // URI
	URL          string
	Event        string // invitee.created, invitee.canceled
	Header       http.Header
	Body         []byte
	// Status is the receiver's answer, zero when the request failed.
	Status int
	Err    error
}

// pendingSend is a delivery built when the change happened (its body is
// frozen then) and signed when it is sent.
type pendingSend struct {
	sub, url, event string
	which           Which
	body            []byte
	key             string
}

type heldDelivery = pendingSend

type sendPlan struct{ hold, drop Which }

// SetSigning changes how deliveries from now on are signed.
func (s *Server) SetSigning(m SigningMode) {
	s.mu.Lock()
	s.signing = m
	s.mu.Unlock()
}

// Subscriptions returns the webhook subscriptions of an organization.
func (s *Server) Subscriptions(o Org) []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subscription
	for _, sub := range s.subs {
		if sub.org == o.UUID {
			out = append(out, s.subscriptionLocked(sub))
		}
	}
	slices.SortFunc(out, func(a, b Subscription) int { return cmpString(a.URI, b.URI) })
	return out
}

// SubscriptionByURI returns one subscription.
func (s *Server) SubscriptionByURI(uri string) (Subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[s.uuidOf(uri, "webhook_subscriptions/")]
	if sub == nil {
		return Subscription{}, false
	}
	return s.subscriptionLocked(sub), true
}

func (s *Server) subscriptionLocked(sub *subscription) Subscription {
	return Subscription{URI: s.subURI(sub.uuid), CallbackURL: sub.url, Scope: sub.scope, State: sub.state,
		SigningKey: s.signingKeyLocked(sub), RetryStartedAt: sub.retryStarted}
}

func (s *Server) signingKeyLocked(sub *subscription) string {
	switch {
	case sub.key != "":
		return sub.key
	case sub.appSigned:
		return s.appKey
	}
	return ""
}

// DisableSubscription disables a subscription at once, as Calendly does
// after 24 hours of failed deliveries.
func (s *Server) DisableSubscription(uri string) {
	s.mu.Lock()
	if sub := s.subs[s.uuidOf(uri, "webhook_subscriptions/")]; sub != nil {
		sub.state = "disabled"
		sub.updated = s.now()
	}
	s.mu.Unlock()
}

// Deliveries returns every delivery made so far, in order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// DeliverHeld sends the deliveries a reschedule held back, now (signed
// with the current time).
func (s *Server) DeliverHeld() []Delivery {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	return s.send(held, sendPlan{})
}

// webhookLocked builds the deliveries of one invitee event for every
// active subscription that sees it: organization scope sees the
// organization's events, user scope the events its user hosts.
func (s *Server) webhookLocked(name string, inv *invitee) []pendingSend {
	ev := s.events[inv.event]
	which := Created
	if name == "invitee.canceled" {
		which = Canceled
	}
	var ids []string
	for id, sub := range s.subs {
		if sub.org != ev.org || sub.state != "active" || !slices.Contains(sub.events, name) {
			continue
		}
		if sub.scope == "user" && !slices.Contains(ev.hosts, sub.user) {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []pendingSend
	for _, id := range ids {
		sub := s.subs[id]
		body, err := json.Marshal(wireWebhook{
			Event: name, CreatedAt: ts(s.now()), CreatedBy: s.userURI(sub.creator),
			Payload: wirePayload{wireInvitee: s.wireInviteeLocked(inv), ScheduledEvent: s.wireEventLocked(ev, false)},
		})
		if err != nil {
			panic(err)
		}
		out = append(out, pendingSend{sub: id, url: sub.url, event: name, which: which, body: body, key: s.signingKeyLocked(sub)})
	}
	return out
}

// send delivers, holds or drops each pending send, in order.
func (s *Server) send(sends []pendingSend, plan sendPlan) []Delivery {
	var out []Delivery
	for _, ps := range sends {
		switch {
		case plan.drop != Neither && ps.which == plan.drop:
			continue
		case plan.hold != Neither && ps.which == plan.hold:
			s.mu.Lock()
			s.held = append(s.held, ps)
			s.mu.Unlock()
			continue
		}
		if d, ok := s.deliver(ps); ok {
			out = append(out, d)
		}
	}
	return out
}

// deliver POSTs one delivery as Calendly does and tracks its
// subscription's failures: deliveries failing for 24 hours disable it.
func (s *Server) deliver(ps pendingSend) (Delivery, bool) {
	s.mu.Lock()
	sub := s.subs[ps.sub]
	if sub == nil || sub.state != "active" {
		s.mu.Unlock()
		return Delivery{}, false
	}
	mode := s.signing
	now := s.now()
	s.mu.Unlock()

	body := ps.body
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("User-Agent", "Calendly-Webhooks")
	if ps.key != "" && mode != SignNone {
		t, key := now, ps.key
		switch mode {
		case SignWrongKey:
			key = "not-" + key
		case SignStale:
			t = now.Add(-10 * time.Minute)
		case SignFuture:
			t = now.Add(5 * time.Minute)
		}
		h.Set(SignatureHeader, Sign([]byte(key), t, body))
		if mode == SignTamperedBody {
			body = bytes.Replace(body, []byte(`"invitee.`), []byte(`"invitee. `), 1)
		}
	}
	d := Delivery{Subscription: s.subURI(ps.sub), URL: ps.url, Event: ps.event, Header: h, Body: body}

	ctx, cancel := context.WithTimeout(context.Background(), s.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ps.url, bytes.NewReader(body))
	if err == nil {
		req.Header = h.Clone()
		var resp *http.Response
		// Calendly counts a redirect as a failure: do not follow one.
		client := *s.hook
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		if resp, err = client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			d.Status = resp.StatusCode
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("receiver answered %s", resp.Status)
			}
		}
	}
	d.Err = err

	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = append(s.deliveries, d)
	if sub := s.subs[ps.sub]; sub != nil {
		now := s.now()
		switch {
		case err == nil:
			sub.retryStarted = time.Time{}
		case sub.retryStarted.IsZero():
			sub.retryStarted = now
		case now.Sub(sub.retryStarted) >= disableAfterFailingWindow:
			sub.state = "disabled"
			sub.updated = now
		}
	}
	return d, true
}

// Sign returns the Calendly-Webhook-Signature value for body sent at t:
// "t=<unix>,v1=<hex HMAC-SHA256(key, t + "." + body)>".
func Sign(key []byte, t time.Time, body []byte) string {
	unix := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(unix))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + unix + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

type createSubscription struct {
	URL          string   `json:"url"`
	Events       []string `json:"events"`
	Organization string   `json:"organization"`
	User         string   `json:"user"`
	Group        string   `json:"group"`
	Scope        string   `json:"scope"`
	SigningKey   string   `json:"signing_key"`
}

func (s *Server) handleCreateWebhook(w http.ResponseWriter, r *http.Request, c caller) {
	var in createSubscription
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		errInvalid("The supplied parameters are invalid.").write(w)
		return
	}
	if u, err := url.Parse(in.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errInvalid("url is not a valid URL").write(w)
		return
	}
	if len(in.Events) == 0 {
		errInvalid("events must be given").write(w)
		return
	}
	for _, e := range in.Events {
		if !slices.Contains(webhookEvents, e) {
			errInvalid("events contains an unknown event").write(w)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.Organization != s.orgURI(c.user.org) {
		errNoPermission.write(w)
		return
	}
	sub := &subscription{org: c.user.org, scope: in.Scope, url: in.URL, key: in.SigningKey,
		events: slices.Clone(in.Events), creator: c.user.uuid, state: "active"}
	switch in.Scope {
	case "organization":
		if c.user.role == RoleUser {
			errNoPermission.write(w)
			return
		}
	case "user":
		id := s.uuidOf(in.User, "users/")
		target := s.users[id]
		if target == nil || target.org != c.user.org {
			errInvalid("user is not a valid user of the organization").write(w)
			return
		}
		if id != c.user.uuid && c.user.role == RoleUser {
			errNoPermission.write(w)
			return
		}
		sub.user = id
	default:
		errInvalid("scope must be organization or user").write(w)
		return
	}
	if s.orgs[c.user.org].plan == PlanFree {
		errUpgrade.write(w)
		return
	}
	for _, other := range s.subs {
		if other.org == sub.org && other.url == sub.url {
			errAlreadyExists.write(w)
			return
		}
	}
	sub.appSigned = sub.key == "" && !c.token.pat
	sub.uuid = s.newUUID()
	sub.created, sub.updated = s.now(), s.now()
	s.subs[sub.uuid] = sub
	writeJSON(w, http.StatusCreated, wireResource[wireSubscription]{s.wireSubscriptionLocked(sub)})
}

func (s *Server) wireSubscriptionLocked(sub *subscription) wireSubscription {
	w := wireSubscription{
		URI: s.subURI(sub.uuid), CallbackURL: sub.url, CreatedAt: ts(sub.created), UpdatedAt: ts(sub.updated),
		State: sub.state, Events: sub.events, Scope: sub.scope, Organization: s.orgURI(sub.org),
		Creator: s.userURI(sub.creator),
	}
	if !sub.retryStarted.IsZero() {
		w.RetryStartedAt = strp(ts(sub.retryStarted))
	}
	if sub.user != "" {
		w.User = strp(s.userURI(sub.user))
	}
	return w
}

func (s *Server) handleListWebhooks(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	orgURI, scope := q.Get("organization"), q.Get("scope")
	if orgURI == "" || (scope != "organization" && scope != "user") {
		errInvalid("organization and scope are required").write(w)
		return
	}
	s.mu.Lock()
	if orgURI != s.orgURI(c.user.org) || (scope == "organization" && c.user.role == RoleUser) {
		s.mu.Unlock()
		errNoPermission.write(w)
		return
	}
	userID := ""
	if scope == "user" {
		if userID = s.uuidOf(q.Get("user"), "users/"); userID == "" {
			s.mu.Unlock()
			errInvalid("user is required for scope user").write(w)
			return
		}
	}
	var subs []*subscription
	for _, sub := range s.subs {
		if sub.org == c.user.org && sub.scope == scope && (userID == "" || sub.user == userID) {
			subs = append(subs, sub)
		}
	}
	slices.SortFunc(subs, func(a, b *subscription) int { return cmpString(a.uuid, b.uuid) })
	items := make([]wireSubscription, 0, len(subs))
	for _, sub := range subs {
		items = append(items, s.wireSubscriptionLocked(sub))
	}
	s.mu.Unlock()
	writePage(w, r, s.URL()+"webhook_subscriptions", items)
}

func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[r.PathValue("uuid")]
	if sub == nil || sub.org != c.user.org {
		errNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, wireResource[wireSubscription]{s.wireSubscriptionLocked(sub)})
}

func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[r.PathValue("uuid")]
	if sub == nil || sub.org != c.user.org {
		errNotFound.write(w)
		return
	}
	if sub.scope == "organization" && c.user.role == RoleUser {
		errNoPermission.write(w)
		return
	}
	delete(s.subs, sub.uuid)
	w.WriteHeader(http.StatusNoContent)
}
