package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/internal/testenv"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// liveApp is Rapport wired as `rapport run` wires it (internal/app), on
// this test binary's PostgreSQL database and Redis index, against the fake
// Google Calendar and HubSpot, serving HTTP on a loopback port.
type liveApp struct {
	t      *testing.T
	app    *app.App
	google *calendartest.Server
	hub    *crmtest.Server
	base   string
	token  string
	http   *http.Client
}

func startLiveApp(t *testing.T) *liveApp {
	t.Helper()
	testenv.Redis(t) // empties this binary's Redis index
	l := &liveApp{t: t, google: calendartest.NewServer(), hub: crmtest.NewServer(crmtest.Options{Limit: -1, SearchPerSecond: -1}),
		http: &http.Client{Timeout: 30 * time.Second}}
	t.Cleanup(func() {
		l.google.SetAutoNotify(false)
		l.google.Close()
		l.hub.Close()
	})
	key, tok := make([]byte, 32), make([]byte, 16)
	rand.Read(key)
	rand.Read(tok)
	l.token = hex.EncodeToString(tok)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.base = "http://" + ln.Addr().String()
	env := map[string]string{
		"RAPPORT_DATABASE_URL":       testenv.DSN(t),
		"RAPPORT_REDIS_URL":          fmt.Sprintf("redis://%s/%d", testenv.RedisAddr(), testenv.RedisDB(t)),
		"RAPPORT_HTTP_ADDR":          ln.Addr().String(),
		"RAPPORT_PUBLIC_URL":         l.base,
		"RAPPORT_ADMIN_TOKEN":        l.token,
		"RAPPORT_ENCRYPTION_KEYS":    "k1:" + base64.StdEncoding.EncodeToString(key),
		"RAPPORT_GOOGLE_API_URL":     l.google.URL(),
		"RAPPORT_HUBSPOT_API_URL":    l.hub.URL(),
		"RAPPORT_HUBSPOT_RATE_LIMIT": "1000/1s",
		"RAPPORT_LOG_FORMAT":         "text",
		"RAPPORT_LOG_LEVEL":          "warn",
	}
	fs := flag.NewFlagSet("console-test", flag.ContinueOnError)
	load := app.BindConfig(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	var logOut io.Writer = io.Discard
	if os.Getenv("RAPPORT_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.app, err = app.New(ctx, cfg, slog.New(slog.NewTextHandler(logOut, nil)), app.Options{})
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("app: %v", err)
	}
	w := l.app.Pipeline.NewWorker()
	if err := w.Start(ctx); err != nil {
		cancel()
		ln.Close()
		l.app.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := l.app.ServeListener(ctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		w.Shutdown()
		l.app.Close()
	})
	return l
}

// admin calls the admin API with the bearer token.
func (l *liveApp) admin(method, path string, in, out any) {
	l.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, l.base+path, body)
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := l.http.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		l.t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			l.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// eventually polls cond until it holds; the deadline is a safety net.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// artifactsDir is where the screenshots go: RAPPORT_TEST_ARTIFACTS, else
// the test's temporary directory.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("RAPPORT_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const (
	rep    = "rep@northwind.test"
	cfo    = "cfo@acme.example"
	rock3  = "partner@rock3-ventures.example"
	wsName = "Northwind"
)

// TestConsoleInBrowser drives the console in Debian's chromium against a
// real Rapport: sign in (by keyboard), open every page, follow the explain
// flow of a logged and a skipped meeting, press retry on a dead letter,
// run a dry-run reconciliation and read its report, try the rules, read a
// meeting on a phone-sized screen, open the queue UI, sign out.
func TestConsoleInBrowser(t *testing.T) {
	l := startLiveApp(t)
	browser := startChromium(t)
	dir := artifactsDir(t)
	t.Logf("screenshots in %s", dir)

	// A workspace with HubSpot (one company) and one Google calendar: a
	// meeting with Acme (logged) and one with a domain no company has
	// (skipped).
	acme := l.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	if err := l.google.AddCalendar(rep, "UTC"); err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Truncate(time.Hour).Add(26 * time.Hour)
	for _, ev := range []calendartest.EventSpec{
		{Summary: "Acme renewal", Start: start, End: start.Add(30 * time.Minute), Attendees: []calendartest.Attendee{
			{Email: rep, ResponseStatus: "accepted"}, {Email: cfo, ResponseStatus: "accepted"}}},
		{Summary: "Intro with Rock3", Start: start.Add(3 * time.Hour), End: start.Add(4 * time.Hour), Attendees: []calendartest.Attendee{
			{Email: rep, ResponseStatus: "accepted"}, {Email: rock3, ResponseStatus: "accepted"}}},
	} {
		if _, err := l.google.Insert(rep, ev); err != nil {
			t.Fatal(err)
		}
	}
	var ws pipeline.Workspace
	l.admin("POST", "/admin/workspaces", map[string]any{"name": wsName, "internal_domains": []string{"northwind.test"}}, &ws)
	exp := time.Now().Add(24 * time.Hour)
	l.admin("POST", "/admin/workspaces/"+ws.ID+"/connections", pipeline.ConnectionInput{Provider: "hubspot", AccessToken: "hub-at", RefreshToken: "hub-rt", ExpiresAt: exp}, nil)
	eventually(t, "the company index", func() bool {
		var st pipeline.WorkspaceStatus
		l.admin("GET", "/admin/workspaces/"+ws.ID, nil, &st)
		return st.Index.LoadedAt != nil
	})
	var conn pipeline.Connection
	l.admin("POST", "/admin/workspaces/"+ws.ID+"/connections", pipeline.ConnectionInput{Provider: "google", AccountEmail: rep,
		AccessToken: "g-at", RefreshToken: "g-rt", ExpiresAt: exp, CalendarIDs: []string{rep}}, &conn)
	eventually(t, "the Acme meeting logged and the calendar synced", func() bool {
		var logged, skipped struct{ Items []pipeline.MeetingEntry }
		l.admin("GET", "/admin/workspaces/"+ws.ID+"/meetings?state=logged", nil, &logged)
		l.admin("GET", "/admin/workspaces/"+ws.ID+"/meetings?state=skipped", nil, &skipped)
		var cals []pipeline.CalendarStatus
		l.admin("GET", "/admin/workspaces/"+ws.ID+"/calendars", nil, &cals)
		return len(logged.Items) == 1 && len(skipped.Items) == 1 && len(cals) == 1 && cals[0].LastSyncedAt != nil
	})
	var logged struct{ Items []pipeline.MeetingEntry }
	l.admin("GET", "/admin/workspaces/"+ws.ID+"/meetings?state=logged", nil, &logged)
	crmID := logged.Items[0].CRMMeetingID

	// A sync that ran out of retries while Google was down: a dead letter.
	if err := ledger.New(l.app.Pool).AddDeadLetter(context.Background(), ledger.NewDeadLetter{
		WorkspaceID: ws.ID, TaskType: pipeline.TaskSync, TaskID: "console-test-sync", Queue: pipeline.QueueSync,
		Ref: map[string]any{"calendar_id": conn.Calendars[0]}, Class: plan.DeadExhausted,
		Reason: "could not reach google: 503 Service Unavailable",
	}); err != nil {
		t.Fatal(err)
	}

	tb := browser.newTab(dir)

	// Sign in, by keyboard: a wrong token first.
	tb.navigate(l.base + "/admin/console/")
	if !strings.Contains(tb.url(), "/admin/signin?next=") {
		t.Fatalf("without a session the console opened %s", tb.url())
	}
	tb.screenshot("signin")
	var focused string
	tb.eval(`document.activeElement.id`, &focused)
	if focused != "token" {
		t.Errorf("the sign-in page's focus is on %q, want the token field", focused)
	}
	tb.fill("#token", "not-the-token")
	tb.pressEnter()
	if got := tb.text("#token-error"); !strings.Contains(got, "not the admin token") {
		t.Errorf("a wrong token says %q", got)
	}
	if tb.attr("#token", "aria-invalid") != "true" {
		t.Error("the token field is not marked invalid")
	}
	tb.screenshot("signin-wrong-token")
	tb.fill("#token", l.token)
	tb.pressEnter()
	if !strings.HasSuffix(tb.url(), "/admin/console/") || !strings.Contains(tb.text("main"), wsName) {
		t.Fatalf("after sign-in: %s: %q", tb.url(), tb.text("main"))
	}
	tb.screenshot("workspaces")
	// The first Tab stop skips to the content.
	tb.key("Tab", 9)
	tb.eval(`document.activeElement.className`, &focused)
	if focused != "skip" {
		t.Errorf("the first Tab stop is %q, want the skip link", focused)
	}

	// The workspace: connections and calendars at a glance.
	tb.click(`a[href="/admin/console/workspaces/` + ws.ID + `"]`)
	page := tb.text("main")
	for _, want := range []string{"hubspot · " + l.hub.PortalID(), "google · " + rep, "connected", "synced", "Sync now", "Re-connect"} {
		if !strings.Contains(page, want) {
			t.Errorf("workspace page lacks %q:\n%s", want, page)
		}
	}
	tb.screenshot("workspace")
	tb.click(`form[action$="/sync"] button`)
	if got := tb.text(".notice"); !strings.Contains(got, "The sync was queued") {
		t.Errorf("sync now: %q", got)
	}
	// A connect link to re-connect the calendar.
	tb.click(`form[action$="/connect-links"] input[value="` + rep + `"] ~ button`)
	if link := tb.attr("#link-url", "value"); !strings.HasPrefix(link, l.base+"/oauth/google/start?") {
		t.Errorf("re-connect link %q", link)
	}
	tb.screenshot("connect-link")

	// The explain flow: search by domain, open the meeting, read why.
	tb.navigate(l.base + "/admin/console/workspaces/" + ws.ID + "/meetings")
	tb.fill("#domain", "acme.example")
	tb.pressEnter()
	tb.screenshot("meetings-acme")
	tb.click(`table a[href*="/meetings/"]`)
	why := tb.text(".explanation")
	if want := "logged by rule customer-meeting: acme.example matched Acme (company " + acme + "); northwind.test is internal"; why != want {
		t.Errorf("explanation %q, want %q", why, want)
	}
	if href := tb.attr(`a[href^="https://app.hubspot.com/"]`, "href"); href != "https://app.hubspot.com/contacts/"+l.hub.PortalID()+"/record/0-47/"+crmID {
		t.Errorf("HubSpot link %q", href)
	}
	if hist := tb.text("ol.history"); !strings.Contains(hist, "created in HubSpot") {
		t.Errorf("history %q", hist)
	}
	if body := tb.text("main"); strings.Contains(body, "Acme renewal") || strings.Contains(body, cfo) {
		t.Error("the meeting page shows a title or an address from the ledger")
	}
	tb.screenshot("meeting-logged")
	meetingURL := tb.url()
	// The title and attendees, read live from the calendar on request.
	tb.click(`a[href^="?live=1"]`)
	if live := tb.text("main"); !strings.Contains(live, "Acme renewal") || !strings.Contains(live, cfo) {
		t.Errorf("the live event is not shown:\n%s", live)
	}
	tb.screenshot("meeting-live-event")
	// The same page on a phone: no sideways scrolling.
	tb.viewport(390, 844, true)
	tb.navigate(meetingURL)
	var wide bool
	tb.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &wide)
	if wide {
		t.Error("the meeting page scrolls sideways on a phone")
	}
	tb.screenshot("meeting-phone")
	tb.viewport(1280, 900, false)

	tb.navigate(l.base + "/admin/console/workspaces/" + ws.ID + "/meetings?state=skipped")
	tb.click(`table a[href*="/meetings/"]`)
	if why := tb.text(".explanation"); why != "skipped: rock3-ventures.example is external but matches no HubSpot company; northwind.test is internal" {
		t.Errorf("skipped meeting's explanation %q", why)
	}
	tb.screenshot("meeting-skipped")

	// Bad input answers next to the field.
	tb.navigate(l.base + "/admin/console/workspaces/" + ws.ID + "/meetings?domain=cfo@acme.example")
	if got := tb.text("#domain-error"); !strings.Contains(got, "Enter a domain") {
		t.Errorf("a bad domain says %q", got)
	}

	// Dead letters: in words, then retried.
	tb.navigate(l.base + "/admin/console/dead-letters")
	if page := tb.text("main"); !strings.Contains(page, "Sync of a calendar") || !strings.Contains(page, "retries ran out") {
		t.Errorf("dead letters page:\n%s", page)
	}
	tb.screenshot("dead-letters")
	tb.click(`form[action$="/retry"] button`)
	if got := tb.text(".notice"); !strings.Contains(got, "re-driven") || !strings.Contains(tb.text("main"), "Retried") {
		t.Errorf("after retry: %q", got)
	}
	tb.screenshot("dead-letter-retried")
	var dls struct{ Items []pipeline.DeadLetter }
	l.admin("GET", "/admin/dead-letters", nil, &dls)
	if len(dls.Items) != 1 || dls.Items[0].RetriedAt == nil {
		t.Errorf("dead letters after retry: %+v", dls.Items)
	}

	// Reconciliation: a dry run (the default), read when done.
	tb.navigate(l.base + "/admin/console/workspaces/" + ws.ID)
	var dry bool
	tb.eval(`document.querySelector("#dry_run").checked`, &dry)
	if !dry {
		t.Error("the reconciliation form is not a dry run by default")
	}
	tb.click(`form[action$="/reconcile"] button`)
	for !strings.Contains(tb.text("main"), "Status: done") {
		if strings.Contains(tb.text("main"), "Status: failed") {
			t.Fatalf("reconciliation failed:\n%s", tb.text("main"))
		}
		tb.waitLoad("the report page's refresh") // it reloads itself while running
	}
	if page := tb.text("main"); !strings.Contains(page, "Reconciliation (dry run)") || !strings.Contains(page, "Run it for real") || !strings.Contains(page, "Meetings checked") {
		t.Errorf("dry-run report:\n%s", page)
	}
	tb.screenshot("reconcile-dry-run")

	// Rules: the set in force, and a try.
	tb.navigate(l.base + "/admin/console/rules")
	tb.setValue("#workspace", ws.ID)
	tb.fill("#organizer", rep)
	tb.fill("#attendees", cfo+", pal@gmail.com")
	tb.fill("#title", "Renewal")
	tb.click(`form[action$="/rules/try"] button`)
	if got := tb.text(".result"); !strings.Contains(got, "Decision: log by customer-meeting") || !strings.Contains(got, "acme.example matched Acme") {
		t.Errorf("try the rules:\n%s", got)
	}
	tb.screenshot("rules-try")
	var after int
	l.app.Pool.QueryRow(context.Background(), `SELECT count(*) FROM meetings WHERE workspace_id = $1`, ws.ID).Scan(&after)
	if after != 2 {
		t.Errorf("the ledger holds %d meetings after trying the rules, want 2", after)
	}

	// The queue UI opens with the session.
	tb.navigate(l.base + "/admin/queues/")
	if u := tb.url(); !strings.Contains(u, "/admin/queues") {
		t.Errorf("queue UI: %s", u)
	}
	tb.screenshot("queues")

	if errs := tb.securityErrors(); len(errs) > 0 {
		t.Errorf("the browser blocked content:\n%s", strings.Join(errs, "\n"))
	}

	// Sign out: back to the sign-in page, the console closed.
	tb.navigate(l.base + "/admin/console/")
	tb.click(`form[action="/admin/signout"] button`)
	if !strings.Contains(tb.url(), "/admin/signin") {
		t.Errorf("after sign-out: %s", tb.url())
	}
	tb.navigate(l.base + "/admin/console/dead-letters")
	if !strings.Contains(tb.url(), "/admin/signin?next=") {
		t.Errorf("the console still opens after sign-out: %s", tb.url())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 10 {
		t.Errorf("%d screenshots in %s", len(entries), dir)
	}

}
