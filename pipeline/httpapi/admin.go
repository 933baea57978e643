package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/rapportsync/rapport/pipeline"
)

type workspaceRequest struct {
	Name            string   `json:"name"`
	InternalDomains []string `json:"internal_domains"`
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var req workspaceRequest
	if err := s.decode(w, r, &req); err != nil {
		bodyError(w, err)
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"name" is required`)
		return
	}
	if req.InternalDomains == nil {
		req.InternalDomains = []string{}
	}
	ws, err := s.svc.CreateWorkspace(r.Context(), req.Name, req.InternalDomains)
	if err != nil {
		s.fail(w, r, "create workspace", err)
		return
	}
	w.Header().Set("Location", "/admin/workspaces/"+ws.ID)
	writeJSON(w, http.StatusCreated, ws)
}

func (s *Server) workspaceStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.WorkspaceStatus(r.Context(), r.PathValue("ws"))
	if err != nil {
		s.fail(w, r, "workspace status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) addConnection(w http.ResponseWriter, r *http.Request) {
	var in pipeline.ConnectionInput
	if err := s.decode(w, r, &in); err != nil {
		bodyError(w, err)
		return
	}
	if in.Provider == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"provider" is required: the name of a calendar provider or CRM`)
		return
	}
	if in.AccessToken == "" && in.RefreshToken == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"access_token" or "refresh_token" is required`)
		return
	}
	ws := r.PathValue("ws")
	conn, err := s.svc.AddConnection(r.Context(), ws, in)
	if err != nil {
		s.fail(w, r, "add connection", err)
		return
	}
	s.log.InfoContext(r.Context(), "connection added", slog.String("request_id", RequestID(r.Context())),
		slog.String("workspace_id", ws), slog.String("connection_id", conn.ID), slog.String("provider", conn.Provider))
	writeJSON(w, http.StatusCreated, conn)
}

func (s *Server) calendars(w http.ResponseWriter, r *http.Request) {
	cals, err := s.svc.Calendars(r.Context(), r.PathValue("ws"))
	if err != nil {
		s.fail(w, r, "list calendars", err)
		return
	}
	if cals == nil {
		cals = []pipeline.CalendarStatus{}
	}
	writeJSON(w, http.StatusOK, cals)
}

func (s *Server) requestSync(w http.ResponseWriter, r *http.Request) {
	ws, cal := r.PathValue("ws"), r.PathValue("id")
	if err := s.svc.RequestSync(r.Context(), ws, cal); err != nil {
		s.fail(w, r, "request sync", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"calendar_id": cal, "status": "queued"})
}

func (s *Server) reconcile(w http.ResponseWriter, r *http.Request) {
	wait := false
	if v := r.URL.Query().Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "wait must be true or false")
			return
		}
		wait = b
	}
	var req pipeline.ReconcileRequest
	if err := s.decode(w, r, &req); err != nil {
		bodyError(w, err)
		return
	}
	if req.WorkspaceID == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"workspace_id" is required`)
		return
	}
	if wait {
		release, ok := s.tryReconcileSlot()
		if !ok {
			w.Header().Set("Retry-After", syncReconcileRetry)
			writeError(w, http.StatusTooManyRequests, "too_many_requests",
				"as many reconciliations as allowed are running with wait=true; try again later, or start one without wait and poll its report")
			return
		}
		defer release()
		rep, err := s.svc.RunReconcile(r.Context(), req)
		if err != nil {
			s.fail(w, r, "reconcile", err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
		return
	}
	id, err := s.svc.StartReconcile(r.Context(), req)
	if err != nil {
		s.fail(w, r, "start reconcile", err)
		return
	}
	w.Header().Set("Location", "/admin/reconcile/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

func (s *Server) reconcileRun(w http.ResponseWriter, r *http.Request) {
	rep, err := s.svc.ReconcileRun(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, "reconcile run", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// list is the response of the paginated endpoints: Next is the cursor to
// pass as ?after= for the following page, empty on the last one.
type list[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

const (
	defaultLimit = 50
	maxLimit     = 500
)

// page reads ?limit= (default 50, at most 500) and ?after=.
func page(r *http.Request) (pipeline.Page, bool) {
	q := r.URL.Query()
	p := pipeline.Page{Limit: defaultLimit, After: q.Get("after")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, false
		}
		p.Limit = min(n, maxLimit)
	}
	return p, true
}

// meetingStates are the ledger states a meetings query may filter on.
var meetingStates = map[string]bool{
	"skipped": true, "pending": true, "creating": true, "logged": true,
	"cancelled": true, "deleted_in_crm": true, "failed": true,
}

func (s *Server) meetings(w http.ResponseWriter, r *http.Request) {
	p, ok := page(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "limit must be a positive integer (at most 500)")
		return
	}
	state := r.URL.Query().Get("state")
	if state != "" && !meetingStates[state] {
		writeError(w, http.StatusBadRequest, "invalid",
			"state must be one of skipped, pending, creating, logged, cancelled, deleted_in_crm, failed")
		return
	}
	items, next, err := s.svc.Meetings(r.Context(), r.PathValue("ws"), state, p)
	if err != nil {
		s.fail(w, r, "list meetings", err)
		return
	}
	if items == nil {
		items = []pipeline.MeetingEntry{}
	}
	writeJSON(w, http.StatusOK, list[pipeline.MeetingEntry]{Items: items, Next: next})
}

func (s *Server) meeting(w http.ResponseWriter, r *http.Request) {
	m, err := s.svc.Meeting(r.Context(), r.PathValue("ws"), r.PathValue("key"))
	if err != nil {
		s.fail(w, r, "meeting", err)
		return
	}
	writeJSON(w, http.StatusOK, meetingResponse{MeetingDetail: m, Explanation: explainTrace(m.Trace)})
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	p, ok := page(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "limit must be a positive integer (at most 500)")
		return
	}
	items, next, err := s.svc.DeadLetters(r.Context(), p)
	if err != nil {
		s.fail(w, r, "list dead letters", err)
		return
	}
	if items == nil {
		items = []pipeline.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, list[pipeline.DeadLetter]{Items: items, Next: next})
}

func (s *Server) retryDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, "invalid", "dead letter id must be a positive integer")
		return
	}
	if err := s.svc.RetryDeadLetter(r.Context(), id); err != nil {
		s.fail(w, r, "retry dead letter", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "queued"})
}

func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Keys == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "key rotation is not available in this process")
		return
	}
	n, err := s.cfg.Keys.Rotate(r.Context())
	if err != nil {
		s.fail(w, r, "rotate keys", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"rotated": n})
}
