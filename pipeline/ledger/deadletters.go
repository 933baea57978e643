package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/pipeline/plan"
)

// DeadLetter is a terminal failure, recorded without content: ids and the
// reason.
type DeadLetter struct {
	ID          int64           `json:"id"`
	WorkspaceID string          `json:"workspace_id,omitempty"`
	TaskType    string          `json:"task_type"`
	TaskID      string          `json:"task_id"`
	Queue       string          `json:"queue"`
	Ref         json.RawMessage `json:"ref"`
	Class       string          `json:"class"`
	Reason      string          `json:"reason"`
	CreatedAt   time.Time       `json:"created_at"`
	RetriedAt   *time.Time      `json:"retried_at,omitempty"`
}

// NewDeadLetter is a dead letter to record.
type NewDeadLetter struct {
	WorkspaceID, TaskType, TaskID, Queue string
	Ref                                  map[string]any
	Class                                plan.DeadLetterClass
	Reason                               string
}

// AddDeadLetter records a dead letter.
func (s *Store) AddDeadLetter(ctx context.Context, d NewDeadLetter) error {
	ref, _ := json.Marshal(d.Ref)
	if d.Ref == nil {
		ref = []byte(`{}`)
	}
	_, err := s.db.Exec(ctx, `INSERT INTO dead_letters (workspace_id, task_type, task_id, queue, ref, class, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		nullString(d.WorkspaceID), d.TaskType, d.TaskID, d.Queue, ref, d.Class, Truncate(d.Reason, 1000))
	if err != nil {
		return fmt.Errorf("write dead letter: %w", err)
	}
	return nil
}

const deadSelect = `SELECT id, coalesce(workspace_id::text, ''), task_type, task_id, queue, ref, class, reason, created_at, retried_at FROM dead_letters`

// DeadLetters lists dead letters after the cursor id, oldest first,
// limit+1 of them.
func (s *Store) DeadLetters(ctx context.Context, after int64, limit int) ([]DeadLetter, error) {
	rows, err := s.db.Query(ctx, deadSelect+` WHERE id > $1 ORDER BY id LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return list, nil
}

// DeadLetter reads one dead letter.
func (s *Store) DeadLetter(ctx context.Context, id int64) (DeadLetter, error) {
	rows, err := s.db.Query(ctx, deadSelect+` WHERE id = $1`, id)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("read dead letter: %w", err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[DeadLetter])
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("dead letter %d: %w", id, ErrNotFound)
	}
	return d, err
}

// ParkedFor lists the open dead letters of class auth of a connection: the
// work parked until it is re-authorised.
func (s *Store) ParkedFor(ctx context.Context, connID string) ([]DeadLetter, error) {
	rows, err := s.db.Query(ctx, deadSelect+` WHERE class = 'auth' AND retried_at IS NULL AND ref->>'connection_id' = $1 ORDER BY id`, connID)
	if err != nil {
		return nil, fmt.Errorf("find parked work: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
}

// MarkRetried records that a dead letter was re-driven.
func (s *Store) MarkRetried(ctx context.Context, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE dead_letters SET retried_at = $2 WHERE id = $1`, id, now)
	return err
}
