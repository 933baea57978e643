package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/pipeline"
)

// Service is what the HTTP surface needs from the pipeline. Errors wrapping
// pipeline.ErrNotFound, ErrInvalid and ErrConflict become 404, 400 and 409;
// any other error is a 500 that does not show its text.
type Service interface {
	CreateWorkspace(ctx context.Context, name string, internalDomains []string) (pipeline.Workspace, error)
	WorkspaceStatus(ctx context.Context, id string) (pipeline.WorkspaceStatus, error)
	AddConnection(ctx context.Context, workspaceID string, in pipeline.ConnectionInput) (pipeline.Connection, error)
	Calendars(ctx context.Context, workspaceID string) ([]pipeline.CalendarStatus, error)
	RequestSync(ctx context.Context, workspaceID, calendarID string) error
	StartReconcile(ctx context.Context, req pipeline.ReconcileRequest) (string, error)
	RunReconcile(ctx context.Context, req pipeline.ReconcileRequest) (pipeline.ReconcileReport, error)
	ReconcileRun(ctx context.Context, id string) (pipeline.ReconcileReport, error)
	Meetings(ctx context.Context, workspaceID, state string, p pipeline.Page) ([]pipeline.MeetingEntry, string, error)
	Meeting(ctx context.Context, workspaceID, key string) (pipeline.MeetingDetail, error)
	DeadLetters(ctx context.Context, p pipeline.Page) ([]pipeline.DeadLetter, string, error)
	RetryDeadLetter(ctx context.Context, id int64) error
	// CreateConnectLink records a connect link; UseConnectLink marks one
	// used (pipeline.ErrForbidden when used already or expired).
	CreateConnectLink(ctx context.Context, workspaceID string, in pipeline.ConnectLinkInput) (pipeline.ConnectLink, error)
	UseConnectLink(ctx context.Context, id string) (pipeline.ConnectLink, error)
	// Notify handles a calendar provider's push request: it parses it,
	// verifies each notification against its stored channel and queues
	// the syncs, or returns a reply to send verbatim (a handshake).
	// pipeline.ErrNotFound: unknown provider or channel; ErrInvalid:
	// malformed; ErrForbidden: does not verify.
	Notify(ctx context.Context, provider string, req calendar.WebhookRequest) (*calendar.Reply, error)
	// CRMChanged enqueues a company index refresh for the HubSpot portal.
	CRMChanged(ctx context.Context, portalID string) error
	// Ready checks PostgreSQL, Redis and that migrations are current.
	Ready(ctx context.Context) error
}

// KeyRotator re-encrypts every stored token with the first encryption key
// (credentials.Vault implements it).
type KeyRotator interface {
	Rotate(ctx context.Context) (int, error)
}

// Config configures the HTTP surface.
type Config struct {
	// Service is the pipeline. Required.
	Service Service
	// AdminToken is RAPPORT_ADMIN_TOKEN. Empty: every /admin/ request is
	// refused.
	AdminToken string
	// PublicURL is RAPPORT_PUBLIC_URL: the base of the OAuth redirect URLs
	// and of the webhook address HubSpot signs. Required.
	PublicURL string
	// OAuth holds the OAuth providers by name (google, microsoft,
	// calendly, hubspot). A provider missing here answers 404; one without
	// a client id answers 503 "not configured".
	OAuth map[string]OAuthProvider
	// StateKey signs the OAuth state (HMAC-SHA256), at least 32 bytes. Every
	// serve process must share it. Empty: a random key, which only works when
	// one process serves both the start and the callback of a flow.
	StateKey []byte
	// Gatherer serves /metrics. Default: prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Registerer, when set, receives the HTTP metrics of this package
	// (requests by route and status, latency, webhooks by outcome).
	Registerer prometheus.Registerer
	// RedisConnOpt is the queue's Redis, for the Asynq web UI. Nil: the UI
	// answers 503.
	RedisConnOpt asynq.RedisConnOpt
	// Keys, when set, enables POST /admin/keys/rotate.
	Keys KeyRotator
	// Logger receives ids only. Default: discard.
	Logger *slog.Logger
	// Clock checks OAuth state expiry and HubSpot timestamps. Default:
	// time.Now.
	Clock func() time.Time
	// MaxBodyBytes limits request bodies (1 MiB).
	MaxBodyBytes int64
	// HTTPClient exchanges OAuth codes (a client with a 30 s timeout).
	HTTPClient *http.Client
	// Console is what the operator console reads beyond Service (the
	// workspaces, the meeting search, the rules). Nil: those pages answer
	// 503; the others work.
	Console Console
	// MaxSyncReconciles bounds the reconciliations run synchronously
	// (POST /admin/reconcile?wait=true) at once; more answer 429 (2).
	MaxSyncReconciles int
}

func (c *Config) withDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.MaxSyncReconciles <= 0 {
		c.MaxSyncReconciles = 2
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

func (c *Config) validate() error {
	if c.Service == nil {
		return errors.New("httpapi: no Service")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("httpapi: public URL %q is not an absolute http(s) URL", c.PublicURL)
	}
	if len(c.StateKey) > 0 && len(c.StateKey) < 32 {
		return fmt.Errorf("httpapi: OAuth state key has %d bytes, want at least 32", len(c.StateKey))
	}
	return nil
}

// Server is the HTTP handler New returns. Close releases the Redis
// connections of the Asynq web UI.
type Server struct {
	cfg     Config
	svc     Service
	log     *slog.Logger
	clock   func() time.Time
	handler http.Handler
	queues  *asynqmon.HTTPHandler
	metrics *httpMetrics
	// sessions holds the console's revoked sessions and wrong-token
	// buckets; pages its templates.
	sessions *sessions
	pages    map[string]*template.Template
	// reconcileSlots holds a token per running synchronous reconciliation.
	reconcileSlots chan struct{}
}

// New returns the HTTP handler of `rapport serve`. The handler is a *Server;
// call its Close when done.
func New(cfg Config) (http.Handler, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, svc: cfg.Service, log: cfg.Logger, clock: cfg.Clock, sessions: newSessions(), pages: consolePages(),
		reconcileSlots: make(chan struct{}, cfg.MaxSyncReconciles)}
	if len(s.cfg.StateKey) == 0 {
		s.cfg.StateKey = make([]byte, 32)
		if _, err := rand.Read(s.cfg.StateKey); err != nil {
			return nil, fmt.Errorf("httpapi: state key: %w", err)
		}
		if len(cfg.OAuth) > 0 {
			s.log.Warn("no OAuth state key configured: using a random one; an OAuth flow must start and finish on this process")
		}
	}
	if cfg.RedisConnOpt != nil {
		q, err := newQueuesUI(cfg.RedisConnOpt)
		if err != nil {
			return nil, err
		}
		s.queues = q
	}
	if cfg.Registerer != nil {
		m, err := newHTTPMetrics(cfg.Registerer)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.metrics = m
	}
	s.handler = s.routes()
	return s, nil
}

// newQueuesUI builds asynqmon, which panics on options it cannot use.
func newQueuesUI(opt asynq.RedisConnOpt) (h *asynqmon.HTTPHandler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("httpapi: asynq web UI: %v", r)
		}
	}()
	return asynqmon.New(asynqmon.Options{RootPath: queuesRoot, RedisConnOpt: opt}), nil
}

// Close releases the Redis connections of the Asynq web UI.
func (s *Server) Close() error {
	if s.queues != nil {
		return s.queues.Close()
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

const queuesRoot = "/admin/queues"

func (s *Server) routes() http.Handler {
	admin := http.NewServeMux()
	admin.HandleFunc("POST /admin/workspaces", s.createWorkspace)
	admin.HandleFunc("GET /admin/workspaces/{ws}", s.workspaceStatus)
	admin.HandleFunc("POST /admin/workspaces/{ws}/connections", s.addConnection)
	admin.HandleFunc("POST /admin/workspaces/{ws}/connect-links", s.createConnectLink)
	admin.HandleFunc("GET /admin/workspaces/{ws}/calendars", s.calendars)
	admin.HandleFunc("POST /admin/workspaces/{ws}/calendars/{id}/sync", s.requestSync)
	admin.HandleFunc("GET /admin/workspaces/{ws}/meetings", s.meetings)
	admin.HandleFunc("GET /admin/workspaces/{ws}/meetings/{key}", s.meeting)
	admin.HandleFunc("POST /admin/reconcile", s.reconcile)
	admin.HandleFunc("GET /admin/reconcile/{id}", s.reconcileRun)
	admin.HandleFunc("GET /admin/dead-letters", s.deadLetters)
	admin.HandleFunc("POST /admin/dead-letters/{id}/retry", s.retryDeadLetter)
	admin.HandleFunc("POST /admin/keys/rotate", s.rotateKeys)
	admin.HandleFunc("POST /admin/workspaces/{ws}/rules/plan", s.rulesPlan)
	admin.Handle(queuesRoot+"/", s.queuesUI())
	s.consoleRoutes(admin)

	mux := http.NewServeMux()
	mux.Handle("/admin/", s.adminHeaders(s.adminAuth(jsonErrors(admin))))
	mux.HandleFunc("POST /webhooks/{provider}", s.providerWebhook)
	mux.HandleFunc("POST /webhooks/{provider}/{rest...}", s.providerWebhook)
	mux.HandleFunc("GET /oauth/{provider}/start", s.oauthStart)
	mux.HandleFunc("GET /oauth/{provider}/callback", s.oauthCallback)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", root)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return s.observe(cleanInput(jsonErrors(mux)))
}

func (s *Server) queuesUI() http.Handler {
	if s.queues == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the queue UI is unavailable: no Redis is configured")
		})
	}
	// Mounted under its RootPath, not path-stripped: asynqmon routes on the
	// full path.
	return s.queues
}

// root tells whoever opens the server's address where to go.
func root(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html><title>Rapport</title><h1>Rapport</h1>
<p>Rapport logs customer meetings from employees' calendars in the CRM.</p>
<ul><li><a href="/admin/">Console</a> (sign in with the admin token)</li>
<li><a href="/healthz">Health</a> and <a href="/readyz">readiness</a></li>
<li><a href="/metrics">Metrics</a> (Prometheus)</li></ul>
`)
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.svc.Ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", slog.String("request_id", RequestID(ctx)), slog.String("error", err.Error()))
		// What failed (user, database, host) is for the admin only.
		msg := "not ready"
		if s.isAdmin(r) {
			msg += ": " + err.Error()
		}
		writeError(w, http.StatusServiceUnavailable, "not_ready", msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ---- request ids, access log, metrics, panics

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the request id of a request's context, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID returns the caller's X-Request-ID when it is a sane token, else
// a new random id.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-ID"); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			if c := id[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets asynqmon and promhttp stream through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// observe gives each request its id, recovers panics, and logs and counts
// the request by route: ids and status only, never the query string.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "handler panicked", slog.String("request_id", id),
					slog.String("route", r.Pattern), slog.String("panic", fmt.Sprint(p)))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, "internal", "internal error (request "+id+")")
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			if s.metrics != nil {
				s.metrics.observe(route, status, elapsed)
			}
			level := slog.LevelInfo
			switch {
			case status >= 500:
				level = slog.LevelError
			case route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics":
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "http request", slog.String("request_id", id),
				slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Duration("duration", elapsed))
		}()
		next.ServeHTTP(sw, r)
	})
}

// jsonErrors turns the plain-text 404 and 405 answers of a ServeMux for
// unmatched requests into JSON errors.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			w = &errorRewriter{ResponseWriter: w}
		}
		mux.ServeHTTP(w, r)
	})
}

// errorRewriter replaces an error answer's body with a JSON error.
type errorRewriter struct {
	http.ResponseWriter
	rewritten bool
}

func (w *errorRewriter) WriteHeader(code int) {
	if code < 400 || w.rewritten {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.rewritten = true
	msg, c := "no such endpoint", "not_found"
	if code == http.StatusMethodNotAllowed {
		msg, c = "method not allowed", "method_not_allowed"
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("X-Content-Type-Options")
	writeError(w.ResponseWriter, code, c, msg)
}

func (w *errorRewriter) Write(b []byte) (int, error) {
	if w.rewritten {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// ---- responses and errors

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// statusOf maps the pipeline's error classes to HTTP statuses, in one place.
func statusOf(err error) (status int, code string) {
	switch {
	case errors.Is(err, pipeline.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, pipeline.ErrInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, pipeline.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, pipeline.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, pipeline.ErrUnavailable):
		return http.StatusBadGateway, "provider_unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "timeout"
	}
	return http.StatusInternalServerError, "internal"
}

// fail answers a Service error. A 4xx shows the error's text, written for
// the caller; anything else is logged and answered without internals.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, code := statusOf(err)
	if status < 500 || status == http.StatusBadGateway {
		writeError(w, status, code, err.Error())
		return
	}
	id := RequestID(r.Context())
	s.log.ErrorContext(r.Context(), op+" failed", slog.String("request_id", id), slog.String("error", provider.Scrub(err.Error())))
	writeError(w, status, code, fmt.Sprintf("%s failed: internal error (request %s)", op, id))
}

// errTooLarge answers 413; errBadBody answers 400.
var (
	errTooLarge = errors.New("request body too large")
	errBadBody  = errors.New("malformed request body")
)

// readBody reads a size-limited body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("%w: limit %d bytes", errTooLarge, s.cfg.MaxBodyBytes)
	}
	if err != nil {
		// The read error names the sockets (read tcp a->b: i/o timeout):
		// not for the caller.
		return nil, fmt.Errorf("%w: the body could not be read", errBadBody)
	}
	return b, nil
}

// decode reads a size-limited JSON body strictly into v: one value, no
// unknown fields, nothing after it.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return fmt.Errorf("%w: empty body, want a JSON object", errBadBody)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", errBadBody, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON value", errBadBody)
	}
	return checkText(body, v)
}

// bodyError answers a readBody or decode error.
func bodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "bad_request", err.Error())
}
