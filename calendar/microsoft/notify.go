package microsoft

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
)

// Limits of what a webhook request may carry.
const (
	// MaxWebhookBody bounds a notification body; Graph batches
	// notifications but sends far less.
	MaxWebhookBody = 1 << 20
	// maxNotifications bounds the items of one body.
	maxNotifications = 1000
	// maxValidationToken bounds the handshake token echoed back.
	maxValidationToken = 1024
	// maxClientState is Graph's limit on clientState.
	maxClientState = 128
	maxIDLen       = 256
)

// ErrMalformedNotification wraps every shape error of Parser (and is
// calendar.ErrMalformed): answer 400 and do not sync.
var ErrMalformedNotification = fmt.Errorf("graph notification: %w", calendar.ErrMalformed)

// resource is the subscription resource of a calendar's events.
func resource(calendarID string) string {
	if calendarID == PrimaryCalendar {
		return "/me/events"
	}
	return "/me/calendars/" + calendarID + "/events"
}

// Watch subscribes to a calendar's event changes: Graph then validates
// both addresses (it POSTs ?validationToken=… to each and wants the token
// back, which Parser answers) before it answers. The Channel's ID is the
// subscription id, ResourceID its resource, Token the clientState secret
// (in clear, once: store calendar.HashToken(ch.Token) only) and Expiration
// the one Graph granted.
//
// A failed creation is retried only after a 429 (Graph did nothing then):
// a retry after an unknown outcome could leave a second subscription.
func (s *Source) Watch(ctx context.Context, req calendar.WatchRequest) (calendar.Channel, error) {
	fail := func(class calendar.Class, err error) (calendar.Channel, error) {
		return calendar.Channel{}, &calendar.Error{Class: class, Op: opSubscribe, Err: err}
	}
	if req.CalendarID == "" || req.Address == "" {
		return fail(calendar.Permanent, errors.New("calendar id and address required"))
	}
	lifecycle := req.LifecycleAddress
	if lifecycle == "" {
		lifecycle = req.Address
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return fail(calendar.Transient, err)
	}
	state := base64.RawURLEncoding.EncodeToString(secret[:])
	body := subscription{
		ChangeType:               "created,updated,deleted",
		NotificationURL:          req.Address,
		LifecycleNotificationURL: lifecycle,
		Resource:                 resource(req.CalendarID),
		ExpirationDateTime:       s.cfg.Clock().Add(s.cfg.SubscriptionTTL).UTC().Format(time.RFC3339),
		ClientState:              state,
	}
	var res subscription
	if err := s.do(ctx, request{op: opSubscribe, method: http.MethodPost, url: s.endpoint("subscriptions", nil), body: body}, &res); err != nil {
		return calendar.Channel{}, err
	}
	if res.ID == "" {
		return fail(calendar.Permanent, errors.New("answer carries no subscription id"))
	}
	ch := calendar.Channel{ID: res.ID, ResourceID: body.Resource, Token: state}
	if res.Resource != "" {
		ch.ResourceID = res.Resource
	}
	exp, err := parseGraphTime(res.ExpirationDateTime)
	if err != nil {
		return fail(calendar.Permanent, errors.New("answer carries no valid expirationDateTime"))
	}
	ch.Expiration = exp
	return ch, nil
}

// Renew extends a subscription in place by SubscriptionTTL from now and
// returns it with the expiration Graph granted. A subscription Graph no
// longer knows is NotFound: open a new one.
func (s *Source) Renew(ctx context.Context, ch calendar.Channel) (calendar.Channel, error) {
	if ch.ID == "" {
		return calendar.Channel{}, &calendar.Error{Class: calendar.Permanent, Op: opRenew, Err: errors.New("subscription id required")}
	}
	body := subscription{ExpirationDateTime: s.cfg.Clock().Add(s.cfg.SubscriptionTTL).UTC().Format(time.RFC3339)}
	var res subscription
	if err := s.do(ctx, request{op: opRenew, method: http.MethodPatch, url: s.endpoint("subscriptions/"+url.PathEscape(ch.ID), nil),
		body: body, idempotent: true}, &res); err != nil {
		return calendar.Channel{}, err
	}
	exp, err := parseGraphTime(res.ExpirationDateTime)
	if err != nil {
		return calendar.Channel{}, &calendar.Error{Class: calendar.Permanent, Op: opRenew, Err: errors.New("answer carries no valid expirationDateTime")}
	}
	ch.Expiration = exp
	return ch, nil
}

// StopWatch deletes a subscription. One Graph no longer knows is not an
// error.
func (s *Source) StopWatch(ctx context.Context, ch calendar.Channel) error {
	if ch.ID == "" {
		return nil
	}
	err := s.do(ctx, request{op: opUnsubscribe, method: http.MethodDelete, url: s.endpoint("subscriptions/"+url.PathEscape(ch.ID), nil), idempotent: true}, nil)
	if calendar.ClassOf(err) == calendar.NotFound {
		return nil
	}
	return err
}

// parseGraphTime reads a DateTimeOffset ("2026-03-27T09:00:00Z", with up to
// seven fractional digits).
func parseGraphTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// Parser parses Graph change and lifecycle notifications.
type Parser struct{}

var _ calendar.WebhookParser = Parser{}

// notification is one item of a change or lifecycle notification body.
type notification struct {
	SubscriptionID  string `json:"subscriptionId"`
	SubscriptionExp string `json:"subscriptionExpirationDateTime"`
	ClientState     string `json:"clientState"`
	ChangeType      string `json:"changeType"`
	LifecycleEvent  string `json:"lifecycleEvent"`
	Resource        string `json:"resource"`
}

// ParseWebhook implements calendar.WebhookParser for both the notification
// and the lifecycle address:
//
//   - a validation handshake (?validationToken=…, on either address) is
//     answered with the decoded token as text/plain, 200;
//   - a body {"value":[…]} gives one Notification per item: changes
//     (created, updated, deleted) are StateChanged; lifecycle events
//     reauthorizationRequired, subscriptionRemoved and missed are
//     StateReauthorize, StateRemoved and StateMissed. ChannelID is the
//     subscription id, Token the clientState, to verify against the stored
//     hash (calendar.VerifyToken) before anything is queued.
//
// Anything else is an error wrapping calendar.ErrMalformed.
func (Parser) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	if req.Query != nil && req.Query.Has("validationToken") {
		vs := req.Query["validationToken"]
		if len(vs) != 1 {
			return nil, nil, fmt.Errorf("%w: validationToken missing or repeated", ErrMalformedNotification)
		}
		tok := vs[0]
		switch {
		case tok == "" || len(tok) > maxValidationToken:
			return nil, nil, fmt.Errorf("%w: validationToken empty or longer than %d bytes", ErrMalformedNotification, maxValidationToken)
		case !printable(tok, true):
			return nil, nil, fmt.Errorf("%w: validationToken has a control byte", ErrMalformedNotification)
		}
		return &calendar.Reply{Status: http.StatusOK, ContentType: "text/plain; charset=utf-8", Body: tok}, nil, nil
	}
	if len(req.Body) == 0 {
		return nil, nil, fmt.Errorf("%w: empty body", ErrMalformedNotification)
	}
	if len(req.Body) > MaxWebhookBody {
		return nil, nil, fmt.Errorf("%w: body longer than %d bytes", ErrMalformedNotification, MaxWebhookBody)
	}
	var body struct {
		Value []json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return nil, nil, fmt.Errorf("%w: body is not a JSON object with a value array", ErrMalformedNotification)
	}
	switch {
	case len(body.Value) == 0:
		return nil, nil, fmt.Errorf("%w: no notifications in value", ErrMalformedNotification)
	case len(body.Value) > maxNotifications:
		return nil, nil, fmt.Errorf("%w: more than %d notifications", ErrMalformedNotification, maxNotifications)
	}
	out := make([]calendar.Notification, 0, len(body.Value))
	for i, raw := range body.Value {
		var it notification
		if err := json.Unmarshal(raw, &it); err != nil {
			return nil, nil, fmt.Errorf("%w: item %d is not a notification object", ErrMalformedNotification, i)
		}
		n, err := parseItem(it)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: item %d: %s", ErrMalformedNotification, i, err)
		}
		out = append(out, n)
	}
	return nil, out, nil
}

func parseItem(it notification) (calendar.Notification, error) {
	var n calendar.Notification
	switch {
	case it.SubscriptionID == "" || len(it.SubscriptionID) > maxIDLen || !printable(it.SubscriptionID, false):
		return n, errors.New("subscriptionId missing, too long or not printable ASCII")
	case len(it.ClientState) > maxClientState || !printable(it.ClientState, true):
		return n, errors.New("clientState too long or not printable")
	}
	n.ChannelID, n.Token = it.SubscriptionID, it.ClientState
	switch ev := it.LifecycleEvent; ev {
	case "":
		if it.ChangeType == "" {
			return n, errors.New("neither changeType nor lifecycleEvent")
		}
		for _, ct := range strings.Split(it.ChangeType, ",") {
			switch strings.TrimSpace(ct) {
			case "created", "updated", "deleted":
			default:
				return n, fmt.Errorf("unknown changeType %.32q", it.ChangeType)
			}
		}
		n.State = calendar.StateChanged
	case "reauthorizationRequired":
		n.State = calendar.StateReauthorize
	case "subscriptionRemoved":
		n.State = calendar.StateRemoved
	case "missed":
		n.State = calendar.StateMissed
	default:
		return n, fmt.Errorf("unknown lifecycleEvent %.32q", ev)
	}
	if it.SubscriptionExp != "" {
		t, err := parseGraphTime(it.SubscriptionExp)
		if err != nil {
			return n, errors.New("subscriptionExpirationDateTime is not a date-time")
		}
		n.Expiration = t
	}
	return n, nil
}

// printable reports whether s has no control bytes (and, unless spaces,
// no spaces).
func printable(s string, spaces bool) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x20 || b == 0x7f || b == ' ' && !spaces {
			return false
		}
	}
	return true
}
