package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
)

// indexCache holds each workspace's company index in memory, loaded from
// crm_companies and reloaded when another process refreshed it.
type indexCache struct {
	db *pgxpool.Pool
	mu sync.Mutex
	m  map[string]*cachedIndex
}

type cachedIndex struct {
	ix       *matching.Index
	freeMail *matching.FreeMail
	loadedAt time.Time // crm_index_state.loaded_at it reflects
	checked  time.Time
}

func newIndexCache(db *pgxpool.Pool) *indexCache {
	return &indexCache{db: db, m: map[string]*cachedIndex{}}
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
	var loadedAt *time.Time
	err := c.db.QueryRow(ctx, `SELECT loaded_at FROM crm_index_state WHERE workspace_id = $1`, ws).Scan(&loadedAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read company index state: %w", err)
	}
	var at time.Time
	if loadedAt != nil {
		at = *loadedAt
	}
	if ci != nil && ci.freeMail == fm && ci.loadedAt.Equal(at) {
		ci.checked = now
		return ci.ix, nil
	}
	ix := matching.NewIndex(fm)
	rows, err := c.db.Query(ctx, `SELECT company_id, name, domains FROM crm_companies WHERE workspace_id = $1`, ws)
	if err != nil {
		return nil, fmt.Errorf("load company index: %w", err)
	}
	var co crm.Company
	_, err = pgx.ForEachRow(rows, []any{&co.ID, &co.Name, &co.Domains}, func() error {
		ix.Upsert(co)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load company index: %w", err)
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

// RefreshIndex loads the workspace's CRM companies into the domain index:
// in full the first time and once a day, else the companies changed since
// the last refresh.
func (p *Pipeline) RefreshIndex(ctx context.Context, ws string, full bool) error {
	conn, err := p.crmConnection(ctx, ws)
	if err != nil {
		return err
	}
	sink, err := p.sink(ctx, conn.ID, conn.Account)
	if err != nil {
		return err
	}
	var cursor, loadedFull *time.Time
	err = p.db.QueryRow(ctx, `SELECT modified_cursor, loaded_at FROM crm_index_state WHERE workspace_id = $1`, ws).Scan(&cursor, &loadedFull)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read company index state: %w", err)
	}
	if cursor == nil || loadedFull == nil || p.now().Sub(*loadedFull) > fullIndexEvery {
		full = true
	}
	start := p.now()
	var (
		seen   []string
		newest time.Time
		n      int
	)
	if cursor != nil {
		newest = *cursor
	}
	store := func(cs []crm.Company) error {
		if len(cs) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, c := range cs {
			domains := matching.NormalizeCompanyDomains(c.Domains...)
			b.Queue(`INSERT INTO crm_companies (workspace_id, company_id, name, domains, modified_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (workspace_id, company_id) DO UPDATE SET name = EXCLUDED.name, domains = EXCLUDED.domains, modified_at = EXCLUDED.modified_at`,
				ws, c.ID, c.Name, domains, nullTime(c.UpdatedAt))
			if full {
				seen = append(seen, c.ID)
			}
			if c.UpdatedAt.After(newest) {
				newest = c.UpdatedAt
			}
		}
		n += len(cs)
		return p.db.SendBatch(ctx, b).Close()
	}
	after := ""
	for {
		var page crm.CompanyPage
		if full {
			page, err = sink.Companies(ctx, after)
		} else {
			page, err = sink.CompaniesChangedSince(ctx, *cursor, after)
		}
		if err != nil {
			return fmt.Errorf("list companies: %w", err)
		}
		if err := store(page.Companies); err != nil {
			return fmt.Errorf("store companies: %w", err)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if full {
		if _, err := p.db.Exec(ctx, `DELETE FROM crm_companies WHERE workspace_id = $1 AND NOT (company_id = ANY($2))`, ws, seen); err != nil {
			return fmt.Errorf("remove deleted companies: %w", err)
		}
	}
	if newest.IsZero() {
		newest = start
	}
	fm := p.rules().FreeMail()
	var total, skipped int
	if err := p.countIndex(ctx, ws, fm, &total, &skipped); err != nil {
		return err
	}
	_, err = p.db.Exec(ctx, `INSERT INTO crm_index_state (workspace_id, modified_cursor, loaded_at, companies, free_mail_skipped)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id) DO UPDATE SET modified_cursor = EXCLUDED.modified_cursor, loaded_at = EXCLUDED.loaded_at,
			companies = EXCLUDED.companies, free_mail_skipped = EXCLUDED.free_mail_skipped`,
		ws, newest, start, total, skipped)
	if err != nil {
		return fmt.Errorf("store company index state: %w", err)
	}
	p.indexes.invalidate(ws)
	if loadedFull == nil {
		// The first load: decisions made before it saw no companies, so
		// list every calendar of the workspace again.
		if err := p.forEachCalendar(ctx, func(id string) error {
			return p.markDirty(ctx, id, true, time.Time{})
		}, "c.workspace_id = $1", ws); err != nil {
			return err
		}
	}
	if skipped > 0 {
		p.log.WarnContext(ctx, "CRM companies on free-mail domains never match", slog.String("workspace_id", ws), slog.Int("companies", skipped))
	}
	p.log.InfoContext(ctx, "company index refreshed", slog.String("workspace_id", ws), slog.Bool("full", full), slog.Int("fetched", n), slog.Int("companies", total))
	return nil
}

func (p *Pipeline) countIndex(ctx context.Context, ws string, fm *matching.FreeMail, total, skipped *int) error {
	p.indexes.invalidate(ws)
	ix, err := p.indexes.get(ctx, ws, fm, p.now())
	p.indexes.invalidate(ws)
	if err != nil {
		return err
	}
	*total, *skipped = ix.Len(), ix.FreeMailSkipped()
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
