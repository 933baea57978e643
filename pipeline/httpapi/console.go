package httpapi

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// This file is the operator console: server-rendered pages under
// /admin/console/ on the same Service as the admin API, signed in with the
// admin token (auth.go). Every form carries the session's CSRF token;
// every page answers in words (console_words.go).

// Console is what the console reads beyond Service; pipeline.Console
// implements it.
type Console interface {
	// Workspaces lists every workspace.
	Workspaces(ctx context.Context) ([]pipeline.Workspace, error)
	// SearchMeetings lists a workspace's meetings matching a query.
	SearchMeetings(ctx context.Context, ws string, q pipeline.MeetingQuery, p pipeline.Page) ([]pipeline.FoundMeeting, string, error)
	// MeetingHistory returns a meeting's writes to the CRM and its start.
	MeetingHistory(ctx context.Context, ws, key string) ([]pipeline.MeetingEvent, *time.Time, error)
	// ReconcileRequestOf says what a reconciliation run was asked to do.
	ReconcileRequestOf(ctx context.Context, id string) (pipeline.ReconcileRequest, error)
	// TryRules decides a sample meeting without writing anything.
	TryRules(ctx context.Context, ws string, s pipeline.RuleSample) (rules.Decision, string, error)
	// RulesStatus is the rule set in force.
	RulesStatus() pipeline.RulesStatus
	// LiveEvent fetches a meeting's event from one of its calendars, for
	// the page only: its title and attendees are never stored or logged.
	LiveEvent(ctx context.Context, ws, key string) (pipeline.LiveEvent, error)
	// Providers lists the registered calendar providers and CRMs.
	Providers() (calendars, crms []string)
	// CRMTitle is the CRM's name for people.
	CRMTitle() string
	// MeetingURL links a meeting record in the CRM's own UI ("" unknown).
	MeetingURL(provider, account, meetingID string) string
}

var _ Console = (*pipeline.Console)(nil)

const (
	consoleRoot = "/admin/console/"
	signinPath  = "/admin/signin"
	signoutPath = "/admin/signout"
	assetsPath  = "/admin/assets/console.css"
)

//go:embed console
var consoleFS embed.FS

// consolePages parses every page with the layout.
func consolePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(consoleFuncs).ParseFS(consoleFS, "console/layout.html"))
	pages := map[string]*template.Template{}
	entries, _ := consoleFS.ReadDir("console")
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".html") || name == "layout.html" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(consoleFS, "console/"+name))
		pages[strings.TrimSuffix(name, ".html")] = t
	}
	return pages
}

var consoleFuncs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return "—"
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"join": strings.Join,
}

func (s *Server) consoleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, consoleRoot, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+assetsPath, serveCSS)
	mux.HandleFunc("GET "+signinPath, s.signinPage)
	mux.HandleFunc("POST "+signinPath, s.signin)
	mux.HandleFunc("POST "+signoutPath, s.signout)
	mux.HandleFunc("GET /admin/console/{$}", s.pageWorkspaces)
	mux.HandleFunc("GET /admin/console/workspaces/{ws}", s.pageWorkspace)
	mux.HandleFunc("POST /admin/console/workspaces/{ws}/calendars/{id}/sync", s.formSync)
	mux.HandleFunc("POST /admin/console/workspaces/{ws}/connect-links", s.formConnectLink)
	mux.HandleFunc("GET /admin/console/workspaces/{ws}/meetings", s.pageMeetings)
	mux.HandleFunc("GET /admin/console/workspaces/{ws}/meetings/{key}", s.pageMeeting)
	mux.HandleFunc("POST /admin/console/workspaces/{ws}/reconcile", s.formReconcile)
	mux.HandleFunc("GET /admin/console/workspaces/{ws}/reconcile/{id}", s.pageReconcile)
	mux.HandleFunc("GET /admin/console/dead-letters", s.pageDeadLetters)
	mux.HandleFunc("POST /admin/console/dead-letters/{id}/retry", s.formRetry)
	mux.HandleFunc("POST /admin/console/dead-letters/retry-all", s.formRetryAll)
	mux.HandleFunc("GET /admin/console/rules", s.pageRules)
	mux.HandleFunc("POST /admin/console/rules/try", s.formTryRules)
}

func serveCSS(w http.ResponseWriter, r *http.Request) {
	b, _ := consoleFS.ReadFile("console/console.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// pageData is what every page's template reads.
type pageData struct {
	Title    string
	Nav      string
	SignedIn bool
	CSRF     string
	// Notice is a confirmation of what the last form did; Error a
	// page-level problem; Errors the problems by form field, shown next to
	// it; Form the submitted values, shown again.
	Notice string
	Error  string
	Errors map[string]string
	Form   url.Values
	// Refresh reloads the page after so many seconds (a running
	// reconciliation).
	Refresh int
	Data    any
}

// Value returns a submitted form value, for the templates.
func (p pageData) Value(name string) string { return p.Form.Get(name) }

// render writes a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, pd pageData) {
	if a := authOf(r.Context()); a.kind != authNone {
		pd.SignedIn = true
		if a.kind == authSession {
			pd.CSRF = s.csrfToken(a.session)
		}
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", pd); err != nil {
		s.log.ErrorContext(r.Context(), "render console page", slog.String("request_id", RequestID(r.Context())),
			slog.String("page", name), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, "internal", "internal error (request "+RequestID(r.Context())+")")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", pageData{Title: http.StatusText(status), Error: msg})
}

// pageFail answers a Service error as a page: a 4xx shows the error's
// text, anything else is logged and shown without internals.
func (s *Server) pageFail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, _ := statusOf(err)
	if status < 500 || status == http.StatusBadGateway {
		s.renderError(w, r, status, err.Error())
		return
	}
	id := RequestID(r.Context())
	s.log.ErrorContext(r.Context(), op+" failed", slog.String("request_id", id), slog.String("error", err.Error()))
	s.renderError(w, r, status, fmt.Sprintf("%s failed: internal error (request %s)", op, id))
}

// console returns the Console, or answers 503.
func (s *Server) console(w http.ResponseWriter, r *http.Request) (Console, bool) {
	if s.cfg.Console == nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "this page is not available in this process")
		return nil, false
	}
	return s.cfg.Console, true
}

// seeOther redirects after a form, with one of the fixed notices.
func seeOther(w http.ResponseWriter, r *http.Request, path string, q url.Values) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// ---- sign-in

// signinView is the sign-in page's data.
type signinView struct {
	Next     string
	Disabled bool
}

// signinNonce returns the browser's sign-in nonce, setting a new one when
// it has none: the sign-in form's CSRF token is bound to it.
func (s *Server) signinNonce(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(signinCookie); err == nil && validNonce(c.Value) && len(c.Value) >= 22 {
		return c.Value
	}
	n := randomToken(18)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: n, Path: signinPath, MaxAge: 3600,
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
	return n
}

// nextPath keeps a post-sign-in destination inside the console.
func nextPath(v string) string {
	if !strings.HasPrefix(v, "/admin/") || strings.HasPrefix(v, "//") || strings.ContainsAny(v, "\\\r\n") ||
		strings.HasPrefix(v, signinPath) || len(v) > 2048 {
		return consoleRoot
	}
	return v
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, nextPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderSignin(w, r, http.StatusOK, nextPath(r.URL.Query().Get("next")), nil)
}

func (s *Server) renderSignin(w http.ResponseWriter, r *http.Request, status int, next string, errs map[string]string) {
	pd := pageData{Title: "Sign in", Errors: errs, Data: signinView{Next: next, Disabled: s.cfg.AdminToken == ""}}
	if s.cfg.AdminToken == "" {
		pd.Error = "The console is disabled: set RAPPORT_ADMIN_TOKEN and restart."
		status = http.StatusServiceUnavailable
	} else {
		pd.CSRF = s.macString(purposeSignin, s.signinNonce(w, r))
	}
	s.render(w, r, status, "signin", pd)
}

// signin opens a session for the right admin token. The form is bound to
// the browser's sign-in nonce and must come from PublicURL's origin; wrong
// tokens count against the client address.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "the sign-in form could not be read")
		return
	}
	next := nextPath(r.PostForm.Get("next"))
	if s.cfg.AdminToken == "" {
		s.renderSignin(w, r, http.StatusServiceUnavailable, next, nil)
		return
	}
	if ok, _ := s.sameOrigin(r); !ok {
		s.refuseOrigin(w, r)
		return
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || !validNonce(c.Value) || !hmacEqual(r.PostForm.Get(csrfField), s.macString(purposeSignin, c.Value)) {
		s.renderSignin(w, r, http.StatusForbidden, next, map[string]string{"token": "This form has expired: enter the token again."})
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if token == "" {
		s.renderSignin(w, r, http.StatusBadRequest, next, map[string]string{"token": "Enter the admin token (RAPPORT_ADMIN_TOKEN)."})
		return
	}
	addr := clientAddr(r)
	if ok, wait := s.sessions.allowed(addr, s.clock()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.renderSignin(w, r, http.StatusTooManyRequests, next, map[string]string{
			"token": fmt.Sprintf("Too many wrong tokens from this address: wait %d seconds and try again.", int(wait.Seconds())+1)})
		return
	}
	if !s.tokenOK(token) {
		s.sessions.failed(addr, s.clock())
		s.log.WarnContext(r.Context(), "console sign-in with a wrong admin token", slog.String("request_id", RequestID(r.Context())), slog.String("client", addr))
		s.renderSignin(w, r, http.StatusUnauthorized, next, map[string]string{"token": "That is not the admin token."})
		return
	}
	s.openSession(w)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: signinPath, MaxAge: -1, HttpOnly: true,
		Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
	s.log.InfoContext(r.Context(), "console session opened", slog.String("request_id", RequestID(r.Context())), slog.String("client", addr))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	if a := authOf(r.Context()); a.kind == authSession {
		s.closeSession(w, a.session)
	}
	http.Redirect(w, r, signinPath, http.StatusSeeOther)
}

// ---- workspaces

func (s *Server) pageWorkspaces(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	wss, err := c.Workspaces(r.Context())
	if err != nil {
		s.pageFail(w, r, "list workspaces", err)
		return
	}
	s.render(w, r, http.StatusOK, "workspaces", pageData{Title: "Workspaces", Nav: "workspaces", Data: wss})
}

// workspaceView is the workspace page's data.
type workspaceView struct {
	pipeline.WorkspaceStatus
	Connections []connView
	// Portal is the HubSpot portal meetings are written to.
	Portal    string
	Providers []string
	// Link is a connect link just issued.
	Link *connectLinkResponse
}

type connView struct {
	pipeline.ConnectionStatus
	State, Class, Detail string
	Calendars            []calView
	// CanReconnect: a connect link for this account is offered.
	CanReconnect bool
}

type calView struct {
	pipeline.CalendarStatus
	State, Class, Detail string
}

// providers are the providers a connect link may be asked for.
func (s *Server) providers() []string {
	cals, crms := s.cfg.Console.Providers()
	return append(cals, crms...)
}

// isCRM reports whether a provider is a CRM.
func (s *Server) isCRM(name string) bool {
	_, crms := s.cfg.Console.Providers()
	return slices.Contains(crms, name)
}

func (s *Server) workspaceView(ctx context.Context, ws string) (workspaceView, error) {
	st, err := s.svc.WorkspaceStatus(ctx, ws)
	if err != nil {
		return workspaceView{}, err
	}
	v := workspaceView{WorkspaceStatus: st, Providers: s.providers(), Portal: s.portalOf(st)}
	byConn := map[string]int{}
	for _, c := range st.Connections {
		cv := connView{ConnectionStatus: c, CanReconnect: c.ReplacedBy == "" && c.Status != "revoked"}
		cv.State, cv.Class, cv.Detail = connectionWords(c)
		byConn[c.ID] = len(v.Connections)
		v.Connections = append(v.Connections, cv)
	}
	for _, cal := range st.Calendars {
		var conn pipeline.ConnectionStatus
		i, ok := byConn[cal.ConnectionID]
		if ok {
			conn = v.Connections[i].ConnectionStatus
		} else {
			i = len(v.Connections)
			byConn[cal.ConnectionID] = i
			v.Connections = append(v.Connections, connView{ConnectionStatus: pipeline.ConnectionStatus{ID: cal.ConnectionID, Provider: "unknown"}})
		}
		cv := calView{CalendarStatus: cal}
		cv.State, cv.Class, cv.Detail = calendarWords(cal, conn)
		v.Connections[i].Calendars = append(v.Connections[i].Calendars, cv)
	}
	return v, nil
}

// portalOf is the HubSpot portal of a workspace: its active, not replaced
// HubSpot connection's account.
func (s *Server) portalOf(st pipeline.WorkspaceStatus) string {
	portal, _ := s.crmOf(st)
	return portal
}

// crmOf returns the account and provider of the workspace's CRM
// connection.
func (s *Server) crmOf(st pipeline.WorkspaceStatus) (account, provider string) {
	for _, c := range st.Connections {
		if s.isCRM(c.Provider) && c.ReplacedBy == "" && c.Status != "revoked" {
			account, provider = c.Account, c.Provider
		}
	}
	return account, provider
}

var workspaceNotices = map[string]string{
	"sync": "The sync was queued: the calendar's status changes once it has run.",
}

func (s *Server) pageWorkspace(w http.ResponseWriter, r *http.Request) {
	v, err := s.workspaceView(r.Context(), r.PathValue("ws"))
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	s.render(w, r, http.StatusOK, "workspace", pageData{Title: v.Name, Nav: "workspaces", Data: v,
		Notice: workspaceNotices[r.URL.Query().Get("notice")], Form: url.Values{"dry_run": {"on"}}})
}

func wsPath(ws string) string { return consoleRoot + "workspaces/" + url.PathEscape(ws) }

func (s *Server) formSync(w http.ResponseWriter, r *http.Request) {
	ws, cal := r.PathValue("ws"), r.PathValue("id")
	if err := s.svc.RequestSync(r.Context(), ws, cal); err != nil {
		s.pageFail(w, r, "request sync", err)
		return
	}
	seeOther(w, r, wsPath(ws), url.Values{"notice": {"sync"}})
}

// formConnectLink issues a connect link for a provider (and, to re-connect
// a connection, its account) and shows it.
func (s *Server) formConnectLink(w http.ResponseWriter, r *http.Request) {
	ws := r.PathValue("ws")
	in := pipeline.ConnectLinkInput{
		Provider: r.PostFormValue("provider"), Account: strings.TrimSpace(r.PostFormValue("account")),
		AllowExternalAccount: r.PostFormValue("allow_external") != "", Replace: r.PostFormValue("replace") != "",
	}
	errs := map[string]string{}
	switch {
	case !slices.Contains(s.providers(), in.Provider):
		errs["provider"] = "Choose a provider: " + strings.Join(s.providers(), ", ") + "."
	case in.Account != "" && s.isCRM(in.Provider) && !isDigits(in.Account):
		errs["account"] = "A CRM account is its portal id: digits only."
	case in.Account != "" && !s.isCRM(in.Provider):
		if a, err := matching.ParseAddress(in.Account); err != nil {
			errs["account"] = "Enter the e-mail address of the account expected to sign in, or leave it empty."
		} else {
			in.Account = a.Email
		}
	}
	v, err := s.workspaceView(r.Context(), ws)
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	if len(errs) > 0 {
		s.render(w, r, http.StatusBadRequest, "workspace", pageData{Title: v.Name, Nav: "workspaces", Data: v, Errors: errs, Form: r.PostForm})
		return
	}
	l, err := s.svc.CreateConnectLink(r.Context(), ws, in)
	if err != nil {
		status, _ := statusOf(err)
		if status == http.StatusBadRequest {
			s.render(w, r, status, "workspace", pageData{Title: v.Name, Nav: "workspaces", Data: v,
				Errors: map[string]string{"provider": err.Error()}, Form: r.PostForm})
			return
		}
		s.pageFail(w, r, "create connect link", err)
		return
	}
	link := s.connectLink(l)
	v.Link = &link
	s.log.InfoContext(r.Context(), "connect link issued from the console", slog.String("request_id", RequestID(r.Context())),
		slog.String("workspace_id", ws), slog.String("provider", l.Provider), slog.String("link_id", l.ID))
	s.render(w, r, http.StatusCreated, "workspace", pageData{Title: v.Name, Nav: "workspaces", Data: v,
		Notice: "A connect link was issued: hand it to the person who connects the account. It works once, until it expires."})
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != "" && len(s) <= 20
}

// ---- meetings

// meetingsView is the meeting search page's data.
type meetingsView struct {
	Workspace pipeline.Workspace
	Items     []pipeline.FoundMeeting
	Next      string // the next page's URL, empty on the last
	Searched  bool
	States    []string
	Rules     []string
	Portal    string
}

var meetingStateList = []string{"logged", "skipped", "pending", "creating", "cancelled", "deleted_in_crm", "failed"}

var printable = regexp.MustCompile(`^[\p{L}\p{N}\p{P}\p{S} ]*$`)

// meetingQuery validates the search form, collecting each field's problem.
func meetingQuery(q url.Values) (pipeline.MeetingQuery, map[string]string) {
	var mq pipeline.MeetingQuery
	errs := map[string]string{}
	day := func(field string) time.Time {
		v := strings.TrimSpace(q.Get(field))
		if v == "" {
			return time.Time{}
		}
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			errs[field] = "Enter a date as YYYY-MM-DD."
		}
		return t
	}
	mq.From = day("from")
	if to := day("to"); !to.IsZero() {
		mq.To = to.Add(24 * time.Hour) // the whole day
		if !mq.From.IsZero() && to.Before(mq.From) {
			errs["to"] = "The end date is before the start date."
		}
	}
	if v := strings.TrimSpace(q.Get("domain")); v != "" {
		d, err := matching.NormalizeDomain(v)
		if err != nil {
			errs["domain"] = "Enter a domain such as acme.example (no address, no @)."
		}
		mq.Domain = d
	}
	if v := strings.TrimSpace(q.Get("company")); v != "" {
		if len(v) > 200 || !printable.MatchString(v) {
			errs["company"] = "Enter a company id or a part of its name (at most 200 characters)."
		}
		mq.Company = v
	}
	if v := q.Get("state"); v != "" {
		if !slices.Contains(meetingStateList, v) {
			errs["state"] = "Choose a state from the list."
		}
		mq.State = v
	}
	if v := strings.TrimSpace(q.Get("rule")); v != "" {
		if len(v) > 200 || !printable.MatchString(v) {
			errs["rule"] = "Enter a rule name (at most 200 characters)."
		}
		mq.Rule = v
	}
	return mq, errs
}

func (s *Server) pageMeetings(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	ws := r.PathValue("ws")
	st, err := s.svc.WorkspaceStatus(r.Context(), ws)
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	q := r.URL.Query()
	v := meetingsView{Workspace: st.Workspace, States: meetingStateList, Portal: s.portalOf(st)}
	for _, rl := range c.RulesStatus().Rules {
		v.Rules = append(v.Rules, rl.Name)
	}
	v.Rules = append(v.Rules, rules.DefaultRuleName)
	pd := pageData{Title: "Meetings of " + st.Name, Nav: "workspaces", Form: q, Data: &v}
	mq, errs := meetingQuery(q)
	if len(errs) > 0 {
		pd.Errors = errs
		s.render(w, r, http.StatusBadRequest, "meetings", pd)
		return
	}
	after := q.Get("after")
	if !cleanParam(after) || len(after) > 64 {
		s.renderError(w, r, http.StatusBadRequest, "the page cursor is not valid: start the search again")
		return
	}
	items, next, err := c.SearchMeetings(r.Context(), ws, mq, pipeline.Page{Limit: defaultLimit, After: after})
	if err != nil {
		s.pageFail(w, r, "search meetings", err)
		return
	}
	v.Items, v.Searched = items, true
	if next != "" {
		nq := url.Values{}
		for _, k := range []string{"from", "to", "company", "domain", "state", "rule"} {
			if x := q.Get(k); x != "" {
				nq.Set(k, x)
			}
		}
		nq.Set("after", next)
		v.Next = wsPath(ws) + "/meetings?" + nq.Encode()
	}
	s.render(w, r, http.StatusOK, "meetings", pd)
}

// meetingView is a meeting page's data.
type meetingView struct {
	Workspace   pipeline.Workspace
	Meeting     pipeline.MeetingDetail
	Explanation string
	Decision    rules.Decision
	HasDecision bool
	TraceJSON   string
	Attendees   []attendeeView
	Copies      []copyView
	History     []historyView
	StartsAt    *time.Time
	Portal      string
	HubSpotURL  string
	StateWords  string
	// Live is the event fetched from its calendar (?live=1), or why it
	// could not be.
	Live      *pipeline.LiveEvent
	LiveError string
	LiveAsked bool
}

type attendeeView struct {
	rules.AttendeeTrace
	Counts    string
	Companies []string
}

type copyView struct {
	pipeline.MeetingCopy
	Calendar string
}

type historyView struct {
	pipeline.MeetingEvent
	Words string
}

var meetingKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Server) pageMeeting(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	ws, key := r.PathValue("ws"), r.PathValue("key")
	if !meetingKey.MatchString(key) {
		s.renderError(w, r, http.StatusNotFound, "no such meeting: a meeting key is 64 hexadecimal digits")
		return
	}
	st, err := s.svc.WorkspaceStatus(r.Context(), ws)
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	m, err := s.svc.Meeting(r.Context(), ws, key)
	if err != nil {
		s.pageFail(w, r, "meeting", err)
		return
	}
	hist, starts, err := c.MeetingHistory(r.Context(), ws, key)
	if err != nil {
		s.pageFail(w, r, "meeting history", err)
		return
	}
	v := meetingView{Workspace: st.Workspace, Meeting: m, Explanation: explainTrace(m.Trace), StartsAt: starts,
		Portal: s.portalOf(st), StateWords: meetingStateWords(m.State, s.cfg.Console.CRMTitle())}
	if len(m.Trace) > 0 && json.Unmarshal(m.Trace, &v.Decision) == nil && (v.Decision.Rule != "" || v.Decision.Action != "") {
		v.HasDecision = true
	}
	if b, err := json.MarshalIndent(json.RawMessage(m.Trace), "", "  "); err == nil {
		v.TraceJSON = string(b)
	}
	names := map[string]string{}
	for _, co := range v.Decision.Companies {
		names[co.ID] = co.Name
	}
	for _, a := range v.Decision.Attendees {
		av := attendeeView{AttendeeTrace: a, Counts: attendeeWords(a)}
		for _, id := range a.Companies {
			if n := names[id]; n != "" {
				av.Companies = append(av.Companies, n+" ("+id+")")
			} else {
				av.Companies = append(av.Companies, id)
			}
		}
		v.Attendees = append(v.Attendees, av)
	}
	cals := map[string]string{}
	for _, cal := range st.Calendars {
		cals[cal.ID] = cal.CalendarID
	}
	for _, cp := range m.Copies {
		v.Copies = append(v.Copies, copyView{MeetingCopy: cp, Calendar: cals[cp.CalendarID]})
	}
	for _, h := range hist {
		v.History = append(v.History, historyView{MeetingEvent: h, Words: historyWords(h.Kind, s.cfg.Console.CRMTitle())})
	}
	if r.URL.Query().Get("live") == "1" {
		v.LiveAsked = true
		ev, err := c.LiveEvent(r.Context(), ws, key)
		switch status, _ := statusOf(err); {
		case err == nil:
			v.Live = &ev
		case status < 500 || status == http.StatusBadGateway:
			v.LiveError = err.Error()
		default:
			s.log.ErrorContext(r.Context(), "fetch a meeting's event", slog.String("request_id", RequestID(r.Context())), slog.String("error", err.Error()))
			v.LiveError = "the event could not be fetched (request " + RequestID(r.Context()) + ")"
		}
	}
	if _, prov := s.crmOf(st); v.Portal != "" && m.CRMMeetingID != "" {
		v.HubSpotURL = s.cfg.Console.MeetingURL(prov, v.Portal, m.CRMMeetingID)
	}
	s.render(w, r, http.StatusOK, "meeting", pageData{Title: "Meeting " + key[:12], Nav: "workspaces", Data: v})
}

// meetingResponse is the JSON of one meeting: the ledger entry and its
// trace, with the one-sentence explanation.
type meetingResponse struct {
	pipeline.MeetingDetail
	Explanation string `json:"explanation"`
}

// explainTrace is rules.Explain of a stored trace.
func explainTrace(trace json.RawMessage) string {
	var d rules.Decision
	if len(trace) == 0 || json.Unmarshal(trace, &d) != nil {
		return rules.Explain(rules.Decision{})
	}
	return rules.Explain(d)
}

// ---- reconciliation

// reconcileView is a reconciliation report page's data.
type reconcileView struct {
	Workspace pipeline.Workspace
	Request   pipeline.ReconcileRequest
	Report    pipeline.ReconcileReport
	Calendar  string
}

func (s *Server) formReconcile(w http.ResponseWriter, r *http.Request) {
	ws := r.PathValue("ws")
	v, err := s.workspaceView(r.Context(), ws)
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	req := pipeline.ReconcileRequest{WorkspaceID: ws, CalendarID: r.PostFormValue("calendar_id"), DryRun: r.PostFormValue("dry_run") != ""}
	if req.CalendarID != "" && !slices.ContainsFunc(v.Calendars, func(c pipeline.CalendarStatus) bool { return c.ID == req.CalendarID }) {
		s.render(w, r, http.StatusBadRequest, "workspace", pageData{Title: v.Name, Nav: "workspaces", Data: v, Form: r.PostForm,
			Errors: map[string]string{"calendar_id": "Choose one of this workspace's calendars, or all of them."}})
		return
	}
	id, err := s.svc.StartReconcile(r.Context(), req)
	if err != nil {
		s.pageFail(w, r, "start reconciliation", err)
		return
	}
	seeOther(w, r, wsPath(ws)+"/reconcile/"+url.PathEscape(id), nil)
}

func (s *Server) pageReconcile(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	ws, id := r.PathValue("ws"), r.PathValue("id")
	req, err := c.ReconcileRequestOf(r.Context(), id)
	if err == nil && req.WorkspaceID != ws {
		// Another workspace's run: as if it did not exist.
		err = fmt.Errorf("reconciliation %q: %w", id, pipeline.ErrNotFound)
	}
	if err != nil {
		s.pageFail(w, r, "reconciliation", err)
		return
	}
	st, err := s.svc.WorkspaceStatus(r.Context(), ws)
	if err != nil {
		s.pageFail(w, r, "workspace", err)
		return
	}
	rep, err := s.svc.ReconcileRun(r.Context(), id)
	if err != nil {
		s.pageFail(w, r, "reconciliation", err)
		return
	}
	v := reconcileView{Workspace: st.Workspace, Request: req, Report: rep}
	for _, cal := range st.Calendars {
		if cal.ID == req.CalendarID {
			v.Calendar = cal.CalendarID
		}
	}
	pd := pageData{Title: "Reconciliation", Nav: "workspaces", Data: v}
	if rep.Status == "running" {
		pd.Refresh = 2
	}
	s.render(w, r, http.StatusOK, "reconcile", pd)
}

// ---- dead letters

// deadLettersView is the dead letters page's data.
type deadLettersView struct {
	Items []deadLetterView
	Next  string
	Open  int
}

type deadLetterView struct {
	pipeline.DeadLetter
	What, Why string
	Meetings  []string // meeting keys, linked within the letter's workspace
	Calendar  string
}

func (s *Server) pageDeadLetters(w http.ResponseWriter, r *http.Request) {
	s.renderDeadLetters(w, r, http.StatusOK, pageData{Notice: deadLetterNotice(r.URL.Query())})
}

func (s *Server) renderDeadLetters(w http.ResponseWriter, r *http.Request, status int, pd pageData) {
	after := r.URL.Query().Get("after")
	if !cleanParam(after) || len(after) > 64 {
		s.renderError(w, r, http.StatusBadRequest, "the page cursor is not valid")
		return
	}
	items, next, err := s.svc.DeadLetters(r.Context(), pipeline.Page{Limit: defaultLimit, After: after})
	if err != nil {
		s.pageFail(w, r, "list dead letters", err)
		return
	}
	var v deadLettersView
	for _, d := range items {
		dv := deadLetterView{DeadLetter: d}
		dv.What, dv.Why = deadLetterWords(d, s.cfg.Console.CRMTitle())
		var ref struct {
			CalendarID  string   `json:"calendar_id"`
			MeetingKeys []string `json:"meeting_keys"`
		}
		_ = json.Unmarshal(d.Ref, &ref)
		for _, k := range ref.MeetingKeys {
			if meetingKey.MatchString(k) && len(dv.Meetings) < 20 {
				dv.Meetings = append(dv.Meetings, k)
			}
		}
		dv.Calendar = ref.CalendarID
		if d.RetriedAt == nil {
			v.Open++
		}
		v.Items = append(v.Items, dv)
	}
	if next != "" {
		v.Next = consoleRoot + "dead-letters?" + url.Values{"after": {next}}.Encode()
	}
	pd.Title, pd.Nav, pd.Data = "Dead letters", "dead-letters", v
	s.render(w, r, status, "deadletters", pd)
}

func deadLetterNotice(q url.Values) string {
	switch q.Get("notice") {
	case "retried":
		return "The dead letter was re-driven: its work is queued again."
	case "retried-all":
		n, _ := strconv.Atoi(q.Get("n"))
		f, _ := strconv.Atoi(q.Get("failed"))
		msg := fmt.Sprintf("%d dead %s re-driven.", n, plural(n, "letter was", "letters were"))
		if f > 0 {
			msg += fmt.Sprintf(" %d could not be: retry %s one by one to see why.", f, plural(f, "it", "them"))
		}
		return msg
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (s *Server) formRetry(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		s.renderError(w, r, http.StatusBadRequest, "a dead letter id is a positive integer")
		return
	}
	if err := s.svc.RetryDeadLetter(r.Context(), id); err != nil {
		status, _ := statusOf(err)
		if status < 500 {
			s.renderDeadLetters(w, r, status, pageData{Errors: map[string]string{strconv.FormatInt(id, 10): err.Error()}})
			return
		}
		s.pageFail(w, r, "retry dead letter", err)
		return
	}
	seeOther(w, r, consoleRoot+"dead-letters", url.Values{"notice": {"retried"}})
}

// maxRetryAll bounds the dead letters one "retry all" re-drives.
const maxRetryAll = 1000

func (s *Server) formRetryAll(w http.ResponseWriter, r *http.Request) {
	var ok, failed int
	p := pipeline.Page{Limit: maxLimit}
	for ok+failed < maxRetryAll {
		items, next, err := s.svc.DeadLetters(r.Context(), p)
		if err != nil {
			s.pageFail(w, r, "list dead letters", err)
			return
		}
		for _, d := range items {
			if d.RetriedAt != nil || ok+failed >= maxRetryAll {
				continue
			}
			if err := s.svc.RetryDeadLetter(r.Context(), d.ID); err != nil {
				if status, _ := statusOf(err); status >= 500 && status != http.StatusBadGateway {
					s.pageFail(w, r, "retry dead letter", err)
					return
				}
				failed++
				continue
			}
			ok++
		}
		if next == "" {
			break
		}
		p.After = next
	}
	seeOther(w, r, consoleRoot+"dead-letters", url.Values{"notice": {"retried-all"}, "n": {strconv.Itoa(ok)}, "failed": {strconv.Itoa(failed)}})
}

// ---- rules

// rulesView is the rules page's data.
type rulesView struct {
	Status     pipeline.RulesStatus
	Workspaces []pipeline.Workspace
	// Result is the decision of a sample, when one was tried.
	Result      *rules.Decision
	Explanation string
	Attendees   []attendeeView
}

func (s *Server) rulesView(ctx context.Context, c Console) (rulesView, error) {
	wss, err := c.Workspaces(ctx)
	return rulesView{Status: c.RulesStatus(), Workspaces: wss}, err
}

func (s *Server) pageRules(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	v, err := s.rulesView(r.Context(), c)
	if err != nil {
		s.pageFail(w, r, "rules", err)
		return
	}
	now := s.clock().UTC().Truncate(time.Hour).Add(time.Hour)
	form := url.Values{"start": {now.Format(dateTimeLocal)}, "end": {now.Add(30 * time.Minute).Format(dateTimeLocal)}}
	if len(v.Workspaces) == 1 {
		form.Set("workspace", v.Workspaces[0].ID)
	}
	s.render(w, r, http.StatusOK, "rules", pageData{Title: "Rules", Nav: "rules", Data: v, Form: form})
}

// dateTimeLocal is the format of an <input type="datetime-local">.
const dateTimeLocal = "2006-01-02T15:04"

// maxSampleAttendees bounds a sample meeting.
const maxSampleAttendees = 100

// ruleSample validates the "try it" form, collecting each field's problem.
func ruleSample(f url.Values) (string, pipeline.RuleSample, map[string]string) {
	errs := map[string]string{}
	ws := f.Get("workspace")
	if ws == "" {
		errs["workspace"] = "Choose the workspace whose domains and companies decide."
	}
	var smp pipeline.RuleSample
	addr := func(field string, required bool) string {
		v := strings.TrimSpace(f.Get(field))
		if v == "" {
			if required {
				errs[field] = "Enter an e-mail address."
			}
			return ""
		}
		a, err := matching.ParseAddress(v)
		if err != nil {
			errs[field] = "“" + v + "” is not an e-mail address."
			return ""
		}
		return a.Email
	}
	smp.Organizer = addr("organizer", true)
	smp.Owner = addr("owner", false)
	raw := strings.FieldsFunc(f.Get("attendees"), func(r rune) bool { return r == ',' || r == ';' || r == '\n' || r == '\r' || r == ' ' || r == '\t' })
	var bad []string
	for _, a := range raw {
		p, err := matching.ParseAddress(a)
		if err != nil {
			bad = append(bad, a)
			continue
		}
		smp.Attendees = append(smp.Attendees, p.Email)
	}
	switch {
	case len(bad) > 0:
		errs["attendees"] = "Not e-mail addresses: " + strings.Join(bad[:min(len(bad), 5)], ", ") + "."
	case len(smp.Attendees) > maxSampleAttendees:
		errs["attendees"] = fmt.Sprintf("At most %d attendees.", maxSampleAttendees)
	}
	smp.Title = strings.TrimSpace(f.Get("title"))
	if len(smp.Title) > 500 {
		errs["title"] = "At most 500 characters."
	}
	at := func(field string) time.Time {
		t, err := time.Parse(dateTimeLocal, strings.TrimSpace(f.Get(field)))
		if err != nil {
			errs[field] = "Enter a date and time (UTC)."
		}
		return t
	}
	smp.Start, smp.End = at("start"), at("end")
	if errs["start"] == "" && errs["end"] == "" && !smp.End.After(smp.Start) {
		errs["end"] = "The meeting must end after it starts."
	}
	return ws, smp, errs
}

func (s *Server) formTryRules(w http.ResponseWriter, r *http.Request) {
	c, ok := s.console(w, r)
	if !ok {
		return
	}
	v, err := s.rulesView(r.Context(), c)
	if err != nil {
		s.pageFail(w, r, "rules", err)
		return
	}
	pd := pageData{Title: "Rules", Nav: "rules", Data: &v, Form: r.PostForm}
	ws, smp, errs := ruleSample(r.PostForm)
	if ws != "" && !slices.ContainsFunc(v.Workspaces, func(w pipeline.Workspace) bool { return w.ID == ws }) {
		errs["workspace"] = "Choose a workspace from the list."
	}
	if len(errs) > 0 {
		pd.Errors = errs
		s.render(w, r, http.StatusBadRequest, "rules", pd)
		return
	}
	d, expl, err := c.TryRules(r.Context(), ws, smp)
	if err != nil {
		if errors.Is(err, pipeline.ErrInvalid) {
			pd.Errors = map[string]string{"attendees": err.Error()}
			s.render(w, r, http.StatusBadRequest, "rules", pd)
			return
		}
		s.pageFail(w, r, "try the rules", err)
		return
	}
	v.Result, v.Explanation = &d, expl
	for _, a := range d.Attendees {
		v.Attendees = append(v.Attendees, attendeeView{AttendeeTrace: a, Counts: attendeeWords(a)})
	}
	s.render(w, r, http.StatusOK, "rules", pd)
}
