package httpapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/pipeline"
)

// webhookTimeout bounds what a webhook does before answering: look up,
// mark, enqueue.
const webhookTimeout = 5 * time.Second

// calendarWebhook hands a calendar provider's push request to the
// pipeline, which parses it, answers a handshake, verifies every
// notification against its stored channel and, for a change, queues the
// calendar's sync — nothing more, so the answer is immediate. Nothing is
// queued for a malformed (400), oversized (413), forged (403) or unknown
// (404) request.
func (s *Server) calendarWebhook(w http.ResponseWriter, r *http.Request) {
	provider := r.PathValue("provider")
	body, err := s.readBody(w, r)
	if err != nil {
		s.countWebhook(provider, "bad_request")
		bodyError(w, err)
		return
	}
	rest := r.PathValue("rest")
	if rest != "" {
		rest = "/" + rest
	}
	req := calendar.WebhookRequest{Header: r.Header, Query: r.URL.Query(), Path: rest, Body: body, Received: s.clock()}
	ctx, cancel := context.WithTimeout(r.Context(), webhookTimeout)
	defer cancel()
	reply, err := s.svc.Notify(ctx, provider, req)
	switch {
	case err == nil && reply != nil:
		s.countWebhook(provider, "handshake")
		w.Header().Set("Content-Type", reply.ContentType)
		w.WriteHeader(reply.Status)
		io.WriteString(w, reply.Body)
	case err == nil:
		s.countWebhook(provider, "accepted")
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, pipeline.ErrNotFound):
		s.countWebhook(provider, "unknown_channel")
		s.log.InfoContext(ctx, "notification for an unknown provider or channel", slog.String("request_id", RequestID(ctx)), slog.String("provider", provider))
		writeError(w, http.StatusNotFound, "unknown_channel", "no such channel")
	case errors.Is(err, pipeline.ErrInvalid):
		s.countWebhook(provider, "malformed")
		writeError(w, http.StatusBadRequest, "malformed_notification", err.Error())
	case errors.Is(err, pipeline.ErrForbidden):
		s.countWebhook(provider, "bad_token")
		s.log.WarnContext(ctx, "notification that does not verify against its channel", slog.String("request_id", RequestID(ctx)), slog.String("provider", provider))
		writeError(w, http.StatusForbidden, "bad_token", "the notification does not match its channel")
	default:
		// A 5xx makes the provider retry, which is what a failed enqueue
		// needs.
		s.countWebhook(provider, "error")
		s.fail(w, r, provider+" notification", err)
	}
}

// hubspotEvent is one event of a HubSpot webhook batch; unknown fields are
// allowed, HubSpot adds them over time.
type hubspotEvent struct {
	EventID          json.Number `json:"eventId"`
	PortalID         json.Number `json:"portalId"`
	SubscriptionType string      `json:"subscriptionType"`
	ObjectTypeID     string      `json:"objectTypeId"`
	ObjectID         json.Number `json:"objectId"`
	PropertyName     string      `json:"propertyName"`
}

// hubspotMaxAge is how old a signed HubSpot request may be.
const hubspotMaxAge = 5 * time.Minute

// hubspotWebhook verifies a HubSpot webhook (signature v3) and enqueues a
// company index refresh for each portal whose companies changed.
func (s *Server) hubspotWebhook(w http.ResponseWriter, r *http.Request) {
	if s.cfg.HubSpotClientSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "not_configured",
			"HubSpot webhooks are not configured: set RAPPORT_HUBSPOT_CLIENT_SECRET")
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.countWebhook("hubspot", "bad_request")
		bodyError(w, err)
		return
	}
	if code, msg := s.verifyHubSpot(r, body); code != "" {
		s.countWebhook("hubspot", code)
		s.log.WarnContext(r.Context(), "hubspot webhook refused", slog.String("request_id", RequestID(r.Context())),
			slog.String("reason", code))
		writeError(w, http.StatusUnauthorized, code, msg)
		return
	}
	var events []hubspotEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&events); err != nil || dec.More() {
		s.countWebhook("hubspot", "malformed")
		writeError(w, http.StatusBadRequest, "malformed_events", "body is not a JSON array of HubSpot events")
		return
	}
	var portals []string
	seen := map[string]bool{}
	for i, e := range events {
		if !companyEvent(e) {
			continue
		}
		portal, err := strconv.ParseUint(e.PortalID.String(), 10, 64)
		if err != nil || portal == 0 {
			s.countWebhook("hubspot", "malformed")
			writeError(w, http.StatusBadRequest, "malformed_events", "event "+strconv.Itoa(i)+" has no valid portalId")
			return
		}
		if p := strconv.FormatUint(portal, 10); !seen[p] {
			seen[p] = true
			portals = append(portals, p)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), webhookTimeout)
	defer cancel()
	for _, p := range portals {
		if err := s.svc.CRMChanged(ctx, p); err != nil && !errors.Is(err, pipeline.ErrNotFound) {
			s.countWebhook("hubspot", "error")
			s.fail(w, r, "hubspot webhook", err)
			return
		}
	}
	s.countWebhook("hubspot", "accepted")
	w.WriteHeader(http.StatusOK)
}

// companyEvent reports whether an event changes companies: the classic
// "company.*" subscriptions or a generic "object.*" one on object type 0-2.
func companyEvent(e hubspotEvent) bool {
	return strings.HasPrefix(e.SubscriptionType, "company.") ||
		strings.HasPrefix(e.SubscriptionType, "object.") && e.ObjectTypeID == "0-2"
}

// verifyHubSpot checks X-HubSpot-Signature-v3: base64(HMAC-SHA256(client
// secret, method + URI + body + timestamp)) over the address HubSpot called,
// PublicURL + the request path and query, with the request at most five
// minutes old. It returns an error code and message, or "" when valid.
func (s *Server) verifyHubSpot(r *http.Request, body []byte) (code, msg string) {
	sig := r.Header.Get("X-HubSpot-Signature-v3")
	ts := r.Header.Get("X-HubSpot-Request-Timestamp")
	if sig == "" || ts == "" {
		return "unsigned", "missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp"
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "bad_timestamp", "X-HubSpot-Request-Timestamp is not milliseconds since the epoch"
	}
	if age := s.clock().Sub(time.UnixMilli(ms)); age > hubspotMaxAge || age < -hubspotMaxAge {
		return "stale", "request timestamp is more than 5 minutes away"
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return "bad_signature", "signature does not match"
	}
	mac := hmac.New(sha256.New, []byte(s.cfg.HubSpotClientSecret))
	mac.Write([]byte(r.Method + hubspotURI(s.cfg.PublicURL, r) + string(body) + ts))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return "bad_signature", "signature does not match"
	}
	return "", ""
}

// hubspotURI is the URL HubSpot signed: the public base plus the path and
// query, with the characters HubSpot decodes before signing decoded.
func hubspotURI(publicURL string, r *http.Request) string {
	return hubspotDecoder.Replace(publicURL + r.URL.EscapedPath() + querySuffix(r))
}

func querySuffix(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

var hubspotDecoder = strings.NewReplacer(
	"%3A", ":", "%2F", "/", "%3F", "?", "%40", "@", "%21", "!", "%24", "$",
	"%27", "'", "%28", "(", "%29", ")", "%2A", "*", "%2C", ",", "%3B", ";",
)
