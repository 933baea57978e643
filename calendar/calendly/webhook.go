package calendly

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
)

// SignatureHeader carries a delivery's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(key, t + "." + raw body)>".
const SignatureHeader = "Calendly-Webhook-Signature"

// Limits on what a delivery may be.
const (
	// MaxWebhookBody bounds a delivery's body (an invitee payload is a few
	// kilobytes; answers to booking questions make it grow).
	MaxWebhookBody = 1 << 20
	// MaxChannelPath bounds the channel identifier in the webhook path.
	MaxChannelPath = 128
	maxSignature   = 512
	maxURI         = 512
)

// Freshness of a signature, relative to WebhookRequest.Received.
const (
	// DefaultMaxAge is how old a signature may be, as Calendly's own
	// examples check (180 s): older is a replay.
	DefaultMaxAge = 3 * time.Minute
	// DefaultMaxFuture is how far ahead of us a signature may be: clock
	// skew between Calendly and this host.
	DefaultMaxFuture = 30 * time.Second
)

// Errors of webhook handling.
var (
	// ErrMalformedWebhook wraps every shape error of ParseWebhook (and is
	// calendar.ErrMalformed): answer 400 and do not sync.
	ErrMalformedWebhook = fmt.Errorf("calendly webhook: %w", calendar.ErrMalformed)
	// ErrSignature is what every signature failure wraps: do not trust,
	// parse or queue the delivery; answer 401.
	ErrSignature = errors.New("calendly webhook signature rejected")
	// ErrSignatureMissing: no signature header, or not one of Calendly's
	// form.
	ErrSignatureMissing = fmt.Errorf("%w: %s missing or garbled", ErrSignature, SignatureHeader)
	// ErrSignatureMismatch: signed with another key, or the body changed.
	ErrSignatureMismatch = fmt.Errorf("%w: does not match the key", ErrSignature)
	// ErrSignatureStale: the signature's time is too old (a replay) or too
	// far in the future.
	ErrSignatureStale = fmt.Errorf("%w: timestamp outside the accepted window", ErrSignature)
)

// Parser parses and verifies Calendly webhook deliveries. The zero value
// uses DefaultMaxAge and DefaultMaxFuture.
type Parser struct {
	// MaxAge is how old a signature may be. Default DefaultMaxAge.
	MaxAge time.Duration
	// MaxFuture is how far in the future a signature may be. Default
	// DefaultMaxFuture.
	MaxFuture time.Duration
}

var (
	_ calendar.WebhookParser     = Parser{}
	_ calendar.SignatureVerifier = Parser{}
)

// ParseWebhook implements calendar.WebhookParser for a delivery to
// {public}/webhooks/calendly/{channel}: req.Path is "/{channel}", the
// opaque identifier the pipeline put in the address it gave Watch, and
// becomes Notification.ChannelID (the body is not trusted to name it). An
// invitee.created or invitee.canceled delivery is one StateChanged
// notification whose EventIDs are the scheduled event URI of the payload
// and, for a reschedule, that of the other side (new_invitee's event on a
// cancel, old_invitee's on a create), so that either delivery alone
// brings both copies up to date. Other events are acknowledged with no
// notification.
//
// The shape is all it checks: verify the signature (VerifySignature)
// before trusting or queueing anything. Every error wraps
// ErrMalformedWebhook.
func (Parser) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	channel, err := channelFromPath(req.Path)
	if err != nil {
		return nil, nil, err
	}
	if len(req.Body) == 0 {
		return nil, nil, fmt.Errorf("%w: empty body", ErrMalformedWebhook)
	}
	if len(req.Body) > MaxWebhookBody {
		return nil, nil, fmt.Errorf("%w: body larger than %d bytes", ErrMalformedWebhook, MaxWebhookBody)
	}
	var d struct {
		Event   string `json:"event"`
		Payload *struct {
			Event          string  `json:"event"`
			OldInvitee     *string `json:"old_invitee"`
			NewInvitee     *string `json:"new_invitee"`
			ScheduledEvent *struct {
				URI string `json:"uri"`
			} `json:"scheduled_event"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(req.Body, &d); err != nil {
		return nil, nil, fmt.Errorf("%w: body is not a JSON webhook payload", ErrMalformedWebhook)
	}
	switch d.Event {
	case "":
		return nil, nil, fmt.Errorf("%w: no event", ErrMalformedWebhook)
	case "invitee.created", "invitee.canceled":
	default:
		// Not an event Rapport subscribes to: acknowledge it.
		return nil, nil, nil
	}
	if d.Payload == nil {
		return nil, nil, fmt.Errorf("%w: %s without payload", ErrMalformedWebhook, d.Event)
	}
	primary := d.Payload.Event
	if primary == "" && d.Payload.ScheduledEvent != nil {
		primary = d.Payload.ScheduledEvent.URI
	}
	if len(primary) > maxURI || lastSegment(primary, "scheduled_events") == "" {
		return nil, nil, fmt.Errorf("%w: payload names no scheduled event", ErrMalformedWebhook)
	}
	ids := []string{primary}
	for _, link := range []*string{d.Payload.NewInvitee, d.Payload.OldInvitee} {
		l := deref(link)
		if l == "" || len(l) > maxURI {
			continue
		}
		if _, _, ok := inviteeRef(l); !ok {
			continue
		}
		other, _, _ := strings.Cut(l, "/invitees/")
		if eventUUID(other) != eventUUID(primary) {
			ids = append(ids, other)
		}
	}
	return nil, []calendar.Notification{{ChannelID: channel, State: calendar.StateChanged, EventIDs: ids}}, nil
}

// channelFromPath reads the channel identifier from "/{channel}".
func channelFromPath(path string) (string, error) {
	ch, ok := strings.CutPrefix(path, "/")
	switch {
	case !ok || ch == "":
		return "", fmt.Errorf("%w: no channel in the webhook path", ErrMalformedWebhook)
	case len(ch) > MaxChannelPath:
		return "", fmt.Errorf("%w: channel in the webhook path longer than %d bytes", ErrMalformedWebhook, MaxChannelPath)
	}
	for i := 0; i < len(ch); i++ {
		c := ch[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.' || c == '~') {
			return "", fmt.Errorf("%w: channel in the webhook path has a byte outside [A-Za-z0-9._~-]", ErrMalformedWebhook)
		}
	}
	return ch, nil
}

// VerifySignature implements calendar.SignatureVerifier: it checks the
// Calendly-Webhook-Signature of req against key, in constant time, over
// the raw body, and that its timestamp is at most MaxAge before and
// MaxFuture after req.Received. Call it with the channel's key first; a
// subscription Calendly signs with the OAuth application's key
// (RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY) verifies with that one instead.
// Every error wraps ErrSignature.
func (p Parser) VerifySignature(req calendar.WebhookRequest, key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: no key to verify with", ErrSignature)
	}
	if req.Received.IsZero() {
		return fmt.Errorf("%w: the request has no receive time", ErrSignature)
	}
	vs := req.Header.Values(SignatureHeader)
	if len(vs) != 1 || len(vs[0]) > maxSignature {
		return ErrSignatureMissing
	}
	t, sigs, ok := parseSignature(vs[0])
	if !ok {
		return ErrSignatureMissing
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strconv.FormatInt(t, 10)))
	mac.Write([]byte("."))
	mac.Write(req.Body)
	want := mac.Sum(nil)
	match := false
	for _, sig := range sigs {
		// Every candidate is compared, so the time taken does not depend
		// on which one matched.
		if hmac.Equal(sig, want) {
			match = true
		}
	}
	if !match {
		return ErrSignatureMismatch
	}
	maxAge, maxFuture := p.MaxAge, p.MaxFuture
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if maxFuture <= 0 {
		maxFuture = DefaultMaxFuture
	}
	// Compared as instants: a difference of far-off times would saturate.
	signed := time.Unix(t, 0)
	if signed.Before(req.Received.Add(-maxAge)) || signed.After(req.Received.Add(maxFuture)) {
		return ErrSignatureStale
	}
	return nil
}

// parseSignature reads "t=<unix>,v1=<hex>[,v1=<hex>…]"; elements of other
// schemes are ignored. It wants exactly one t and at least one v1 of 32
// bytes.
func parseSignature(v string) (t int64, sigs [][]byte, ok bool) {
	haveT := false
	for _, part := range strings.Split(v, ",") {
		k, val, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found {
			return 0, nil, false
		}
		switch k {
		case "t":
			if haveT || val == "" || len(val) > 12 {
				return 0, nil, false
			}
			for i := 0; i < len(val); i++ {
				if val[i] < '0' || val[i] > '9' {
					return 0, nil, false
				}
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return 0, nil, false
			}
			t, haveT = n, true
		case "v1":
			b, err := hex.DecodeString(val)
			if err != nil || len(b) != sha256.Size {
				return 0, nil, false
			}
			sigs = append(sigs, b)
		}
	}
	return t, sigs, haveT && len(sigs) > 0
}

// ParseWebhook implements calendar.WebhookParser (see Parser).
func (p *Provider) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	return p.parser.ParseWebhook(req)
}

// VerifySignature implements calendar.SignatureVerifier (see Parser). A
// delivery that does not verify with the subscription's own key is tried
// with the OAuth app's key (Config.AppSigningKey), which Calendly uses for
// the subscriptions of OAuth apps.
func (p *Provider) VerifySignature(req calendar.WebhookRequest, key []byte) error {
	err := p.parser.VerifySignature(req, key)
	if err != nil && errors.Is(err, ErrSignatureMismatch) && len(p.cfg.AppSigningKey) > 0 {
		if appErr := p.parser.VerifySignature(req, p.cfg.AppSigningKey); appErr == nil {
			return nil
		}
	}
	return err
}
