package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/rapportsync/rapport/calendar"
	prov "github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/pipeline"
)

// webhookTimeout bounds what a webhook does before answering: look up,
// mark, enqueue.
const webhookTimeout = 5 * time.Second

// providerWebhook hands a provider's push request to the pipeline, which
// finds the provider by name, parses the request, answers a handshake,
// verifies every notification (against its stored channel, or the
// provider's signature) and queues the work — nothing more, so the answer
// is immediate. Nothing is queued for a malformed (400), oversized (413),
// forged (401/403) or unknown (404) request.
func (s *Server) providerWebhook(w http.ResponseWriter, r *http.Request) {
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
	req := calendar.WebhookRequest{Method: r.Method, URL: s.cfg.PublicURL + r.URL.EscapedPath() + querySuffix(r),
		Header: r.Header, Query: r.URL.Query(), Path: rest, Body: body, Received: s.clock()}
	ctx, cancel := context.WithTimeout(r.Context(), webhookTimeout)
	defer cancel()
	reply, err := s.svc.Notify(ctx, provider, req)
	var refused *prov.RequestError
	switch {
	case errors.As(err, &refused):
		s.countWebhook(provider, refused.Code)
		s.log.WarnContext(ctx, "webhook refused", slog.String("request_id", RequestID(ctx)), slog.String("provider", provider), slog.String("reason", refused.Code))
		writeError(w, refused.Status, refused.Code, refused.Msg)
	case errors.Is(err, pipeline.ErrNotConfigured):
		s.countWebhook(provider, "not_configured")
		writeError(w, http.StatusServiceUnavailable, "not_configured", err.Error())
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

func querySuffix(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}
