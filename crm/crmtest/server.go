package crmtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rapportsync/rapport/crm"
)

// Hang, given to FailNext as the status, makes requests hang until the
// client gives up (a timeout).
const Hang = -1

// LoseResponse, given to FailNext as the status, makes requests succeed —
// the write is applied — while the client gets a 502 instead of the answer:
// the outcome it sees is unknown, as after a proxy failure or a crash.
const LoseResponse = -2

// Options configures a fake portal.
type Options struct {
	// Limit is the number of requests allowed per Window (HubSpot's
	// ten-second burst). Default 100; negative: unlimited.
	Limit int
	// Window is the rolling window of Limit. Default 10s.
	Window time.Duration
	// SearchPerSecond is the search API's own limit. Default 5; negative:
	// unlimited.
	SearchPerSecond int
	// SearchLag is how long a write takes to become visible to search.
	SearchLag time.Duration
	// UniqueValueSupport lets meeting properties have unique values (so
	// batch upsert by Rapport's key works). Whether HubSpot allows this for
	// meetings is unconfirmed; off, creating a unique meeting property is a
	// 400 VALIDATION_ERROR.
	UniqueValueSupport bool
	// Latency is added to every API response.
	Latency time.Duration
	// PortalID is the hub id (numeric). Default "62515".
	PortalID string
	// TimeZone is the portal's time zone in account info. Default "UTC".
	TimeZone string
	// AccessToken is the bearer token accepted. Empty: any token.
	AccessToken string
	// Now tells the time. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Limit == 0 {
		o.Limit = 100
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.SearchPerSecond == 0 {
		o.SearchPerSecond = 5
	}
	if o.PortalID == "" {
		o.PortalID = "62515"
	}
	if o.TimeZone == "" {
		o.TimeZone = "UTC"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// fault is a queued failure of the next requests.
type fault struct {
	op     string // empty: any endpoint
	n      int
	status int
}

// Server is a fake HubSpot portal. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	hs   *httptest.Server
	done chan struct{}

	mu        sync.Mutex
	store     *store
	hits      []time.Time // accepted requests in the burst window
	searchHit []time.Time // accepted search requests in the last second
	calls     map[string]int
	total     int
	throttled int
	faults    []fault
	fail207   map[int]bool // input positions to fail in the next batch write
	failInput func(op string, index int, properties map[string]string) bool
	refuse    func(op string, index int, properties map[string]string) bool
	revoked   bool
	closeOnce sync.Once
}

// NewServer starts a fake portal. Close it when done.
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:  opts,
		done:  make(chan struct{}),
		store: newStore(opts),
		calls: map[string]int{},
	}
	s.hs = httptest.NewServer(s.routes())
	return s
}

// URL is the base URL to give the client (RAPPORT_HUBSPOT_API_URL).
func (s *Server) URL() string { return s.hs.URL }

// PortalID is the fake portal's hub id.
func (s *Server) PortalID() string { return s.opts.PortalID }

// Close stops the server, releasing hanging requests.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.hs.Close()
}

// Calls returns the number of API requests received per endpoint name
// (e.g. "meetings.batch.create"), including those answered 429.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// TotalCalls returns the number of API requests received.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// RateLimited returns the number of requests answered 429.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// ResetCounters zeroes the call and 429 counters.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.total, s.throttled = 0, 0
}

// FailNext makes the next n API requests fail with status (e.g. 500, 502,
// 423, or 429 as when another integration spent the window) or Hang,
// before they are processed.
func (s *Server) FailNext(n, status int) { s.FailNextOn("", n, status) }

// FailNextOn is FailNext for requests to one endpoint only.
func (s *Server) FailNextOn(endpoint string, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{op: endpoint, n: n, status: status})
}

// Fail207 makes the inputs at the given positions of the next batch write
// (create, update or upsert) fail with an INTERNAL_ERROR in a 207, the
// others succeeding.
func (s *Server) Fail207(indices ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail207 = map[int]bool{}
	for _, i := range indices {
		s.fail207[i] = true
	}
}

// FailInputs makes every batch-write input for which fail returns true
// fail (an INTERNAL_ERROR in a 207, which clients treat as transient),
// until called with nil. fail runs with the server's lock held and must not
// call the Server's methods.
func (s *Server) FailInputs(fail func(endpoint string, index int, properties map[string]string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failInput = fail
}

// RefuseInputs makes every batch-create input for which refuse returns
// true fail for good (a VALIDATION_ERROR in a 207, which clients treat as
// permanent), until called with nil. refuse runs with the server's lock
// held and must not call the Server's methods.
func (s *Server) RefuseInputs(refuse func(endpoint string, index int, properties map[string]string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = refuse
}

func refusedError(traceID string) errorOut {
	return withTrace(errorOut{Status: "error", Category: "VALIDATION_ERROR",
		Message: "Property values were not valid (refused by the test)."}, traceID)
}

// Revoke makes every token invalid from now on (401), as after an
// uninstall.
func (s *Server) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = true
}

// AddCompany adds a company: c.Domains[0] becomes domain, the rest
// hs_additional_domains, and c.Properties its other properties (e.g.
// lifecyclestage). It returns the id (c.ID when given).
func (s *Server) AddCompany(c crm.Company) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.addCompany(c)
}

// SetCompanyProperty changes a company property (e.g. "domain"), which
// updates hs_lastmodifieddate.
func (s *Server) SetCompanyProperty(id, prop, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.setProp(s.store.companies, id, prop, value)
}

// SetContactProperty changes a contact property (e.g. "jobtitle"), which
// updates lastmodifieddate. It reports whether the contact exists.
func (s *Server) SetContactProperty(id, prop, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.setProp(s.store.contacts, id, prop, value)
}

// AddContact adds a contact with a name ("First Last") associated to a
// company (optional) and returns its id.
func (s *Server) AddContact(email, name, companyID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.addContact(email, name, companyID)
}

// AddOwner adds an owner and returns its id.
func (s *Server) AddOwner(email string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.addOwner(email)
}

// Meetings returns a snapshot of all meetings, ordered by id, with their
// properties and associations.
func (s *Server) Meetings() []crm.Meeting {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.meetingSnapshot()
}

// Meeting returns one meeting.
func (s *Server) Meeting(id string) (crm.Meeting, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.store.meetings.get(id)
	if r == nil {
		return crm.Meeting{}, false
	}
	return r.meeting(), true
}

// SetMeetingProperty changes a meeting property as a HubSpot user would
// (e.g. internal notes).
func (s *Server) SetMeetingProperty(id, prop, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.setProp(s.store.meetings, id, prop, value)
}

// DeleteMeeting deletes a meeting as a HubSpot user would.
func (s *Server) DeleteMeeting(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.deleteMeeting(id)
}

// PropertyUnique reports whether a meeting property exists and whether it
// has unique values.
func (s *Server) PropertyUnique(name string) (unique, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.store.props[name]
	return p.HasUniqueValue, ok
}

// API kinds, for rate limiting.
const (
	kindGeneral = iota
	kindSearch
	kindPage // the demo's HTML pages: no auth, no limit, not counted
)

// handle registers an API endpoint behind auth, rate limits and faults.
func (s *Server) handle(mux *http.ServeMux, pattern, op string, kind int, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if kind == kindPage {
			h(w, r)
			return
		}
		ok, lose := s.admit(w, r, op, kind)
		if !ok {
			return
		}
		if lose {
			h(httptest.NewRecorder(), r)
			writeJSON(w, http.StatusBadGateway, map[string]any{"status": "error", "message": "bad gateway",
				"correlationId": correlationID(), "category": "INTERNAL_ERROR"})
			return
		}
		h(w, r)
	})
}

// admit counts the request and applies latency, auth, the rate limits and
// queued faults; it answers and returns false when the request stops here,
// and lose when the request is to be applied with its answer lost.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, op string, kind int) (ok, lose bool) {
	s.mu.Lock()
	s.calls[op]++
	s.total++
	s.mu.Unlock()
	if s.opts.Latency > 0 {
		select {
		case <-time.After(s.opts.Latency):
		case <-r.Context().Done():
			return false, false
		}
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	revoked := s.revoked
	s.mu.Unlock()
	if !ok || tok == "" || revoked || (s.opts.AccessToken != "" && tok != s.opts.AccessToken) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"status":        "error",
			"message":       "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
			"correlationId": correlationID(),
			"category":      "INVALID_AUTHENTICATION",
		})
		return false, false
	}
	if !s.rateLimit(w, kind) {
		return false, false
	}
	s.mu.Lock()
	status := 0
	for i := range s.faults {
		f := &s.faults[i]
		if f.n > 0 && (f.op == "" || f.op == op) {
			f.n--
			status = f.status
			break
		}
	}
	s.mu.Unlock()
	switch {
	case status == LoseResponse:
		return true, true
	case status == Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return false, false
	case status == http.StatusLocked:
		writeError(w, status, "LOCKED", "The resource is locked; retry in a few seconds.", nil)
		return false, false
	case status == http.StatusTooManyRequests:
		// Another integration spent the portal's window.
		s.mu.Lock()
		s.throttled++
		s.mu.Unlock()
		w.Header().Set("X-HubSpot-RateLimit-Remaining", "0")
		w.Header().Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(s.opts.Window.Milliseconds(), 10))
		writeJSON(w, status, map[string]any{"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
			"errorType": "RATE_LIMIT", "correlationId": correlationID(), "policyName": "TEN_SECONDLY_ROLLING", "groupName": "apps-hubapi"})
		return false, false
	case status != 0:
		writeJSON(w, status, map[string]any{"status": "error", "message": "internal error",
			"correlationId": correlationID(), "category": "INTERNAL_ERROR"})
		return false, false
	}
	return true, false
}

// rateLimit enforces the rolling windows and sets HubSpot's headers.
func (s *Server) rateLimit(w http.ResponseWriter, kind int) bool {
	limit, window, log := s.opts.Limit, s.opts.Window, &s.hits
	policy, msg := "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit."
	if kind == kindSearch {
		limit, window, log = s.opts.SearchPerSecond, time.Second, &s.searchHit
		policy, msg = "SECONDLY", "You have reached your secondly limit."
	}
	if limit < 0 {
		return true
	}
	now := s.opts.Now()
	s.mu.Lock()
	cut := now.Add(-window)
	i := 0
	for i < len(*log) && !(*log)[i].After(cut) {
		i++
	}
	*log = (*log)[i:]
	used := len(*log)
	allowed := used < limit
	if allowed {
		*log = append(*log, now)
		used++
	} else {
		s.throttled++
	}
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(limit))
	h.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(max(0, limit-used)))
	h.Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(window.Milliseconds(), 10))
	if !allowed {
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"status":        "error",
			"message":       msg,
			"errorType":     "RATE_LIMIT",
			"correlationId": correlationID(),
			"policyName":    policy,
			"groupName":     "apps-hubapi",
		})
	}
	return allowed
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes HubSpot's error body.
func writeError(w http.ResponseWriter, status int, category, message string, ctx map[string][]string) {
	body := map[string]any{"status": "error", "message": message, "correlationId": correlationID(), "category": category}
	if ctx != nil {
		body["context"] = ctx
	}
	writeJSON(w, status, body)
}

func correlationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
