package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
	"github.com/rapportsync/rapport/rules"
)

// syncer handles calendar:sync: it lists a calendar's changes and records
// each page's decisions, queueing the CRM writes and write-backs they call
// for.
type syncer struct{ *core }

// maxSyncRounds bounds how often one sync task repeats itself for
// notifications that arrived while it ran; past it, it enqueues a new sync.
const maxSyncRounds = 5

var (
	errSyncBusy       = errors.New("another sync of this calendar is running")
	errIndexNotLoaded = errors.New("the CRM company index is not loaded yet")
)

func (s *syncer) handle(ctx context.Context, t *asynq.Task) (err error) {
	var pl syncPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return s.permanent(ctx, t, "", fmt.Errorf("decode payload: %w", err))
	}
	cal, err := s.ledger.Calendar(ctx, pl.CalendarID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil // calendar removed
	}
	if err != nil {
		return err
	}
	if cal.ConnStatus != plan.ConnActive || cal.Status == plan.CalendarPaused || cal.Status == plan.CalendarGone {
		// Parked: re-authorisation enqueues a sync of every calendar, which
		// must not find this task's queued mark.
		s.log.InfoContext(ctx, "sync parked", slog.String("calendar_id", cal.ID), slog.String("connection_status", string(cal.ConnStatus)),
			slog.String("calendar_status", string(cal.Status)))
		return s.rdb.Del(ctx, syncQueuedKey(cal.ID)).Err()
	}

	// One sync per calendar at a time, across processes. A notification
	// during the sync bumped the dirty counter; the running sync repeats.
	l, ok, err := s.tryLease(ctx, "sync:"+cal.ID)
	if err != nil {
		return fmt.Errorf("lease calendar %s: %w", cal.ID, err)
	}
	if !ok {
		// Another sync runs. It may have made its last check already, so
		// come back shortly; by then this change is usually covered.
		return &retryAfter{wait: time.Second, err: errSyncBusy}
	}
	defer func() { l.releaseUnlessCrashed(ctx, err) }()
	ctx = withLease(ctx, l)
	if pl.Sweep {
		ctx = withSwept(ctx, bucket(s.now(), s.cfg.SweepGrace))
	}
	full := pl.Full
	if len(pl.EventIDs) > 0 {
		err := s.fetch(ctx, cal, pl.EventIDs, pl.SeenAt)
		if err == nil {
			return nil
		}
		if !pl.Sweep || calendar.ClassOf(err) != calendar.Permanent {
			return s.failed(ctx, t, cal, err)
		}
		// The sweep re-reads lost writes; a provider that cannot fetch
		// events by id (Graph) is listed in full instead.
		s.log.InfoContext(ctx, "fetch by id refused; listing in full", slog.String("calendar_id", cal.ID), slog.String("error", scrub(err.Error())))
		full = true
	}
	// From here on, notifications queue a new task: this one may have
	// made its last check when they arrive.
	if err := s.rdb.Del(ctx, syncQueuedKey(cal.ID)).Err(); err != nil {
		return fmt.Errorf("clear queued mark of %s: %w", cal.ID, err)
	}

	for round := 0; ; round++ {
		if round == maxSyncRounds {
			return s.markDirty(ctx, cal.ID, false, time.Time{})
		}
		st, err := s.ledger.SyncState(ctx, cal.ID)
		if err != nil {
			return err
		}
		if !full && st.SyncedDirty >= st.Dirty && (round > 0 || pl.Dirty <= st.SyncedDirty) {
			return nil // every notification so far is covered
		}
		cursor := st.Cursor
		if full {
			cursor = ""
		}
		start := s.now()
		err = s.run(ctx, cal, cursor, pl.SeenAt, nil)
		if calendar.ClassOf(err) == calendar.CursorExpired && cursor != "" {
			s.log.InfoContext(ctx, "sync cursor expired; listing in full", slog.String("calendar_id", cal.ID))
			full = true
			round--
			continue
		}
		if err != nil {
			return s.failed(ctx, t, cal, err)
		}
		full = false
		if err := s.ledger.FinishSync(ctx, cal.ID, st.Dirty, start); err != nil {
			return err
		}
		pl.SeenAt = time.Time{}
	}
}

// failed records a failed sync and hands its error to the error table. A
// calendar the provider says is gone is marked so, with one dead letter,
// and not synced again until its connection is imported again.
func (s *syncer) failed(ctx context.Context, t *asynq.Task, cal ledger.Calendar, err error) error {
	if crashed(err) {
		return err
	}
	msg := scrub(err.Error())
	if dbErr := s.ledger.RecordSyncError(context.WithoutCancel(ctx), cal.ID, msg); dbErr != nil {
		s.log.ErrorContext(ctx, "record sync error", slog.String("calendar_id", cal.ID), slog.Any("error", dbErr))
	}
	if calendar.ClassOf(err) == calendar.NotFound {
		first, mErr := s.ledger.MarkGone(ctx, cal.ID, "the calendar no longer exists at "+cal.Provider+": "+msg)
		if mErr != nil {
			return mErr
		}
		if first {
			s.metrics.calendarsGone.Inc()
			s.deadLetter(ctx, cal.WorkspaceID, t, plan.DeadNotFound, refOf(t), err)
			s.log.WarnContext(ctx, "calendar gone; it is not synced until its connection is imported again", slog.String("calendar_id", cal.ID))
		}
		return nil
	}
	return s.fail(ctx, t, subject{cal.WorkspaceID, cal.ConnectionID}, err)
}

// run lists the calendar's changes since cursor (all of the window when
// empty) and applies them page by page. A reconciliation passes rec to
// count what it finds and, in a dry run, change nothing.
func (s *syncer) run(ctx context.Context, cal ledger.Calendar, cursor string, seenAt time.Time, rec *reconcileState) error {
	src, err := s.source(ctx, cal)
	if err != nil {
		return err
	}
	sc, err := s.newPageContext(ctx, cal, seenAt)
	if err != nil {
		return err
	}
	sc.rec = rec
	full := cursor == ""
	var seen map[string]bool
	if full {
		seen = map[string]bool{}
	}
	req := calendar.ListRequest{CalendarID: cal.CalendarID, Cursor: cursor, TimeMin: sc.window.Min, TimeMax: sc.window.Max}
	for {
		if err := renewLease(ctx); err != nil {
			return err
		}
		page, err := src.List(ctx, req)
		s.metrics.calendarOps.WithLabelValues(cal.Provider, "list", classLabel(err)).Inc()
		if err != nil {
			return err
		}
		if err := s.crashAt("sync.listed"); err != nil {
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
		if err := s.apply(ctx, sc, page.Events, next); err != nil {
			return err
		}
		if err := s.crashAt("sync.page.committed"); err != nil {
			return err
		}
		if last {
			if full {
				return s.applyDisappeared(ctx, sc, seen, page.NextCursor)
			}
			return nil
		}
		req.PageToken = page.NextPageToken
	}
}

// fetch reads some events of a calendar by id and decides them, leaving
// the calendar's cursor as it is.
func (s *syncer) fetch(ctx context.Context, cal ledger.Calendar, ids []string, seenAt time.Time) error {
	src, err := s.source(ctx, cal)
	if err != nil {
		return err
	}
	sc, err := s.newPageContext(ctx, cal, seenAt)
	if err != nil {
		return err
	}
	page, err := src.List(ctx, calendar.ListRequest{CalendarID: cal.CalendarID, EventIDs: ids, TimeMin: sc.window.Min, TimeMax: sc.window.Max})
	s.metrics.calendarOps.WithLabelValues(cal.Provider, "get", classLabel(err)).Inc()
	if err != nil {
		return err
	}
	return s.apply(ctx, sc, page.Events, nil)
}

// applyDisappeared ends a full listing: copies the ledger knows that the
// listing no longer holds were deleted, and are cancelled like any other
// deletion — unless their meeting lies outside the listed window, where a
// listing cannot see them. The cursor is stored with them.
func (s *syncer) applyDisappeared(ctx context.Context, sc *pageContext, seen map[string]bool, cursor string) error {
	live, err := s.ledger.LiveCopies(ctx, sc.cal.ID)
	if err != nil {
		return err
	}
	var gone []calendar.Event
	for _, c := range live {
		if seen[c.EventID] {
			continue
		}
		if c.StartsAt != nil && !sc.window.Contains(*c.StartsAt, *c.StartsAt) {
			continue
		}
		gone = append(gone, calendar.Event{ID: c.EventID, Status: calendar.StatusCancelled})
	}
	for len(gone) > 500 {
		if err := s.apply(ctx, sc, gone[:500], nil); err != nil {
			return err
		}
		gone = gone[500:]
	}
	return s.apply(ctx, sc, gone, &cursor)
}

// pageContext is what every page of one sync shares.
type pageContext struct {
	cal     ledger.Calendar
	rules   *rules.Set
	own     plan.Ownership
	index   *matching.Index
	window  plan.Window
	crmConn string // empty when the workspace has no CRM connection yet
	// crm is the workspace's CRM connection (zero when none), and
	// companyProps the values of the company properties the rules read.
	crm          ledger.CRMConn
	companyProps func(companyID string) map[string]string
	// hasBookings: the workspace holds bookings, which its calendar copies
	// may join.
	hasBookings bool
	seenAt      time.Time
	rec         *reconcileState // set during a reconciliation
}

func (s *syncer) newPageContext(ctx context.Context, cal ledger.Calendar, seenAt time.Time) (*pageContext, error) {
	rs := s.rules()
	view, err := s.indexes.get(ctx, cal.WorkspaceID, rs, s.now())
	if err != nil {
		return nil, err
	}
	sc := &pageContext{cal: cal, rules: rs, own: plan.Ownership{Ownership: rs.Ownership()}, index: view.ix, companyProps: view.lookup(),
		window: s.window(), seenAt: seenAt}
	if c, err := s.ledger.CRMConnection(ctx, cal.WorkspaceID); err == nil {
		sc.crmConn, sc.crm = c.ID, c
		if err := s.indexReady(ctx, cal.WorkspaceID, rs); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return nil, err
	}
	if sc.hasBookings, err = s.ledger.HasBookings(ctx, cal.WorkspaceID); err != nil {
		return nil, err
	}
	if sc.seenAt.IsZero() {
		sc.seenAt = s.now()
	}
	return sc, nil
}

// apply records the decisions of one page in one transaction, queues the
// CRM writes and write-backs they call for, and stores the cursor last.
func (s *syncer) apply(ctx context.Context, sc *pageContext, events []calendar.Event, cursor *string) error {
	now := s.now()
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
	knownKey, err := s.ledger.KeysOfCopies(ctx, cal.ID, minimalIDs)
	if err != nil {
		return err
	}
	keys := make([]string, len(events))
	var unique []string
	for i := range events {
		ev := &events[i]
		if ev.ICalUID != "" {
			keys[i] = plan.MeetingKey(ws, ev.ICalUID, ev.OriginalStart)
		} else {
			keys[i] = knownKey[ev.ID] // empty: a deletion of something never recorded
		}
		if keys[i] != "" {
			unique = append(unique, keys[i])
		}
	}
	aliases, err := s.joinPartners(ctx, sc, events, keys)
	if err != nil {
		return err
	}
	unique = unique[:0]
	for _, k := range keys {
		if k != "" {
			unique = append(unique, k)
		}
	}
	slices.Sort(unique)
	unique = slices.Compact(unique)
	// Contact properties are read before the transaction: a CRM call
	// never holds the page's locks.
	contacts, err := s.decideContacts(ctx, sc, events)
	if err != nil {
		return err
	}

	tx, err := s.ledger.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)

	var writes []writePayload
	var links []ledger.Link
	if len(unique) > 0 {
		rows, err := tx.LockMeetings(ctx, ws, unique, sc.rules.Version())
		if err != nil {
			return err
		}
		ids := make([]int64, 0, len(rows))
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		copies, err := tx.Copies(ctx, ids)
		if err != nil {
			return err
		}
		decisions := make([]ledger.Decision, 0, len(events))
		for i := range events {
			key := keys[i]
			if key == "" {
				continue
			}
			ev := &events[i]
			row := rows[key]
			in := plan.EventInput{
				Event: ev, Key: key, Workspace: ws, CalendarID: cal.ID, Owner: cal.Owner, Meeting: row, Copies: copies[row.ID],
				RulesVersion: sc.rules.Version(), Window: sc.window, CRMConnected: sc.crmConn != "", Ownership: sc.own, Now: now,
			}
			if ev.ICalUID != "" && !ev.OutOfWindow {
				in.Decision = sc.rules.Decide(rules.Input{
					Event: *ev, Owner: cal.Owner, Workspace: rules.Workspace{ID: ws, Name: cal.WorkspaceName},
					Internal: cal.Internal, Index: sc.index, Logged: row.Logged(),
					CompanyProperties: sc.companyProps, Contacts: contacts.ids, ContactProperties: contacts.props,
				})
			}
			out := plan.DecideEvent(in)
			if out.Skip {
				continue
			}
			s.metrics.events.WithLabelValues(string(out.Copy.Action)).Inc()
			rows[key] = out.Meeting
			copies[row.ID] = out.Copies
			decisions = append(decisions, ledger.Decision{MeetingID: row.ID, Copy: out.Copy, Meeting: out.Meeting,
				RecordDecision: out.RecordDecision, Trace: out.Trace, RulesVersion: sc.rules.Version(), StartsAt: out.StartsAt})
			if out.Write != nil {
				writes = append(writes, writePayload{WorkspaceID: ws, ConnectionID: sc.crmConn, Key: key, Hash: out.Meeting.DesiredHash,
					Desired: *out.Write, SeenAt: sc.seenAt, DecidedAt: now})
			}
			if out.Link {
				links = append(links, ledger.Link{EventID: ev.ID, Key: key, CRMID: row.CRMID})
			}
			sc.rec.count(key, row, out, ws, sc.crmConn)
		}
		if err := tx.RecordDecisions(ctx, decisions, now); err != nil {
			return err
		}
		if err := tx.AddAliases(ctx, ws, aliases); err != nil {
			return err
		}
		if err := s.crashAt("sync.page.decided"); err != nil {
			return err
		}
	}
	if sc.rec != nil && sc.rec.dryRun {
		return nil // rolled back: a dry run only counts
	}
	if cursor != nil {
		if err := tx.StoreCursor(ctx, cal.ID, *cursor); err != nil {
			return err
		}
	}
	// Enqueue before commit: a task for a decision that then fails to
	// commit finds a ledger hash that does not match and does nothing; a
	// commit without its tasks would lose work.
	if err := s.enqueueAll(ctx, writes, map[string][]ledger.Link{cal.ID: links}); err != nil {
		return err
	}
	if err := s.crashAt("sync.page.queued"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// joinPartners turns each event's key into the key of the meeting it
// joined across sources: a booking and the calendar event it put on its
// host's calendar are one meeting, whichever came first. Known joins are
// aliases in the ledger; new ones are returned to be recorded with the
// page. keys is updated in place.
func (s *syncer) joinPartners(ctx context.Context, sc *pageContext, events []calendar.Event, keys []string) (map[string]string, error) {
	ws := sc.cal.WorkspaceID
	var natural []string
	for _, k := range keys {
		if k != "" {
			natural = append(natural, k)
		}
	}
	known, err := s.ledger.Aliases(ctx, ws, natural)
	if err != nil {
		return nil, err
	}
	var ps []ledger.Partner
	var at []int
	for i := range events {
		ev := &events[i]
		if k, ok := known[keys[i]]; ok {
			keys[i] = k
			continue
		}
		if keys[i] == "" || ev.ICalUID == "" || (ev.Booking == nil && !sc.hasBookings) {
			continue
		}
		p := ledger.Partner{Booking: ev.Booking != nil, EventID: ev.ID, MatchHash: plan.MatchHash(ws, ev)}
		if ev.Booking != nil {
			p.ExternalID = ev.Booking.CalendarEventID
		}
		ps = append(ps, p)
		at = append(at, i)
	}
	if len(ps) == 0 {
		return nil, nil
	}
	found, err := s.ledger.PartnerKeys(ctx, ws, ps)
	if err != nil {
		return nil, err
	}
	added := map[string]string{}
	for j, k := range found {
		i := at[j]
		if k != keys[i] {
			added[keys[i]] = k
			keys[i] = k
		}
	}
	return added, nil
}

// enqueueAll queues writes and write-backs concurrently. Writes of one CRM
// connection that fill whole batches (a backfill page) are queued as
// crm:write:batch directly: Asynq aggregates one batch per group per
// second, which would cap a backfill at 100 meetings a second. The rest
// join the connection's group and are batched with other syncs' writes.
func (c *core) enqueueAll(ctx context.Context, writes []writePayload, links map[string][]ledger.Link) error {
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
			g.Go(func() error { return c.enqueueBatch(gctx, batch) })
		}
		if len(ws) == 0 {
			continue
		}
		if direct, err := c.quiet(ctx, conn, len(ws)); err != nil {
			return err
		} else if direct {
			g.Go(func() error { return c.enqueueBatch(gctx, ws) })
			continue
		}
		for _, w := range ws {
			g.Go(func() error { return c.enqueueWrite(gctx, w) })
		}
	}
	for cal, ls := range links {
		if len(ls) > 0 {
			g.Go(func() error { return c.enqueueLinks(gctx, cal, ls) })
		}
	}
	return g.Wait()
}

// quietWrites is how many writes a second a CRM connection may send at
// once, unbatched; past it, writes wait to be batched.
const quietWrites = 3

// quiet reports whether a connection's CRM writes are few enough this
// second to be sent at once instead of waiting for Asynq's group
// aggregation: a live change reaches the CRM in well under a second, while
// a busy connection still spends one call per 100 meetings.
func (c *core) quiet(ctx context.Context, connID string, n int) (bool, error) {
	key := "rapport:wrate:" + connID + ":" + strconv.FormatInt(c.now().Unix(), 10)
	pipe := c.rdb.TxPipeline()
	incr := pipe.IncrBy(ctx, key, int64(n))
	pipe.Expire(ctx, key, 5*time.Second)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("count CRM writes: %w", err)
	}
	return incr.Val() <= quietWrites, nil
}

// markDirty records that a calendar changed and queues its sync. The
// counter it bumps names the sync task, so no notification is ever folded
// into a task that already ran its last check; a running sync sees the
// counter move and goes round again, and the tasks it covered find nothing
// to do.
func (c *core) markDirty(ctx context.Context, calID string, full bool, seenAt time.Time) error {
	dirty, err := c.ledger.MarkDirty(ctx, calID)
	if err != nil {
		return err
	}
	if !full {
		// A sync of this calendar that has not taken the calendar's lease
		// yet reads the counter after taking it, so it covers this change:
		// a burst of notifications (the echoes of write-backs) queues one
		// task, not one each.
		queued, err := c.rdb.SetNX(ctx, syncQueuedKey(calID), dirty, time.Minute).Result()
		if err != nil {
			return fmt.Errorf("mark calendar %s queued: %w", calID, err)
		}
		if !queued {
			return nil
		}
	}
	return c.enqueueSync(ctx, calID, dirty, full, seenAt)
}

// syncQueuedKey marks a calendar whose queued sync has not started.
func syncQueuedKey(calID string) string { return "rapport:syncqueued:" + calID }
