package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	scrub "github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/pipeline"
)

const (
	// stateTTL is how long a started OAuth flow may take.
	stateTTL = 10 * time.Minute
	// pkceCookie prefixes the cookie holding a flow's PKCE verifier; the
	// flow's nonce completes the name, so flows in several tabs coexist.
	pkceCookie = "rapport_pkce_"
)

// OAuthProvider is one provider's OAuth client and what the flow needs to
// know of it: the registry entry the start and callback find by name.
type OAuthProvider struct {
	// Title is the provider's name for people ("Google Calendar").
	Title string
	// Config is the OAuth client. An empty RedirectURL becomes PublicURL +
	// /oauth/{provider}/callback.
	Config *oauth2.Config
	// Options are added to the consent URL (Google's offline access).
	Options []oauth2.AuthCodeOption
	// Account names the account a token response signed in, for calendar
	// providers (the connection's account e-mail); nil for a CRM, whose
	// portal the pipeline learns itself.
	Account func(ctx context.Context, tok *oauth2.Token) (string, error)
	// Calendars are the calendar ids a new calendar connection registers
	// (["primary"]); nil for a CRM.
	Calendars []string
	// LoginHint adds the expected account to the consent URL.
	LoginHint bool
}

// oauthConfig returns the configured client of the path's provider, or
// answers 404 (no such provider) or 503 (not configured).
func (s *Server) oauthConfig(w http.ResponseWriter, r *http.Request) (string, OAuthProvider, bool) {
	provider := r.PathValue("provider")
	op, ok := s.cfg.OAuth[provider]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_provider", "OAuth is offered for "+strings.Join(s.oauthNames(), ", ")+" only")
		return "", op, false
	}
	if op.Config == nil || op.Config.ClientID == "" {
		env := strings.ToUpper(provider)
		writeError(w, http.StatusServiceUnavailable, "not_configured",
			fmt.Sprintf("%s OAuth is not configured: set RAPPORT_%s_CLIENT_ID and RAPPORT_%s_CLIENT_SECRET", provider, env, env))
		return "", op, false
	}
	c := *op.Config
	if c.RedirectURL == "" {
		c.RedirectURL = s.cfg.PublicURL + "/oauth/" + provider + "/callback"
	}
	op.Config = &c
	return provider, op, true
}

func (s *Server) oauthNames() []string {
	var names []string
	for n := range s.cfg.OAuth {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// oauthStart sends the browser to the provider's consent page with a
// signed state bound to the workspace and a PKCE S256 challenge. A flow
// starts only from a connect link the admin API issued (signed, single
// use, expiring, bound to the workspace and provider) or from an admin
// (the bearer token or a console session): whoever knows a workspace id
// must not attach an account to it. The PKCE verifier stays in this
// browser: an HttpOnly, SameSite=Lax cookie scoped to /oauth/{provider}/
// and named after the flow's nonce, so a code and state leaked from the
// redirect cannot be redeemed from another browser.
func (s *Server) oauthStart(w http.ResponseWriter, r *http.Request) {
	provider, op, ok := s.oauthConfig(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	ws, token := q.Get("workspace"), q.Get("link")
	if !cleanParam(ws) || !cleanParam(token) {
		writeError(w, http.StatusBadRequest, "invalid", "the workspace and link query parameters must be printable text")
		return
	}
	st := oauthState{Workspace: ws, Provider: provider, Expires: s.clock().Add(stateTTL).Unix(), Nonce: randomToken(16)}
	switch {
	case token != "":
		link, err := s.useConnectLink(r.Context(), token, provider)
		if err != nil {
			s.fail(w, r, "oauth start", err)
			return
		}
		if ws != "" && ws != link.WorkspaceID {
			writeError(w, http.StatusForbidden, "forbidden", "this connect link is for another workspace")
			return
		}
		st.Workspace, st.Account, st.AllowExternal, st.Replace = link.WorkspaceID, link.Account, link.AllowExternalAccount, link.Replace
	case s.isAdmin(r):
		if ws == "" {
			writeError(w, http.StatusBadRequest, "invalid", "the workspace query parameter is required")
			return
		}
		if _, err := s.svc.WorkspaceStatus(r.Context(), ws); err != nil {
			s.fail(w, r, "oauth start", err)
			return
		}
	default:
		writeError(w, http.StatusUnauthorized, "unauthorized",
			"an OAuth connection starts from a connect link: ask your admin for one (POST /admin/workspaces/{ws}/connect-links)")
		return
	}
	state := s.signState(st)
	verifier := oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{
		Name:     pkceCookie + st.Nonce,
		Value:    verifier,
		Path:     "/oauth/" + provider + "/",
		MaxAge:   int(stateTTL / time.Second),
		HttpOnly: true,
		Secure:   strings.HasPrefix(s.cfg.PublicURL, "https://"),
		SameSite: http.SameSiteLaxMode,
	})
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, op.Options...)
	if op.LoginHint && st.Account != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", st.Account))
	}
	s.log.InfoContext(r.Context(), "oauth flow started", slog.String("request_id", RequestID(r.Context())),
		slog.String("workspace_id", st.Workspace), slog.String("provider", provider))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, op.Config.AuthCodeURL(state, opts...), http.StatusFound)
}

// connectLinkResponse is the answer to POST .../connect-links.
type connectLinkResponse struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Provider  string    `json:"provider"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createConnectLink issues a connect link: the URL of the OAuth start with
// the link's signed id.
func (s *Server) createConnectLink(w http.ResponseWriter, r *http.Request) {
	var in pipeline.ConnectLinkInput
	if err := s.decode(w, r, &in); err != nil {
		bodyError(w, err)
		return
	}
	if in.Provider == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"provider" is required: the name of a calendar provider or CRM`)
		return
	}
	ws := r.PathValue("ws")
	l, err := s.svc.CreateConnectLink(r.Context(), ws, in)
	if err != nil {
		s.fail(w, r, "create connect link", err)
		return
	}
	s.log.InfoContext(r.Context(), "connect link issued", slog.String("request_id", RequestID(r.Context())),
		slog.String("workspace_id", ws), slog.String("provider", l.Provider), slog.String("link_id", l.ID))
	writeJSON(w, http.StatusCreated, s.connectLink(l))
}

// connectLink signs an issued link into the URL of the OAuth start.
func (s *Server) connectLink(l pipeline.ConnectLink) connectLinkResponse {
	token := s.sign(purposeLink, linkClaims{ID: l.ID, Workspace: l.WorkspaceID, Provider: l.Provider, Expires: l.ExpiresAt.Unix()})
	u := s.cfg.PublicURL + "/oauth/" + l.Provider + "/start?" + url.Values{"workspace": {l.WorkspaceID}, "link": {token}}.Encode()
	return connectLinkResponse{ID: l.ID, URL: u, Provider: l.Provider, ExpiresAt: l.ExpiresAt}
}

// linkClaims is what a connect link's token carries, signed.
type linkClaims struct {
	ID        string `json:"i"`
	Workspace string `json:"w"`
	Provider  string `json:"p"`
	Expires   int64  `json:"e"`
}

var errBadLink = fmt.Errorf("this connect link is not valid; ask your admin for a new one: %w", pipeline.ErrForbidden)

// useConnectLink checks a link token's signature, provider and expiry, then
// marks the link used (once).
func (s *Server) useConnectLink(ctx context.Context, token, provider string) (pipeline.ConnectLink, error) {
	var c linkClaims
	if !s.verify(purposeLink, token, &c) || c.ID == "" || c.Provider != provider {
		return pipeline.ConnectLink{}, errBadLink
	}
	if !s.clock().Before(time.Unix(c.Expires, 0)) {
		return pipeline.ConnectLink{}, fmt.Errorf("this connect link has expired; ask your admin for a new one: %w", pipeline.ErrForbidden)
	}
	l, err := s.svc.UseConnectLink(ctx, c.ID)
	if err != nil {
		return l, err
	}
	if l.WorkspaceID != c.Workspace || l.Provider != provider {
		return pipeline.ConnectLink{}, errBadLink
	}
	return l, nil
}

// cleanParam reports whether a query parameter is short printable text:
// no NUL, no control characters, valid UTF-8.
func cleanParam(v string) bool {
	if len(v) > 2048 || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// oauthCallback checks the state, exchanges the code with the PKCE
// verifier, and adds the connection through the pipeline, which for Google
// registers the primary calendar, opens its channel and starts the initial
// sync, and for HubSpot prepares the portal and loads the company index.
func (s *Server) oauthCallback(w http.ResponseWriter, r *http.Request) {
	provider, op, ok := s.oauthConfig(w, r)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	st, err := s.verifyState(q.Get("state"), provider)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_state", err.Error()+"; start again from /oauth/"+provider+"/start")
		return
	}
	cookie := &http.Cookie{Name: pkceCookie + st.Nonce, Path: "/oauth/" + provider + "/", MaxAge: -1, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode}
	if e := q.Get("error"); e != "" {
		http.SetCookie(w, cookie)
		writeError(w, http.StatusBadRequest, "authorization_denied",
			fmt.Sprintf("%s did not authorise the connection (%s)", provider, safeCode(e)))
		return
	}
	code := q.Get("code")
	if code == "" {
		writeError(w, http.StatusBadRequest, "invalid", "the code query parameter is missing")
		return
	}
	c, err := r.Cookie(pkceCookie + st.Nonce)
	if err != nil || c.Value == "" {
		writeError(w, http.StatusBadRequest, "invalid_state",
			"this sign-in was started in another browser or took too long; start again from /oauth/"+provider+"/start")
		return
	}
	http.SetCookie(w, cookie)

	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), oauth2.HTTPClient, s.cfg.HTTPClient), 30*time.Second)
	defer cancel()
	tok, err := op.Config.Exchange(ctx, code, oauth2.VerifierOption(c.Value))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			writeError(w, http.StatusBadRequest, "exchange_rejected",
				fmt.Sprintf("%s rejected the authorisation code (%s); start again from /oauth/%s/start", provider, safeCode(re.ErrorCode), provider))
			return
		}
		s.log.ErrorContext(ctx, "oauth code exchange failed", slog.String("request_id", RequestID(ctx)),
			slog.String("provider", provider), slog.String("workspace_id", st.Workspace))
		writeError(w, http.StatusBadGateway, "exchange_failed", fmt.Sprintf("the token exchange with %s failed; try again", provider))
		return
	}
	in := pipeline.ConnectionInput{
		Provider:             provider,
		AccessToken:          tok.AccessToken,
		RefreshToken:         tok.RefreshToken,
		ExpiresAt:            tok.Expiry,
		ExpectAccount:        st.Account,
		AllowExternalAccount: st.AllowExternal,
		Replace:              st.Replace,
	}
	if op.Account != nil {
		account, err := op.Account(ctx, tok)
		if err != nil {
			s.log.ErrorContext(ctx, "token response names no account", slog.String("request_id", RequestID(ctx)),
				slog.String("workspace_id", st.Workspace), slog.String("provider", provider), slog.String("error", scrub.Scrub(err.Error())))
			writeError(w, http.StatusBadGateway, "no_account", fmt.Sprintf("%s did not say which account signed in", op.Title))
			return
		}
		in.AccountEmail = account
		in.CalendarIDs = op.Calendars
	}
	conn, err := s.svc.AddConnection(ctx, st.Workspace, in)
	if err != nil {
		s.fail(w, r, "add connection", err)
		return
	}
	s.log.InfoContext(ctx, "oauth connection added", slog.String("request_id", RequestID(ctx)),
		slog.String("workspace_id", st.Workspace), slog.String("provider", provider), slog.String("connection_id", conn.ID))
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"workspace_id": st.Workspace, "connection": conn})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	successPage.Execute(w, struct {
		Provider, Account, Workspace, Connection string
	}{op.Title, conn.Account, st.Workspace, conn.ID})
}

var successPage = template.Must(template.New("ok").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rapport: connected</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;line-height:1.5}</style></head>
<body><h1>Connected</h1>
<p>{{.Provider}}{{if .Account}} account <strong>{{.Account}}</strong>{{end}} is now connected to Rapport
(workspace <code>{{.Workspace}}</code>, connection <code>{{.Connection}}</code>).</p>
<p>You can close this window.</p></body></html>
`))

func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

// oauthState is what the state parameter carries, signed: the workspace
// and provider, and what the connect link that started the flow allows.
type oauthState struct {
	Workspace     string `json:"w"`
	Provider      string `json:"p"`
	Expires       int64  `json:"e"`
	Nonce         string `json:"n"`
	Account       string `json:"a,omitempty"`
	AllowExternal bool   `json:"x,omitempty"`
	Replace       bool   `json:"r,omitempty"`
}

// Purposes of signed tokens: a token signed for one is never valid for the
// other.
const (
	purposeState = "rapport oauth state v1"
	purposeLink  = "rapport connect link v1"
)

// sign returns base64url(JSON) "." base64url(HMAC-SHA256(purpose, JSON)).
func (s *Server) sign(purpose string, v any) string {
	payload, _ := json.Marshal(v)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(purpose, p))
}

func (s *Server) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.cfg.StateKey)
	m.Write([]byte(purpose + "\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verify checks a signed token and decodes its payload into v.
func (s *Server) verify(purpose, token string, v any) bool {
	p, sig, ok := strings.Cut(token, ".")
	if !ok || p == "" || len(token) > 1024 {
		return false
	}
	// Strict: a non-canonical encoding of the same bytes is a different token.
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(mac, s.mac(purpose, p)) {
		return false
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(p)
	return err == nil && json.Unmarshal(payload, v) == nil
}

func (s *Server) signState(st oauthState) string { return s.sign(purposeState, st) }

var errBadState = errors.New("the OAuth state is invalid")

// verifyState checks the state's signature, provider and expiry.
func (s *Server) verifyState(state, provider string) (oauthState, error) {
	var st oauthState
	if !s.verify(purposeState, state, &st) || st.Workspace == "" || !validNonce(st.Nonce) {
		return oauthState{}, errBadState
	}
	if st.Provider != provider {
		return oauthState{}, fmt.Errorf("%w: it was issued for %s", errBadState, st.Provider)
	}
	if !s.clock().Before(time.Unix(st.Expires, 0)) {
		return oauthState{}, fmt.Errorf("%w: it expired", errBadState)
	}
	return st, nil
}

func validNonce(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safeCode keeps an OAuth error code printable and short.
func safeCode(c string) string {
	if c == "" {
		return "no error code"
	}
	var b strings.Builder
	for _, r := range c {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
