package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/testenv"
)

// probe is one request and the statuses that may answer it.
type probe struct {
	name         string
	method, path string
	body         string
	header       []string // pairs
	admin        bool
	want         []int
}

// TestAttackSurface sends the probes of issue 16 to a real `rapport run` on
// loopback and checks each answer, that no 4xx answer shows a socket
// address or internal error text, and that nothing was queued or stored.
func TestAttackSurface(t *testing.T) {
	p := start(t)
	code, body := p.admin(t, "POST", "/admin/workspaces", `{"name":"Probe","internal_domains":["northwind.test"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create workspace: %d %s", code, body)
	}
	var ws struct{ ID string }
	json.Unmarshal([]byte(body), &ws)
	w := "/admin/workspaces/" + ws.ID
	key := strings.Repeat("ab", 32)
	uuid := "00000000-0000-4000-8000-000000000000"
	long := strings.Repeat("n", 201)
	domains := make([]string, 51)
	for i := range domains {
		domains[i] = fmt.Sprintf("%q", fmt.Sprintf("d%d.example", i))
	}
	ids := make([]string, 501)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprintf("c%d@northwind.test", i))
	}
	huge := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	googleConn := func(extra string) string {
		return `{"provider":"google","account_email":"rep@northwind.test","access_token":"t","refresh_token":"r"` + extra + `}`
	}

	probes := []probe{
		{name: "healthz", method: "GET", path: "/healthz", want: []int{200}},
		{name: "readyz", method: "GET", path: "/readyz", want: []int{200}},
		{name: "metrics", method: "GET", path: "/metrics", want: []int{200}},
		{name: "unknown route", method: "GET", path: "/nope", want: []int{404}},

		// Admin without or with a wrong token.
		{name: "admin without token", method: "GET", path: w, want: []int{401}},
		{name: "admin wrong token", method: "GET", path: w, header: []string{"Authorization", "Bearer " + adminToken + "x"}, want: []int{401}},
		{name: "admin token with space", method: "GET", path: w, header: []string{"Authorization", "Bearer  " + adminToken + " "}, want: []int{200}},
		{name: "queues basic", method: "POST", path: "/admin/queues/api/queues/sync:pause", header: []string{"Authorization", "Basic eDp4"}, want: []int{401}},

		// Malformed ids in paths and queries.
		{name: "workspace NUL", admin: true, method: "GET", path: "/admin/workspaces/%00", want: []int{400}},
		{name: "workspace bad UTF-8", admin: true, method: "GET", path: "/admin/workspaces/%FF%FE", want: []int{400}},
		{name: "workspace control", admin: true, method: "GET", path: "/admin/workspaces/a%0Ab", want: []int{400}},
		{name: "workspace not a uuid", admin: true, method: "GET", path: "/admin/workspaces/nope", want: []int{404}},
		{name: "workspace unknown", admin: true, method: "GET", path: "/admin/workspaces/" + uuid, want: []int{404}},
		{name: "workspace very long", admin: true, method: "GET", path: "/admin/workspaces/" + strings.Repeat("a", 5000), want: []int{400}},
		{name: "calendars NUL", admin: true, method: "GET", path: "/admin/workspaces/%00/calendars", want: []int{400}},
		{name: "sync NUL", admin: true, method: "POST", path: w + "/calendars/%00/sync", want: []int{400}},
		{name: "sync bad UTF-8", admin: true, method: "POST", path: w + "/calendars/%C3%28/sync", want: []int{400}},
		{name: "sync unknown", admin: true, method: "POST", path: w + "/calendars/" + uuid + "/sync", want: []int{404}},
		{name: "meeting NUL", admin: true, method: "GET", path: w + "/meetings/%00", want: []int{400}},
		{name: "meeting unknown", admin: true, method: "GET", path: w + "/meetings/" + key, want: []int{404}},
		{name: "meetings after NUL", admin: true, method: "GET", path: w + "/meetings?after=%00", want: []int{400}},
		{name: "meetings bad cursor", admin: true, method: "GET", path: w + "/meetings?after=zzz", want: []int{400}},
		{name: "meetings bad state", admin: true, method: "GET", path: w + "/meetings?state=%FF", want: []int{400}},
		{name: "dead letter NUL", admin: true, method: "POST", path: "/admin/dead-letters/%00/retry", want: []int{400}},
		{name: "dead letter not a number", admin: true, method: "POST", path: "/admin/dead-letters/abc/retry", want: []int{400}},
		{name: "dead letter unknown", admin: true, method: "POST", path: "/admin/dead-letters/999999/retry", want: []int{404}},
		{name: "reconcile run NUL", admin: true, method: "GET", path: "/admin/reconcile/%00", want: []int{400}},
		{name: "reconcile run unknown", admin: true, method: "GET", path: "/admin/reconcile/" + uuid, want: []int{404}},

		// JSON bodies.
		{name: "workspace name NUL", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a\u0000b","internal_domains":["acme.test"]}`, want: []int{400}},
		{name: "workspace name bad UTF-8", admin: true, method: "POST", path: "/admin/workspaces", body: "{\"name\":\"a\xffb\",\"internal_domains\":[\"acme.test\"]}", want: []int{400}},
		{name: "workspace domain NUL", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a","internal_domains":["acme.test\u0000"]}`, want: []int{400}},
		{name: "workspace name too long", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"` + long + `","internal_domains":["acme.test"]}`, want: []int{400}},
		{name: "workspace 51 domains", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a","internal_domains":[` + strings.Join(domains, ",") + `]}`, want: []int{400}},
		{name: "workspace free mail", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a","internal_domains":["gmail.com"]}`, want: []int{400}},
		{name: "workspace unknown field", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a","internal_domains":["acme.test"],"admin":true}`, want: []int{400}},
		{name: "workspace trailing data", admin: true, method: "POST", path: "/admin/workspaces", body: `{"name":"a","internal_domains":["acme.test"]} {}`, want: []int{400}},
		{name: "workspace empty body", admin: true, method: "POST", path: "/admin/workspaces", want: []int{400}},
		{name: "workspace huge body", admin: true, method: "POST", path: "/admin/workspaces", body: huge, want: []int{413}},
		{name: "connection 501 calendars", admin: true, method: "POST", path: w + "/connections", body: googleConn(`,"calendar_ids":[` + strings.Join(ids, ",") + `]`), want: []int{400}},
		{name: "connection calendar NUL", admin: true, method: "POST", path: w + "/connections", body: googleConn(`,"calendar_ids":["a\u0000"]`), want: []int{400}},
		{name: "connection token NUL", admin: true, method: "POST", path: w + "/connections", body: `{"provider":"hubspot","access_token":"a\u0000"}`, want: []int{400}},
		{name: "connection unknown provider", admin: true, method: "POST", path: w + "/connections", body: `{"provider":"outlook","access_token":"a"}`, want: []int{400}},
		{name: "connection outside account", admin: true, method: "POST", path: w + "/connections",
			body: `{"provider":"google","account_email":"eve@evil.example","access_token":"t","calendar_ids":["eve@evil.example"]}`, want: []int{403}},
		{name: "connection to unknown workspace", admin: true, method: "POST", path: "/admin/workspaces/" + uuid + "/connections", body: googleConn(""), want: []int{404}},
		{name: "connect link NUL", admin: true, method: "POST", path: w + "/connect-links", body: `{"provider":"google","account":"\u0000"}`, want: []int{400}},
		{name: "reconcile NUL", admin: true, method: "POST", path: "/admin/reconcile", body: `{"workspace_id":"` + ws.ID + `\u0000"}`, want: []int{400}},
		{name: "reconcile wait NUL", admin: true, method: "POST", path: "/admin/reconcile?wait=true", body: `{"workspace_id":"` + ws.ID + `","calendar_id":"\u0000"}`, want: []int{400}},
		{name: "reconcile unknown calendar", admin: true, method: "POST", path: "/admin/reconcile?wait=true", body: `{"workspace_id":"` + ws.ID + `","calendar_id":"` + uuid + `"}`, want: []int{404}},

		// OAuth starts without a connect link or an admin.
		{name: "oauth google without link", method: "GET", path: "/oauth/google/start?workspace=" + ws.ID, want: []int{401}},
		{name: "oauth microsoft without link", method: "GET", path: "/oauth/microsoft/start?workspace=" + ws.ID, want: []int{401}},
		{name: "oauth calendly without link", method: "GET", path: "/oauth/calendly/start?workspace=" + ws.ID, want: []int{401}},
		{name: "oauth hubspot without link", method: "GET", path: "/oauth/hubspot/start?workspace=" + ws.ID, want: []int{401}},
		{name: "oauth forged link", method: "GET", path: "/oauth/hubspot/start?workspace=" + ws.ID + "&link=eyJpIjoieCJ9.c2ln", want: []int{403}},
		{name: "oauth workspace NUL", method: "GET", path: "/oauth/google/start?workspace=%00", want: []int{400}},
		{name: "oauth workspace bad UTF-8", method: "GET", path: "/oauth/google/start?workspace=%FF", want: []int{400}},
		{name: "oauth unknown provider", method: "GET", path: "/oauth/outlook/start?workspace=" + ws.ID, want: []int{404}},
		{name: "oauth callback forged state", method: "GET", path: "/oauth/google/callback?state=x.y&code=c", want: []int{400}},
		{name: "oauth callback state NUL", method: "GET", path: "/oauth/google/callback?state=%00&code=c", want: []int{400}},

		// Forged webhooks.
		{name: "google no headers", method: "POST", path: "/webhooks/google", want: []int{400}},
		{name: "google unknown channel", method: "POST", path: "/webhooks/google", header: []string{"X-Goog-Channel-ID", "forged", "X-Goog-Channel-Token", "t",
			"X-Goog-Resource-ID", "r", "X-Goog-Resource-State", "exists", "X-Goog-Message-Number", "2"}, want: []int{404}},
		{name: "google huge body", method: "POST", path: "/webhooks/google", body: huge, want: []int{413}},
		{name: "microsoft forged", method: "POST", path: "/webhooks/microsoft/" + uuid, header: []string{"Content-Type", "application/json"},
			body: `{"value":[{"subscriptionId":"forged","clientState":"x","changeType":"updated","resource":"me/events/1","tenantId":"t"}]}`, want: []int{400, 403, 404}},
		{name: "microsoft garbage", method: "POST", path: "/webhooks/microsoft", body: `{"value":`, want: []int{400}},
		{name: "calendly forged", method: "POST", path: "/webhooks/calendly/" + uuid, header: []string{"Calendly-Webhook-Signature", "t=1,v1=00", "Content-Type", "application/json"},
			body: `{"event":"invitee.created","payload":{}}`, want: []int{400, 403, 404}},
		{name: "calendly NUL id", method: "POST", path: "/webhooks/calendly/%00", body: `{}`, want: []int{400}},
		{name: "hubspot unsigned", method: "POST", path: "/webhooks/hubspot", body: `[]`, want: []int{401}},
		{name: "hubspot bad signature", method: "POST", path: "/webhooks/hubspot", body: `[{"portalId":1,"subscriptionType":"company.creation"}]`,
			header: []string{"X-HubSpot-Signature-v3", "AAAA", "X-HubSpot-Request-Timestamp", "1774440000000"}, want: []int{401}},
		{name: "hubspot bad signature now", method: "POST", path: "/webhooks/hubspot", body: `[{"portalId":1,"subscriptionType":"company.creation"}]`,
			header: []string{"X-HubSpot-Signature-v3", "AAAA", "X-HubSpot-Request-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10)}, want: []int{401}},
		{name: "hubspot huge body", method: "POST", path: "/webhooks/hubspot", body: huge, want: []int{413}},
		{name: "unknown provider webhook", method: "POST", path: "/webhooks/outlook", body: `{}`, want: []int{404}},
	}
	for _, pr := range probes {
		var r *strings.Reader
		if pr.body != "" {
			r = strings.NewReader(pr.body)
		}
		hdr := pr.header
		if pr.admin {
			hdr = append([]string{"Authorization", "Bearer " + adminToken, "Content-Type", "application/json"}, hdr...)
		}
		var code int
		var b string
		if r != nil {
			code, _, b = p.call(t, pr.method, pr.path, r, hdr...)
		} else {
			code, _, b = p.call(t, pr.method, pr.path, nil, hdr...)
		}
		if !slices.Contains(pr.want, code) {
			t.Errorf("%s: %s %.80s: %d %.300s, want %v", pr.name, pr.method, pr.path, code, b, pr.want)
		}
		if code >= 400 && leaksInternals(b) {
			t.Errorf("%s: the %d answer shows internals: %.300s", pr.name, code, b)
		}
	}

	// A NUL byte on the wire, which no well-behaved client sends.
	if code, _, _ := p.raw(t, "GET /admin/workspaces/\x00 HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"); code != 400 {
		t.Errorf("a raw NUL in the request line: %d, want 400", code)
	}
	// The process is still up and ready.
	if code, _, b := p.call(t, "GET", "/readyz", nil); code != 200 {
		t.Errorf("readyz after the probes: %d %s", code, b)
	}
	if strings.Contains(p.logs(), `"level":"ERROR"`) || strings.Contains(p.logs(), "panic") {
		t.Errorf("the probes caused errors or panics in the log:\n%s", p.logs())
	}
	nothingStored(t, ws.ID)
}

// leaksInternals reports an answer showing a socket address or an
// internal error text.
func leaksInternals(b string) bool {
	for _, s := range []string{"127.0.0.1", "[::1]", "SQLSTATE", "dial tcp", "read tcp", "password", "pgx", "redis:"} {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// nothingStored checks that the probes stored nothing but the workspace
// they created and queued no work.
func nothingStored(t *testing.T, ws string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, q := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM workspaces`, 1},
		{`SELECT count(*) FROM connections`, 0},
		{`SELECT count(*) FROM calendars`, 0},
		{`SELECT count(*) FROM connect_links`, 0},
		{`SELECT count(*) FROM meetings`, 0},
		{`SELECT count(*) FROM dead_letters`, 0},
	} {
		var n int
		if err := pool.QueryRow(ctx, q.sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
		if n != q.want {
			t.Errorf("%s = %d after the probes, want %d", q.sql, n, q.want)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), DB: testenv.RedisDB(t)})
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range []string{"sync", "crm", "link"} {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			continue // never used: nothing was queued
		}
		if info.Size != 0 || info.Processed != 0 || info.Archived != 0 {
			t.Errorf("queue %s after the probes: size %d, processed %d, archived %d; want nothing", q, info.Size, info.Processed, info.Archived)
		}
	}
	if keys, _ := rdb.Keys(ctx, "rapport:syncqueued:*").Result(); len(keys) != 0 {
		t.Errorf("syncs marked queued: %v", keys)
	}
}
