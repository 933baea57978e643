package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// reconciler handles reconcile: it lists each calendar of the window in
// full, recomputes every decision, compares the ledger with the CRM (batch
// read) and fixes the drift: missing → create, stale → update, gone from
// the calendar → cancel. A meeting a person deleted in the CRM stays
// deleted and is marked so.
type reconciler struct {
	*core
	sync *syncer
}

// reconcileState collects what a reconciliation's full listing saw, to
// compare with the CRM afterwards, and counts outcomes.
type reconcileState struct {
	dryRun bool
	report ledger.Report
	// logged holds the desired state of every meeting the ledger says is
	// in the CRM and the listing found unchanged, for the drift check.
	logged map[string]loggedMeeting
}

type loggedMeeting struct {
	crmID string
	w     writePayload
}

// count adds one planned event to the report (nil: not reconciling).
func (r *reconcileState) count(key string, row plan.Meeting, out plan.EventPlan, ws, crmConn string) {
	if r == nil {
		return
	}
	r.report.Checked++
	switch out.Outcome {
	case plan.OutcomeCreate:
		r.report.Created++
	case plan.OutcomeCancel:
		r.report.Cancelled++
	case plan.OutcomeUpdate:
		r.report.Updated++
	case plan.OutcomeCurrent:
		r.logged[key] = loggedMeeting{crmID: row.CRMID, w: writePayload{
			WorkspaceID: ws, ConnectionID: crmConn, Key: key, Hash: out.Meeting.DesiredHash, Desired: *out.Desired,
		}}
	}
}

func (r *reconciler) handle(ctx context.Context, t *asynq.Task) error {
	var pl reconcilePayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return r.permanent(ctx, t, "", err)
	}
	return r.run(ctx, pl.RunID)
}

// run carries out a recorded reconciliation and stores its report.
func (r *reconciler) run(ctx context.Context, runID string) error {
	run, err := r.ledger.Run(ctx, runID)
	if err != nil {
		return err
	}
	rs := &reconcileState{dryRun: run.DryRun, logged: map[string]loggedMeeting{}, report: ledger.Report{ID: runID}}
	calIDs := []string{run.CalendarID}
	if run.CalendarID == "" {
		if calIDs, err = r.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{WorkspaceID: run.WorkspaceID}); err != nil {
			return err
		}
	}
	var errs []string
	for _, id := range calIDs {
		if err := r.calendar(ctx, id, rs); err != nil {
			errs = append(errs, fmt.Sprintf("calendar %s: %s", id, scrub(err.Error())))
		}
	}
	if err := r.checkCRM(ctx, run.WorkspaceID, rs); err != nil {
		errs = append(errs, fmt.Sprintf("compare with CRM: %s", scrub(err.Error())))
	}
	rep := rs.report
	rep.Status = string(plan.RunDone)
	if len(errs) > 0 && rep.Checked == 0 {
		rep.Status = string(plan.RunFailed)
	}
	rep.Errors = errs
	if err := r.ledger.FinishRun(ctx, rep, r.now()); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "reconciliation finished", slog.String("run_id", runID), slog.String("status", rep.Status), slog.Int("checked", rep.Checked),
		slog.Int("created", rep.Created), slog.Int("updated", rep.Updated), slog.Int("cancelled", rep.Cancelled))
	if rep.Status == string(plan.RunFailed) {
		return errors.New(errs[0])
	}
	return nil
}

// calendar lists one calendar in full under its sync lease.
func (r *reconciler) calendar(ctx context.Context, calID string, rs *reconcileState) error {
	cal, err := r.ledger.Calendar(ctx, calID)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, ok, err := r.tryLease(ctx, "sync:"+cal.ID)
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
	return r.sync.run(ctx, cal, "", time.Time{}, rs)
}

// checkCRM batch-reads the meetings the ledger says are logged and current
// and compares their calendar-owned properties with the calendar: a meeting
// missing from the CRM was deleted by a person and is marked so; a stale one
// is written again.
func (r *reconciler) checkCRM(ctx context.Context, ws string, rs *reconcileState) error {
	if len(rs.logged) == 0 {
		return nil
	}
	conn, err := r.ledger.CRMConnection(ctx, ws)
	if err != nil {
		return err
	}
	sink, err := r.sink(ctx, conn)
	if err != nil {
		return err
	}
	own := r.ownership()
	byID := map[string]loggedMeeting{}
	var ids []string
	for _, m := range rs.logged {
		byID[m.crmID] = m
		ids = append(ids, m.crmID)
	}
	props := own.CalendarOwned()
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		chunk := ids[:n]
		ids = ids[n:]
		got, err := sink.ReadMeetings(ctx, chunk, props)
		r.countCRM(conn.Provider, "meetings.batch.read", err)
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
			if plan.Drifted(own, m.w.Desired, cm) {
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
			if err := r.ledger.MarkDeletedInCRM(ctx, ws, gone, r.now()); err != nil {
				return err
			}
		}
		for _, w := range stale {
			if err := r.ledger.ForgetWritten(ctx, ws, w.Key, w.Hash); err != nil {
				return err
			}
			if err := r.enqueueWrite(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}
