package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/crm"
)

// handleWriteBatch writes up to 100 meetings of one CRM connection: creates
// with their associations in one batch call, updates in another, then the
// association changes, recording each outcome in the ledger. Exactly once:
// a create is marked `creating` with an attempt id before it is sent, and a
// retry whose outcome is unknown searches the CRM for the meeting key (and
// for HubSpot's own iCalUID) and adopts what it finds.
func (p *Pipeline) handleWriteBatch(ctx context.Context, t *asynq.Task) error {
	var raws []json.RawMessage
	if err := json.Unmarshal(t.Payload(), &raws); err != nil {
		return p.permanent(ctx, t, "", fmt.Errorf("decode batch: %w", err))
	}
	// The latest write of a meeting wins; older ones are superseded.
	byKey := map[string]writePayload{}
	var order []string
	for _, r := range raws {
		var w writePayload
		if err := json.Unmarshal(r, &w); err != nil {
			return p.permanent(ctx, t, "", fmt.Errorf("decode write: %w", err))
		}
		if _, ok := byKey[w.Key]; !ok {
			order = append(order, w.Key)
		}
		byKey[w.Key] = w
	}
	if len(order) == 0 {
		return nil
	}
	first := byKey[order[0]]
	ws, connID := first.WorkspaceID, first.ConnectionID
	conn, err := p.crmConnection(ctx, ws)
	if err != nil {
		return err
	}
	if conn.ID != connID || conn.Status != "active" {
		// Parked until the CRM connection is re-authorised.
		return p.reauth(ctx, t, ws, connID, fmt.Errorf("CRM connection %s is %s", connID, conn.Status))
	}
	sink, err := p.sink(ctx, conn.ID, conn.Account)
	if err != nil {
		return err
	}
	wb := &writeBatch{p: p, t: t, ws: ws, conn: conn, sink: sink, own: ownership{p.rules().Ownership()}}
	return wb.run(ctx, byKey, order)
}

type writeBatch struct {
	p    *Pipeline
	t    *asynq.Task
	ws   string
	conn connRow
	sink crm.Sink
	own  ownership
	// retryErr is the first retryable failure; the batch is retried after
	// everything else was recorded, and the retry redoes only what failed.
	retryErr error
}

type op struct {
	w   writePayload
	row ledgerRow
}

func (b *writeBatch) run(ctx context.Context, byKey map[string]writePayload, order []string) error {
	p := b.p
	slices.Sort(order)
	tx, err := p.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, ledgerSelect+` WHERE workspace_id = $1 AND meeting_key = ANY($2) ORDER BY meeting_key FOR UPDATE`, b.ws, order)
	if err != nil {
		return fmt.Errorf("lock ledger: %w", err)
	}
	ledger, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledgerRow, error) { return scanLedger(r.(pgx.Rows)) })
	if err != nil {
		return fmt.Errorf("lock ledger: %w", err)
	}
	var creates, recovers, updates []op
	now := p.now()
	rowOf := make(map[string]ledgerRow, len(ledger))
	for _, r := range ledger {
		rowOf[r.Key] = r
	}
	var invisible int
	var searchWait time.Duration
	for _, key := range order {
		w := byKey[key]
		row, ok := rowOf[key]
		if !ok || (row.DesiredHash != w.Hash && row.UpdatedAt.Before(w.DecidedAt)) {
			// The sync that queued this write has not committed its
			// decision yet (writes are queued before the commit), or it
			// rolled back: wait a little, then let it go.
			if now.Sub(w.DecidedAt) < decisionWait {
				invisible++
			}
			continue
		}
		switch {
		case row.DesiredHash != w.Hash, row.State == "deleted_in_crm":
			continue // superseded by a newer decision, or deleted by a person
		case row.CRMID == "" && w.Desired.Cancel:
			continue
		case row.CRMID == "" && row.State == "creating":
			if row.AttemptID != nil && p.inFlight(ctx, *row.AttemptID) {
				// Another batch is sending this create right now (it may be
				// waiting out a rate limit): searching now could miss it.
				if searchWait == 0 || time.Second < searchWait {
					searchWait = time.Second
				}
				continue
			}
			if !p.cfg.searchConsistent(row.UpdatedAt, now, b.conn.UniqueKey) {
				// Another batch is creating it, or its create may not be
				// searchable yet: this meeting waits, the others go on.
				if wait := row.UpdatedAt.Add(p.cfg.SearchLag).Sub(now); searchWait == 0 || wait < searchWait {
					searchWait = wait
				}
				continue
			}
			recovers = append(recovers, op{w, row})
		case row.CRMID == "":
			creates = append(creates, op{w, row})
		case row.OwnedHash != w.Hash || row.State == "cancelled":
			updates = append(updates, op{w, row})
		}
	}
	// Mark creates before sending them, in their own commit, and hold the
	// attempt's in-flight mark until their outcome is recorded.
	if len(creates) > 0 || len(recovers) > 0 {
		attempt := uuid.NewString()
		if err := p.rdb.Set(ctx, attemptKey(attempt), "1", attemptTTL).Err(); err != nil {
			return fmt.Errorf("mark attempt in flight: %w", err)
		}
		defer p.rdb.Del(context.WithoutCancel(ctx), attemptKey(attempt))
		var ids []int64
		for _, o := range append(slices.Clone(creates), recovers...) {
			ids = append(ids, o.row.ID)
		}
		if _, err := tx.Exec(ctx, `UPDATE meetings SET state = 'creating', attempt_id = $2, attempts = attempts + 1, updated_at = $3 WHERE id = ANY($1)`, ids, attempt, now); err != nil {
			return fmt.Errorf("mark creating: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch start: %w", err)
	}

	// Recover creates whose outcome is unknown, and adopt meetings the
	// CRM's own calendar sync logged.
	adopted, err := b.findExisting(ctx, creates, recovers)
	if err != nil {
		return err
	}
	creates = append(creates, recovers...)
	var toCreate []op
	for _, o := range creates {
		if m, ok := adopted[o.w.Key]; ok {
			o.row.CRMID = m.ID
			o.row.CompanyIDs, o.row.ContactIDs = nil, nil // unknown: associations are added, never removed
			o.row.OwnedHash = ""
			updates = append(updates, o)
			if err := b.recordAdopted(ctx, o, m.ID); err != nil {
				return err
			}
			continue
		}
		toCreate = append(toCreate, o)
	}

	contacts, err := b.contacts(ctx, append(slices.Clone(toCreate), updates...))
	if err != nil {
		return err
	}
	if err := b.create(ctx, toCreate, contacts); err != nil {
		return err
	}
	if err := b.update(ctx, updates, contacts); err != nil {
		return err
	}
	if b.retryErr == nil && invisible > 0 {
		b.retryErr = &retryAfter{wait: 500 * time.Millisecond, err: fmt.Errorf("%d decisions not committed yet", invisible)}
	}
	if b.retryErr == nil && searchWait > 0 {
		b.retryErr = &retryAfter{wait: searchWait, err: errors.New("create outcome unknown; waiting for CRM search to catch up")}
	}
	return b.retryErr
}

// decisionWait is how long a write waits for the decision that queued it
// to commit; a sync page commits within seconds, or rolls back.
const decisionWait = 2 * time.Minute

// attemptTTL bounds how long a create attempt counts as in flight when its
// process died without clearing the mark; longer than any one batch call
// with its retries and rate-limit waits.
const attemptTTL = 5 * time.Minute

func attemptKey(id string) string { return "rapport:attempt:" + id }

// inFlight reports whether a create attempt is still being sent by a live
// process. On a Redis error it says yes: waiting is safe, a duplicate not.
func (p *Pipeline) inFlight(ctx context.Context, attempt string) bool {
	n, err := p.rdb.Exists(ctx, attemptKey(attempt)).Result()
	return err != nil || n > 0
}

func (c *Config) searchConsistent(markedAt, now time.Time, unique bool) bool {
	return unique || now.Sub(markedAt) >= c.SearchLag
}

// findExisting searches the CRM for meetings already holding these keys
// (a create whose outcome was lost) and for meetings HubSpot's own calendar
// sync logged with the same iCalUID.
func (b *writeBatch) findExisting(ctx context.Context, creates, recovers []op) (map[string]crm.Meeting, error) {
	found := map[string]crm.Meeting{}
	if len(recovers) > 0 && !b.conn.UniqueKey {
		keys := make([]string, len(recovers))
		for i, o := range recovers {
			keys[i] = o.w.Key
		}
		ms, err := b.sink.FindMeetingsByKey(ctx, keys)
		b.p.countCRM("meetings.search", err)
		if err != nil {
			return nil, b.classify(ctx, err)
		}
		for k, m := range ms {
			found[k] = m
		}
	}
	uids := map[string][]string{}
	for _, o := range append(slices.Clone(creates), recovers...) {
		if _, ok := found[o.w.Key]; !ok && o.w.Desired.ICalUID != "" {
			uids[o.w.Desired.ICalUID] = append(uids[o.w.Desired.ICalUID], o.w.Key)
		}
	}
	if len(uids) == 0 {
		return found, nil
	}
	if has, err := b.calendarSyncMeetings(ctx); err != nil || !has {
		return found, err
	}
	list := make([]string, 0, len(uids))
	for u := range uids {
		list = append(list, u)
	}
	byUID, err := b.sink.FindMeetingsByICalUID(ctx, list)
	b.p.countCRM("meetings.search", err)
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	start := map[string]string{}
	for _, o := range append(slices.Clone(creates), recovers...) {
		start[o.w.Key] = o.w.Desired.Props[crm.PropTimestamp]
	}
	adopted := map[string]bool{}
	for uid, ms := range byUID {
		keys := uids[uid]
		// A single event (one key per iCalUID) matches the CRM's record
		// unambiguously; instances of a series share the iCalUID and are
		// matched by start. No record is adopted twice.
		for _, k := range keys {
			for _, m := range ms {
				if !adopted[m.ID] && (len(keys) == 1 || sameInstant(m.Properties[crm.PropTimestamp], start[k])) {
					found[k] = m
					adopted[m.ID] = true
					break
				}
			}
		}
	}
	return found, nil
}

// calendarSyncMeetings says whether the portal holds meetings of HubSpot's
// own calendar sync, cached in Redis: a portal without them never pays for
// the iCalUID search. A "none" is re-checked every ten minutes.
func (b *writeBatch) calendarSyncMeetings(ctx context.Context) (bool, error) {
	key := "rapport:calsync:" + b.conn.ID
	if v, err := b.p.rdb.Get(ctx, key).Result(); err == nil {
		return v == "1", nil
	}
	has, err := b.sink.HasCalendarSyncMeetings(ctx)
	b.p.countCRM("meetings.search", err)
	if err != nil {
		return false, b.classify(ctx, err)
	}
	v, ttl := "0", 10*time.Minute
	if has {
		v, ttl = "1", time.Hour
	}
	b.p.rdb.Set(ctx, key, v, ttl)
	return has, nil
}

func (b *writeBatch) recordAdopted(ctx context.Context, o op, crmID string) error {
	_, err := b.p.db.Exec(ctx, `UPDATE meetings SET crm_meeting_id = $2, state = 'logged', attempt_id = NULL, owned_hash = NULL, updated_at = $3 WHERE id = $1`,
		o.row.ID, crmID, b.p.now())
	if err != nil {
		return fmt.Errorf("record adopted meeting: %w", err)
	}
	b.p.log.InfoContext(ctx, "adopted existing CRM meeting", slog.String("meeting_key", o.w.Key), slog.String("crm_meeting_id", crmID))
	return nil
}

// contactCacheTTL: contacts resolved by e-mail are cached in Redis (never
// in PostgreSQL); misses for a shorter time, since a contact may be added.
const (
	contactCacheTTL = 6 * time.Hour
	contactMissTTL  = 15 * time.Minute
)

// contacts resolves the e-mails of all ops to CRM contact ids, through the
// Redis cache and one batch read for the misses.
func (b *writeBatch) contacts(ctx context.Context, ops []op) (map[string]string, error) {
	var emails []string
	for _, o := range ops {
		emails = append(emails, o.w.Desired.ContactEmails...)
	}
	slices.Sort(emails)
	emails = slices.Compact(emails)
	out := map[string]string{}
	if len(emails) == 0 {
		return out, nil
	}
	keys := make([]string, len(emails))
	for i, e := range emails {
		keys[i] = b.contactKey(e)
	}
	vals, err := b.p.rdb.MGet(ctx, keys...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read contact cache: %w", err)
	}
	var misses []string
	for i, v := range vals {
		switch s, _ := v.(string); {
		case v == nil:
			misses = append(misses, emails[i])
		case s != "":
			out[emails[i]] = s
		}
	}
	if len(misses) == 0 {
		return out, nil
	}
	found, err := b.sink.ContactsByEmail(ctx, misses)
	b.p.countCRM("contacts.batch.read", err)
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	pipe := b.p.rdb.Pipeline()
	for _, e := range misses {
		if c, ok := found[e]; ok {
			out[e] = c.ID
			pipe.Set(ctx, b.contactKey(e), c.ID, contactCacheTTL)
		} else {
			pipe.Set(ctx, b.contactKey(e), "", contactMissTTL)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.p.log.WarnContext(ctx, "write contact cache", slog.Any("error", err))
	}
	return out, nil
}

// contactKey hashes the address: Redis keys show up in monitoring tools.
func (b *writeBatch) contactKey(email string) string {
	h := sha256.Sum256([]byte(email))
	return "rapport:contact:" + b.conn.ID + ":" + hex.EncodeToString(h[:12])
}

func (b *writeBatch) contactIDs(o op, contacts map[string]string) []string {
	var ids []string
	for _, e := range o.w.Desired.ContactEmails {
		if id := contacts[e]; id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func (b *writeBatch) create(ctx context.Context, ops []op, contacts map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	owners, err := b.p.owners(ctx, b.conn.ID, b.sink)
	if err != nil {
		return b.classify(ctx, err)
	}
	ms := make([]crm.Meeting, len(ops))
	for i, o := range ops {
		ownerID := ""
		for _, e := range o.w.Desired.OwnerEmails {
			if id := owners[e]; id != "" {
				ownerID = id
				break
			}
		}
		ms[i] = crm.Meeting{
			Key: o.w.Key, Properties: b.own.createProps(&o.w.Desired, ownerID),
			CompanyIDs: o.w.Desired.CompanyIDs, ContactIDs: b.contactIDs(o, contacts),
		}
	}
	results, err := b.sink.CreateMeetings(ctx, ms, b.conn.UniqueKey)
	b.p.countCRM("meetings.batch.create", err)
	if err != nil {
		// The outcome of the whole call is unknown: rows stay `creating`
		// and the retry searches before creating again.
		return b.classify(ctx, err)
	}
	now := b.p.now()
	batch := &pgx.Batch{}
	var done []op
	for i, r := range results {
		o := ops[i]
		if r.Err != nil {
			// Known not created: back to pending, retried or parked.
			b.failed(ctx, batch, o, r.Err, now)
			continue
		}
		batch.Queue(`UPDATE meetings SET crm_meeting_id = $2, state = CASE WHEN $6 THEN 'cancelled' ELSE 'logged' END, owned_hash = $3,
				company_ids = coalesce($4::text[], '{}'), contact_ids = coalesce($5::text[], '{}'), attempt_id = NULL, last_error = NULL, written_at = $7, updated_at = $7
			WHERE id = $1`, o.row.ID, r.ID, o.w.Hash, ms[i].CompanyIDs, ms[i].ContactIDs, o.w.Desired.Cancel, now)
		o.row.CRMID = r.ID
		done = append(done, o)
	}
	if err := b.p.db.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record creates: %w", err)
	}
	return b.written(ctx, done)
}

func (b *writeBatch) update(ctx context.Context, ops []op, contacts map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	ms := make([]crm.Meeting, len(ops))
	for i, o := range ops {
		ms[i] = crm.Meeting{ID: o.row.CRMID, Key: o.w.Key, Properties: b.own.updateProps(&o.w.Desired, o.row.State == "cancelled")}
	}
	results, err := b.sink.UpdateMeetings(ctx, ms)
	b.p.countCRM("meetings.batch.update", err)
	if err != nil {
		return b.classify(ctx, err)
	}
	// Associations: add the new ones, remove only those Rapport added.
	var add, remove []crm.AssociationChange
	wantCompanies := make([][]string, len(ops))
	wantContacts := make([][]string, len(ops))
	for i, o := range ops {
		if results[i].Err != nil || o.w.Desired.Cancel {
			wantCompanies[i], wantContacts[i] = o.row.CompanyIDs, o.row.ContactIDs
			continue
		}
		wantCompanies[i], wantContacts[i] = o.w.Desired.CompanyIDs, b.contactIDs(o, contacts)
		a := crm.AssociationChange{MeetingID: o.row.CRMID, CompanyIDs: minus(wantCompanies[i], o.row.CompanyIDs), ContactIDs: minus(wantContacts[i], o.row.ContactIDs)}
		r := crm.AssociationChange{MeetingID: o.row.CRMID, CompanyIDs: minus(o.row.CompanyIDs, wantCompanies[i]), ContactIDs: minus(o.row.ContactIDs, wantContacts[i])}
		if len(a.CompanyIDs)+len(a.ContactIDs) > 0 {
			add = append(add, a)
		}
		if len(r.CompanyIDs)+len(r.ContactIDs) > 0 {
			remove = append(remove, r)
		}
	}
	if len(add) > 0 {
		err := b.sink.AddAssociations(ctx, add)
		b.p.countCRM("associations.batch.create", err)
		if err != nil {
			return b.classify(ctx, err)
		}
	}
	if len(remove) > 0 {
		err := b.sink.RemoveAssociations(ctx, remove)
		b.p.countCRM("associations.batch.archive", err)
		if err != nil {
			return b.classify(ctx, err)
		}
	}
	now := b.p.now()
	batch := &pgx.Batch{}
	var done []op
	for i, r := range results {
		o := ops[i]
		if r.Err != nil {
			if crm.ClassOf(r.Err) == crm.NotFound {
				// A person deleted the meeting in the CRM: it stays deleted.
				batch.Queue(`UPDATE meetings SET state = 'deleted_in_crm', last_error = 'deleted in the CRM', updated_at = $2 WHERE id = $1`, o.row.ID, now)
				continue
			}
			b.failed(ctx, batch, o, r.Err, now)
			continue
		}
		batch.Queue(`UPDATE meetings SET state = CASE WHEN $5 THEN 'cancelled' ELSE 'logged' END, owned_hash = $2,
				company_ids = coalesce($3::text[], '{}'), contact_ids = coalesce($4::text[], '{}'), last_error = NULL, written_at = $6, updated_at = $6
			WHERE id = $1`, o.row.ID, o.w.Hash, wantCompanies[i], wantContacts[i], o.w.Desired.Cancel, now)
		done = append(done, o)
	}
	if err := b.p.db.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record updates: %w", err)
	}
	return b.written(ctx, done)
}

// failed records one input's failure: a permanent error parks the meeting
// in `failed` with a dead letter; anything else is retried with the batch.
func (b *writeBatch) failed(ctx context.Context, batch *pgx.Batch, o op, err error, now time.Time) {
	class := crm.ClassOf(err)
	if class == crm.Permanent {
		batch.Queue(`UPDATE meetings SET state = CASE WHEN crm_meeting_id IS NULL THEN 'failed' ELSE state END, attempt_id = NULL, last_error = $2, updated_at = $3 WHERE id = $1`,
			o.row.ID, truncate(err.Error(), 500), now)
		b.p.deadLetter(ctx, b.ws, b.t, "permanent", map[string]any{"meeting_key": o.w.Key, "crm_connection_id": b.conn.ID}, err)
		return
	}
	batch.Queue(`UPDATE meetings SET state = CASE WHEN crm_meeting_id IS NULL THEN 'pending' ELSE state END, attempt_id = NULL, last_error = $2, updated_at = $3 WHERE id = $1`,
		o.row.ID, truncate(err.Error(), 500), now)
	if b.retryErr == nil {
		b.retryErr = err
	}
}

// written queues the write-back of the CRM id to every copy not yet linked
// and observes the webhook-to-CRM latency.
func (b *writeBatch) written(ctx context.Context, done []op) error {
	if len(done) == 0 {
		return nil
	}
	now := b.p.now()
	ids := make([]int64, len(done))
	crmIDs := map[int64]string{}
	for i, o := range done {
		ids[i] = o.row.ID
		crmIDs[o.row.ID] = o.row.CRMID
		if !o.w.SeenAt.IsZero() {
			b.p.metrics.latency.Observe(now.Sub(o.w.SeenAt).Seconds())
		}
	}
	b.p.metrics.written.Add(float64(len(done)))
	rows, err := b.p.db.Query(ctx, `SELECT c.meeting_id, c.calendar_id, c.event_id, m.meeting_key, coalesce(m.crm_meeting_id, '') FROM meeting_copies c JOIN meetings m ON m.id = c.meeting_id
		WHERE c.meeting_id = ANY($1) AND c.status <> 'cancelled' AND c.linked_crm_id IS DISTINCT FROM m.crm_meeting_id`, ids)
	if err != nil {
		return fmt.Errorf("find copies to link: %w", err)
	}
	links := map[string][]link{}
	var mid int64
	var calID string
	var l link
	if _, err := pgx.ForEachRow(rows, []any{&mid, &calID, &l.EventID, &l.Key, &l.CRMID}, func() error {
		if l.CRMID != "" {
			links[calID] = append(links[calID], l)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("find copies to link: %w", err)
	}
	return b.p.enqueueAll(ctx, nil, links)
}

// classify maps a whole-call CRM error to what the queue does with it.
func (b *writeBatch) classify(ctx context.Context, err error) error {
	switch crm.ClassOf(err) {
	case crm.Auth:
		return b.p.reauth(ctx, b.t, b.ws, b.conn.ID, err)
	case crm.Permanent:
		return b.p.permanent(ctx, b.t, b.ws, err)
	case crm.RateLimited:
		return &retryAfter{wait: crm.WaitOf(err), err: err}
	}
	return err
}

// owners maps owner e-mails to CRM owner ids, cached in Redis for an hour.
func (p *Pipeline) owners(ctx context.Context, connID string, sink crm.Sink) (map[string]string, error) {
	key := "rapport:owners:" + connID
	if m, err := p.rdb.HGetAll(ctx, key).Result(); err == nil && len(m) > 0 {
		return m, nil
	}
	list, err := sink.Owners(ctx)
	p.countCRM("owners.list", err)
	if err != nil {
		return nil, err
	}
	m := map[string]string{"": ""} // marks a loaded (possibly empty) list
	for _, o := range list {
		m[strings.ToLower(o.Email)] = o.ID
	}
	pipe := p.rdb.TxPipeline()
	pipe.HSet(ctx, key, m)
	pipe.Expire(ctx, key, time.Hour)
	_, _ = pipe.Exec(ctx)
	return m, nil
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
