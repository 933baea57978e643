package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// RulesPlanner plans a change of rules: a Service that implements it (the
// pipeline does) answers POST /admin/workspaces/{ws}/rules/plan.
type RulesPlanner interface {
	PlanRules(ctx context.Context, workspaceID string, candidate *rules.Set) (pipeline.RulesPlan, error)
}

// rulesPlanRequest carries the candidate rule files by name; the body's
// size limit (MaxBodyBytes, 1 MiB) bounds them all.
type rulesPlanRequest struct {
	Files map[string]string `json:"files"`
}

// rulesPlan runs a dry run of the window with the candidate rule files
// against the live rules. ?format=text or markdown answers the printed
// plan; JSON otherwise.
func (s *Server) rulesPlan(w http.ResponseWriter, r *http.Request) {
	planner, ok := s.svc.(RulesPlanner)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not_implemented", "rules plans are not available in this process")
		return
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "json", "text", "markdown":
	default:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("format %q: want json, text or markdown", format))
		return
	}
	var req rulesPlanRequest
	if err := s.decode(w, r, &req); err != nil {
		bodyError(w, err)
		return
	}
	if len(req.Files) == 0 {
		writeError(w, http.StatusBadRequest, "invalid", `"files" is required: the candidate rule files by name, {"files": {"20-policy.yaml": "version: 1\n…"}}`)
		return
	}
	if len(req.Files) > rules.MaxFiles {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`"files": %d files, at most %d`, len(req.Files), rules.MaxFiles))
		return
	}
	files := make(map[string][]byte, len(req.Files))
	for name, body := range req.Files {
		files[name] = []byte(body)
	}
	candidate, err := rules.LoadFiles(files)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_rules", err.Error())
		return
	}
	plan, err := planner.PlanRules(r.Context(), r.PathValue("ws"), candidate)
	if err != nil {
		s.fail(w, r, "plan rules", err)
		return
	}
	switch format {
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, plan.Text())
	case "markdown":
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		fmt.Fprint(w, plan.Markdown())
	default:
		writeJSON(w, http.StatusOK, plan)
	}
}
