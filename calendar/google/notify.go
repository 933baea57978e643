package google

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rapportsync/rapport/calendar"
)

// Errors of push notification handling.
var (
	// ErrMalformedNotification wraps every shape error of ParseNotification
	// (and is calendar.ErrMalformed): answer 400 and do not sync.
	ErrMalformedNotification = fmt.Errorf("google push notification: %w", calendar.ErrMalformed)
	// ErrUnknownChannel: no stored channel matches the notification's channel
	// and resource ids. Answer 200 and ignore it; stop the channel if it
	// keeps coming.
	ErrUnknownChannel = errors.New("google: push notification for an unknown channel")
	// ErrBadToken: the channel is known but the token does not match.
	ErrBadToken = errors.New("google: push notification token mismatch")
)

// Google's notification headers.
const (
	hChannelID    = "X-Goog-Channel-ID"
	hChannelToken = "X-Goog-Channel-Token"
	hChannelExp   = "X-Goog-Channel-Expiration"
	hResourceID   = "X-Goog-Resource-ID"
	hResourceSt   = "X-Goog-Resource-State"
	hMessageNum   = "X-Goog-Message-Number"
)

// Header length limits: Google's for channel ids (64) and tokens (256), and
// a generous bound for resource ids.
const (
	maxChannelID  = 64
	maxToken      = 256
	maxResourceID = 256
)

// Parser parses Google push notifications.
type Parser struct{}

var _ calendar.WebhookParser = Parser{}

// ParseWebhook implements calendar.WebhookParser: a Google notification is
// one request's headers.
func (Parser) ParseWebhook(req calendar.WebhookRequest) (*calendar.Reply, []calendar.Notification, error) {
	n, err := ParseNotification(req.Header, req.Body)
	if err != nil {
		return nil, nil, err
	}
	return nil, []calendar.Notification{n}, nil
}

// ParseNotification reads a Google push notification from its headers
// (Calendar notifications have no body; body is ignored). It checks the shape
// only: verify the result against the stored channel with Verify before
// acting on it. Every error wraps ErrMalformedNotification.
func ParseNotification(h http.Header, body []byte) (calendar.Notification, error) {
	var n calendar.Notification
	var err error
	if n.ChannelID, err = header(h, hChannelID, true, maxChannelID); err != nil {
		return calendar.Notification{}, err
	}
	if n.Token, err = header(h, hChannelToken, false, maxToken); err != nil {
		return calendar.Notification{}, err
	}
	if n.ResourceID, err = header(h, hResourceID, true, maxResourceID); err != nil {
		return calendar.Notification{}, err
	}

	state, err := header(h, hResourceSt, true, 32)
	if err != nil {
		return calendar.Notification{}, err
	}
	switch state {
	case "sync":
		n.State = calendar.StateSync
	case "exists", "not_exists":
		n.State = calendar.StateChanged
	default:
		return calendar.Notification{}, fmt.Errorf("%w: %s %.32q not sync, exists or not_exists", ErrMalformedNotification, hResourceSt, state)
	}

	num, err := header(h, hMessageNum, true, 20)
	if err != nil {
		return calendar.Notification{}, err
	}
	if n.MessageNumber, err = strconv.ParseInt(num, 10, 64); err != nil || !digits(num) {
		return calendar.Notification{}, fmt.Errorf("%w: %s %q is not a non-negative integer", ErrMalformedNotification, hMessageNum, num)
	}

	exp, err := header(h, hChannelExp, false, 64)
	if err != nil {
		return calendar.Notification{}, err
	}
	if exp != "" {
		// Google writes RFC 1123 in GMT: "Tue, 19 Nov 2013 01:13:52 GMT".
		t, err := time.Parse(time.RFC1123, exp)
		if err != nil {
			return calendar.Notification{}, fmt.Errorf("%w: %s %q is not an RFC 1123 date", ErrMalformedNotification, hChannelExp, exp)
		}
		n.Expiration = t.UTC()
	}
	return n, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// header returns the single value of header name, checked to be printable
// ASCII without spaces and at most max bytes.
func header(h http.Header, name string, required bool, max int) (string, error) {
	vs := h.Values(name)
	switch {
	case len(vs) == 0 || len(vs) == 1 && vs[0] == "":
		if required {
			return "", fmt.Errorf("%w: %s missing", ErrMalformedNotification, name)
		}
		return "", nil
	case len(vs) > 1:
		return "", fmt.Errorf("%w: %s repeated", ErrMalformedNotification, name)
	}
	v := vs[0]
	if len(v) > max {
		return "", fmt.Errorf("%w: %s longer than %d bytes", ErrMalformedNotification, name, max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			if name == hChannelExp && v[i] == ' ' {
				continue
			}
			return "", fmt.Errorf("%w: %s has a byte outside printable ASCII", ErrMalformedNotification, name)
		}
	}
	return v, nil
}

// Verify checks a parsed notification against the channel stored under
// n.ChannelID: its resource id and the hash of its token (nil or empty when
// no channel is stored). It returns ErrUnknownChannel or ErrBadToken, in
// constant time with respect to the secrets.
func Verify(n calendar.Notification, storedResourceID string, tokenHash []byte) error {
	known := len(tokenHash) > 0 && storedResourceID != ""
	sameResource := subtle.ConstantTimeCompare([]byte(n.ResourceID), []byte(storedResourceID)) == 1
	goodToken := calendar.VerifyToken(n.Token, tokenHash)
	switch {
	case !known || !sameResource:
		return ErrUnknownChannel
	case !goodToken:
		return ErrBadToken
	}
	return nil
}
