package calendly

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

type token struct {
	user    string // user uuid
	pat     bool
	expires time.Time // OAuth access tokens only
	revoked bool
	// scopes granted; nil is a legacy token with full access.
	scopes []string
}

// allows reports whether the token carries scope; a :write scope includes
// the :read scope of its domain.
func (t *token) allows(scope string) bool {
	if t.scopes == nil || scope == "" {
		return true
	}
	domain, _, _ := strings.Cut(scope, ":")
	return slices.Contains(t.scopes, scope) || slices.Contains(t.scopes, domain+":write")
}

type refreshToken struct {
	user   string
	scopes []string
	used   bool
}

type authCode struct {
	user        string
	redirectURI string
	scopes      []string
	expires     time.Time
}

// AddPAT issues a personal access token for u: it never expires and is not
// refreshed. Without scopes it is a legacy token with full access; with
// them, requests outside them answer 403 Insufficient scope.
func (s *Server) AddPAT(u User, scopes ...string) string {
	tok := "pat_" + randomToken()
	s.mu.Lock()
	s.tokens[tok] = &token{user: u.UUID, pat: true, scopes: scopeList(scopes)}
	s.mu.Unlock()
	return tok
}

// AuthorizeCode stands for u granting the OAuth application access with
// the given scopes (none: full access) at the consent page: it returns the
// code Calendly would put on the redirect to redirectURI. A code is
// single-use and expires after 10 minutes.
func (s *Server) AuthorizeCode(u User, redirectURI string, scopes ...string) string {
	code := randomToken()
	s.mu.Lock()
	s.codes[code] = &authCode{user: u.UUID, redirectURI: redirectURI, scopes: scopeList(scopes), expires: s.now().Add(authorizationCodeTTL)}
	s.mu.Unlock()
	return code
}

// RevokeToken makes an access token or PAT answer 401 from now on.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	if t := s.tokens[tok]; t != nil {
		t.revoked = true
	}
	s.mu.Unlock()
}

// RevokeUser revokes every token and refresh token of u, as when u removes
// the application.
func (s *Server) RevokeUser(u User) {
	s.mu.Lock()
	for _, t := range s.tokens {
		if t.user == u.UUID {
			t.revoked = true
		}
	}
	for _, r := range s.refresh {
		if r.user == u.UUID {
			r.used = true
		}
	}
	s.mu.Unlock()
}

func scopeList(scopes []string) []string {
	if len(scopes) == 0 {
		return nil
	}
	return slices.Clone(scopes)
}

type tokenAnswer struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	CreatedAt    int64  `json:"created_at"`
	ExpiresIn    int    `json:"expires_in"`
	Owner        string `json:"owner"`
	Organization string `json:"organization"`
}

type oauthError struct {
	status      int
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// handleToken is POST /oauth/token: authorization_code and refresh_token
// grants, client credentials in Basic auth (web clients) or the form.
// Refresh tokens are single-use: each answer carries a new one and the old
// one is dead (invalid_grant), as Calendly rotates them.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	fail := func(e oauthError) { writeJSON(w, e.status, e) }
	s.mu.Lock()
	s.calls[EndpointToken]++
	s.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		fail(oauthError{400, "invalid_request", "The request is missing a required parameter."})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != s.clientID || secret != s.clientSecret {
		fail(oauthError{401, "invalid_client", "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."})
		return
	}
	var userID string
	var scopes []string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		c := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code"))
		if c == nil || !s.now().Before(c.expires) || c.redirectURI != r.PostForm.Get("redirect_uri") {
			fail(oauthError{400, "invalid_grant", "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."})
			return
		}
		userID, scopes = c.user, c.scopes
	case "refresh_token":
		rt := s.refresh[r.PostForm.Get("refresh_token")]
		if rt == nil || rt.used {
			fail(oauthError{400, "invalid_grant", "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."})
			return
		}
		rt.used = true
		userID, scopes = rt.user, rt.scopes
	default:
		fail(oauthError{400, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server."})
		return
	}
	u := s.users[userID]
	if u == nil {
		fail(oauthError{400, "invalid_grant", "The resource owner no longer exists."})
		return
	}
	now := s.now()
	access, refresh := randomToken(), randomToken()
	s.tokens[access] = &token{user: userID, expires: now.Add(accessTokenTTL), scopes: scopes}
	s.refresh[refresh] = &refreshToken{user: userID, scopes: scopes}
	writeJSON(w, http.StatusOK, tokenAnswer{
		TokenType:    "Bearer",
		AccessToken:  access,
		RefreshToken: refresh,
		Scope:        strings.Join(scopes, " "),
		CreatedAt:    now.Unix(),
		ExpiresIn:    int(accessTokenTTL / time.Second),
		Owner:        s.userURI(userID),
		Organization: s.orgURI(u.org),
	})
}
