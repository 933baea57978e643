package calendly

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is a failure the server can be told to answer API requests with.
type Fault int

// Faults, each with Calendly's status, headers and error body.
const (
	// FaultRateLimited answers 429 with X-RateLimit-Limit, -Remaining: 0 and
	// -Reset (seconds, SetRateLimitReset; default 60).
	FaultRateLimited Fault = iota + 1
	// FaultServerError answers 500 Internal Server Error.
	FaultServerError
	// FaultUnauthenticated answers 401, as for a revoked token.
	FaultUnauthenticated
	// FaultPermissionDenied answers 403 Permission Denied.
	FaultPermissionDenied
	// FaultInsufficientScope answers 403 Insufficient scope.
	FaultInsufficientScope
)

func (f Fault) apiError() apiError {
	switch f {
	case FaultRateLimited:
		return errRateLimited
	case FaultUnauthenticated:
		return errUnauthenticated
	case FaultPermissionDenied:
		return errNoPermission
	case FaultInsufficientScope:
		return errScope("scheduled_events:read")
	}
	return errInternal
}

type pendingFault struct {
	endpoint string // "" for any
	fault    Fault
	left     int
}

// Endpoint names used by Calls and FailOn.
const (
	EndpointToken         = "oauth.token"
	EndpointMe            = "users.me"
	EndpointUser          = "users.get"
	EndpointMemberships   = "organization_memberships.list"
	EndpointEventType     = "event_types.get"
	EndpointEvents        = "scheduled_events.list"
	EndpointEvent         = "scheduled_events.get"
	EndpointInvitees      = "invitees.list"
	EndpointInvitee       = "invitees.get"
	EndpointCreateWebhook = "webhook_subscriptions.create"
	EndpointListWebhooks  = "webhook_subscriptions.list"
	EndpointGetWebhook    = "webhook_subscriptions.get"
	EndpointDeleteWebhook = "webhook_subscriptions.delete"
)

// Calendly's numbers.
const (
	defaultRateLimitReset = 60 * time.Second
	accessTokenTTL        = 2 * time.Hour
	authorizationCodeTTL  = 10 * time.Minute
	defaultPageSize       = 20
	maxPageSize           = 100
	// disableAfterFailingWindow: Calendly retries a failing delivery for
	// 24 hours, then disables the subscription.
	disableAfterFailingWindow = 24 * time.Hour
)

// Server is a fake Calendly API v2 with its OAuth server. The zero value is
// not usable; call NewServer. All methods are safe for concurrent use.
type Server struct {
	ts    *httptest.Server
	hook  *http.Client
	clock atomic.Pointer[func() time.Time]
	ids   atomic.Int64

	// mu guards everything below; it is never held during a delivery.
	mu            sync.Mutex
	orgs          map[string]*org
	users         map[string]*user
	eventTypes    map[string]*eventType
	events        map[string]*event
	invitees      map[string]*invitee
	subs          map[string]*subscription
	tokens        map[string]*token
	refresh       map[string]*refreshToken
	codes         map[string]*authCode
	clientID      string
	clientSecret  string
	appKey        string
	calls         map[string]int
	faults        []pendingFault
	rateLimitWait time.Duration
	signing       SigningMode
	listOmitsCE   bool
	held          []heldDelivery
	deliveries    []Delivery
}

// NewServer starts a fake Calendly on a loopback port. Close it when done.
func NewServer() *Server {
	s := &Server{
		hook:          &http.Client{Timeout: 10 * time.Second},
		orgs:          make(map[string]*org),
		users:         make(map[string]*user),
		eventTypes:    make(map[string]*eventType),
		events:        make(map[string]*event),
		invitees:      make(map[string]*invitee),
		subs:          make(map[string]*subscription),
		tokens:        make(map[string]*token),
		refresh:       make(map[string]*refreshToken),
		codes:         make(map[string]*authCode),
		calls:         make(map[string]int),
		clientID:      "calendly-client",
		clientSecret:  "calendly-secret",
		appKey:        randomToken(),
		rateLimitWait: defaultRateLimitReset,
	}
	now := time.Now
	s.clock.Store(&now)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", s.handleToken)
	mux.Handle("GET /users/me", s.api(EndpointMe, "users:read", s.handleMe))
	mux.Handle("GET /users/{uuid}", s.api(EndpointUser, "users:read", s.handleUser))
	mux.Handle("GET /organization_memberships", s.api(EndpointMemberships, "organizations:read", s.handleMemberships))
	mux.Handle("GET /event_types/{uuid}", s.api(EndpointEventType, "event_types:read", s.handleEventType))
	mux.Handle("GET /scheduled_events", s.api(EndpointEvents, "scheduled_events:read", s.handleEvents))
	mux.Handle("GET /scheduled_events/{uuid}", s.api(EndpointEvent, "scheduled_events:read", s.handleEvent))
	mux.Handle("GET /scheduled_events/{uuid}/invitees", s.api(EndpointInvitees, "scheduled_events:read", s.handleInvitees))
	mux.Handle("GET /scheduled_events/{uuid}/invitees/{invitee}", s.api(EndpointInvitee, "scheduled_events:read", s.handleInvitee))
	mux.Handle("POST /webhook_subscriptions", s.api(EndpointCreateWebhook, "webhooks:write", s.handleCreateWebhook))
	mux.Handle("GET /webhook_subscriptions", s.api(EndpointListWebhooks, "webhooks:read", s.handleListWebhooks))
	mux.Handle("GET /webhook_subscriptions/{uuid}", s.api(EndpointGetWebhook, "webhooks:read", s.handleGetWebhook))
	mux.Handle("DELETE /webhook_subscriptions/{uuid}", s.api(EndpointDeleteWebhook, "webhooks:write", s.handleDeleteWebhook))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { errNotFound.write(w) })
	s.ts = httptest.NewServer(mux)
	return s
}

// URL returns the API root, ending in a slash (RAPPORT_CALENDLY_API_URL).
// Resource URIs the server hands out start with it, as Calendly's start
// with https://api.calendly.com/.
func (s *Server) URL() string { return s.ts.URL + "/" }

// AuthURL is the authorization endpoint (RAPPORT_CALENDLY_AUTH_URL). The
// fake does not serve a consent page: AuthorizeCode stands for the user
// granting access.
func (s *Server) AuthURL() string { return s.ts.URL + "/oauth/authorize" }

// TokenURL is the token endpoint (RAPPORT_CALENDLY_TOKEN_URL).
func (s *Server) TokenURL() string { return s.ts.URL + "/oauth/token" }

// ClientCredentials returns the OAuth client id and secret the token
// endpoint accepts.
func (s *Server) ClientCredentials() (id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientID, s.clientSecret
}

// AppSigningKey is the OAuth application's webhook signing key
// (RAPPORT_CALENDLY_WEBHOOK_SIGNING_KEY): deliveries of a subscription
// created with an OAuth token but without a signing_key are signed with it.
func (s *Server) AppSigningKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appKey
}

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Close shuts the server down.
func (s *Server) Close() { s.ts.Close() }

// SetClock replaces the clock that stamps resources, expires tokens and
// signs deliveries. The default is time.Now.
func (s *Server) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Server) now() time.Time { return (*s.clock.Load())().UTC() }

// Fail makes the next n API requests, of any endpoint, answer with f.
// Faults queue in the order they were asked for.
func (s *Server) Fail(f Fault, n int) { s.FailOn("", f, n) }

// FailOn makes the next n requests to endpoint (EndpointEvents, ...) answer
// with f.
func (s *Server) FailOn(endpoint string, f Fault, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, pendingFault{endpoint, f, n})
	s.mu.Unlock()
}

// SetRateLimitReset sets the X-RateLimit-Reset a 429 carries (whole
// seconds, default 60).
func (s *Server) SetRateLimitReset(d time.Duration) {
	s.mu.Lock()
	s.rateLimitWait = d
	s.mu.Unlock()
}

// SetListOmitsCalendarEvent makes GET /scheduled_events leave
// calendar_event out of its items, so that only GET
// /scheduled_events/{uuid} carries it. By default the list carries it as
// the Event resource does.
func (s *Server) SetListOmitsCalendarEvent(on bool) {
	s.mu.Lock()
	s.listOmitsCE = on
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

// caller is the authenticated user of a request.
type caller struct {
	user  *user
	token *token
}

type apiHandler func(w http.ResponseWriter, r *http.Request, c caller)

// api wraps an endpoint with what every API request goes through:
// counting, the bearer token and its scopes, and injected faults.
func (s *Server) api(name, scope string, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		var fault Fault
		for i := range s.faults {
			if f := &s.faults[i]; f.endpoint == "" || f.endpoint == name {
				fault = f.fault
				if f.left--; f.left == 0 {
					s.faults = append(s.faults[:i], s.faults[i+1:]...)
				}
				break
			}
		}
		wait := s.rateLimitWait
		s.mu.Unlock()

		if fault != 0 {
			if fault == FaultRateLimited {
				w.Header().Set("X-RateLimit-Limit", "500")
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", strconv.Itoa(int(wait/time.Second)))
			}
			fault.apiError().write(w)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			errUnauthenticated.write(w)
			return
		}
		s.mu.Lock()
		t := s.tokens[tok]
		var u *user
		if t != nil {
			u = s.users[t.user]
		}
		now := s.now()
		s.mu.Unlock()
		switch {
		case t == nil || t.revoked || u == nil:
			errUnauthenticated.write(w)
			return
		case !t.pat && !now.Before(t.expires):
			errTokenExpired.write(w)
			return
		case !t.allows(scope):
			errScope(scope).write(w)
			return
		}
		w.Header().Set("X-RateLimit-Limit", "500")
		w.Header().Set("X-RateLimit-Remaining", "499")
		w.Header().Set("X-RateLimit-Reset", "60")
		h(w, r, caller{user: u, token: t})
	})
}

// newUUID returns a fresh id in the UUID form Calendly uses, deterministic
// per server so runs are reproducible.
func (s *Server) newUUID() string {
	n := s.ids.Add(1)
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", n)
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
