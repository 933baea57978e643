package graph

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint names used by Calls; they match the adapter's operation names.
const (
	EndpointDelta       = "calendarView.delta"
	EndpointGet         = "events.get"
	EndpointCalendar    = "calendars.get"
	EndpointPatch       = "events.patch"
	EndpointSubscribe   = "subscriptions.create"
	EndpointRenew       = "subscriptions.renew"
	EndpointUnsubscribe = "subscriptions.delete"
	EndpointToken       = "token"
)

// MailboxConcurrency is Graph's limit of requests in flight per mailbox;
// one more answers 429.
const MailboxConcurrency = 4

type fault struct {
	status int
	code   string
	left   int
}

// Server is a fake Microsoft Graph. The zero value is not usable; call
// NewServer. All methods are safe for concurrent use.
type Server struct {
	ts    *httptest.Server
	hook  *http.Client
	clock atomic.Pointer[func() time.Time]
	ids   atomic.Int64

	mu          sync.Mutex
	mailboxes   map[string]*mailbox // by lower-case address
	access      map[string]string   // access token → mailbox address
	refresh     map[string]string   // refresh token → mailbox address
	codes       map[string]string   // authorization code → mailbox address
	revoked     map[string]bool     // access tokens answering 401
	subs        map[string]*sub
	rounds      map[string]*round      // $skiptoken → round in progress
	deltas      map[string]*deltaToken // $deltatoken → state
	calls       map[string]int
	faults      []fault
	storm       int
	stormWait   time.Duration
	inflight    map[string]int
	maxInflight map[string]int
	hold        chan struct{}
	validation  time.Duration
	deltaTTL    time.Duration
	autoNotify  bool
	seq         int64
	deliveries  []Delivery

	pending sync.WaitGroup
}

// NewServer starts a fake Graph on a loopback port. Close it when done.
func NewServer() *Server {
	s := &Server{
		hook:        &http.Client{Timeout: 30 * time.Second},
		mailboxes:   make(map[string]*mailbox),
		access:      make(map[string]string),
		refresh:     make(map[string]string),
		codes:       make(map[string]string),
		revoked:     make(map[string]bool),
		subs:        make(map[string]*sub),
		rounds:      make(map[string]*round),
		deltas:      make(map[string]*deltaToken),
		calls:       make(map[string]int),
		inflight:    make(map[string]int),
		maxInflight: make(map[string]int),
		validation:  10 * time.Second,
	}
	now := time.Now
	s.clock.Store(&now)

	mux := http.NewServeMux()
	mux.Handle("GET /v1.0/me/calendarView/delta", s.api(EndpointDelta, s.handleDelta))
	mux.Handle("GET /v1.0/me/calendars/{calendarId}/calendarView/delta", s.api(EndpointDelta, s.handleDelta))
	mux.Handle("GET /v1.0/me/events/{eventId}", s.api(EndpointGet, s.handleGet))
	mux.Handle("GET /v1.0/me/calendar", s.api(EndpointCalendar, s.handleCalendar))
	mux.Handle("GET /v1.0/me/calendars/{calendarId}", s.api(EndpointCalendar, s.handleCalendar))
	mux.Handle("PATCH /v1.0/me/events/{eventId}", s.api(EndpointPatch, s.handlePatch))
	mux.Handle("POST /v1.0/subscriptions", s.api(EndpointSubscribe, s.handleSubscribe))
	mux.Handle("PATCH /v1.0/subscriptions/{id}", s.api(EndpointRenew, s.handleRenew))
	mux.Handle("DELETE /v1.0/subscriptions/{id}", s.api(EndpointUnsubscribe, s.handleUnsubscribe))
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.handleToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+strings.TrimPrefix(r.URL.Path, "/")+"'.")
	})
	s.ts = httptest.NewServer(mux)
	return s
}

// URL returns the API root, ending in "/v1.0/", for RAPPORT_MICROSOFT_API_URL.
func (s *Server) URL() string { return s.ts.URL + "/v1.0/" }

// TokenURL is the identity platform's token endpoint of the
// "organizations" tenant.
func (s *Server) TokenURL() string { return s.ts.URL + "/organizations/oauth2/v2.0/token" }

// AuthURL is the authorization endpoint (not served: consent is scripted
// with AuthCode).
func (s *Server) AuthURL() string { return s.ts.URL + "/organizations/oauth2/v2.0/authorize" }

// Close waits for deliveries in flight and shuts the server down.
func (s *Server) Close() {
	s.pending.Wait()
	s.ts.Close()
}

// SetClock replaces the clock that stamps modifications, subscription
// expirations and token ages. Default time.Now.
func (s *Server) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Server) now() time.Time { return (*s.clock.Load())() }

// FailNext makes the next n API requests answer status with Graph error
// code (e.g. 503 "ServiceUnavailable", 410 "syncStateNotFound"). Calls
// queue.
func (s *Server) FailNext(n, status int, code string) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, fault{status: status, code: code, left: n})
	s.mu.Unlock()
}

// Throttle starts a throttling storm: the next n API requests answer 429
// ApplicationThrottled with Retry-After of retryAfter (whole seconds).
func (s *Server) Throttle(n int, retryAfter time.Duration) {
	s.mu.Lock()
	s.storm, s.stormWait = n, retryAfter
	s.mu.Unlock()
}

// Hold makes API requests wait, once counted and past the concurrency
// check, until the returned release func is called: a test can see how many
// are in flight at once (InFlight, MaxInFlight).
func (s *Server) Hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// InFlight returns the requests of a mailbox being answered now.
func (s *Server) InFlight(address string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight[strings.ToLower(address)]
}

// MaxInFlight returns the most requests of a mailbox ever in flight at once.
func (s *Server) MaxInFlight(address string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInflight[strings.ToLower(address)]
}

// SetValidationTimeout sets how long subscription creation waits for the
// validation echo; Graph waits 10 seconds (the default).
func (s *Server) SetValidationTimeout(d time.Duration) {
	s.mu.Lock()
	s.validation = d
	s.mu.Unlock()
}

// SetDeltaTTL makes delta tokens older than d answer 410
// syncStateNotFound. Zero, the default, keeps them until ExpireDelta.
func (s *Server) SetDeltaTTL(d time.Duration) {
	s.mu.Lock()
	s.deltaTTL = d
	s.mu.Unlock()
}

// SetAutoNotify makes every change of a calendar notify its subscriptions,
// asynchronously, as Graph does. Off by default; see Notify.
func (s *Server) SetAutoNotify(on bool) {
	s.mu.Lock()
	s.autoNotify = on
	s.mu.Unlock()
}

// Revoke makes requests bearing the access token tok answer 401
// InvalidAuthenticationToken.
func (s *Server) Revoke(tok string) {
	s.mu.Lock()
	s.revoked[tok] = true
	s.mu.Unlock()
}

// Calls returns how many requests each endpoint received, failed ones
// included.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls sets every call counter to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	clear(s.calls)
	s.mu.Unlock()
}

// api wraps an endpoint with what every Graph request goes through:
// counting, the bearer token, the mailbox's concurrency limit, storms and
// injected faults.
func (s *Server) api(name string, h func(http.ResponseWriter, *http.Request, *mailbox)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		s.calls[name]++
		addr, known := s.access[tok]
		mb := s.mailboxes[addr]
		switch {
		case tok == "" || !known || mb == nil:
			s.mu.Unlock()
			writeError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
			return
		case s.revoked[tok]:
			s.mu.Unlock()
			writeError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
			return
		}
		if s.inflight[addr] >= MailboxConcurrency {
			s.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
			return
		}
		if s.storm > 0 {
			s.storm--
			wait := s.stormWait
			s.mu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)))
			writeError(w, http.StatusTooManyRequests, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
			return
		}
		if len(s.faults) > 0 {
			f := s.faults[0]
			if s.faults[0].left--; s.faults[0].left == 0 {
				s.faults = s.faults[1:]
			}
			s.mu.Unlock()
			writeError(w, f.status, f.code, "Injected failure.")
			return
		}
		s.inflight[addr]++
		s.maxInflight[addr] = max(s.maxInflight[addr], s.inflight[addr])
		hold := s.hold
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight[addr]--
			s.mu.Unlock()
		}()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		h(w, r, mb)
	})
}

// writeError writes Graph's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{"date": time.Now().UTC().Format("2006-01-02T15:04:05"), "request-id": newGUID()},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// handleCalendar answers GET /me/calendar and /me/calendars/{id}: the
// calendar's id and name, or 404 for a calendar the mailbox lacks.
func (s *Server) handleCalendar(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	id := r.PathValue("calendarId")
	if id == "" {
		id = Primary
	}
	s.mu.Lock()
	_, ok := mb.calendars[id]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "name": "Calendar"})
}
