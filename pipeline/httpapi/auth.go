package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file guards /admin/: who may come in (the bearer token, or the
// console's session cookie), from where (Origin and Referer on every
// state-changing request), how often a wrong token may be tried, and the
// headers every admin answer carries.

const (
	// sessionCookie holds a signed console session; signinCookie the nonce
	// the sign-in form's CSRF token is bound to, before any session exists.
	sessionCookie = "rapport_session"
	signinCookie  = "rapport_signin"
	// sessionTTL is how long a console session lasts.
	sessionTTL = 12 * time.Hour
	// csrfField is the form field, and csrfHeader the header, carrying the
	// CSRF token of a cookie-authenticated request.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"

	purposeSession = "rapport console session v1"
	purposeCSRF    = "rapport console csrf v1"
	purposeSignin  = "rapport console sign-in v1"
	purposeToken   = "rapport admin token v1"
)

// Wrong admin tokens are limited per client address: a bucket of
// failBurst attempts, refilled one every failEvery.
const (
	failBurst = 10
	failEvery = 6 * time.Second
)

// consoleCSP is the Content-Security-Policy of the console's pages: no
// script, no frames, nothing from elsewhere.
const consoleCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// authKind says how an admin request authenticated.
type authKind int

const (
	authNone authKind = iota
	authBearer
	authSession
)

// adminAuthInfo is the authentication of a request, in its context.
type adminAuthInfo struct {
	kind    authKind
	session sessionClaims
}

const authKey ctxKey = 1

func authOf(ctx context.Context) adminAuthInfo {
	a, _ := ctx.Value(authKey).(adminAuthInfo)
	return a
}

// sessionClaims is what the session cookie carries, signed.
type sessionClaims struct {
	// ID names the session: the CSRF token is bound to it, sign-out
	// revokes it.
	ID      string `json:"i"`
	Expires int64  `json:"e"`
	// Token fingerprints the admin token the session was opened with: a
	// new token ends every session.
	Token string `json:"k"`
}

// sessions holds what a stateless session needs on the server: the
// sessions signed out before they expire, and the wrong-token limiter.
type sessions struct {
	mu      sync.Mutex
	revoked map[string]time.Time // session id → expiry
	fails   map[string]*bucket   // client address → bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newSessions() *sessions {
	return &sessions{revoked: map[string]time.Time{}, fails: map[string]*bucket{}}
}

// level returns the address's bucket refilled to now.
func (ss *sessions) level(addr string, now time.Time) *bucket {
	b := ss.fails[addr]
	if b == nil {
		return &bucket{tokens: failBurst, at: now}
	}
	if now.After(b.at) {
		b.tokens = math.Min(failBurst, b.tokens+float64(now.Sub(b.at))/float64(failEvery))
		b.at = now
	}
	return b
}

// allowed reports whether addr may try a token now, else how long to wait.
func (ss *sessions) allowed(addr string, now time.Time) (bool, time.Duration) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	b := ss.level(addr, now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(failEvery))
}

// failed takes one attempt from addr's bucket.
func (ss *sessions) failed(addr string, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	b := ss.level(addr, now)
	b.tokens = math.Max(0, b.tokens-1)
	ss.fails[addr] = b
	if len(ss.fails) > 10000 {
		// Forget the buckets that have refilled: they limit nothing.
		for a, x := range ss.fails {
			if x.tokens+float64(now.Sub(x.at))/float64(failEvery) >= failBurst {
				delete(ss.fails, a)
			}
		}
	}
}

func (ss *sessions) revoke(c sessionClaims, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, exp := range ss.revoked {
		if now.After(exp) {
			delete(ss.revoked, id)
		}
	}
	ss.revoked[c.ID] = time.Unix(c.Expires, 0)
}

func (ss *sessions) isRevoked(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.revoked[id]
	return ok
}

// clientAddr is the address a request came from: the peer, never a
// forwarded header a client could forge.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tokenOK compares a presented token with the admin token in constant
// time (in the length too: hashes are compared).
func (s *Server) tokenOK(got string) bool {
	if s.cfg.AdminToken == "" || got == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.AdminToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// bearerToken extracts "Authorization: Bearer TOKEN".
func bearerToken(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", false
	}
	return cred, true
}

// macString is a purpose-bound HMAC of parts, base64url.
func (s *Server) macString(purpose string, parts ...string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(purpose, strings.Join(parts, "\x00")))
}

func (s *Server) tokenFingerprint() string {
	return s.macString(purposeToken, s.cfg.AdminToken)[:22]
}

// session returns the request's valid console session, if any.
func (s *Server) session(r *http.Request) (sessionClaims, bool) {
	if s.cfg.AdminToken == "" {
		return sessionClaims{}, false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return sessionClaims{}, false
	}
	var sc sessionClaims
	if !s.verify(purposeSession, c.Value, &sc) || sc.ID == "" || !s.clock().Before(time.Unix(sc.Expires, 0)) ||
		!hmacEqual(sc.Token, s.tokenFingerprint()) || s.sessions.isRevoked(sc.ID) {
		return sessionClaims{}, false
	}
	return sc, true
}

func (s *Server) secureCookies() bool { return strings.HasPrefix(s.cfg.PublicURL, "https://") }

// openSession sets a new session cookie.
func (s *Server) openSession(w http.ResponseWriter) sessionClaims {
	sc := sessionClaims{ID: randomToken(18), Expires: s.clock().Add(sessionTTL).Unix(), Token: s.tokenFingerprint()}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: s.sign(purposeSession, sc), Path: "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode,
	})
	return sc
}

// closeSession revokes a session and clears its cookie.
func (s *Server) closeSession(w http.ResponseWriter, sc sessionClaims) {
	s.sessions.revoke(sc, s.clock())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
}

// csrfToken is the CSRF token of a session: bound to its id.
func (s *Server) csrfToken(sc sessionClaims) string { return s.macString(purposeCSRF, sc.ID) }

func (s *Server) csrfOK(sc sessionClaims, got string) bool { return hmacEqual(got, s.csrfToken(sc)) }

// hmacEqual compares a presented token with the expected one in constant
// time; an empty token never matches.
func hmacEqual(got, want string) bool { return got != "" && hmac.Equal([]byte(got), []byte(want)) }

// publicOrigin is the scheme and host of PublicURL, lower-case.
func (s *Server) publicOrigin() string {
	u, err := url.Parse(s.cfg.PublicURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// sameOrigin checks a request's Origin, else its Referer, against
// PublicURL. With neither, it answers !strict: a script with a bearer
// token sends neither, a browser always sends one on a state-changing
// request.
func (s *Server) sameOrigin(r *http.Request) (ok, present bool) {
	want := s.publicOrigin()
	if o := r.Header.Get("Origin"); o != "" {
		return strings.ToLower(o) == want, true
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && strings.ToLower(u.Scheme+"://"+u.Host) == want, true
	}
	return false, false
}

// safeMethod reports a method that changes nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func isQueuesPath(p string) bool { return p == queuesRoot || strings.HasPrefix(p, queuesRoot+"/") }

// publicAdminPath is an /admin/ path open without credentials: the
// sign-in page and the console's stylesheet.
func publicAdminPath(p string) bool { return p == signinPath || p == assetsPath }

// wantsPage reports a browser navigating (not a script or an XHR), which
// is sent to the sign-in page rather than answered 401.
func wantsPage(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// adminAuth lets a request through when it carries the admin token
// ("Authorization: Bearer TOKEN") or a console session cookie. A wrong
// token costs the client address one attempt of its bucket; an empty
// bucket refuses every token, right or wrong, until it refills. A
// state-changing request must come from PublicURL's origin (Origin, else
// Referer; a cookie-authenticated one must name it), and a
// cookie-authenticated one outside the queue UI must carry the session's
// CSRF token. With no token configured everything is refused.
func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicAdminPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="rapport admin"`)
		if s.cfg.AdminToken == "" {
			writeError(w, http.StatusUnauthorized, "admin_disabled", "the admin API is disabled: set RAPPORT_ADMIN_TOKEN")
			return
		}
		var auth adminAuthInfo
		switch {
		case r.Header.Get("Authorization") != "":
			got, ok := bearerToken(r)
			if !ok {
				writeError(w, http.StatusUnauthorized, "unauthorized",
					"missing credentials: send Authorization: Bearer $RAPPORT_ADMIN_TOKEN")
				return
			}
			if !s.tryToken(w, r, got) {
				return
			}
			if ok, present := s.sameOrigin(r); present && !ok && !safeMethod(r.Method) {
				s.refuseOrigin(w, r)
				return
			}
			auth.kind = authBearer
		default:
			sc, ok := s.session(r)
			if !ok {
				if wantsPage(r) {
					http.Redirect(w, r, signinPath+"?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
					return
				}
				writeError(w, http.StatusUnauthorized, "unauthorized",
					"missing credentials: send Authorization: Bearer $RAPPORT_ADMIN_TOKEN, or sign in at "+signinPath)
				return
			}
			if !safeMethod(r.Method) {
				if ok, _ := s.sameOrigin(r); !ok {
					s.refuseOrigin(w, r)
					return
				}
				if !isQueuesPath(r.URL.Path) && !s.csrfOK(sc, s.presentedCSRF(w, r)) {
					s.log.WarnContext(r.Context(), "admin request without a valid CSRF token refused",
						slog.String("request_id", RequestID(r.Context())), slog.String("path", r.URL.Path))
					s.refuse(w, r, http.StatusForbidden, "csrf", "this form has expired or did not come from the console: reload the page and try again")
					return
				}
			}
			auth = adminAuthInfo{kind: authSession, session: sc}
		}
		w.Header().Del("WWW-Authenticate")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey, auth)))
	})
}

// tryToken checks a presented token against the client address's bucket
// and the admin token, answering 429 or 401 when it does not pass.
func (s *Server) tryToken(w http.ResponseWriter, r *http.Request, got string) bool {
	addr := clientAddr(r)
	if ok, wait := s.sessions.allowed(addr, s.clock()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "too_many_attempts", "too many wrong admin tokens from this address: wait and try again")
		return false
	}
	if !s.tokenOK(got) {
		s.sessions.failed(addr, s.clock())
		s.log.WarnContext(r.Context(), "wrong admin token", slog.String("request_id", RequestID(r.Context())), slog.String("client", addr))
		writeError(w, http.StatusUnauthorized, "unauthorized", "wrong admin token")
		return false
	}
	return true
}

// presentedCSRF reads the CSRF token from its header or, for a form, its
// field (parsing the size-limited form).
func (s *Server) presentedCSRF(w http.ResponseWriter, r *http.Request) string {
	if v := r.Header.Get(csrfHeader); v != "" {
		return v
	}
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		if err := r.ParseForm(); err == nil {
			return r.PostForm.Get(csrfField)
		}
	}
	return ""
}

func (s *Server) refuseOrigin(w http.ResponseWriter, r *http.Request) {
	s.log.WarnContext(r.Context(), "cross-origin admin request refused", slog.String("request_id", RequestID(r.Context())),
		slog.String("path", r.URL.Path), slog.String("method", r.Method))
	s.refuse(w, r, http.StatusForbidden, "forbidden_origin",
		"this request did not come from "+s.publicOrigin()+": state-changing admin requests must come from the console")
}

// refuse answers an error as a page to a browser's form, else as JSON.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || wantsPage(r) {
		s.renderError(w, r, status, msg)
		return
	}
	writeError(w, status, code, msg)
}

// isAdmin reports whether a request outside /admin/ (an OAuth start)
// comes from an admin: the bearer token, or a console session.
func (s *Server) isAdmin(r *http.Request) bool {
	if got, ok := bearerToken(r); ok {
		addr := clientAddr(r)
		if ok, _ := s.sessions.allowed(addr, s.clock()); !ok {
			return false
		}
		if !s.tokenOK(got) {
			s.sessions.failed(addr, s.clock())
			return false
		}
		return true
	}
	_, ok := s.session(r)
	return ok
}

// adminHeaders sets, on every /admin/ answer, the headers that keep it
// out of frames and MIME sniffing, and its content policy: strict for the
// console, frame-ancestors only for the queue UI (its own scripts).
func (s *Server) adminHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		csp := consoleCSP
		if isQueuesPath(r.URL.Path) {
			csp = "frame-ancestors 'none'"
		}
		next.ServeHTTP(&headerWriter{ResponseWriter: w, csp: csp}, r)
	})
}

// headerWriter sets the admin headers just before the status is written,
// so that no handler or rewriter can drop them.
type headerWriter struct {
	http.ResponseWriter
	csp   string
	wrote bool
}

func (w *headerWriter) set() {
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.Header()
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", w.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

func (w *headerWriter) WriteHeader(code int) {
	w.set()
	w.ResponseWriter.WriteHeader(code)
}

func (w *headerWriter) Write(b []byte) (int, error) {
	w.set()
	return w.ResponseWriter.Write(b)
}

func (w *headerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets asynqmon stream through the wrapper.
func (w *headerWriter) Flush() {
	w.set()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
