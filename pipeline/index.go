package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
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
	loadedAt time.Time // the index state's loaded_at it reflects
	checked  time.Time
}

func newIndexCache(l *ledger.Store) *indexCache {
	return &indexCache{ledger: l, m: map[string]*cachedIndex{}}
}

// indexRecheck is how often a cached index checks for a newer load.
const indexRecheck = 2 * time.Second

// get returns the workspace's index built with the rule set's free-mail list.
func (c *indexCache) get(ctx context.Context, ws string, fm *matching.FreeMail, now time.Time) (*matching.Index, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := c.m[ws]
	if ci != nil && ci.freeMail == fm && now.Sub(ci.checked) < indexRecheck {
		return ci.ix, nil
	}
	st, err := c.ledger.IndexState(ctx, ws)
	if err != nil {
		return nil, err
	}
	var at time.Time
	if st.LoadedAt != nil {
		at = *st.LoadedAt
	}
	if ci != nil && ci.freeMail == fm && ci.loadedAt.Equal(at) {
		ci.checked = now
		return ci.ix, nil
	}
	ix := matching.NewIndex(fm)
	if err := c.ledger.EachCompany(ctx, ws, ix.Upsert); err != nil {
		return nil, err
	}
	c.m[ws] = &cachedIndex{ix: ix, freeMail: fm, loadedAt: at, checked: now}
	return ix, nil
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
			page, err = sink.Companies(ctx, after, nil)
		} else {
			page, err = sink.CompaniesChangedSince(ctx, *st.ModifiedCursor, after, nil)
		}
		c.countCRM(conn.Provider, "companies.list", err)
		if err != nil {
			return fmt.Errorf("list companies: %w", err)
		}
		stored := make([]ledger.StoredCompany, len(page.Companies))
		for i, co := range page.Companies {
			stored[i] = ledger.StoredCompany{ID: co.ID, Name: co.Name, Domains: matching.NormalizeCompanyDomains(co.Domains...), ModifiedAt: co.UpdatedAt}
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
	ix, err := c.indexes.get(ctx, ws, c.rules().FreeMail(), c.now())
	c.indexes.invalidate(ws)
	if err != nil {
		return err
	}
	total, skipped := ix.Len(), ix.FreeMailSkipped()
	if err := c.ledger.StoreIndexState(ctx, ws, newest, start, total, skipped); err != nil {
		return err
	}
	c.indexes.invalidate(ws)
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
