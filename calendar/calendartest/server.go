package calendartest

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is a failure the server can be told to answer with.
type Fault int

// Faults, each with Google's status and error body.
const (
	// FaultRateLimited429 answers 429 rateLimitExceeded.
	FaultRateLimited429 Fault = iota + 1
	// FaultRateLimited403 answers 403 rateLimitExceeded.
	FaultRateLimited403
	// FaultUserRateLimited403 answers 403 userRateLimitExceeded.
	FaultUserRateLimited403
	// FaultQuotaExceeded answers 403 quotaExceeded.
	FaultQuotaExceeded
	// FaultBackendError answers 500 backendError.
	FaultBackendError
	// FaultAuthError answers 401 authError, as for a revoked token.
	FaultAuthError
)

func (f Fault) apiError() apiError {
	switch f {
	case FaultRateLimited429:
		return errRateLimit429
	case FaultRateLimited403:
		return errRateLimit403
	case FaultUserRateLimited403:
		return errUserRate403
	case FaultQuotaExceeded:
		return errQuota403
	case FaultAuthError:
		return errAuth
	}
	return errBackend
}

func (f Fault) rateLimit() bool {
	return f == FaultRateLimited429 || f == FaultRateLimited403 || f == FaultUserRateLimited403
}

type pendingFault struct {
	fault Fault
	left  int
}

// Endpoint names used by Calls.
const (
	EndpointList  = "events.list"
	EndpointGet   = "events.get"
	EndpointPatch = "events.patch"
	EndpointWatch = "events.watch"
	EndpointStop  = "channels.stop"
)

// Server is a fake Google Calendar v3 API. The zero value is not usable; call
// NewServer. All methods are safe for concurrent use.
type Server struct {
	ts    *httptest.Server
	key   []byte // signs page and sync tokens
	hook  *http.Client
	clock atomic.Pointer[func() time.Time]
	ids   atomic.Int64

	// mu guards the fields below. It is never held while a calendar's own
	// lock is taken.
	mu         sync.Mutex
	cals       map[string]*calendarState
	channels   map[string]*channel
	revoked    map[string]bool
	calls      map[string]int
	faults     []pendingFault
	latency    time.Duration
	retryAfter time.Duration
	emptyPages int
	tokenTTL   time.Duration
	autoNotify bool
	deliveries []Delivery

	pending sync.WaitGroup // asynchronous notifications in flight
}

// NewServer starts a fake Google Calendar server on a loopback port. Close it
// when done.
func NewServer() *Server {
	s := &Server{
		key:      make([]byte, 32),
		hook:     &http.Client{Timeout: 10 * time.Second},
		cals:     make(map[string]*calendarState),
		channels: make(map[string]*channel),
		revoked:  make(map[string]bool),
		calls:    make(map[string]int),
	}
	_, _ = rand.Read(s.key)
	now := time.Now
	s.clock.Store(&now)

	mux := http.NewServeMux()
	mux.Handle("GET "+basePath+"calendars/{calendarId}/events", s.api(EndpointList, s.handleList))
	mux.Handle("POST "+basePath+"calendars/{calendarId}/events/watch", s.api(EndpointWatch, s.handleWatch))
	mux.Handle("GET "+basePath+"calendars/{calendarId}/events/{eventId}", s.api(EndpointGet, s.handleGet))
	mux.Handle("PATCH "+basePath+"calendars/{calendarId}/events/{eventId}", s.api(EndpointPatch, s.handlePatch))
	mux.Handle("POST "+basePath+"channels/stop", s.api(EndpointStop, s.handleStop))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { errNotFound.write(w) })
	s.ts = httptest.NewServer(mux)
	return s
}

const basePath = "/calendar/v3/"

// URL returns the API root, ending in "/calendar/v3/", for
// option.WithEndpoint and RAPPORT_GOOGLE_API_URL.
func (s *Server) URL() string { return s.ts.URL + basePath }

// Client returns an HTTP client for the server (no credentials attached).
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Close waits for notifications in flight and shuts the server down.
func (s *Server) Close() {
	s.pending.Wait()
	s.ts.Close()
}

// SetClock replaces the clock that stamps updated times, channel expirations
// and token ages. The default is time.Now.
func (s *Server) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Server) now() time.Time { return (*s.clock.Load())() }

// Fail makes the next n API requests (of any endpoint) answer with f. Calls
// queue: Fail(a, 1); Fail(b, 2) fails one request with a, then two with b.
func (s *Server) Fail(f Fault, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, pendingFault{f, n})
	s.mu.Unlock()
}

// SetRetryAfter makes rate-limit faults carry a Retry-After header of d
// (whole seconds); zero, the default, sends none, as Google usually does.
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	s.retryAfter = d
	s.mu.Unlock()
}

// SetLatency delays every API answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetEmptyPages makes events.list put n empty pages, each with a
// nextPageToken, before every page that has items — as Google may.
func (s *Server) SetEmptyPages(n int) {
	s.mu.Lock()
	s.emptyPages = n
	s.mu.Unlock()
}

// SetTokenTTL makes sync tokens older than d answer 410 fullSyncRequired.
// Zero, the default, keeps them valid until ExpireTokens.
func (s *Server) SetTokenTTL(d time.Duration) {
	s.mu.Lock()
	s.tokenTTL = d
	s.mu.Unlock()
}

// SetAutoNotify makes every change of a calendar notify its open channels,
// asynchronously, as Google does. Off by default; see Notify.
func (s *Server) SetAutoNotify(on bool) {
	s.mu.Lock()
	s.autoNotify = on
	s.mu.Unlock()
}

// RevokeToken makes requests bearing the access token tok answer 401
// authError from now on.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	s.revoked[tok] = true
	s.mu.Unlock()
}

// Calls returns how many requests each endpoint received (EndpointList, ...),
// including the ones that failed.
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

// api wraps an endpoint handler with what every Google API request goes
// through: counting, latency, the bearer token check and injected faults.
func (s *Server) api(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		latency := s.latency
		s.mu.Unlock()
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}

		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			errLoginRequired.write(w)
			return
		}

		s.mu.Lock()
		revoked := s.revoked[tok]
		var fault Fault
		if !revoked && len(s.faults) > 0 {
			fault = s.faults[0].fault
			if s.faults[0].left--; s.faults[0].left == 0 {
				s.faults = s.faults[1:]
			}
		}
		retryAfter := s.retryAfter
		s.mu.Unlock()

		switch {
		case revoked:
			errAuth.write(w)
		case fault != 0:
			if fault.rateLimit() && retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Round(time.Second)/time.Second)))
			}
			fault.apiError().write(w)
		default:
			h(w, r)
		}
	})
}

// newID returns a fresh id in Google's event id alphabet (base32hex, lower
// case), deterministic per server so runs are reproducible.
func (s *Server) newID(prefix string) string {
	n := s.ids.Add(1)
	id := strconv.FormatInt(n, 32)
	if len(id) < 8 {
		id = strings.Repeat("0", 8-len(id)) + id
	}
	return prefix + id
}
