package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/rapportsync/rapport/crm"
)

// reconcileState collects what a reconciliation's full listing saw, to
// compare with the CRM afterwards, and counts outcomes.
type reconcileState struct {
	dryRun bool
	report ReconcileReport
	// logged holds the desired state of every meeting the ledger says is
	// in the CRM and the listing found unchanged, for the drift check.
	logged map[string]loggedMeeting
}

type loggedMeeting struct {
	crmID string
	w     writePayload
}

// StartReconcile records a run and queues it.
func (p *Pipeline) StartReconcile(ctx context.Context, req ReconcileRequest) (string, error) {
	id, err := p.newRun(ctx, req)
	if err != nil {
		return "", err
	}
	if err := p.enqueue(ctx, TaskReconcile, reconcilePayload{RunID: id}, asynq.Queue(QueueMaintenance), asynq.TaskID("reconcile:"+id), asynq.MaxRetry(3)); err != nil {
		return "", err
	}
	return id, nil
}

// RunReconcile runs a reconciliation now and returns its report.
func (p *Pipeline) RunReconcile(ctx context.Context, req ReconcileRequest) (ReconcileReport, error) {
	id, err := p.newRun(ctx, req)
	if err != nil {
		return ReconcileReport{}, err
	}
	if err := p.reconcile(ctx, id); err != nil {
		p.log.WarnContext(ctx, "reconciliation failed", slog.String("run_id", id), slog.Any("error", err))
	}
	return p.ReconcileRun(ctx, id)
}

func (p *Pipeline) newRun(ctx context.Context, req ReconcileRequest) (string, error) {
	if _, err := p.workspace(ctx, req.WorkspaceID); err != nil {
		return "", err
	}
	var cal any
	if req.CalendarID != "" {
		var ok bool
		if err := p.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM calendars WHERE id::text = $1 AND workspace_id::text = $2)`, req.CalendarID, req.WorkspaceID).Scan(&ok); err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("calendar %q in workspace %q: %w", req.CalendarID, req.WorkspaceID, ErrNotFound)
		}
		cal = req.CalendarID
	}
	var id string
	err := p.db.QueryRow(ctx, `INSERT INTO reconciliation_runs (workspace_id, calendar_id, dry_run) VALUES ($1, $2, $3) RETURNING id`,
		req.WorkspaceID, cal, req.DryRun).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("record reconciliation: %w", err)
	}
	return id, nil
}

// ReconcileRun returns a run's report.
func (p *Pipeline) ReconcileRun(ctx context.Context, id string) (ReconcileReport, error) {
	r := ReconcileReport{ID: id}
	var errs []byte
	err := p.db.QueryRow(ctx, `SELECT status, checked, created, updated, cancelled, unchanged, errors FROM reconciliation_runs WHERE id::text = $1`, id).
		Scan(&r.Status, &r.Checked, &r.Created, &r.Updated, &r.Cancelled, &r.Unchanged, &errs)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("reconciliation %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read reconciliation %q: %w", id, ErrNotFound)
	}
	_ = json.Unmarshal(errs, &r.Errors)
	if r.Errors == nil {
		r.Errors = []string{}
	}
	return r, nil
}

func (p *Pipeline) handleReconcile(ctx context.Context, t *asynq.Task) error {
	var pl reconcilePayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return p.permanent(ctx, t, "", err)
	}
	return p.reconcile(ctx, pl.RunID)
}

// reconcile lists the window of each calendar in full, recomputes every
// decision, compares the ledger with the CRM (batch read), and fixes the
// drift: missing → create, stale → update, gone from the calendar →
// cancel. A meeting a person deleted in the CRM stays deleted and is marked
// so.
func (p *Pipeline) reconcile(ctx context.Context, runID string) error {
	var ws string
	var cal *string
	var dry bool
	if err := p.db.QueryRow(ctx, `SELECT workspace_id, calendar_id, dry_run FROM reconciliation_runs WHERE id = $1`, runID).Scan(&ws, &cal, &dry); err != nil {
		return fmt.Errorf("read reconciliation %s: %w", runID, err)
	}
	rs := &reconcileState{dryRun: dry, logged: map[string]loggedMeeting{}}
	var calIDs []string
	if cal != nil {
		calIDs = []string{*cal}
	} else {
		rows, err := p.db.Query(ctx, `SELECT c.id::text FROM calendars c JOIN connections k ON k.id = c.connection_id WHERE c.workspace_id = $1 AND k.status = 'active' ORDER BY c.id`, ws)
		if err != nil {
			return err
		}
		if calIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
	}
	var errs []string
	for _, id := range calIDs {
		if err := p.reconcileCalendar(ctx, id, rs); err != nil {
			errs = append(errs, fmt.Sprintf("calendar %s: %v", id, err))
		}
	}
	if err := p.checkCRM(ctx, ws, rs); err != nil {
		errs = append(errs, fmt.Sprintf("compare with CRM: %v", err))
	}
	status := "done"
	if len(errs) > 0 && rs.report.Checked == 0 {
		status = "failed"
	}
	r := rs.report
	errJSON, _ := json.Marshal(append([]string{}, errs...))
	_, err := p.db.Exec(ctx, `UPDATE reconciliation_runs SET status = $2, checked = $3, created = $4, updated = $5, cancelled = $6, unchanged = $7, errors = $8, finished_at = $9 WHERE id = $1`,
		runID, status, r.Checked, r.Created, r.Updated, r.Cancelled, r.Unchanged, errJSON, p.now())
	if err != nil {
		return fmt.Errorf("record reconciliation: %w", err)
	}
	p.log.InfoContext(ctx, "reconciliation finished", slog.String("run_id", runID), slog.String("status", status), slog.Int("checked", r.Checked),
		slog.Int("created", r.Created), slog.Int("updated", r.Updated), slog.Int("cancelled", r.Cancelled))
	if status == "failed" {
		return errors.New(errs[0])
	}
	return nil
}

// reconcileCalendar lists one calendar in full under its sync lock.
func (p *Pipeline) reconcileCalendar(ctx context.Context, calID string, rs *reconcileState) error {
	cal, err := p.calendarRow(ctx, calID)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, ok, err := p.tryLease(ctx, "sync:"+cal.ID)
		if err != nil {
			return err
		}
		if ok {
			defer l.release(ctx)
			ctx = withLease(ctx, l)
			break
		}
		if time.Now().After(deadline) {
			return errors.New("a sync of this calendar is still running")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return p.syncWith(ctx, cal, "", time.Time{}, rs)
}

// checkCRM batch-reads the meetings the ledger says are logged and current
// and compares their calendar-owned properties with the calendar: a meeting
// missing from the CRM was deleted by a person and is marked so; a stale one
// is written again.
func (p *Pipeline) checkCRM(ctx context.Context, ws string, rs *reconcileState) error {
	if len(rs.logged) == 0 {
		return nil
	}
	conn, err := p.crmConnection(ctx, ws)
	if err != nil {
		return err
	}
	sink, err := p.sink(ctx, conn.ID, conn.Account)
	if err != nil {
		return err
	}
	own := ownership{p.rules().Ownership()}
	byID := map[string]loggedMeeting{}
	var ids []string
	for _, m := range rs.logged {
		byID[m.crmID] = m
		ids = append(ids, m.crmID)
	}
	props := own.CalendarOwned()
	for len(ids) > 0 {
		n := min(len(ids), 100)
		chunk := ids[:n]
		ids = ids[n:]
		got, err := sink.ReadMeetings(ctx, chunk, props)
		p.countCRM("meetings.batch.read", err)
		if err != nil {
			return err
		}
		var stale []writePayload
		var gone []string
		for _, id := range chunk {
			m := byID[id]
			cm, ok := got[id]
			if !ok {
				gone = append(gone, m.w.Key)
				continue
			}
			if drifted(own, m.w.Desired, cm) {
				stale = append(stale, m.w)
			} else {
				rs.report.Unchanged++
			}
		}
		rs.report.Updated += len(stale)
		if rs.dryRun {
			continue
		}
		if len(gone) > 0 {
			if _, err := p.db.Exec(ctx, `UPDATE meetings SET state = 'deleted_in_crm', last_error = 'deleted in the CRM', updated_at = $3 WHERE workspace_id = $1 AND meeting_key = ANY($2)`,
				ws, gone, p.now()); err != nil {
				return err
			}
		}
		for _, w := range stale {
			// Forget the written hash so the write goes through.
			if _, err := p.db.Exec(ctx, `UPDATE meetings SET owned_hash = NULL, desired_hash = $3 WHERE workspace_id = $1 AND meeting_key = $2`, ws, w.Key, w.Hash); err != nil {
				return err
			}
			if err := p.enqueueWrite(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}

// drifted reports whether the CRM's calendar-owned properties differ from
// the calendar's. Times are compared as instants.
func drifted(own ownership, w desired, m crm.Meeting) bool {
	for _, k := range own.CalendarOwned() {
		if k == crm.PropOutcome {
			continue
		}
		if !sameInstant(w.Props[k], m.Properties[k]) {
			return true
		}
	}
	return false
}
