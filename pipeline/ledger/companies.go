package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/crm"
)

// IndexState is where a workspace's company index listing stands.
type IndexState struct {
	// ModifiedCursor is the newest modification seen: the next incremental
	// refresh asks for changes after it.
	ModifiedCursor *time.Time
	// LoadedAt is when the last full listing finished; nil before the first.
	LoadedAt *time.Time
	// Properties names the company properties the stored values cover
	// (the rules' crm_properties.companies when the companies were last
	// listed in full), sorted.
	Properties []string
}

// IndexState reads a workspace's index state.
func (s *Store) IndexState(ctx context.Context, ws string) (IndexState, error) {
	var st IndexState
	err := s.db.QueryRow(ctx, `SELECT modified_cursor, loaded_at, properties FROM crm_index_state WHERE workspace_id = $1`, ws).Scan(&st.ModifiedCursor, &st.LoadedAt, &st.Properties)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("read company index state: %w", err)
	}
	return st, nil
}

// IndexLoaded reports whether a workspace's company index was ever loaded.
func (s *Store) IndexLoaded(ctx context.Context, ws string) (bool, error) {
	var loaded bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM crm_index_state WHERE workspace_id = $1 AND loaded_at IS NOT NULL)`, ws).Scan(&loaded)
	if err != nil {
		return false, fmt.Errorf("read company index state: %w", err)
	}
	return loaded, nil
}

// StoredCompany is a company as the index stores it: normalised domains,
// and the values of the declared CRM properties (nil when none is set).
type StoredCompany struct {
	ID, Name   string
	Domains    []string
	ModifiedAt time.Time
	Properties map[string]string
}

// UpsertCompanies stores companies of a workspace.
func (s *Store) UpsertCompanies(ctx context.Context, ws string, cs []StoredCompany) error {
	if len(cs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range cs {
		b.Queue(`INSERT INTO crm_companies (workspace_id, company_id, name, domains, modified_at, properties) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (workspace_id, company_id) DO UPDATE SET name = EXCLUDED.name, domains = EXCLUDED.domains, modified_at = EXCLUDED.modified_at,
				properties = EXCLUDED.properties`,
			ws, c.ID, c.Name, c.Domains, nullTime(c.ModifiedAt), propertiesJSON(c.Properties))
	}
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store companies: %w", err)
	}
	return nil
}

// RemoveCompaniesExcept deletes the workspace's companies a full listing
// did not see.
func (s *Store) RemoveCompaniesExcept(ctx context.Context, ws string, seen []string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM crm_companies WHERE workspace_id = $1 AND NOT (company_id = ANY($2))`, ws, seen); err != nil {
		return fmt.Errorf("remove deleted companies: %w", err)
	}
	return nil
}

// StoreIndexState records a finished index refresh; properties names the
// company properties the stored values now cover.
func (s *Store) StoreIndexState(ctx context.Context, ws string, cursor, loadedAt time.Time, companies, freeMailSkipped int, properties []string) error {
	if properties == nil {
		properties = []string{}
	}
	_, err := s.db.Exec(ctx, `INSERT INTO crm_index_state (workspace_id, modified_cursor, loaded_at, companies, free_mail_skipped, properties)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (workspace_id) DO UPDATE SET modified_cursor = EXCLUDED.modified_cursor, loaded_at = EXCLUDED.loaded_at,
			companies = EXCLUDED.companies, free_mail_skipped = EXCLUDED.free_mail_skipped, properties = EXCLUDED.properties`,
		ws, cursor, loadedAt, companies, freeMailSkipped, properties)
	if err != nil {
		return fmt.Errorf("store company index state: %w", err)
	}
	return nil
}

// EachCompany calls fn for every stored company of a workspace.
func (s *Store) EachCompany(ctx context.Context, ws string, fn func(crm.Company)) error {
	rows, err := s.db.Query(ctx, `SELECT company_id, name, domains FROM crm_companies WHERE workspace_id = $1`, ws)
	if err != nil {
		return fmt.Errorf("load company index: %w", err)
	}
	var co crm.Company
	_, err = pgx.ForEachRow(rows, []any{&co.ID, &co.Name, &co.Domains}, func() error {
		fn(co)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load company index: %w", err)
	}
	return nil
}
