package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/rules"
)

// indexCache holds each workspace's company index in memory, loaded from
// the ledger and reloaded when another process refreshed it.
type indexCache struct {
	ledger *ledger.Store
	mu     sync.Mutex
	m      map[string]*cachedIndex
}

type cachedIndex struct {
	ix       *matching.Index
	freeMail *matching.FreeMail
	// props holds the values of the company properties the rules read
	// (nil when they read none); propKey names them.
	props    *companyValues
	propKey  string
	loadedAt time.Time // the index state's loaded_at it reflects
	checked  time.Time
}

func newIndexCache(l *ledger.Store) *indexCache {
	return &indexCache{ledger: l, m: map[string]*cachedIndex{}}
}

// indexRecheck is how often a cached index checks for a newer load.
const indexRecheck = 2 * time.Second

// indexView is a workspace's company index as one rule set sees it.
type indexView struct {
	ix *matching.Index
	// props are the company property values the rules read; nil when they
	// read none.
	props *companyValues
}

// get returns the workspace's index built with the rule set's free-mail
// list, with the values of the company properties its rules read.
func (c *indexCache) get(ctx context.Context, ws string, rs *rules.Set, now time.Time) (indexView, error) {
	fm, propKey, names := rs.FreeMail(), "", []string(nil)
	if rs.ReadsCompanyProperties() {
		names, _ = rs.CRMProperties()
		propKey = strings.Join(names, ",")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := c.m[ws]
	same := ci != nil && ci.freeMail == fm && ci.propKey == propKey
	if same && now.Sub(ci.checked) < indexRecheck {
		return indexView{ci.ix, ci.props}, nil
	}
	st, err := c.ledger.IndexState(ctx, ws)
	if err != nil {
		return indexView{}, err
	}
	var at time.Time
	if st.LoadedAt != nil {
		at = *st.LoadedAt
	}
	if same && ci.loadedAt.Equal(at) {
		ci.checked = now
		return indexView{ci.ix, ci.props}, nil
	}
	v, err := loadIndexView(ctx, c.ledger, ws, fm, names)
	if err != nil {
		return indexView{}, err
	}
	c.m[ws] = &cachedIndex{ix: v.ix, freeMail: fm, props: v.props, propKey: propKey, loadedAt: at, checked: now}
	return v, nil
}

// loadIndexView builds a workspace's index from the ledger with a free-mail
// list, and the values of the named company properties (none when names is
// empty).
func loadIndexView(ctx context.Context, l *ledger.Store, ws string, fm *matching.FreeMail, names []string) (indexView, error) {
	ix := matching.NewIndex(fm)
	if err := l.EachCompany(ctx, ws, ix.Upsert); err != nil {
		return indexView{}, err
	}
	var props *companyValues
	if len(names) > 0 {
		var err error
		if props, err = loadCompanyValues(ctx, l, ws, names); err != nil {
			return indexView{}, err
		}
	}
	return indexView{ix, props}, nil
}

// invalidate drops a cached index so the next get reloads it.
func (c *indexCache) invalidate(ws string) {
	c.mu.Lock()
	delete(c.m, ws)
	c.mu.Unlock()
}

// fullIndexEvery is how often the index is listed in full (which also
// removes deleted companies); in between, only changes are fetched.
const fullIndexEvery = 24 * time.Hour

func (c *core) handleIndex(ctx context.Context, t *asynq.Task) error {
	var pl indexPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return c.permanent(ctx, t, "", err)
	}
	conn, err := c.ledger.CRMConnection(ctx, pl.WorkspaceID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.fail(ctx, t, subject{pl.WorkspaceID, conn.ID}, c.RefreshIndex(ctx, pl.WorkspaceID, pl.Full))
}

// RefreshIndex loads the workspace's CRM companies into the domain index:
// in full the first time and once a day, else the companies changed since
// the last refresh.
func (c *core) RefreshIndex(ctx context.Context, ws string, full bool) error {
	conn, err := c.ledger.CRMConnection(ctx, ws)
	if err != nil {
		return err
	}
	sink, err := c.sink(ctx, conn)
	if err != nil {
		return err
	}
	st, err := c.ledger.IndexState(ctx, ws)
	if err != nil {
		return err
	}
	if st.ModifiedCursor == nil || st.LoadedAt == nil || c.now().Sub(*st.LoadedAt) > fullIndexEvery {
		full = true
	}
	rs := c.rules()
	props := declaredCompanyProps(rs)
	if !slices.Equal(st.Properties, props) {
		// The values stored do not cover the declared set: list in full.
		full = true
	}
	// The properties whose changes may change decisions: read by the
	// rules, and stored before this listing.
	var watch []string
	if st.LoadedAt != nil && rs.ReadsCompanyProperties() {
		for _, p := range props {
			if slices.Contains(st.Properties, p) {
				watch = append(watch, p)
			}
		}
	}
	var changed []string
	start := c.now()
	var (
		seen   []string
		newest time.Time
		n      int
	)
	if st.ModifiedCursor != nil {
		newest = *st.ModifiedCursor
	}
	after := ""
	for {
		var page crm.CompanyPage
		if full {
			page, err = sink.Companies(ctx, after, props)
		} else {
			page, err = sink.CompaniesChangedSince(ctx, *st.ModifiedCursor, after, props)
		}
		c.countCRM(conn.Provider, "companies.list", err)
		if err != nil {
			return fmt.Errorf("list companies: %w", err)
		}
		if len(watch) > 0 {
			ch, err := c.changedProperties(ctx, ws, page.Companies, watch)
			if err != nil {
				return err
			}
			changed = append(changed, ch...)
		}
		stored := make([]ledger.StoredCompany, len(page.Companies))
		for i, co := range page.Companies {
			stored[i] = ledger.StoredCompany{ID: co.ID, Name: co.Name, Domains: matching.NormalizeCompanyDomains(co.Domains...), ModifiedAt: co.UpdatedAt,
				Properties: co.Properties}
			if full {
				seen = append(seen, co.ID)
			}
			if co.UpdatedAt.After(newest) {
				newest = co.UpdatedAt
			}
		}
		if err := c.ledger.UpsertCompanies(ctx, ws, stored); err != nil {
			return err
		}
		n += len(page.Companies)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if full {
		if err := c.ledger.RemoveCompaniesExcept(ctx, ws, seen); err != nil {
			return err
		}
	}
	if newest.IsZero() {
		newest = start
	}
	c.indexes.invalidate(ws)
	view, err := c.indexes.get(ctx, ws, rs, c.now())
	c.indexes.invalidate(ws)
	if err != nil {
		return err
	}
	total, skipped := view.ix.Len(), view.ix.FreeMailSkipped()
	if err := c.ledger.StoreIndexState(ctx, ws, newest, start, total, skipped, props); err != nil {
		return err
	}
	c.indexes.invalidate(ws)
	if err := c.redecide(ctx, ws, changed); err != nil {
		return err
	}
	if st.LoadedAt == nil {
		// The first load: decisions made before it saw no companies, so
		// list every calendar of the workspace again.
		cals, err := c.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{WorkspaceID: ws})
		if err != nil {
			return err
		}
		for _, id := range cals {
			if err := c.markDirty(ctx, id, true, time.Time{}); err != nil {
				return err
			}
		}
	}
	if skipped > 0 {
		c.log.WarnContext(ctx, "CRM companies on free-mail domains never match", slog.String("workspace_id", ws), slog.Int("companies", skipped))
	}
	c.log.InfoContext(ctx, "company index refreshed", slog.String("workspace_id", ws), slog.Bool("full", full), slog.Int("fetched", n), slog.Int("companies", total))
	return nil
}
