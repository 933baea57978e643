package hubspot

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/provider"
)

// webhookEvent is one event of a HubSpot webhook batch; unknown fields are
// allowed, HubSpot adds them over time.
type webhookEvent struct {
	EventID          json.Number `json:"eventId"`
	PortalID         json.Number `json:"portalId"`
	SubscriptionType string      `json:"subscriptionType"`
	ObjectTypeID     string      `json:"objectTypeId"`
	ObjectID         json.Number `json:"objectId"`
	PropertyName     string      `json:"propertyName"`
}

// webhookMaxAge is how old a signed HubSpot request may be.
const webhookMaxAge = 5 * time.Minute

var _ crm.WebhookParser = Provider{}

// CompaniesChanged implements crm.WebhookParser: it verifies the request's
// X-HubSpot-Signature-v3 with the app's client secret and returns the
// portals whose companies the events change.
func (p Provider) CompaniesChanged(req crm.WebhookRequest) ([]string, error) {
	if p.ClientSecret == "" {
		return nil, fmt.Errorf("HubSpot webhooks need RAPPORT_HUBSPOT_CLIENT_SECRET: %w", provider.ErrNotConfigured)
	}
	if err := verifySignature(req, p.ClientSecret); err != nil {
		return nil, err
	}
	malformed := func(msg string) error {
		return &provider.RequestError{Status: http.StatusBadRequest, Code: "malformed_events", Msg: msg}
	}
	var events []webhookEvent
	dec := json.NewDecoder(bytes.NewReader(req.Body))
	dec.UseNumber()
	if err := dec.Decode(&events); err != nil || dec.More() {
		return nil, malformed("body is not a JSON array of HubSpot events")
	}
	var portals []string
	seen := map[string]bool{}
	for i, e := range events {
		if !companyEvent(e) {
			continue
		}
		portal, err := strconv.ParseUint(e.PortalID.String(), 10, 64)
		if err != nil || portal == 0 {
			return nil, malformed("event " + strconv.Itoa(i) + " has no valid portalId")
		}
		if id := strconv.FormatUint(portal, 10); !seen[id] {
			seen[id] = true
			portals = append(portals, id)
		}
	}
	return portals, nil
}

// companyEvent reports whether an event changes companies: the classic
// "company.*" subscriptions or a generic "object.*" one on object type 0-2.
func companyEvent(e webhookEvent) bool {
	return strings.HasPrefix(e.SubscriptionType, "company.") ||
		strings.HasPrefix(e.SubscriptionType, "object.") && e.ObjectTypeID == "0-2"
}

// verifySignature checks X-HubSpot-Signature-v3: base64(HMAC-SHA256(client
// secret, method + URI + body + timestamp)) over the address HubSpot
// called, with the request at most five minutes old.
func verifySignature(req crm.WebhookRequest, secret string) error {
	refuse := func(code, msg string) error {
		return &provider.RequestError{Status: http.StatusUnauthorized, Code: code, Msg: msg}
	}
	sig := req.Header.Get("X-HubSpot-Signature-v3")
	ts := req.Header.Get("X-HubSpot-Request-Timestamp")
	if sig == "" || ts == "" {
		return refuse("unsigned", "missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return refuse("bad_timestamp", "X-HubSpot-Request-Timestamp is not milliseconds since the epoch")
	}
	if age := req.Received.Sub(time.UnixMilli(ms)); age > webhookMaxAge || age < -webhookMaxAge {
		return refuse("stale", "request timestamp is more than 5 minutes away")
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return refuse("bad_signature", "signature does not match")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(req.Method + signedURI(req.URL) + string(req.Body) + ts))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return refuse("bad_signature", "signature does not match")
	}
	return nil
}

// signedURI is the URL as HubSpot signs it: with the characters it decodes
// before signing decoded.
func signedURI(u string) string { return uriDecoder.Replace(u) }

var uriDecoder = strings.NewReplacer(
	"%3A", ":", "%2F", "/", "%3F", "?", "%40", "@", "%21", "!", "%24", "$",
	"%27", "'", "%28", "(", "%29", ")", "%2A", "*", "%2C", ",", "%3B", ";",
)
