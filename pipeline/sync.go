package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/rules"
)

// maxSyncRounds bounds how often one sync task repeats itself for
// notifications that arrived while it ran; past it, it enqueues a new sync.
const maxSyncRounds = 5

func (p *Pipeline) handleSync(ctx context.Context, t *asynq.Task) error {
	var pl syncPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return p.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	cal, err := p.calendarRow(ctx, pl.CalendarID)
	if errors.Is(err, ErrNotFound) {
		return nil // calendar removed
	}
	if err != nil {
		return err
	}
	if cal.ConnStatus != "active" || cal.Status == "paused" {
		// Parked: re-authorisation enqueues a sync of every calendar, which
		// must not find this task's queued mark.
		p.log.InfoContext(ctx, "sync parked", slog.String("calendar_id", cal.ID), slog.String("connection_status", cal.ConnStatus))
		return p.rdb.Del(ctx, syncQueuedKey(cal.ID)).Err()
	}

	// One sync per calendar at a time, across processes. A notification
	// during the sync bumped the dirty counter; the running sync repeats.
	l, ok, err := p.tryLease(ctx, "sync:"+cal.ID)
	if err != nil {
		return fmt.Errorf("lease calendar %s: %w", cal.ID, err)
	}
	if !ok {
		// Another sync runs. It may have made its last check already, so
		// come back shortly; by then this change is usually covered.
		return &retryAfter{wait: time.Second, err: errSyncBusy}
	}
	defer l.release(ctx)
	ctx = withLease(ctx, l)
	// From here on, notifications queue a new task: this one may have
	// made its last check when they arrive.
	if err := p.rdb.Del(ctx, syncQueuedKey(cal.ID)).Err(); err != nil {
		return fmt.Errorf("clear queued mark of %s: %w", cal.ID, err)
	}

	full := pl.Full
	for round := 0; ; round++ {
		if round == maxSyncRounds {
			return p.markDirty(ctx, cal.ID, false, time.Time{})
		}
		var dirty, synced int64
		var cursor string
		if err := p.db.QueryRow(ctx, `SELECT dirty, synced_dirty, coalesce(cursor, '') FROM calendars WHERE id = $1`, cal.ID).Scan(&dirty, &synced, &cursor); err != nil {
			return fmt.Errorf("read calendar %s: %w", cal.ID, err)
		}
		if !full && synced >= dirty && (round > 0 || pl.Dirty <= synced) {
			return nil // every notification so far is covered
		}
		if full {
			cursor = ""
		}
		start := p.now()
		err := p.syncOnce(ctx, cal, cursor, pl.SeenAt)
		if calendar.ClassOf(err) == calendar.CursorExpired && cursor != "" {
			p.log.InfoContext(ctx, "sync cursor expired; listing in full", slog.String("calendar_id", cal.ID))
			full = true
			round--
			continue
		}
		if err != nil {
			return p.syncFailed(ctx, t, cal, err)
		}
		full = false
		if _, err := p.db.Exec(ctx, `UPDATE calendars SET synced_dirty = $2, last_synced_at = $3, last_error = NULL, status = 'active' WHERE id = $1`, cal.ID, dirty, start); err != nil {
			return fmt.Errorf("finish sync of %s: %w", cal.ID, err)
		}
		pl.SeenAt = time.Time{}
	}
}

var (
	errSyncBusy       = errors.New("another sync of this calendar is running")
	errIndexNotLoaded = errors.New("the CRM company index is not loaded yet")
)

// syncOnce lists the calendar's changes since cursor (all of the window when
// empty) and applies them page by page.
func (p *Pipeline) syncOnce(ctx context.Context, cal calRow, cursor string, seenAt time.Time) error {
	return p.syncWith(ctx, cal, cursor, seenAt, nil)
}

// syncWith is syncOnce for a reconciliation too (rec non-nil), which counts
// what it finds and, in a dry run, changes nothing.
func (p *Pipeline) syncWith(ctx context.Context, cal calRow, cursor string, seenAt time.Time, rec *reconcileState) error {
	src, err := p.source(ctx, cal.ConnectionID)
	if err != nil {
		return err
	}
	sc, err := p.newSyncContext(ctx, cal, seenAt)
	if err != nil {
		return err
	}
	sc.rec = rec
	full := cursor == ""
	var seen map[string]bool
	if full {
		seen = map[string]bool{}
	}
	req := calendar.ListRequest{CalendarID: cal.CalendarID, Cursor: cursor, TimeMin: p.now().Add(-p.cfg.Backfill)}
	for {
		if err := renewLease(ctx); err != nil {
			return err
		}
		page, err := src.List(ctx, req)
		p.metrics.googleCalls.WithLabelValues("events.list", classLabel(err)).Inc()
		if err != nil {
			return err
		}
		last := page.NextPageToken == ""
		var next *string
		if last && !full {
			next = &page.NextCursor
		}
		for _, ev := range page.Events {
			if seen != nil {
				seen[ev.ID] = true
			}
		}
		if err := p.applyEvents(ctx, sc, page.Events, next); err != nil {
			return err
		}
		if last {
			if full {
				return p.applyDisappeared(ctx, sc, seen, page.NextCursor)
			}
			return nil
		}
		req.PageToken = page.NextPageToken
	}
}

// applyDisappeared ends a full listing: copies the ledger knows that the
// listing no longer holds were deleted, and are cancelled like any other
// deletion. The cursor is stored with them.
func (p *Pipeline) applyDisappeared(ctx context.Context, sc *syncContext, seen map[string]bool, cursor string) error {
	rows, err := p.db.Query(ctx, `SELECT event_id FROM meeting_copies WHERE calendar_id = $1 AND status <> 'cancelled'`, sc.cal.ID)
	if err != nil {
		return fmt.Errorf("list copies: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list copies: %w", err)
	}
	var gone []calendar.Event
	for _, id := range ids {
		if !seen[id] {
			gone = append(gone, calendar.Event{ID: id, Status: calendar.StatusCancelled})
		}
	}
	for len(gone) > 500 {
		if err := p.applyEvents(ctx, sc, gone[:500], nil); err != nil {
			return err
		}
		gone = gone[500:]
	}
	return p.applyEvents(ctx, sc, gone, &cursor)
}

// syncContext is what every page of one sync shares.
type syncContext struct {
	cal     calRow
	rules   *rules.Set
	own     ownership
	index   *matching.Index
	crmConn string // empty when the workspace has no CRM connection yet
	seenAt  time.Time
	rec     *reconcileState // set during a reconciliation
}

func (p *Pipeline) newSyncContext(ctx context.Context, cal calRow, seenAt time.Time) (*syncContext, error) {
	rs := p.rules()
	ix, err := p.indexes.get(ctx, cal.WorkspaceID, rs.FreeMail(), p.now())
	if err != nil {
		return nil, err
	}
	sc := &syncContext{cal: cal, rules: rs, own: ownership{rs.Ownership()}, index: ix, seenAt: seenAt}
	if c, err := p.crmConnection(ctx, cal.WorkspaceID); err == nil {
		sc.crmConn = c.ID
		var loaded bool
		if err := p.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM crm_index_state WHERE workspace_id = $1 AND loaded_at IS NOT NULL)`, cal.WorkspaceID).Scan(&loaded); err != nil {
			return nil, fmt.Errorf("read company index state: %w", err)
		}
		if !loaded {
			// Deciding now would skip every customer meeting.
			return nil, &retryAfter{wait: 2 * time.Second, err: errIndexNotLoaded}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if sc.seenAt.IsZero() {
		sc.seenAt = p.now()
	}
	return sc, nil
}

// copyRow is one calendar copy of a meeting, as stored.
type copyRow struct {
	CalendarID, EventID string
	Status              string
	Organizer           bool
	Action              string
	LinkedCRMID         string
}

// applyEvents records the decisions of one page in one transaction, queues
// the CRM writes and write-backs they call for, and stores the cursor last.
func (p *Pipeline) applyEvents(ctx context.Context, sc *syncContext, events []calendar.Event, cursor *string) error {
	now := p.now()
	cal := sc.cal
	ws := cal.WorkspaceID

	// Identify each event's meeting. A minimal cancellation carries no
	// iCalUID: its copy row says which meeting it was.
	var minimalIDs []string
	for i := range events {
		if events[i].ICalUID == "" {
			minimalIDs = append(minimalIDs, events[i].ID)
		}
	}
	knownKey := map[string]string{}
	if len(minimalIDs) > 0 {
		rows, err := p.db.Query(ctx, `SELECT c.event_id, m.meeting_key FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
			WHERE c.calendar_id = $1 AND c.event_id = ANY($2)`, cal.ID, minimalIDs)
		if err != nil {
			return fmt.Errorf("find copies: %w", err)
		}
		var id, key string
		if _, err := pgx.ForEachRow(rows, []any{&id, &key}, func() error { knownKey[id] = key; return nil }); err != nil {
			return fmt.Errorf("find copies: %w", err)
		}
	}
	keys := make([]string, len(events))
	var unique []string
	for i := range events {
		ev := &events[i]
		if ev.ICalUID != "" {
			keys[i] = MeetingKey(ws, ev.ICalUID, ev.OriginalStart)
		} else {
			keys[i] = knownKey[ev.ID] // empty: a deletion of something never recorded
		}
		if keys[i] != "" {
			unique = append(unique, keys[i])
		}
	}
	slices.Sort(unique)
	unique = slices.Compact(unique)

	tx, err := p.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var writes []writePayload
	var links []link
	if len(unique) > 0 {
		ledger, err := lockLedger(ctx, tx, ws, unique, sc.rules.Version())
		if err != nil {
			return err
		}
		copies, err := loadCopies(ctx, tx, ledger)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for i := range events {
			if keys[i] == "" {
				continue
			}
			row := ledger[keys[i]]
			w, l := p.decideEvent(sc, &events[i], keys[i], &row, copies, batch, now)
			ledger[keys[i]] = row
			writes = append(writes, w...)
			links = append(links, l...)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("record decisions: %w", err)
		}
	}
	if sc.rec != nil && sc.rec.dryRun {
		return nil // rolled back: a dry run only counts
	}
	if cursor != nil {
		if _, err := tx.Exec(ctx, `UPDATE calendars SET cursor = $2 WHERE id = $1`, cal.ID, *cursor); err != nil {
			return fmt.Errorf("store cursor: %w", err)
		}
	}
	// Enqueue before commit: a task for a decision that then fails to
	// commit finds a ledger hash that does not match and does nothing; a
	// commit without its tasks would lose work.
	if err := p.enqueueAll(ctx, writes, map[string][]link{cal.ID: links}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit page: %w", err)
	}
	return nil
}

func loadCopies(ctx context.Context, tx pgx.Tx, ledger map[string]ledgerRow) (map[int64][]copyRow, error) {
	ids := make([]int64, 0, len(ledger))
	for _, r := range ledger {
		ids = append(ids, r.ID)
	}
	rows, err := tx.Query(ctx, `SELECT meeting_id, calendar_id, event_id, status, organizer_copy, action, coalesce(linked_crm_id, '')
		FROM meeting_copies WHERE meeting_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	out := map[int64][]copyRow{}
	var mid int64
	var c copyRow
	_, err = pgx.ForEachRow(rows, []any{&mid, &c.CalendarID, &c.EventID, &c.Status, &c.Organizer, &c.Action, &c.LinkedCRMID}, func() error {
		out[mid] = append(out[mid], c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read copies: %w", err)
	}
	return out, nil
}

// decideEvent decides one copy, then its meeting: a meeting on several
// calendars is one engagement, logged when any live copy says log, and
// cancelled only when the organizer's copy is cancelled or no live copy
// remains. It queues the statements that record the decision in batch.
func (p *Pipeline) decideEvent(sc *syncContext, ev *calendar.Event, key string, row *ledgerRow, copies map[int64][]copyRow, batch *pgx.Batch, now time.Time) ([]writePayload, []link) {
	cal := sc.cal
	logged := row.CRMID != "" && row.State != "cancelled" && row.State != "deleted_in_crm"
	var d rules.Decision
	minimal := ev.ICalUID == ""
	if minimal {
		d = rules.Decision{Action: rules.ActionSkip, Rule: "cancelled", Reason: "the event was cancelled or deleted", Version: sc.rules.Version()}
	} else {
		d = sc.rules.Decide(rules.Input{
			Event: *ev, Owner: cal.Owner, Workspace: rules.Workspace{ID: cal.WorkspaceID, Name: cal.WorkspaceName},
			Internal: cal.Internal, Index: sc.index, Logged: logged,
		})
	}
	p.metrics.events.WithLabelValues(string(d.Action)).Inc()

	status := string(ev.Status)
	if status == "" {
		status = string(calendar.StatusConfirmed)
	}
	this := copyRow{
		CalendarID: cal.ID, EventID: ev.ID, Status: status, Action: string(d.Action),
		Organizer: !minimal && (ev.Organizer.Self || strings.EqualFold(ev.Organizer.Email, cal.Owner)),
	}
	cs := copies[row.ID]
	found := false
	for i := range cs {
		if cs[i].CalendarID == cal.ID && cs[i].EventID == ev.ID {
			if minimal {
				this.Organizer = cs[i].Organizer
			}
			this.LinkedCRMID = cs[i].LinkedCRMID
			cs[i] = this
			found = true
		}
	}
	if !found {
		cs = append(cs, this)
	}
	copies[row.ID] = cs
	if ev.Private[calendar.PropMeetingID] != "" && ev.Private[calendar.PropMeetingID] == row.CRMID {
		this.LinkedCRMID = row.CRMID
	}
	batch.Queue(`INSERT INTO meeting_copies (calendar_id, event_id, meeting_id, status, organizer_copy, action, rule, etag, linked_crm_id, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, ''), $10)
		ON CONFLICT (calendar_id, event_id) DO UPDATE SET meeting_id = EXCLUDED.meeting_id, status = EXCLUDED.status,
			organizer_copy = EXCLUDED.organizer_copy, action = EXCLUDED.action, rule = EXCLUDED.rule,
			etag = coalesce(EXCLUDED.etag, meeting_copies.etag), linked_crm_id = coalesce(EXCLUDED.linked_crm_id, meeting_copies.linked_crm_id),
			updated_at = EXCLUDED.updated_at`,
		cal.ID, ev.ID, row.ID, status, this.Organizer, string(d.Action), d.Rule, nullString(ev.ETag), this.LinkedCRMID, now)

	var live, anyLog, orgCancelled bool
	for _, c := range cs {
		if c.Status == string(calendar.StatusCancelled) {
			orgCancelled = orgCancelled || c.Organizer
			continue
		}
		live = true
		anyLog = anyLog || c.Action == string(rules.ActionLog)
	}
	cancelled := orgCancelled || !live

	inWindow := minimal || (ev.End.After(now.Add(-p.cfg.Backfill)) && ev.Start.Before(now.Add(p.cfg.Lookahead)))
	var writes []writePayload
	var links []link
	recordDecision := d.Action == rules.ActionLog || !anyLog || row.Rule == ""
	state := row.State
	desiredHash := row.DesiredHash
	var w desired
	switch {
	case row.State == "deleted_in_crm":
		// A person deleted it in the CRM: it stays deleted.
	case cancelled:
		if row.CRMID != "" && row.State != "cancelled" {
			w = desired{Cancel: true}
			desiredHash = w.hash(sc.own)
		} else if row.CRMID == "" {
			state, desiredHash = "skipped", ""
			if row.State == "skipped" || row.Rule == "" {
				recordDecision = true
			}
		}
	case anyLog && !minimal && (inWindow || row.CRMID != ""):
		w = desiredOf(key, ev, &d, now)
		desiredHash = w.hash(sc.own)
		if row.CRMID == "" && row.State != "creating" {
			state = "pending"
		}
	case row.CRMID == "":
		state, desiredHash = "skipped", ""
		if !inWindow && !minimal {
			d.Rule, d.Reason = "outside-window", "the meeting is outside the backfill and lookahead window"
			recordDecision = true
		}
	}
	needWrite := desiredHash != "" && (desiredHash != row.OwnedHash || row.CRMID == "" ||
		(row.State == "cancelled" && !cancelled))
	if needWrite && sc.crmConn != "" {
		writes = append(writes, writePayload{
			WorkspaceID: cal.WorkspaceID, ConnectionID: sc.crmConn, Key: key, Hash: desiredHash, Desired: w, SeenAt: sc.seenAt, DecidedAt: now,
		})
	}
	if r := sc.rec; r != nil {
		r.report.Checked++
		switch {
		case needWrite && row.CRMID == "":
			r.report.Created++
		case needWrite && w.Cancel:
			r.report.Cancelled++
		case needWrite:
			r.report.Updated++
		case row.CRMID != "" && row.State == "logged" && w.Props != nil && sc.crmConn != "":
			r.logged[key] = loggedMeeting{crmID: row.CRMID, w: writePayload{
				WorkspaceID: cal.WorkspaceID, ConnectionID: sc.crmConn, Key: key, Hash: desiredHash, Desired: w,
			}}
		}
	}
	if !needWrite && row.CRMID != "" && this.LinkedCRMID != row.CRMID && !minimal && status != string(calendar.StatusCancelled) {
		links = append(links, link{EventID: ev.ID, Key: key, CRMID: row.CRMID})
	}

	action := string(rules.ActionSkip)
	if anyLog {
		action = string(rules.ActionLog)
	}
	var trace []byte
	if recordDecision {
		trace, _ = json.Marshal(d)
	}
	var starts *time.Time
	if !minimal {
		starts = &ev.Start
	}
	batch.Queue(`UPDATE meetings SET state = $2, action = $3,
			rule = CASE WHEN $4 THEN $5 ELSE rule END, rules_version = $6,
			trace = CASE WHEN $4 THEN $7::jsonb ELSE trace END,
			desired_hash = nullif($8, ''), starts_at = coalesce($9, starts_at), decided_at = $10, updated_at = $10
		WHERE id = $1`,
		row.ID, state, action, recordDecision, d.Rule, sc.rules.Version(), trace, desiredHash, starts, now)
	row.State, row.DesiredHash, row.Action = state, desiredHash, action
	if recordDecision {
		row.Rule = d.Rule
	}
	return writes, links
}

// enqueueAll queues writes and write-backs concurrently. Writes of one CRM
// connection that fill whole batches (a backfill page) are queued as
// crm:write:batch directly: Asynq aggregates one batch per group per
// second, which would cap a backfill at 100 meetings a second. The rest
// join the connection's group and are batched with other syncs' writes.
func (p *Pipeline) enqueueAll(ctx context.Context, writes []writePayload, links map[string][]link) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	byConn := map[string][]writePayload{}
	for _, w := range writes {
		byConn[w.ConnectionID] = append(byConn[w.ConnectionID], w)
	}
	for conn, ws := range byConn {
		for len(ws) >= batchSize {
			batch := ws[:batchSize]
			ws = ws[batchSize:]
			g.Go(func() error { return p.enqueueBatch(gctx, batch) })
		}
		if len(ws) == 0 {
			continue
		}
		if direct, err := p.quiet(ctx, conn, len(ws)); err != nil {
			return err
		} else if direct {
			g.Go(func() error { return p.enqueueBatch(gctx, ws) })
			continue
		}
		for _, w := range ws {
			g.Go(func() error { return p.enqueueWrite(gctx, w) })
		}
	}
	for cal, ls := range links {
		g.Go(func() error { return p.enqueueLinks(gctx, cal, ls) })
	}
	return g.Wait()
}

// quietWrites is how many writes a second a CRM connection may send at
// once, unbatched; past it, writes wait to be batched.
const quietWrites = 3

// quiet reports whether a connection's CRM writes are few enough this
// second to be sent at once instead of waiting up to two seconds for
// Asynq's group aggregation: a live change reaches the CRM in well under a
// second, while a busy connection still spends one call per 100 meetings.
func (p *Pipeline) quiet(ctx context.Context, connID string, n int) (bool, error) {
	key := "rapport:wrate:" + connID + ":" + strconv.FormatInt(p.now().Unix(), 10)
	pipe := p.rdb.TxPipeline()
	incr := pipe.IncrBy(ctx, key, int64(n))
	pipe.Expire(ctx, key, 5*time.Second)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("count CRM writes: %w", err)
	}
	return incr.Val() <= quietWrites, nil
}

// syncFailed records a failed sync and maps the error to what the queue
// does with it.
func (p *Pipeline) syncFailed(ctx context.Context, t *asynq.Task, cal calRow, err error) error {
	if _, dbErr := p.db.Exec(context.WithoutCancel(ctx), `UPDATE calendars SET last_error = $2 WHERE id = $1`, cal.ID, truncate(err.Error(), 500)); dbErr != nil {
		p.log.ErrorContext(ctx, "record sync error", slog.String("calendar_id", cal.ID), slog.Any("error", dbErr))
	}
	switch calendar.ClassOf(err) {
	case calendar.Auth:
		return p.reauth(ctx, t, cal.WorkspaceID, cal.ConnectionID, err)
	case calendar.NotFound:
		_, _ = p.db.Exec(ctx, `UPDATE calendars SET status = 'error' WHERE id = $1`, cal.ID)
		return p.permanent(ctx, t, cal.WorkspaceID, err)
	case calendar.Permanent:
		return p.permanent(ctx, t, cal.WorkspaceID, err)
	}
	return err
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
