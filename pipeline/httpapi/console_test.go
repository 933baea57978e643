package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// consoleFake is the fakeService with what the console reads beyond it:
// a second workspace, connections, a realistic decision trace on every
// meeting, and the Console methods.
type consoleFake struct {
	*fakeService
	trace json.RawMessage
}

var _ Console = (*consoleFake)(nil)

const publicURL = "https://rapport.example"

func newConsoleFake() *consoleFake {
	f := newFakeService()
	f.workspaces["ws-2"] = pipeline.Workspace{ID: "ws-2", Name: "Other team", InternalDomains: []string{"other.test"}}
	reason := ""
	for _, r := range rules.Default().Rules() {
		if r.Name == "customer-meeting" {
			reason = r.Reason
		}
	}
	d := rules.Decision{Action: rules.ActionLog, Rule: "customer-meeting", Reason: reason,
		Trace: []rules.TraceStep{{Rule: "skip-private"}, {Rule: "customer-meeting", Result: true}},
		Attendees: []rules.AttendeeTrace{
			{Domain: "northwind.test", Internal: true, Organizer: true, Self: true, Response: "accepted"},
			{Domain: "acme.example", External: true, Companies: []string{"101"}, Response: "accepted"},
			{Domain: "rock3-ventures.example", External: true, Response: "needs_action"},
		},
		Companies: []matching.CompanyRef{{ID: "101", Name: "Acme", Domain: "acme.example"}},
	}
	trace, _ := json.Marshal(d)
	return &consoleFake{fakeService: f, trace: trace}
}

func (c *consoleFake) WorkspaceStatus(ctx context.Context, id string) (pipeline.WorkspaceStatus, error) {
	st, err := c.fakeService.WorkspaceStatus(ctx, id)
	if err == nil && id == "ws-1" {
		st.Connections = []pipeline.ConnectionStatus{
			{ID: "conn-1", Provider: "google", Account: "rep@northwind.test", Status: "needs_reauth", LastError: "invalid_grant"},
			{ID: "conn-h", Provider: "hubspot", Account: "4711", Status: "active"},
		}
	}
	return st, err
}

func (c *consoleFake) Meeting(ctx context.Context, ws, key string) (pipeline.MeetingDetail, error) {
	d, err := c.fakeService.Meeting(ctx, ws, key)
	if err == nil {
		d.Trace = c.trace
		d.Copies = []pipeline.MeetingCopy{{CalendarID: "cal-1", EventID: "ev123", Status: "confirmed", Organizer: true, Action: "log", Rule: "customer-meeting", LinkWritten: true}}
	}
	return d, err
}

func (c *consoleFake) Workspaces(ctx context.Context) ([]pipeline.Workspace, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []pipeline.Workspace
	for _, w := range c.workspaces {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b pipeline.Workspace) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (c *consoleFake) SearchMeetings(ctx context.Context, ws string, q pipeline.MeetingQuery, p pipeline.Page) ([]pipeline.FoundMeeting, string, error) {
	entries, next, err := c.Meetings(ctx, ws, q.State, p)
	var out []pipeline.FoundMeeting
	for _, e := range entries {
		if q.Rule != "" && e.Rule != q.Rule {
			continue
		}
		start := e.DecidedAt
		out = append(out, pipeline.FoundMeeting{MeetingEntry: e, StartsAt: &start, Companies: []pipeline.CompanyMatch{{ID: "101", Name: "Acme"}}})
	}
	return out, next, err
}

func (c *consoleFake) MeetingHistory(ctx context.Context, ws, key string) ([]pipeline.MeetingEvent, *time.Time, error) {
	if _, err := c.fakeService.Meeting(ctx, ws, key); err != nil {
		return nil, nil, err
	}
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	return []pipeline.MeetingEvent{{At: at, Kind: "created", CRMMeetingID: "900"}, {At: at.Add(time.Hour), Kind: "updated", CRMMeetingID: "900"}}, &at, nil
}

func (c *consoleFake) ReconcileRequestOf(ctx context.Context, id string) (pipeline.ReconcileRequest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := strconv.Atoi(strings.TrimPrefix(id, "run-"))
	if err != nil || n < 1 || n > len(c.reconciles) {
		return pipeline.ReconcileRequest{}, fmt.Errorf("run %q: %w", id, pipeline.ErrNotFound)
	}
	return c.reconciles[n-1], nil
}

func (c *consoleFake) TryRules(ctx context.Context, ws string, s pipeline.RuleSample) (rules.Decision, string, error) {
	st, err := c.fakeService.WorkspaceStatus(ctx, ws)
	if err != nil {
		return rules.Decision{}, "", err
	}
	var d rules.Decision
	d = rules.Default().Decide(rules.Input{Internal: st.InternalDomains, Owner: s.Organizer})
	return d, rules.Explain(d), nil
}

func (c *consoleFake) LiveEvent(ctx context.Context, ws, key string) (pipeline.LiveEvent, error) {
	if _, err := c.fakeService.Meeting(ctx, ws, key); err != nil {
		return pipeline.LiveEvent{}, err
	}
	if key == c.meetings["ws-1"][1].Key {
		return pipeline.LiveEvent{}, fmt.Errorf("could not reach google: %w", pipeline.ErrUnavailable)
	}
	at := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	return pipeline.LiveEvent{CalendarID: "primary", Title: "Acme renewal", Start: at, End: at.Add(time.Hour),
		Organizer: "rep@northwind.test", Attendees: []string{"rep@northwind.test", "cfo@acme.example"}}, nil
}

func (c *consoleFake) RulesStatus() pipeline.RulesStatus {
	set := rules.Default()
	return pipeline.RulesStatus{Version: set.Version(), Rules: set.Rules(), Default: set.DefaultAction(),
		LoadedAt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), LastError: "reload rules from /etc/rapport refused: bad.yaml:3:7: unknown field"}
}

// consoleEnv is an env whose server has the console.
type consoleEnv struct {
	*env
	fake *consoleFake
}

func newConsoleEnv(t *testing.T, mutate ...func(*Config)) *consoleEnv {
	t.Helper()
	fake := newConsoleFake()
	e := newEnv(t, append([]func(*Config){func(c *Config) {
		c.Service, c.Console, c.PublicURL = fake, fake, publicURL
	}}, mutate...)...)
	e.svc = fake.fakeService
	return &consoleEnv{env: e, fake: fake}
}

// browser is one browser's cookies against a consoleEnv.
type browser struct {
	e       *consoleEnv
	cookies map[string]*http.Cookie
	addr    string
	csrf    string
}

func (e *consoleEnv) browser() *browser {
	return &browser{e: e, cookies: map[string]*http.Cookie{}, addr: "192.0.2.10:5555"}
}

// do sends a request with the browser's cookies, headers in pairs, and
// keeps the cookies the answer sets.
func (b *browser) do(method, target string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = b.addr
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	w := httptest.NewRecorder()
	b.e.h.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return w
}

// post sends a form from the console's own origin with the CSRF token.
func (b *browser) post(target string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form[csrfField]; !ok {
		form.Set(csrfField, b.csrf)
	}
	return b.do("POST", target, form, append([]string{"Origin", publicURL}, headers...)...)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func formCSRF(body string) string {
	m := csrfInput.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// signIn signs in through the form and reads the CSRF token of a page.
func (b *browser) signIn(t *testing.T) {
	t.Helper()
	w := b.do("GET", signinPath, nil)
	if w.Code != 200 {
		t.Fatalf("sign-in page: %d %s", w.Code, w.Body)
	}
	w = b.do("POST", signinPath, url.Values{"token": {adminToken}, "csrf": {formCSRF(w.Body.String())}, "next": {"/admin/console/"}},
		"Origin", publicURL)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/console/" {
		t.Fatalf("sign in: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	w = b.do("GET", consoleRoot, nil)
	if w.Code != 200 {
		t.Fatalf("console after sign-in: %d %s", w.Code, w.Body)
	}
	b.csrf = formCSRF(w.Body.String())
	if b.csrf == "" {
		t.Fatal("no CSRF token on the console page")
	}
}

func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()

	// A browser without a session is sent to the sign-in page; a script
	// gets a 401.
	w := b.do("GET", "/admin/console/workspaces/ws-1", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != signinPath+"?next=%2Fadmin%2Fconsole%2Fworkspaces%2Fws-1" {
		t.Fatalf("no session: %d → %q", w.Code, w.Header().Get("Location"))
	}
	if w := e.do("GET", "/admin/console/workspaces/ws-1", ""); w.Code != 401 {
		t.Errorf("script without credentials: %d", w.Code)
	}
	w = b.do("GET", signinPath+"?next=/admin/console/rules", nil)
	page := w.Body.String()
	for _, want := range []string{`<label for="token">`, `name="next" value="/admin/console/rules"`, `<meta name="viewport"`, `lang="en"`} {
		if !strings.Contains(page, want) {
			t.Errorf("sign-in page lacks %s", want)
		}
	}
	csrf := formCSRF(page)
	if csrf == "" || b.cookies[signinCookie] == nil {
		t.Fatal("the sign-in form has no CSRF token or nonce cookie")
	}
	form := func(token string) url.Values {
		return url.Values{"token": {token}, "csrf": {csrf}, "next": {"/admin/console/rules"}}
	}

	// Wrong token: the error is next to the field.
	w = b.do("POST", signinPath, form("nope"), "Origin", publicURL)
	if w.Code != 401 || !strings.Contains(w.Body.String(), `id="token-error"`) || !strings.Contains(w.Body.String(), `aria-invalid="true"`) {
		t.Errorf("wrong token: %d %s", w.Code, w.Body)
	}
	if w = b.do("POST", signinPath, form(""), "Origin", publicURL); w.Code != 400 || !strings.Contains(w.Body.String(), "Enter the admin token") {
		t.Errorf("empty token: %d", w.Code)
	}
	// No CSRF token, another browser's token, another origin: refused.
	if w = b.do("POST", signinPath, url.Values{"token": {adminToken}}, "Origin", publicURL); w.Code != 403 {
		t.Errorf("sign-in without CSRF token: %d", w.Code)
	}
	other := e.browser()
	other.do("GET", signinPath, nil)
	if w = other.do("POST", signinPath, form(adminToken), "Origin", publicURL); w.Code != 403 {
		t.Errorf("sign-in with another browser's CSRF token: %d", w.Code)
	}
	if w = b.do("POST", signinPath, form(adminToken), "Origin", "https://evil.example"); w.Code != 403 {
		t.Errorf("cross-site sign-in: %d", w.Code)
	}
	if w = b.do("POST", signinPath, form(adminToken)); w.Code != 403 {
		t.Errorf("sign-in without Origin or Referer: %d", w.Code)
	}
	if len(b.cookies) != 1 {
		t.Fatalf("a refused sign-in set cookies: %v", b.cookies)
	}

	w = b.do("POST", signinPath, form(adminToken), "Origin", publicURL)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/console/rules" {
		t.Fatalf("sign in: %d → %q", w.Code, w.Header().Get("Location"))
	}
	sc := b.cookies[sessionCookie]
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.MaxAge != 12*3600 {
		t.Fatalf("session cookie %+v", sc)
	}
	if strings.Contains(sc.Value, adminToken) {
		t.Error("the session cookie carries the admin token")
	}
	if b.cookies[signinCookie] != nil {
		t.Error("the sign-in nonce outlived the sign-in")
	}
	// A signed-in browser opening the sign-in page goes on.
	if w = b.do("GET", signinPath, nil); w.Code != http.StatusSeeOther {
		t.Errorf("sign-in page when signed in: %d", w.Code)
	}
	// An open redirect is not followed.
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "/oauth/google/start"} {
		if got := nextPath(next); got != consoleRoot {
			t.Errorf("next %q → %q", next, got)
		}
	}

	w = b.do("GET", "/admin/console/workspaces/ws-1", nil)
	if w.Code != 200 {
		t.Fatalf("workspace page with the session: %d", w.Code)
	}
	b.csrf = formCSRF(w.Body.String())
	// The JSON API takes the session too.
	if w = b.do("GET", "/admin/workspaces/ws-1", nil, "Accept", "application/json"); w.Code != 200 {
		t.Errorf("JSON API with the session: %d", w.Code)
	}

	// A tampered cookie is no session.
	stolen := *sc
	tampered := *sc
	tampered.Value = strings.Replace(sc.Value, ".", "x.", 1)
	b.cookies[sessionCookie] = &tampered
	if w = b.do("GET", "/admin/console/", nil); w.Code != http.StatusSeeOther {
		t.Errorf("tampered session: %d", w.Code)
	}
	b.cookies[sessionCookie] = &stolen

	// Sign-out clears the cookie and revokes the session.
	if w = b.post(signoutPath, nil); w.Code != http.StatusSeeOther || b.cookies[sessionCookie] != nil {
		t.Fatalf("sign out: %d, cookie %v", w.Code, b.cookies[sessionCookie])
	}
	b.cookies[sessionCookie] = &stolen
	if w = b.do("GET", "/admin/console/", nil); w.Code != http.StatusSeeOther {
		t.Errorf("a signed-out session still works: %d", w.Code)
	}

	// Sessions expire after 12 hours.
	b2 := e.browser()
	b2.signIn(t)
	e.clock.Add(12*time.Hour - time.Minute)
	if w = b2.do("GET", consoleRoot, nil); w.Code != 200 {
		t.Errorf("session before expiry: %d", w.Code)
	}
	e.clock.Add(2 * time.Minute)
	if w = b2.do("GET", consoleRoot, nil); w.Code != http.StatusSeeOther {
		t.Errorf("session after expiry: %d", w.Code)
	}
}

func TestConsoleSessionEndsWithToken(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	b.signIn(t)
	rotated := newConsoleEnv(t, func(c *Config) { c.AdminToken = "a-new-admin-token" })
	b.e = rotated
	if w := b.do("GET", consoleRoot, nil); w.Code != http.StatusSeeOther {
		t.Errorf("a session of the old admin token: %d", w.Code)
	}
}

func TestWrongTokensRateLimited(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	w := b.do("GET", signinPath, nil)
	csrf := formCSRF(w.Body.String())
	try := func(token string) int {
		return b.do("POST", signinPath, url.Values{"token": {token}, "csrf": {csrf}}, "Origin", publicURL).Code
	}
	for i := range failBurst {
		if code := try(fmt.Sprintf("wrong-%d", i)); code != 401 {
			t.Fatalf("wrong token %d: %d", i, code)
		}
	}
	w = b.do("POST", signinPath, url.Values{"token": {adminToken}, "csrf": {csrf}}, "Origin", publicURL)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `id="token-error"`) {
		t.Fatalf("the right token after %d wrong ones: %d %q", failBurst, w.Code, w.Header().Get("Retry-After"))
	}
	// The bearer header counts against the same address.
	bearer := func(addr, token string) int {
		req := httptest.NewRequest("GET", "/admin/workspaces/ws-1", nil)
		req.RemoteAddr = addr
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := bearer(b.addr, adminToken); code != http.StatusTooManyRequests {
		t.Errorf("bearer from a limited address: %d", code)
	}
	// Another address is not limited.
	if code := bearer("198.51.100.7:1", adminToken); code != 200 {
		t.Errorf("bearer from another address: %d", code)
	}
	// One attempt comes back every failEvery.
	e.clock.Add(failEvery)
	if code := try("wrong-again"); code != 401 {
		t.Errorf("after %v: %d, want a 401 for the wrong token", failEvery, code)
	}
	if code := try(adminToken); code != http.StatusTooManyRequests {
		t.Errorf("the refilled attempt was used: %d", code)
	}
	e.clock.Add(failEvery)
	if code := try(adminToken); code != http.StatusSeeOther {
		t.Errorf("the right token once refilled: %d", code)
	}
	// Bearer failures alone exhaust an address too.
	for range failBurst {
		bearer("203.0.113.9:1", "wrong")
	}
	if code := bearer("203.0.113.9:1", adminToken); code != http.StatusTooManyRequests {
		t.Errorf("after %d wrong bearer tokens: %d", failBurst, code)
	}
}

// consolePosts is every console form, with a valid submission.
var consolePosts = []struct {
	path string
	form url.Values
}{
	{"/admin/console/workspaces/ws-1/calendars/cal-1/sync", nil},
	{"/admin/console/workspaces/ws-1/connect-links", url.Values{"provider": {"google"}}},
	{"/admin/console/workspaces/ws-1/reconcile", url.Values{"dry_run": {"on"}}},
	{"/admin/console/dead-letters/1/retry", nil},
	{"/admin/console/dead-letters/retry-all", nil},
	{"/admin/console/rules/try", url.Values{"workspace": {"ws-1"}, "organizer": {"rep@northwind.test"}, "attendees": {"cfo@acme.example"},
		"start": {"2026-03-02T10:00"}, "end": {"2026-03-02T10:30"}}},
	{signoutPath, nil},
}

func TestConsoleCSRF(t *testing.T) {
	t.Parallel()
	for _, p := range consolePosts {
		t.Run(p.path, func(t *testing.T) {
			t.Parallel()
			e := newConsoleEnv(t)
			b := e.browser()
			b.signIn(t)
			other := e.browser()
			other.signIn(t)
			clone := func() url.Values {
				f := url.Values{}
				for k, v := range p.form {
					f[k] = slices.Clone(v)
				}
				return f
			}
			for name, token := range map[string]string{"none": "", "garbage": "abc", "another session's": other.csrf} {
				f := clone()
				f.Set(csrfField, token)
				if token == "" {
					f.Del(csrfField)
				}
				w := b.do("POST", p.path, f, "Origin", publicURL)
				if w.Code != http.StatusForbidden {
					t.Errorf("%s CSRF token: %d", name, w.Code)
				}
			}
			if got := e.svc.snapshot(); len(got.syncs)+len(got.reconciles) > 0 {
				t.Errorf("a refused form acted: %+v", got)
			}
			if len(e.svc.retried) > 0 || len(e.svc.links) > 0 {
				t.Error("a refused form acted")
			}
			w := b.post(p.path, clone())
			if w.Code == http.StatusForbidden || w.Code >= 500 {
				t.Errorf("with the CSRF token: %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestAdminOriginChecked(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	b.signIn(t)
	sync := "/admin/console/workspaces/ws-1/calendars/cal-1/sync"
	for name, hdr := range map[string][]string{
		"cross-site origin":     {"Origin", "https://evil.example"},
		"null origin":           {"Origin", "null"},
		"other port":            {"Origin", publicURL + ":8443"},
		"cross-site referer":    {"Origin", "", "Referer", "https://evil.example/page"},
		"no origin nor referer": {"Origin", ""},
	} {
		w := b.do("POST", sync, url.Values{csrfField: {b.csrf}}, hdr...)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
	if n := len(e.svc.snapshot().syncs); n != 0 {
		t.Fatalf("%d syncs from refused requests", n)
	}
	if w := b.do("POST", sync, url.Values{csrfField: {b.csrf}}, "Origin", "", "Referer", publicURL+"/admin/console/workspaces/ws-1"); w.Code != http.StatusSeeOther {
		t.Errorf("same-site referer: %d", w.Code)
	}
	// The JSON API with the cookie needs the CSRF header, and the origin.
	post := func(hdr ...string) int {
		return b.do("POST", "/admin/workspaces/ws-1/calendars/cal-1/sync", nil, append([]string{"Accept", "application/json"}, hdr...)...).Code
	}
	if code := post("Origin", publicURL); code != http.StatusForbidden {
		t.Errorf("JSON POST with the cookie, no CSRF header: %d", code)
	}
	if code := post("Origin", publicURL, csrfHeader, b.csrf); code != http.StatusAccepted {
		t.Errorf("JSON POST with the cookie and CSRF header: %d", code)
	}
	// A script with the bearer token sends no Origin: fine; a browser
	// page replaying it cross-site: refused.
	if w := e.admin("POST", "/admin/workspaces/ws-1/calendars/cal-1/sync", ""); w.Code != http.StatusAccepted {
		t.Errorf("bearer without Origin: %d", w.Code)
	}
	if w := e.admin("POST", "/admin/workspaces/ws-1/calendars/cal-1/sync", "", "Origin", "https://evil.example"); w.Code != http.StatusForbidden {
		t.Errorf("bearer with a cross-site Origin: %d", w.Code)
	}
}

// TestQueuesUICrossSite: a form on another site pausing a queue through
// the Asynq web UI is refused; the same request from the console's origin
// works.
func TestQueuesUICrossSite(t *testing.T) {
	t.Parallel()
	opt := asynq.RedisClientOpt{Addr: testenv.RedisAddr(), DB: testenv.RedisDB(t)}
	e := newConsoleEnv(t, func(c *Config) { c.RedisConnOpt = opt })
	q := "console-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	client := asynq.NewClient(opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(q)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	t.Cleanup(func() { insp.DeleteQueue(q, true) })
	paused := func() bool {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}
	b := e.browser()
	b.signIn(t)
	pause := "/admin/queues/api/queues/" + q + ":pause"
	// A cross-site form: the browser sends its Origin (and, SameSite
	// aside, the cookie).
	for name, hdr := range map[string][]string{
		"cross-site form":   {"Origin", "https://evil.example", "Content-Type", "application/x-www-form-urlencoded"},
		"no origin":         {"Origin", ""},
		"cross-site fetch":  {"Origin", "https://evil.example", "Accept", "application/json"},
		"http basic replay": {"Origin", "https://evil.example", "Authorization", "Basic " + basicOf(adminToken)},
	} {
		w := b.do("POST", pause, url.Values{}, hdr...)
		if w.Code != http.StatusForbidden && w.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
	if paused() {
		t.Fatal("a cross-site request paused the queue")
	}
	// Basic credentials with the right token are refused too.
	basic := e.do("POST", pause, "", "Authorization", "Basic "+basicOf(adminToken))
	if basic.Code != http.StatusUnauthorized || paused() {
		t.Errorf("Basic auth on the queue UI: %d", basic.Code)
	}
	// From the console's origin, with the session: the UI works.
	w := b.do("POST", pause, nil, "Origin", publicURL, "Accept", "application/json")
	if w.Code/100 != 2 || !paused() {
		t.Errorf("pause from the console: %d %s", w.Code, w.Body)
	}
	for _, k := range []string{"X-Frame-Options", "Content-Security-Policy", "X-Content-Type-Options"} {
		if w.Header().Get(k) == "" {
			t.Errorf("queue UI answer without %s", k)
		}
	}
	if page := b.do("GET", "/admin/queues/", nil); page.Code != 200 || page.Header().Get("Content-Security-Policy") != "frame-ancestors 'none'" {
		t.Errorf("queue UI page: %d CSP %q", page.Code, page.Header().Get("Content-Security-Policy"))
	}
}

func basicOf(pass string) string { return base64.StdEncoding.EncodeToString([]byte("admin:" + pass)) }

func TestAdminHeaders(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	b.signIn(t)
	check := func(name string, w *httptest.ResponseRecorder, csp string) {
		t.Helper()
		h := w.Header()
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s (%d): headers %v", name, w.Code, h)
		}
		if csp != "" && !strings.Contains(h.Get("Content-Security-Policy"), csp) {
			t.Errorf("%s: CSP %q lacks %q", name, h.Get("Content-Security-Policy"), csp)
		}
	}
	check("console page", b.do("GET", consoleRoot, nil), "default-src 'none'")
	check("sign-in page", e.do("GET", signinPath, ""), "default-src 'none'")
	check("stylesheet", e.do("GET", assetsPath, ""), "")
	check("JSON", e.admin("GET", "/admin/workspaces/ws-1", ""), "")
	check("401", e.do("GET", "/admin/workspaces/ws-1", ""), "")
	check("404", e.admin("GET", "/admin/nope", ""), "")
	check("405", e.admin("DELETE", "/admin/workspaces", ""), "")
	check("403 origin", b.do("POST", "/admin/console/dead-letters/1/retry", url.Values{csrfField: {b.csrf}}, "Origin", "https://evil.example"), "")
	check("queues 503", e.admin("GET", "/admin/queues/", ""), "")
	if w := e.do("GET", assetsPath, ""); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

// TestConsolePages opens every page and checks what it says.
func TestConsolePages(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	b.signIn(t)
	key := e.svc.meetings["ws-1"][0].Key
	get := func(path string, status int, want ...string) string {
		t.Helper()
		w := b.do("GET", path, nil)
		if w.Code != status {
			t.Fatalf("GET %s: %d, want %d: %s", path, w.Code, status, w.Body)
		}
		body := w.Body.String()
		for _, s := range want {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s lacks %q", path, s)
			}
		}
		if strings.Contains(body, adminToken) {
			t.Errorf("GET %s shows the admin token", path)
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s may be cached", path)
		}
		return body
	}
	if w := b.do("GET", "/admin/", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != consoleRoot {
		t.Errorf("/admin/: %d → %q", w.Code, w.Header().Get("Location"))
	}
	get(consoleRoot, 200, "Northwind", "Other team", "northwind.test", `href="/admin/console/workspaces/ws-1"`)
	ws := get("/admin/console/workspaces/ws-1", 200, "needs re-authorisation", "invalid_grant", "Re-connect", "Sync now", "4711",
		`name="provider" value="google"`, `name="account" value="rep@northwind.test"`, "Run the reconciliation")
	if strings.Index(ws, "<h1>") > strings.Index(ws, "<h2") {
		t.Error("the workspace page's first heading is not its h1")
	}
	get("/admin/console/workspaces/nope", 404, "workspace")
	get("/admin/console/workspaces/boom", 500, "internal error (request")

	// Meetings: the search, and a meeting explained first.
	get("/admin/console/workspaces/ws-1/meetings", 200, `<label for="domain">`)
	get("/admin/console/workspaces/ws-1/meetings?state=logged&rule=customer-meeting&from=2026-03-01&to=2026-03-02", 200,
		"/admin/console/workspaces/ws-1/meetings/"+key, "Acme", "customer-meeting")
	m := get("/admin/console/workspaces/ws-1/meetings/"+key, 200,
		"logged by rule customer-meeting: acme.example matched Acme (company 101); rock3-ventures.example matches no HubSpot company; northwind.test is internal",
		`href="https://app.hubspot.com/contacts/4711/record/0-47/900"`,
		"created in HubSpot", "updated in HubSpot", "2026-03-02 10:00 UTC", "external, no company matches", "primary (organizer)", "The stored trace")
	if i, j := strings.Index(m, "class=\"explanation\""), strings.Index(m, "The decision"); i < 0 || i > j {
		t.Error("the explanation does not come before the trace")
	}
	if strings.Contains(m, "Acme renewal") || strings.Contains(m, "cfo@acme.example") {
		t.Error("the meeting page shows the event's title or addresses unasked")
	}
	get("/admin/console/workspaces/ws-1/meetings/"+key+"?live=1", 200, "Acme renewal", "cfo@acme.example", "not keep")
	get("/admin/console/workspaces/ws-1/meetings/"+e.svc.meetings["ws-1"][1].Key+"?live=1", 200, "could not reach google")
	// Another workspace's meeting is not shown under this one.
	get("/admin/console/workspaces/ws-2/meetings/"+key, 404)
	get("/admin/console/workspaces/ws-1/meetings/not-a-key", 404)

	// Dead letters, in words, with their buttons.
	get("/admin/console/dead-letters", 200, "Write of a meeting to HubSpot", "refused it for good", "validation error",
		`action="/admin/console/dead-letters/1/retry"`, "Retry every open dead letter")
	w := b.post("/admin/console/dead-letters/2/retry", nil)
	if w.Code != http.StatusSeeOther || !e.svc.retried[2] {
		t.Fatalf("retry: %d", w.Code)
	}
	get(w.Header().Get("Location"), 200, "was re-driven")
	w = b.post("/admin/console/dead-letters/2/retry", nil)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "was retried") {
		t.Errorf("second retry: %d", w.Code)
	}
	if w = b.post("/admin/console/dead-letters/99/retry", nil); w.Code != 404 {
		t.Errorf("retry of an unknown dead letter: %d", w.Code)
	}
	w = b.post("/admin/console/dead-letters/retry-all", nil)
	if w.Code != http.StatusSeeOther || !e.svc.retried[1] || !e.svc.retried[3] {
		t.Fatalf("retry all: %d %v", w.Code, e.svc.retried)
	}
	get(w.Header().Get("Location"), 200, "2 dead letters were re-driven")

	// Sync now.
	w = b.post("/admin/console/workspaces/ws-1/calendars/cal-1/sync", nil)
	if w.Code != http.StatusSeeOther || !slices.Equal(e.svc.snapshot().syncs, []string{"ws-1/cal-1"}) {
		t.Fatalf("sync now: %d %v", w.Code, e.svc.snapshot().syncs)
	}
	get(w.Header().Get("Location"), 200, "The sync was queued")
	if w = b.post("/admin/console/workspaces/ws-1/calendars/cal-9/sync", nil); w.Code != 404 {
		t.Errorf("sync of another calendar: %d", w.Code)
	}

	// Re-connect: a connect link, shown.
	w = b.post("/admin/console/workspaces/ws-1/connect-links", url.Values{"provider": {"google"}, "account": {"rep@northwind.test"}})
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), publicURL+"/oauth/google/start?link=") {
		t.Fatalf("connect link: %d %s", w.Code, w.Body)
	}
	for _, l := range e.svc.links {
		if l.Account != "rep@northwind.test" {
			t.Errorf("the link is for %q", l.Account)
		}
	}

	// Reconcile: a dry run, its report, then for real.
	w = b.post("/admin/console/workspaces/ws-1/reconcile", url.Values{"dry_run": {"on"}, "calendar_id": {"cal-1"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("reconcile: %d %s", w.Code, w.Body)
	}
	report := w.Header().Get("Location")
	if body := get(report, 200, "Reconciliation (dry run)", "running", "calendar primary", `http-equiv="refresh"`); strings.Contains(body, "Run it for real") {
		t.Error("a running dry run offers to run for real")
	}
	if rs := e.svc.snapshot().reconciles; len(rs) != 1 || !rs[0].DryRun || rs[0].CalendarID != "cal-1" {
		t.Errorf("reconcile asked %+v", rs)
	}
	get(strings.Replace(report, "/ws-1/", "/ws-2/", 1), 404)
	e.svc.mu.Lock()
	e.svc.runs["run-1"] = pipeline.ReconcileReport{ID: "run-1", Status: "done", Checked: 7, Created: 2, Unchanged: 5, Errors: []string{}}
	e.svc.mu.Unlock()
	get(report, 200, "Would be created", "Run it for real")
	w = b.post("/admin/console/workspaces/ws-1/reconcile", url.Values{"calendar_id": {"cal-1"}})
	if rs := e.svc.snapshot().reconciles; w.Code != http.StatusSeeOther || len(rs) != 2 || rs[1].DryRun {
		t.Errorf("for real: %d %+v", w.Code, rs)
	}

	// Rules: status, the last refused reload, and a try.
	get("/admin/console/rules", 200, strings.Split(rules.Default().Version(), "+")[0], "2026-03-01 08:00 UTC", "refused", "customer-meeting", `<label for="attendees">`)
	w = b.post("/admin/console/rules/try", url.Values{"workspace": {"ws-1"}, "organizer": {"rep@northwind.test"},
		"attendees": {"cfo@acme.example"}, "start": {"2026-03-02T10:00"}, "end": {"2026-03-02T10:30"}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Decision: skip") {
		t.Errorf("try the rules: %d %s", w.Code, w.Body)
	}
}

// TestConsoleFormErrors: bad input answers 400 with the error next to the
// field, and the field marked invalid.
func TestConsoleFormErrors(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	b := e.browser()
	b.signIn(t)
	try := url.Values{"workspace": {"ws-1"}, "organizer": {"rep@northwind.test"}, "start": {"2026-03-02T10:00"}, "end": {"2026-03-02T10:30"}}
	with := func(base url.Values, k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = slices.Clone(vv)
		}
		f.Set(k, v)
		return f
	}
	for _, c := range []struct {
		name, method, path string
		form               url.Values
		field              string
	}{
		{"no provider", "POST", "/admin/console/workspaces/ws-1/connect-links", url.Values{"provider": {"outlook"}}, "provider"},
		{"bad account", "POST", "/admin/console/workspaces/ws-1/connect-links", url.Values{"provider": {"google"}, "account": {"not-an-address"}}, "account"},
		{"bad portal", "POST", "/admin/console/workspaces/ws-1/connect-links", url.Values{"provider": {"hubspot"}, "account": {"12ab"}}, "account"},
		{"foreign calendar", "POST", "/admin/console/workspaces/ws-1/reconcile", url.Values{"calendar_id": {"cal-of-ws-2"}}, "calendar_id"},
		{"bad from", "GET", "/admin/console/workspaces/ws-1/meetings?from=yesterday", nil, "from"},
		{"to before from", "GET", "/admin/console/workspaces/ws-1/meetings?from=2026-03-02&to=2026-03-01", nil, "to"},
		{"bad domain", "GET", "/admin/console/workspaces/ws-1/meetings?domain=cfo%40acme.example", nil, "domain"},
		{"bad state", "GET", "/admin/console/workspaces/ws-1/meetings?state=lost", nil, "state"},
		{"control characters", "GET", "/admin/console/workspaces/ws-1/meetings?company=a%00b", nil, "company"},
		{"no workspace", "POST", "/admin/console/rules/try", with(try, "workspace", ""), "workspace"},
		{"other workspace", "POST", "/admin/console/rules/try", with(try, "workspace", "ws-9"), "workspace"},
		{"bad organizer", "POST", "/admin/console/rules/try", with(try, "organizer", "rep"), "organizer"},
		{"bad attendee", "POST", "/admin/console/rules/try", with(try, "attendees", "cfo@acme.example, nobody"), "attendees"},
		{"bad start", "POST", "/admin/console/rules/try", with(try, "start", "soon"), "start"},
		{"ends first", "POST", "/admin/console/rules/try", with(try, "end", "2026-03-02T09:00"), "end"},
	} {
		var w *httptest.ResponseRecorder
		if c.method == "GET" {
			w = b.do("GET", c.path, nil)
		} else {
			w = b.post(c.path, c.form)
		}
		body := w.Body.String()
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", c.name, w.Code)
			continue
		}
		errAt := strings.Index(body, `id="`+c.field+`-error"`)
		fieldAt := strings.Index(body, `id="`+c.field+`"`)
		if errAt < 0 || fieldAt < 0 || errAt < fieldAt || errAt-fieldAt > 600 {
			t.Errorf("%s: the error is not next to field %s (field at %d, error at %d)", c.name, c.field, fieldAt, errAt)
		}
		if !regexp.MustCompile(`id="` + c.field + `"[^>]*aria-invalid="true"`).MatchString(body) {
			t.Errorf("%s: field %s not marked invalid", c.name, c.field)
		}
	}
	if n := len(e.svc.snapshot().reconciles) + len(e.svc.links); n != 0 {
		t.Errorf("invalid forms acted %d times", n)
	}
}

func TestMeetingJSONExplains(t *testing.T) {
	t.Parallel()
	e := newConsoleEnv(t)
	key := e.svc.meetings["ws-1"][0].Key
	w := e.admin("GET", "/admin/workspaces/ws-1/meetings/"+key, "")
	var got struct {
		Key         string          `json:"meeting_key"`
		Explanation string          `json:"explanation"`
		Trace       json.RawMessage `json:"trace"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &got) != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got.Key != key || len(got.Trace) == 0 ||
		got.Explanation != "logged by rule customer-meeting: acme.example matched Acme (company 101); rock3-ventures.example matches no HubSpot company; northwind.test is internal" {
		t.Errorf("meeting JSON: %+v", got)
	}
	if explainTrace(nil) != "no decision was recorded" || explainTrace(json.RawMessage(`{}`)) != "no decision was recorded" {
		t.Error("an empty trace is not explained as such")
	}
}

// TestOAuthStartWithSession: a console session starts an OAuth flow, as
// the bearer token does; a revoked one does not.
func TestOAuthStartWithSession(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t)
	e := &consoleEnv{env: o.env}
	b := e.browser()
	// The env's public URL is the test server's.
	b.e.t = t
	pub := o.srv.URL
	w := b.do("GET", signinPath, nil)
	w = b.do("POST", signinPath, url.Values{"token": {adminToken}, "csrf": {formCSRF(w.Body.String())}}, "Origin", pub)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", w.Code, w.Body)
	}
	start := func() int {
		return b.do("GET", "/oauth/hubspot/start?workspace=ws-1", nil).Code
	}
	if code := start(); code != http.StatusFound {
		t.Fatalf("start with a session: %d", code)
	}
	delete(b.cookies, sessionCookie)
	if code := start(); code != http.StatusUnauthorized {
		t.Errorf("start without a session: %d", code)
	}
}

// The fake's providers: HubSpot's adapter describes its records.
func (f *consoleFake) Providers() (calendars, crms []string) {
	return []string{"calendly", "google", "microsoft"}, []string{"hubspot"}
}

func (f *consoleFake) CRMTitle() string { return hubspot.Provider{}.Title() }

func (f *consoleFake) MeetingURL(provider, account, id string) string {
	if provider != "hubspot" {
		return ""
	}
	return hubspot.Provider{}.MeetingURL(account, id)
}
