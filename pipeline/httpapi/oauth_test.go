package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/pipeline"
)

// fakeProvider is an OAuth authorize + token endpoint pair with PKCE.
type fakeProvider struct {
	*httptest.Server
	t  *testing.T
	mu sync.Mutex
	// authorize requests seen, and what the token endpoint received
	authorized  []url.Values
	exchanged   []url.Values
	challenges  map[string]string // code → code_challenge
	email       string            // id_token email; "" sends no id_token
	rejectCodes bool
	fail500     bool
}

func newFakeProvider(t *testing.T, email string) *fakeProvider {
	p := &fakeProvider{t: t, challenges: map[string]string{}, email: email}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		p.mu.Lock()
		p.authorized = append(p.authorized, q)
		code := "code-" + string(rune('a'+len(p.authorized)))
		p.challenges[code] = q.Get("code_challenge")
		p.mu.Unlock()
		if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			http.Error(w, "bad authorize request", 400)
			return
		}
		to, _ := url.Parse(q.Get("redirect_uri"))
		v := url.Values{"code": {code}, "state": {q.Get("state")}}
		to.RawQuery = v.Encode()
		http.Redirect(w, r, to.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		p.mu.Lock()
		p.exchanged = append(p.exchanged, r.PostForm)
		challenge, known := p.challenges[r.PostForm.Get("code")]
		delete(p.challenges, r.PostForm.Get("code"))
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if p.fail500 {
			w.WriteHeader(500)
			w.Write([]byte(`{"error":"server_error"}`))
			return
		}
		if p.rejectCodes || !known || oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != challenge ||
			r.PostForm.Get("grant_type") != "authorization_code" {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"Bad Request"}`))
			return
		}
		resp := map[string]any{"access_token": "at-fresh", "refresh_token": "rt-fresh", "token_type": "Bearer", "expires_in": 3599}
		if p.email != "" {
			claims, _ := json.Marshal(map[string]any{"iss": "https://accounts.google.com", "email": p.email, "email_verified": true})
			resp["id_token"] = "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
		}
		json.NewEncoder(w).Encode(resp)
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *fakeProvider) config() *oauth2.Config {
	return &oauth2.Config{ClientID: "client-1", ClientSecret: "secret-1",
		Endpoint: oauth2.Endpoint{AuthURL: p.URL + "/authorize", TokenURL: p.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// oauthEnv is a Rapport server on a real listener, so that redirects and
// cookies go through a real client.
type oauthEnv struct {
	*env
	srv      *httptest.Server
	google   *fakeProvider
	hubspot  *fakeProvider
	client   *http.Client // follows redirects, keeps cookies
	noFollow *http.Client // same jar, stops at the first redirect
}

func newOAuthEnv(t *testing.T, mutate ...func(*Config)) *oauthEnv {
	t.Helper()
	o := &oauthEnv{google: newFakeProvider(t, "Rep@Northwind.test"), hubspot: newFakeProvider(t, "")}
	var h http.Handler
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(o.srv.Close)
	o.env = newEnv(t, append([]func(*Config){func(c *Config) {
		c.PublicURL = o.srv.URL
		c.OAuth = map[string]OAuthProvider{
			"google": {Title: "Google Calendar", Config: withScopes(o.google.config(), google.Scopes...), Calendars: []string{"primary"}, LoginHint: true,
				Options: []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent")},
				Account: func(_ context.Context, tok *oauth2.Token) (string, error) { return google.AccountFromToken(tok) }},
			"hubspot": {Title: "HubSpot", Config: o.hubspot.config()},
		}
	}}, mutate...)...)
	h = o.env.h
	jar, _ := cookiejar.New(nil)
	o.client = &http.Client{Jar: jar, Timeout: 10 * time.Second}
	o.noFollow = &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return o
}

func (o *oauthEnv) get(c *http.Client, target string) (*http.Response, string) {
	o.t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		o.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

// link asks the admin API for a connect link and returns its URL.
func (o *oauthEnv) link(provider, extra string) string {
	o.t.Helper()
	w := o.admin("POST", "/admin/workspaces/ws-1/connect-links", `{"provider":"`+provider+`"`+extra+`}`)
	if w.Code != http.StatusCreated {
		o.t.Fatalf("connect link: %d %s", w.Code, w.Body)
	}
	var l struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || l.ExpiresAt.IsZero() {
		o.t.Fatalf("connect link answer %s: %v", w.Body, err)
	}
	if !strings.HasPrefix(l.URL, o.srv.URL+"/oauth/"+provider+"/start?") {
		o.t.Fatalf("connect link URL %s", l.URL)
	}
	return l.URL
}

// start begins a flow from a fresh connect link without following the
// redirect and returns the provider's authorize URL.
func (o *oauthEnv) start(provider string) *url.URL {
	o.t.Helper()
	resp, body := o.get(o.noFollow, o.link(provider, ""))
	if resp.StatusCode != http.StatusFound {
		o.t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		o.t.Fatal(err)
	}
	return u
}

func TestOAuthRoundTrip(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{"google", "hubspot"} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			o := newOAuthEnv(t)
			fake := o.google
			if provider == "hubspot" {
				fake = o.hubspot
			}
			resp, body := o.get(o.client, o.link(provider, ""))
			if resp.StatusCode != 200 || !strings.Contains(body, "Connected") {
				t.Fatalf("flow ended with %d: %s", resp.StatusCode, body)
			}

			fake.mu.Lock()
			auth, exch := fake.authorized, fake.exchanged
			fake.mu.Unlock()
			if len(auth) != 1 || len(exch) != 1 {
				t.Fatalf("%d authorize and %d token requests, want 1 and 1", len(auth), len(exch))
			}
			a, x := auth[0], exch[0]
			wantRedirect := o.srv.URL + "/oauth/" + provider + "/callback"
			if a.Get("redirect_uri") != wantRedirect || x.Get("redirect_uri") != wantRedirect {
				t.Errorf("redirect_uri %q / %q, want %q", a.Get("redirect_uri"), x.Get("redirect_uri"), wantRedirect)
			}
			if a.Get("client_id") != "client-1" || a.Get("state") == "" {
				t.Errorf("authorize query %v", a)
			}
			// The PKCE verifier reached the token endpoint and matches the
			// challenge sent to the authorize endpoint.
			if v := x.Get("code_verifier"); v == "" || oauth2.S256ChallengeFromVerifier(v) != a.Get("code_challenge") {
				t.Errorf("verifier %q does not match challenge %q", v, a.Get("code_challenge"))
			}
			if provider == "google" {
				for _, s := range []string{"openid", "email", "https://www.googleapis.com/auth/calendar.events"} {
					if !strings.Contains(" "+a.Get("scope")+" ", " "+s+" ") {
						t.Errorf("scope %q lacks %s", a.Get("scope"), s)
					}
				}
				if a.Get("access_type") != "offline" || a.Get("prompt") != "consent" {
					t.Errorf("google authorize without offline access and consent: %v", a)
				}
			}

			added := o.svc.snapshot().added
			if len(added) != 1 {
				t.Fatalf("AddConnection called %d times", len(added))
			}
			in := added[0].in
			if added[0].workspace != "ws-1" || in.Provider != provider || in.AccessToken != "at-fresh" || in.RefreshToken != "rt-fresh" {
				t.Errorf("AddConnection got %s %+v", added[0].workspace, in)
			}
			if d := time.Until(in.ExpiresAt); d < 55*time.Minute || d > time.Hour {
				t.Errorf("expires_at %v, want about an hour from now", in.ExpiresAt)
			}
			if provider == "google" {
				if in.AccountEmail != "rep@northwind.test" || len(in.CalendarIDs) != 1 || in.CalendarIDs[0] != "primary" {
					t.Errorf("google input: email %q calendars %v", in.AccountEmail, in.CalendarIDs)
				}
			} else if in.AccountEmail != "" || in.CalendarIDs != nil {
				t.Errorf("hubspot input: %+v", in)
			}
			// The PKCE cookie is gone.
			u, _ := url.Parse(o.srv.URL + "/oauth/" + provider + "/callback")
			for _, c := range o.client.Jar.Cookies(u) {
				if strings.HasPrefix(c.Name, pkceCookie) {
					t.Errorf("cookie %s left behind", c.Name)
				}
			}
			// Neither the code, the state nor a token reaches the logs.
			logs := o.logs.String()
			for _, secret := range []string{"code-", "at-fresh", "rt-fresh", a.Get("state"), x.Get("code_verifier")} {
				if strings.Contains(logs, secret) {
					t.Errorf("%q reached the logs", secret)
				}
			}
		})
	}
}

func TestOAuthStartCookie(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	resp, _ := o.get(o.noFollow, o.link("google", ""))
	var pkce *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, pkceCookie) {
			pkce = c
		}
	}
	if pkce == nil {
		t.Fatal("no PKCE cookie")
	}
	if !pkce.HttpOnly || pkce.SameSite != http.SameSiteLaxMode || pkce.Path != "/oauth/google/" || pkce.MaxAge != 600 {
		t.Errorf("cookie %+v", pkce)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("start response may be cached")
	}
}

func TestOAuthCallbackRejects(t *testing.T) {
	t.Parallel()
	callback := func(o *oauthEnv, provider, state, code string) (*http.Response, string) {
		v := url.Values{"state": {state}}
		if code != "" {
			v.Set("code", code)
		}
		return o.get(o.noFollow, o.srv.URL+"/oauth/"+provider+"/callback?"+v.Encode())
	}
	check := func(t *testing.T, o *oauthEnv, resp *http.Response, body string, status int, code string) {
		t.Helper()
		checkError(t, resp.StatusCode, body, status, code)
		if n := len(o.svc.snapshot().added); n != 0 {
			t.Errorf("AddConnection called %d times", n)
		}
	}

	t.Run("tampered state", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		state := o.start("google").Query().Get("state")
		payload, sig, _ := strings.Cut(state, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(payload)
		forged := strings.Replace(string(raw), `"w":"ws-1"`, `"w":"ws-2"`, 1)
		for name, bad := range map[string]string{
			"other workspace": base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig,
			"flipped sig":     payload + "." + flip(sig),
			"no sig":          payload,
			"garbage":         "%%%",
			"empty":           "",
		} {
			t.Run(name, func(t *testing.T) {
				resp, body := callback(o, "google", bad, "code-b")
				check(t, o, resp, body, 400, "invalid_state")
			})
		}
		o.google.mu.Lock()
		defer o.google.mu.Unlock()
		if len(o.google.exchanged) != 0 {
			t.Error("a tampered state reached the token endpoint")
		}
	})
	t.Run("expired state", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		authURL := o.start("google")
		o.clock.Add(10*time.Minute + time.Second)
		resp, body := o.get(o.client, authURL.String()) // provider redirects back to the callback
		check(t, o, resp, body, 400, "invalid_state")
		if !strings.Contains(body, "expired") {
			t.Errorf("does not say the state expired: %s", body)
		}
	})
	t.Run("state of another provider", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		state := o.start("google").Query().Get("state")
		resp, body := callback(o, "hubspot", state, "code-b")
		check(t, o, resp, body, 400, "invalid_state")
	})
	t.Run("state from another key", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		other := newEnv(t, func(c *Config) { c.StateKey = []byte(strings.Repeat("k", 32)) }).h.(*Server)
		state := other.signState(oauthState{Workspace: "ws-1", Provider: "google", Expires: time.Now().Add(time.Minute).Unix(), Nonce: "abc"})
		resp, body := callback(o, "google", state, "code-b")
		check(t, o, resp, body, 400, "invalid_state")
	})
	t.Run("no PKCE cookie", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		authURL := o.start("google")
		// Another browser: same state, no cookie.
		resp, body := o.get(&http.Client{Timeout: 10 * time.Second}, authURL.String())
		check(t, o, resp, body, 400, "invalid_state")
	})
	t.Run("denied by the user", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		state := o.start("google").Query().Get("state")
		v := url.Values{"state": {state}, "error": {"access_denied"}}
		resp, body := o.get(o.noFollow, o.srv.URL+"/oauth/google/callback?"+v.Encode())
		check(t, o, resp, body, 400, "authorization_denied")
	})
	t.Run("no code", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		state := o.start("google").Query().Get("state")
		resp, body := callback(o, "google", state, "")
		check(t, o, resp, body, 400, "invalid")
	})
	t.Run("code rejected", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		o.google.rejectCodes = true
		resp, body := o.get(o.client, o.start("google").String())
		check(t, o, resp, body, 400, "exchange_rejected")
	})
	t.Run("token endpoint down", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		o.google.fail500 = true
		resp, body := o.get(o.client, o.start("google").String())
		check(t, o, resp, body, 502, "exchange_failed")
	})
	t.Run("google without id_token", func(t *testing.T) {
		t.Parallel()
		o := newOAuthEnv(t)
		o.google.email = ""
		resp, body := o.get(o.client, o.start("google").String())
		check(t, o, resp, body, 502, "no_account")
	})
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestOAuthStartRejects(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	for target, want := range map[string]struct {
		status int
		code   string
	}{
		"/oauth/google/start":                            {401, "unauthorized"},
		"/oauth/google/start?workspace=ws-1":             {401, "unauthorized"},
		"/oauth/google/start?workspace=nope":             {401, "unauthorized"},
		"/oauth/google/start?workspace=ws-1&link=forged": {403, "forbidden"},
		"/oauth/google/start?workspace=ws%00-1":          {400, "invalid"},
		"/oauth/google/start?workspace=%ff%fe":           {400, "invalid"},
		"/oauth/google/start?link=a%00b":                 {400, "invalid"},
		"/oauth/nowhere/start?workspace=ws-1":            {404, "unknown_provider"},
		"/oauth/nowhere/callback?code=x":                 {404, "unknown_provider"},
	} {
		resp, body := o.get(o.noFollow, o.srv.URL+target)
		checkError(t, resp.StatusCode, body, want.status, want.code)
		if strings.Contains(resp.Header.Get("Location"), "authorize") {
			t.Errorf("%s redirected to the provider", target)
		}
	}

	// Known providers without a client id configured.
	none := newEnv(t, func(c *Config) {
		c.OAuth = map[string]OAuthProvider{"google": {Title: "Google Calendar", Config: &oauth2.Config{}}, "hubspot": {Title: "HubSpot"}}
	})
	for _, target := range []string{"/oauth/google/start?workspace=ws-1", "/oauth/hubspot/callback?code=x&state=y"} {
		w := none.do("GET", target, "")
		checkError(t, w.Code, w.Body.String(), 503, "not_configured")
		if !strings.Contains(w.Body.String(), "CLIENT_ID") {
			t.Errorf("503 does not say what to set: %s", w.Body)
		}
	}
}

// TestOAuthStartNeedsLinkOrAdmin: a flow starts from a connect link, once,
// for the provider and workspace it was issued for; or from the admin.
// Nobody else can attach an account to a workspace.
func TestOAuthStartNeedsLinkOrAdmin(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	link := o.link("hubspot", "")
	if resp, body := o.get(o.noFollow, link); resp.StatusCode != http.StatusFound {
		t.Fatalf("first use: %d %s", resp.StatusCode, body)
	}
	resp, body := o.get(o.noFollow, link)
	checkError(t, resp.StatusCode, body, 403, "forbidden")

	// A google link does not start a hubspot flow.
	g := o.link("google", "")
	resp, body = o.get(o.noFollow, strings.Replace(g, "/oauth/google/", "/oauth/hubspot/", 1))
	checkError(t, resp.StatusCode, body, 403, "forbidden")
	// Nor does a link for another workspace.
	resp, body = o.get(o.noFollow, strings.Replace(o.link("google", ""), "workspace=ws-1", "workspace=ws-2", 1))
	checkError(t, resp.StatusCode, body, 403, "forbidden")

	// The admin starts a flow with the bearer token.
	req, _ := http.NewRequest("GET", o.srv.URL+"/oauth/google/start?workspace=ws-1", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	r2, err := o.noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusFound {
		t.Errorf("admin start: %d", r2.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer wrong-token")
	r3, err := o.noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != http.StatusUnauthorized {
		t.Errorf("start with a wrong token: %d", r3.StatusCode)
	}
}

// TestOAuthLinkCarriesDecisions: what the admin decided when issuing the
// link (expected account, external accounts, replacing the CRM portal)
// reaches the connection the flow adds.
func TestOAuthLinkCarriesDecisions(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	resp, body := o.get(o.client, o.link("google", `,"account":"rep@northwind.test","allow_external_account":true`))
	if resp.StatusCode != 200 {
		t.Fatalf("flow: %d %s", resp.StatusCode, body)
	}
	resp, body = o.get(o.client, o.link("hubspot", `,"replace":true`))
	if resp.StatusCode != 200 {
		t.Fatalf("flow: %d %s", resp.StatusCode, body)
	}
	o.svc.mu.Lock()
	defer o.svc.mu.Unlock()
	if len(o.svc.added) != 2 {
		t.Fatalf("%d connections added", len(o.svc.added))
	}
	g, h := o.svc.added[0].in, o.svc.added[1].in
	if g.ExpectAccount != "rep@northwind.test" || !g.AllowExternalAccount || g.Replace {
		t.Errorf("google input %+v", g)
	}
	if !h.Replace || h.ExpectAccount != "" || h.AllowExternalAccount {
		t.Errorf("hubspot input %+v", h)
	}
}

func TestOAuthJSONSuccess(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	authURL := o.start("hubspot")
	resp, err := o.noFollow.Get(authURL.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", resp.Header.Get("Location"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = o.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		WorkspaceID string              `json:"workspace_id"`
		Connection  pipeline.Connection `json:"connection"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d, %v", resp.StatusCode, err)
	}
	if got.WorkspaceID != "ws-1" || got.Connection.Provider != "hubspot" || got.Connection.ID == "" {
		t.Errorf("JSON success %+v", got)
	}
}

func TestStateSignature(t *testing.T) {
	t.Parallel()
	s := newEnv(t).h.(*Server)
	st := oauthState{Workspace: "ws-1", Provider: "google", Expires: s.clock().Add(time.Minute).Unix(), Nonce: "n0nce"}
	state := s.signState(st)
	if got, err := s.verifyState(state, "google"); err != nil || got != st {
		t.Fatalf("verify: %+v, %v", got, err)
	}
	// Any single-byte change is rejected.
	for i := range len(state) {
		b := []byte(state)
		b[i] ^= 0x01
		if _, err := s.verifyState(string(b), "google"); err == nil {
			t.Errorf("state changed at byte %d accepted", i)
		}
	}
}

func withScopes(c *oauth2.Config, scopes ...string) *oauth2.Config {
	c.Scopes = scopes
	return c
}
