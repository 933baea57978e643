package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Run is a reconciliation run as requested.
type Run struct {
	ID, WorkspaceID, CalendarID string
	DryRun                      bool
}

// Report is the outcome of a reconciliation run.
type Report struct {
	ID        string   `json:"id"`
	Status    string   `json:"status"` // running | done | failed
	Checked   int      `json:"checked"`
	Created   int      `json:"created"`
	Updated   int      `json:"updated"`
	Cancelled int      `json:"cancelled"`
	Unchanged int      `json:"unchanged"`
	Errors    []string `json:"errors"`
}

// NewRun records a reconciliation run and returns its id.
func (s *Store) NewRun(ctx context.Context, r Run) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, `INSERT INTO reconciliation_runs (workspace_id, calendar_id, dry_run) VALUES ($1, $2, $3) RETURNING id`,
		r.WorkspaceID, nullString(r.CalendarID), r.DryRun).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("record reconciliation: %w", err)
	}
	return id, nil
}

// Run reads what a run asked for.
func (s *Store) Run(ctx context.Context, id string) (Run, error) {
	r := Run{ID: id}
	var cal *string
	err := s.db.QueryRow(ctx, `SELECT workspace_id, calendar_id, dry_run FROM reconciliation_runs WHERE id::text = $1`, id).Scan(&r.WorkspaceID, &cal, &r.DryRun)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return r, fmt.Errorf("reconciliation %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read reconciliation %s: %w", id, err)
	}
	if cal != nil {
		r.CalendarID = *cal
	}
	return r, nil
}

// FinishRun stores a run's report.
func (s *Store) FinishRun(ctx context.Context, r Report, now time.Time) error {
	errJSON, _ := json.Marshal(append([]string{}, r.Errors...))
	_, err := s.db.Exec(ctx, `UPDATE reconciliation_runs SET status = $2, checked = $3, created = $4, updated = $5, cancelled = $6, unchanged = $7, errors = $8, finished_at = $9 WHERE id = $1`,
		r.ID, r.Status, r.Checked, r.Created, r.Updated, r.Cancelled, r.Unchanged, errJSON, now)
	if err != nil {
		return fmt.Errorf("record reconciliation: %w", err)
	}
	return nil
}

// Report reads a run's report.
func (s *Store) Report(ctx context.Context, id string) (Report, error) {
	r := Report{ID: id}
	var errs []byte
	err := s.db.QueryRow(ctx, `SELECT status, checked, created, updated, cancelled, unchanged, errors FROM reconciliation_runs WHERE id::text = $1`, id).
		Scan(&r.Status, &r.Checked, &r.Created, &r.Updated, &r.Cancelled, &r.Unchanged, &errs)
	if errors.Is(err, pgx.ErrNoRows) || isInvalidText(err) {
		return r, fmt.Errorf("reconciliation %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read reconciliation %q: %w", id, err)
	}
	_ = json.Unmarshal(errs, &r.Errors)
	if r.Errors == nil {
		r.Errors = []string{}
	}
	return r, nil
}
