package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/pipeline"
)

// TestConnectLinkSingleUse: a connect link starts one flow, for its
// workspace and provider, before it expires.
func TestConnectLinkSingleUse(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	l, err := h.p.CreateConnectLink(h.ctx, h.ws, pipeline.ConnectLinkInput{Provider: "google", Account: rep})
	if err != nil {
		t.Fatal(err)
	}
	if !l.ExpiresAt.After(time.Now()) {
		t.Errorf("link expires at %v", l.ExpiresAt)
	}
	got, err := h.p.UseConnectLink(h.ctx, l.ID)
	if err != nil || got.WorkspaceID != h.ws || got.Provider != "google" || got.Account != rep {
		t.Fatalf("use: %+v, %v", got, err)
	}
	if _, err := h.p.UseConnectLink(h.ctx, l.ID); !errors.Is(err, pipeline.ErrForbidden) {
		t.Errorf("second use: %v, want ErrForbidden", err)
	}
	if _, err := h.p.UseConnectLink(h.ctx, "not-a-uuid"); !errors.Is(err, pipeline.ErrForbidden) {
		t.Errorf("unknown link: %v, want ErrForbidden", err)
	}
	if _, err := h.p.CreateConnectLink(h.ctx, h.ws, pipeline.ConnectLinkInput{Provider: "outlook"}); !errors.Is(err, pipeline.ErrInvalid) {
		t.Errorf("unknown provider: %v, want ErrInvalid", err)
	}
	old, _ := h.p.CreateConnectLink(h.ctx, h.ws, pipeline.ConnectLinkInput{Provider: "hubspot"})
	h.pool.Exec(h.ctx, `UPDATE connect_links SET expires_at = now() - interval '1 second' WHERE id = $1`, old.ID)
	if _, err := h.p.UseConnectLink(h.ctx, old.ID); !errors.Is(err, pipeline.ErrForbidden) {
		t.Errorf("expired link: %v, want ErrForbidden", err)
	}
}

// TestCalendarAccountOutsideWorkspace: a calendar account whose domain is
// not one of the workspace's internal domains is refused unless the admin
// allows it; a link for one account refuses another.
func TestCalendarAccountOutsideWorkspace(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.addCalendar("mallory@evil.example")
	in := pipeline.ConnectionInput{Provider: "google", AccountEmail: "mallory@evil.example", AccessToken: "t", RefreshToken: "r",
		ExpiresAt: time.Now().Add(time.Hour), CalendarIDs: []string{"mallory@evil.example"}}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); !errors.Is(err, pipeline.ErrForbidden) {
		t.Fatalf("outside account: %v, want ErrForbidden", err)
	}
	var n int
	h.pool.QueryRow(h.ctx, `SELECT count(*) FROM connections WHERE workspace_id = $1`, h.ws).Scan(&n)
	if n != 0 {
		t.Fatalf("%d connections stored after a refused import", n)
	}
	in.AllowExternalAccount = true
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); err != nil {
		t.Fatalf("outside account allowed by the admin: %v", err)
	}
	h.addCalendar(rep)
	in = pipeline.ConnectionInput{Provider: "google", AccountEmail: rep, AccessToken: "t", RefreshToken: "r",
		ExpiresAt: time.Now().Add(time.Hour), CalendarIDs: []string{rep}, ExpectAccount: ae}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); !errors.Is(err, pipeline.ErrForbidden) {
		t.Fatalf("account other than the link's: %v, want ErrForbidden", err)
	}
	// A subdomain of an internal domain is internal.
	h.addCalendar("ops@eu.northwind.test")
	in = pipeline.ConnectionInput{Provider: "google", AccountEmail: "ops@eu.northwind.test", AccessToken: "t", RefreshToken: "r",
		ExpiresAt: time.Now().Add(time.Hour), CalendarIDs: []string{"ops@eu.northwind.test"}}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); err != nil {
		t.Fatalf("subdomain account: %v", err)
	}
}

// TestOneCRMPortalPerWorkspace: a second HubSpot portal does not silently
// take over a workspace's writes; replacing the portal is an explicit admin
// action, and the replaced connection shows it.
func TestOneCRMPortalPerWorkspace(t *testing.T) {
	other := crmtest.NewServer(crmtest.Options{Limit: -1, SearchPerSecond: -1, PortalID: "99001"})
	t.Cleanup(other.Close)
	h := newHarness(t, harnessOptions{})
	h.opts.tweak = func(c *pipeline.Config) {
		limit, _ := hubspot.ParseLimit("1000/1s")
		c.Providers = pipeline.NewRegistry(
			[]calendar.Provider{google.Provider{Config: google.Config{BaseURL: h.google.URL()}}},
			[]crm.Provider{twoPortals{
				first:  hubspot.Provider{Config: hubspot.Config{BaseURL: h.hub.URL(), RateLimit: limit, MaxRetries: 2}},
				second: hubspot.Provider{Config: hubspot.Config{BaseURL: other.URL(), RateLimit: limit, MaxRetries: 2}},
			}},
		)
	}
	h.p = h.restartPipeline()
	h.startWorker()
	h.connectHubSpot()
	in := pipeline.ConnectionInput{Provider: "hubspot", AccessToken: "other-portal", RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := h.p.AddConnection(h.ctx, h.ws, in); !errors.Is(err, pipeline.ErrConflict) {
		t.Fatalf("second portal: %v, want ErrConflict", err)
	}
	// Re-importing the same portal is a re-authorisation, not a conflict.
	if _, err := h.p.AddConnection(h.ctx, h.ws, pipeline.ConnectionInput{Provider: "hubspot", AccessToken: "hub-token", RefreshToken: "r2",
		ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("re-import of the same portal: %v", err)
	}
	in.Replace = true
	c, err := h.p.AddConnection(h.ctx, h.ws, in)
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	st, err := h.p.WorkspaceStatus(h.ctx, h.ws)
	if err != nil {
		t.Fatal(err)
	}
	var active, replaced int
	for _, k := range st.Connections {
		if k.Provider != "hubspot" {
			continue
		}
		switch {
		case k.Status == "active" && k.ID == c.ID && k.Account == "99001":
			active++
		case k.Status == "revoked" && k.ReplacedBy == c.ID && k.LastError != "":
			replaced++
		}
	}
	if active != 1 || replaced != 1 {
		t.Errorf("connections after replacement: %+v", st.Connections)
	}
}

// twoPortals is HubSpot with two portals: the token (or the known portal
// id) says which one a connection reaches.
type twoPortals struct{ first, second hubspot.Provider }

func (twoPortals) Name() string { return "hubspot" }

func (p twoPortals) Open(ctx context.Context, c crm.Conn) (crm.Sink, error) {
	if tok, err := c.Tokens.Token(); err == nil && tok.AccessToken == "other-portal" || c.Account == "99001" {
		return p.second.Open(ctx, c)
	}
	return p.first.Open(ctx, c)
}
