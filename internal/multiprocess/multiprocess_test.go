package multiprocess_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/internal/testenv"
)

// bin is the rapport binary, built once for the package's tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rapport-multiprocess-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "rapport")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rapportsync/rapport/cmd/rapport").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testenv.AtExit(func() { os.RemoveAll(dir) })
	testenv.Main(m)
}

// proc is one rapport subprocess.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cluster is Rapport as separate processes against the fakes.
type cluster struct {
	t      *testing.T
	ctx    context.Context
	env    []string
	base   string // serve's URL
	token  string
	pool   *pgxpool.Pool
	google *calendartest.Server
	hub    *crmtest.Server
	procs  []*proc
	ws     string
}

const syncEvery = 1500 * time.Millisecond

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &cluster{t: t, ctx: ctx, token: "multiprocess-admin-token"}
	dsn := testenv.NewDatabaseURL(t)
	db := testenv.RedisDB(t)
	testenv.Redis(t) // empties it
	c.google = calendartest.NewServer()
	t.Cleanup(c.google.Close)
	c.hub = crmtest.NewServer(crmtest.Options{Limit: -1, SearchPerSecond: -1, Latency: 150 * time.Millisecond})
	t.Cleanup(c.hub.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c.base = "http://" + addr
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(7 * i)
	}
	c.env = []string{
		"RAPPORT_DATABASE_URL=" + dsn,
		"RAPPORT_REDIS_URL=redis://" + testenv.RedisAddr() + "/" + strconv.Itoa(db),
		"RAPPORT_HTTP_ADDR=" + addr,
		"RAPPORT_PUBLIC_URL=" + c.base,
		"RAPPORT_ADMIN_TOKEN=" + c.token,
		"RAPPORT_ENCRYPTION_KEYS=k1:" + base64.StdEncoding.EncodeToString(key),
		"RAPPORT_RULES_DIR=",
		"RAPPORT_GOOGLE_API_URL=" + c.google.URL(),
		"RAPPORT_HUBSPOT_API_URL=" + c.hub.URL(),
		"RAPPORT_HUBSPOT_RATE_LIMIT=1000/1s",
		"RAPPORT_LOG_FORMAT=text",
		"RAPPORT_LOG_LEVEL=" + logLevel(),
		"RAPPORT_SYNC_EVERY=" + syncEvery.String(),
		"RAPPORT_SWEEP_EVERY=500ms",
		"RAPPORT_SWEEP_GRACE=2s",
		"RAPPORT_CRM_SEARCH_LAG=2s", // the fake's search has no lag
	}
	if out, err := c.command("migrate").CombinedOutput(); err != nil {
		t.Fatalf("rapport migrate: %v\n%s", err, out)
	}
	if c.pool, err = pgxpool.New(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.pool.Close)
	return c
}

func (c *cluster) command(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

// start runs a rapport command as a subprocess, killed when the test ends.
func (c *cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, cmd: c.command(args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	c.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if c.t.Failed() {
			n := 3000
			if os.Getenv("RAPPORT_TEST_LOG") != "" {
				n = 1 << 30
			}
			c.t.Logf("--- output of %s (%s):\n%s", p.name, p.err, tail(p.out.String(), n))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// eventually polls cond; the deadline is a safety net, not a timing.
func (c *cluster) eventually(what string, limit time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// admin calls the admin API of `rapport serve`.
func (c *cluster) admin(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

const (
	employees   = 4
	perCalendar = 50
)

func employee(i int) string { return fmt.Sprintf("e%d@northwind.test", i) }

// seed fills the fake calendars: customer meetings with Acme on every
// employee's calendar.
func (c *cluster) seed(from, n int) {
	c.t.Helper()
	base := time.Now().UTC().Truncate(time.Hour).Add(-20 * 24 * time.Hour)
	for e := range employees {
		for i := from; i < from+n; i++ {
			s := base.Add(time.Duration(i*employees+e) * 2 * time.Hour)
			if _, err := c.google.Insert(employee(e), calendartest.EventSpec{Summary: fmt.Sprintf("Acme call %d-%d", e, i), Start: s, End: s.Add(30 * time.Minute),
				Attendees: []calendartest.Attendee{{Email: employee(e), ResponseStatus: "accepted"}, {Email: fmt.Sprintf("buyer%d-%d@acme.example", e, i), ResponseStatus: "accepted"}}}); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

// connect creates the workspace and imports HubSpot and the calendars
// through serve's admin API.
func (c *cluster) connect() {
	c.t.Helper()
	var ws struct{ ID string }
	if err := c.admin("POST", "/admin/workspaces", map[string]any{"name": "Northwind", "internal_domains": []string{"northwind.test"}}, &ws); err != nil {
		c.t.Fatal(err)
	}
	c.ws = ws.ID
	exp := time.Now().Add(24 * time.Hour)
	if err := c.admin("POST", "/admin/workspaces/"+c.ws+"/connections", map[string]any{"provider": "hubspot", "access_token": "hub", "refresh_token": "r", "expires_at": exp}, nil); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("the company index", time.Minute, func() bool {
		var st struct {
			Index struct {
				LoadedAt *time.Time `json:"loaded_at"`
			} `json:"company_index"`
		}
		return c.admin("GET", "/admin/workspaces/"+c.ws, nil, &st) == nil && st.Index.LoadedAt != nil
	})
	for e := range employees {
		if err := c.admin("POST", "/admin/workspaces/"+c.ws+"/connections", map[string]any{"provider": "google", "account_email": employee(e),
			"access_token": "tok-" + employee(e), "refresh_token": "r", "expires_at": exp, "calendar_ids": []string{employee(e)}}, nil); err != nil {
			c.t.Fatal(err)
		}
	}
}

// settled says what is still owed, or "" when every expected meeting is in
// HubSpot once, every copy is linked and no dead letter is open.
func (c *cluster) settled(want int) string {
	var owed, logged, unlinked, dead int
	c.pool.QueryRow(c.ctx, `SELECT count(*) FILTER (WHERE state IN ('pending', 'creating', 'failed') OR (state IN ('logged', 'cancelled') AND desired_hash IS DISTINCT FROM owned_hash)),
		count(*) FILTER (WHERE state = 'logged') FROM meetings`).Scan(&owed, &logged)
	c.pool.QueryRow(c.ctx, `SELECT count(*) FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE m.state = 'logged' AND c.status <> 'cancelled' AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id`).Scan(&unlinked)
	c.pool.QueryRow(c.ctx, `SELECT count(*) FROM dead_letters WHERE retried_at IS NULL`).Scan(&dead)
	keys := map[string]int{}
	for _, m := range c.hub.Meetings() {
		keys[m.Properties[crm.PropKey]]++
	}
	for k, n := range keys {
		if n > 1 {
			c.t.Fatalf("meeting %s written %d times", k, n)
		}
	}
	switch {
	case dead > 0:
		c.t.Fatalf("%d dead letters", dead)
	case logged != want || len(keys) != want:
		return fmt.Sprintf("%d meetings logged, %d in HubSpot, want %d", logged, len(keys), want)
	case owed > 0:
		return fmt.Sprintf("%d writes owed", owed)
	case unlinked > 0:
		return fmt.Sprintf("%d copies unlinked", unlinked)
	}
	return ""
}

func (c *cluster) waitSettled(what string, want int) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(75 * time.Second)
	for {
		last := c.settled(want)
		if last == "" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dirty reads every calendar's dirty counter: the sync schedule adds one
// per calendar per run.
func (c *cluster) dirty() map[string]int64 {
	rows, err := c.pool.Query(c.ctx, `SELECT id::text, dirty FROM calendars`)
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var n int64
		rows.Scan(&id, &n)
		out[id] = n
	}
	return out
}

// TestManyProcesses runs `rapport serve` and `rapport worker` processes on
// one database and one Redis: a worker killed with SIGKILL mid-backfill
// loses and doubles nothing; the sync schedule runs once per period with
// two workers ticking; a worker stopped with SIGTERM while it writes exits
// within 30 s, and what it held is finished by the others.
func TestManyProcesses(t *testing.T) {
	c := newCluster(t)
	c.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example"}})
	for e := range employees {
		if err := c.google.AddCalendar(employee(e), "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
	}
	c.seed(0, perCalendar)
	c.google.SetAutoNotify(true)
	serve := c.start("serve", "serve")
	c.eventually("serve ready", 30*time.Second, func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	w1 := c.start("worker 1", "worker")
	c.start("worker 2", "worker")
	c.connect()

	// SIGKILL one worker as soon as the backfill writes to HubSpot.
	deadline := time.Now().Add(time.Minute)
	for c.hub.Calls()["meetings.batch.create"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no batch create within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	killedWith := len(c.hub.Meetings())
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w1.done
	want := employees * perCalendar
	took := c.waitSettled("the backfill after SIGKILL", want)
	t.Logf("SIGKILL of a worker with %d of %d meetings in HubSpot: settled %v later", killedWith, want, took.Round(100*time.Millisecond))

	// A replacement worker: two tick the schedules. The sync schedule marks
	// every calendar dirty once per run; over several periods each
	// calendar's counter grows by about one per period, not two.
	w3 := c.start("worker 3", "worker")
	before := c.dirty()
	t0 := time.Now()
	const periods = 6
	c.eventually("six sync periods", time.Minute, func() bool { return time.Since(t0) >= periods*syncEvery })
	after := c.dirty()
	elapsed := time.Since(t0)
	for id, n := range after {
		runs := n - before[id]
		max := int64(elapsed/syncEvery) + 2
		if runs < periods/2 || runs > max {
			t.Errorf("calendar %s marked dirty %d times in %v (sync every %v, two workers), want one run per period (at most %d)", id, runs, elapsed.Round(time.Millisecond), syncEvery, max)
		}
	}

	// SIGTERM a worker while new meetings are written: it finishes or hands
	// back its work within 30 s; the other finishes everything.
	w2 := c.procs[2]
	hubBefore := len(c.hub.Meetings())
	c.seed(perCalendar, perCalendar)
	c.eventually("the new meetings reaching HubSpot", time.Minute, func() bool { return len(c.hub.Meetings()) > hubBefore })
	term := time.Now()
	if err := w2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w2.done:
	case <-time.After(35 * time.Second):
		t.Fatalf("worker 2 still running 35 s after SIGTERM")
	}
	stopped := time.Since(term)
	if stopped > 30*time.Second {
		t.Errorf("worker 2 took %v to stop after SIGTERM, want under 30 s", stopped)
	}
	if w2.err != nil {
		t.Errorf("worker 2 exited with %v after SIGTERM, want 0", w2.err)
	}
	took = c.waitSettled("the meetings after SIGTERM", 2*want)
	t.Logf("SIGTERM of a worker while writing: it stopped in %v; everything settled %v later", stopped.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	for _, p := range []*proc{serve, w3} {
		select {
		case <-p.done:
			t.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
	}
	if strings.Contains(serve.out.String(), "panic") {
		t.Error("serve panicked")
	}
}

// logLevel of the subprocesses: RAPPORT_TEST_LOG=debug shows every task.
func logLevel() string {
	if l := os.Getenv("RAPPORT_TEST_LOG"); l != "" {
		return l
	}
	return "info"
}
