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
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// writer handles crm:write:batch: up to 100 meetings of one CRM connection
// written in batch calls — creates with their associations in one,
// updates in another, then the association changes — each outcome recorded
// in the ledger. Exactly once: a create is marked `creating` with an
// attempt id before it is sent, and a retry whose outcome is unknown
// searches the CRM for the meeting key (and for the CRM's own iCalUID) and
// adopts what it finds.
type writer struct{ *core }

// decisionWait is how long a write waits for the decision that queued it
// to commit; a sync page commits within seconds, or rolls back.
const decisionWait = 2 * time.Minute

// attemptTTL bounds how long a create attempt counts as in flight when its
// process died without clearing the mark: a live batch renews the mark
// every third of it for as long as it runs, however long its calls and
// rate-limit waits take.
const attemptTTL = 15 * time.Second

func attemptKey(id string) string { return "rapport:attempt:" + id }

func (wr *writer) handle(ctx context.Context, t *asynq.Task) error {
	var raws []json.RawMessage
	if err := json.Unmarshal(t.Payload(), &raws); err != nil {
		return wr.permanent(ctx, t, "", fmt.Errorf("decode batch: %w", err))
	}
	// The latest write of a meeting wins; older ones are superseded.
	byKey := map[string]writePayload{}
	for _, r := range raws {
		w, err := wr.openWrite(r)
		if err != nil {
			// A key removed from RAPPORT_ENCRYPTION_KEYS, say: the ledger
			// still owes the write, and the sweep re-reads its event.
			wr.log.WarnContext(ctx, "write dropped: its payload does not open; the sweep recovers it", slog.String("error", err.Error()))
			continue
		}
		byKey[w.Key] = w
	}
	if len(byKey) == 0 {
		return nil
	}
	order := make([]string, 0, len(byKey))
	for k := range byKey {
		order = append(order, k)
	}
	slices.Sort(order)
	first := byKey[order[0]]
	ws, connID := first.WorkspaceID, first.ConnectionID
	conn, err := wr.ledger.CRMConnection(ctx, ws)
	if err != nil {
		return err
	}
	if conn.ID != connID || conn.Status != plan.ConnActive {
		// Parked until the CRM connection is re-authorised.
		return wr.reauth(ctx, t, subject{ws, connID}, fmt.Errorf("CRM connection %s is %s", connID, conn.Status))
	}
	sink, err := wr.sink(ctx, conn)
	if err != nil {
		return err
	}
	b := &writeBatch{core: wr.core, t: t, ws: ws, conn: conn, sink: sink, own: wr.ownership(), payloads: byKey}
	return b.run(ctx, order)
}

// writeBatch is one batch's work.
type writeBatch struct {
	*core
	t        *asynq.Task
	ws       string
	conn     ledger.CRMConn
	sink     crm.Sink
	own      plan.Ownership
	payloads map[string]writePayload
	// retryErr is the first retryable failure; the batch is retried after
	// everything else was recorded, and the retry redoes only what failed.
	retryErr error
}

func (b *writeBatch) run(ctx context.Context, order []string) (err error) {
	tx, err := b.ledger.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	rows, err := tx.LockExisting(ctx, b.ws, order)
	if err != nil {
		return err
	}
	now := b.now()
	in := plan.TriageInput{Rows: rows, InFlight: map[string]bool{}, Now: now, SearchLag: b.cfg.SearchLag, UniqueKey: b.conn.UniqueKey,
		DecisionWait: decisionWait, Budget: b.cfg.WriteAttempts}
	for _, k := range order {
		w := b.payloads[k]
		in.Writes = append(in.Writes, w.write())
		if r, ok := rows[k]; ok && r.State == plan.Creating && r.AttemptID != "" && b.inFlight(ctx, r.AttemptID) {
			in.InFlight[r.AttemptID] = true
		}
	}
	tr := plan.TriageWrites(in)
	creates, recovers, updates := tr.Creates, tr.Recovers, tr.Updates

	// Every attempt counts against the meeting's budget: creates in
	// MarkCreating, updates here. One that used them all is parked.
	if err := tx.CountAttempts(ctx, opIDs(updates)); err != nil {
		return err
	}
	parked, err := tx.Park(ctx, opIDs(tr.Exhausted), now)
	if err != nil {
		return err
	}
	// Mark creates before sending them, in their own commit, and hold the
	// attempt's in-flight mark until their outcome is recorded.
	if len(creates) > 0 || len(recovers) > 0 {
		attempt := uuid.NewString()
		stop, err := b.holdAttempt(ctx, attempt)
		if err != nil {
			return err
		}
		defer func() {
			if stop(); !crashed(err) {
				b.rdb.Del(context.WithoutCancel(ctx), attemptKey(attempt))
			}
		}()
		if err := tx.MarkCreating(ctx, opIDs(append(slices.Clone(creates), recovers...)), attempt, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch start: %w", err)
	}
	b.parked(ctx, tr.Exhausted, parked)
	if err := b.crashAt("write.marked"); err != nil {
		return err
	}

	sent := append(append(slices.Clone(creates), recovers...), updates...)
	if err := b.send(ctx, creates, recovers, updates); err != nil {
		if !crashed(err) {
			// Said by the dead letter if the meetings run out of attempts.
			if rErr := b.ledger.RecordAttemptError(context.WithoutCancel(ctx), opIDs(sent), scrub(err.Error())); rErr != nil {
				b.log.ErrorContext(ctx, "record write error", slog.Any("error", rErr))
			}
		}
		return err
	}
	if b.retryErr == nil && tr.Invisible > 0 {
		b.retryErr = &retryAfter{wait: 500 * time.Millisecond, err: fmt.Errorf("%d decisions not committed yet", tr.Invisible)}
	}
	if b.retryErr == nil && tr.SearchWait > 0 {
		b.retryErr = &retryAfter{wait: tr.SearchWait, err: errors.New("create outcome unknown; waiting for CRM search to catch up")}
	}
	return b.retryErr
}

// send recovers, creates and updates.
func (b *writeBatch) send(ctx context.Context, creates, recovers, updates []plan.Op) error {
	// Recover creates whose outcome is unknown, and adopt meetings the
	// CRM's own calendar sync logged.
	found, err := b.findExisting(ctx, creates, recovers)
	if err != nil {
		return err
	}
	toCreate, adopted := plan.Adopt(append(creates, recovers...), found)
	if len(adopted) > 0 {
		out := ledger.WriteOutcome{Adopted: map[int64]string{}}
		for _, o := range adopted {
			out.Adopted[o.Row.ID] = o.Row.CRMID
			b.log.InfoContext(ctx, "adopted existing CRM meeting", slog.String("meeting_key", o.W.Key), slog.String("crm_meeting_id", o.Row.CRMID))
		}
		if err := b.ledger.RecordWrites(ctx, out, b.now()); err != nil {
			return err
		}
		updates = append(updates, adopted...)
	}

	contacts, err := b.contacts(ctx, append(slices.Clone(toCreate), updates...))
	if err != nil {
		return err
	}
	if err := b.create(ctx, toCreate, contacts); err != nil {
		return err
	}
	return b.update(ctx, updates, contacts)
}

func opIDs(ops []plan.Op) []int64 {
	ids := make([]int64, len(ops))
	for i, o := range ops {
		ids[i] = o.Row.ID
	}
	return ids
}

// holdAttempt marks a create attempt in flight and keeps the mark alive
// until stop is called; a process that dies leaves it to expire within
// attemptTTL.
func (b *writeBatch) holdAttempt(ctx context.Context, attempt string) (stop func(), err error) {
	ttl := b.cfg.attemptTTL
	if err := b.rdb.Set(ctx, attemptKey(attempt), "1", ttl).Err(); err != nil {
		return nil, fmt.Errorf("mark attempt in flight: %w", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.rdb.Expire(context.WithoutCancel(ctx), attemptKey(attempt), ttl)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }, nil
}

// parked records the dead letters of meetings that used up their attempts,
// each with the last error its writes met.
func (b *writeBatch) parked(ctx context.Context, ops []plan.Op, lastErr map[int64]string) {
	for _, o := range ops {
		reason := fmt.Sprintf("gave up after %d attempts to write meeting %s", o.Row.Attempts, o.W.Key)
		if e := lastErr[o.Row.ID]; e != "" {
			reason += "; last error: " + e
		}
		b.log.WarnContext(ctx, "meeting write parked: attempts used up", slog.String("meeting_key", o.W.Key), slog.Int("attempts", o.Row.Attempts))
		b.deadLetter(ctx, b.ws, asynq.NewTask(TaskWrite, nil), plan.DeadExhausted, map[string]any{"meeting_key": o.W.Key, "crm_connection_id": b.conn.ID}, errors.New(reason))
	}
}

// inFlight reports whether a create attempt is still being sent by a live
// process. On a Redis error it says yes: waiting is safe, a duplicate not.
func (b *writeBatch) inFlight(ctx context.Context, attempt string) bool {
	n, err := b.rdb.Exists(ctx, attemptKey(attempt)).Result()
	return err != nil || n > 0
}

// findExisting searches the CRM for meetings already holding these keys
// (a create whose outcome was lost) and for meetings the CRM's own calendar
// sync logged with the same iCalUID; it returns CRM ids by meeting key.
func (b *writeBatch) findExisting(ctx context.Context, creates, recovers []plan.Op) (map[string]string, error) {
	found := map[string]string{}
	if len(recovers) > 0 && !b.conn.UniqueKey {
		keys := make([]string, len(recovers))
		for i, o := range recovers {
			keys[i] = o.W.Key
		}
		ms, err := b.sink.FindMeetingsByKey(ctx, keys)
		b.countCRM(b.conn.Provider, "meetings.search", err)
		if err != nil {
			return nil, b.classify(ctx, err)
		}
		for k, m := range ms {
			found[k] = m.ID
		}
	}
	uids := map[string][]string{}
	all := append(slices.Clone(creates), recovers...)
	for _, o := range all {
		if _, ok := found[o.W.Key]; !ok && o.W.Desired.ICalUID != "" {
			uids[o.W.Desired.ICalUID] = append(uids[o.W.Desired.ICalUID], o.W.Key)
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
	b.countCRM(b.conn.Provider, "meetings.search", err)
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	start := map[string]string{}
	for _, o := range all {
		start[o.W.Key] = o.W.Desired.Props[crm.PropTimestamp]
	}
	adopted := map[string]bool{}
	for uid, ms := range byUID {
		keys := uids[uid]
		// A single event (one key per iCalUID) matches the CRM's record
		// unambiguously; instances of a series share the iCalUID and are
		// matched by start. No record is adopted twice.
		for _, k := range keys {
			for _, m := range ms {
				if !adopted[m.ID] && (len(keys) == 1 || plan.SameInstant(m.Properties[crm.PropTimestamp], start[k])) {
					found[k] = m.ID
					adopted[m.ID] = true
					break
				}
			}
		}
	}
	return found, nil
}

// calendarSyncMeetings says whether the portal holds meetings of the CRM's
// own calendar sync, cached in Redis: a portal without them never pays for
// the iCalUID search. A "none" is re-checked every ten minutes.
func (b *writeBatch) calendarSyncMeetings(ctx context.Context) (bool, error) {
	key := "rapport:calsync:" + b.conn.ID
	if v, err := b.rdb.Get(ctx, key).Result(); err == nil {
		return v == "1", nil
	}
	has, err := b.sink.HasCalendarSyncMeetings(ctx)
	b.countCRM(b.conn.Provider, "meetings.search", err)
	if err != nil {
		return false, b.classify(ctx, err)
	}
	v, ttl := "0", 10*time.Minute
	if has {
		v, ttl = "1", time.Hour
	}
	b.rdb.Set(ctx, key, v, ttl)
	return has, nil
}

// contactCacheTTL: contacts resolved by e-mail are cached in Redis (never
// in PostgreSQL); misses for a shorter time, since a contact may be added.
const (
	contactCacheTTL = 6 * time.Hour
	contactMissTTL  = 15 * time.Minute
)

// contacts resolves the e-mails of all ops to CRM contact ids, through the
// Redis cache and one batch read for the misses.
func (b *writeBatch) contacts(ctx context.Context, ops []plan.Op) (map[string]string, error) {
	var emails []string
	for _, o := range ops {
		emails = append(emails, o.W.Desired.ContactEmails...)
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
	// One key per address: on a Redis Cluster they lie in different slots,
	// where a plain MGET is refused (CROSSSLOT).
	vals, err := redisconn.MGet(ctx, b.rdb, keys...)
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
	found, err := b.sink.ContactsByEmail(ctx, misses, nil)
	b.countCRM(b.conn.Provider, "contacts.batch.read", err)
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	pipe := b.rdb.Pipeline()
	for _, e := range misses {
		if c, ok := found[e]; ok {
			out[e] = c.ID
			pipe.Set(ctx, b.contactKey(e), c.ID, contactCacheTTL)
		} else {
			pipe.Set(ctx, b.contactKey(e), "", contactMissTTL)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.log.WarnContext(ctx, "write contact cache", slog.Any("error", err))
	}
	return out, nil
}

// contactKey is the address's contact cache entry, shared with the decide
// step (contacts.go).
func (b *writeBatch) contactKey(email string) string { return contactKey(b.conn.ID, email) }

func contactIDs(o plan.Op, contacts map[string]string) []string {
	var ids []string
	for _, e := range o.W.Desired.ContactEmails {
		if id := contacts[e]; id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func (b *writeBatch) create(ctx context.Context, ops []plan.Op, contacts map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	owners, err := b.owners(ctx)
	if err != nil {
		return b.classify(ctx, err)
	}
	ms := make([]crm.Meeting, len(ops))
	for i, o := range ops {
		ownerID := ""
		for _, e := range o.W.Desired.OwnerEmails {
			if id := owners[ownerField(e)]; id != "" {
				ownerID = id
				break
			}
		}
		ms[i] = crm.Meeting{
			Key: o.W.Key, Properties: b.own.CreateProps(&o.W.Desired, ownerID),
			CompanyIDs: o.W.Desired.CompanyIDs, ContactIDs: contactIDs(o, contacts),
		}
	}
	results, err := b.sink.CreateMeetings(ctx, ms, b.conn.UniqueKey)
	b.countCRM(b.conn.Provider, "meetings.batch.create", err)
	if err != nil {
		// The outcome of the whole call is unknown: rows stay `creating`
		// and the retry searches before creating again.
		return b.classify(ctx, err)
	}
	if err := b.crashAt("write.sent"); err != nil {
		return err
	}
	var out ledger.WriteOutcome
	var done []plan.Op
	for i, r := range results {
		o := ops[i]
		if r.Err != nil {
			// Known not created: back to pending, retried or parked.
			out.Failed = append(out.Failed, b.failed(ctx, o, r.Err))
			continue
		}
		out.Written = append(out.Written, ledger.Written{MeetingID: o.Row.ID, CRMID: r.ID, Hash: o.W.Hash,
			CompanyIDs: ms[i].CompanyIDs, ContactIDs: ms[i].ContactIDs, Cancelled: o.W.Desired.Cancel})
		o.Row.CRMID = r.ID
		done = append(done, o)
	}
	if err := b.ledger.RecordWrites(ctx, out, b.now()); err != nil {
		return fmt.Errorf("record creates: %w", err)
	}
	return b.written(ctx, done)
}

func (b *writeBatch) update(ctx context.Context, ops []plan.Op, contacts map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	ms := make([]crm.Meeting, len(ops))
	for i, o := range ops {
		ms[i] = crm.Meeting{ID: o.Row.CRMID, Key: o.W.Key, Properties: b.own.UpdateProps(&o.W.Desired, o.Row.State == plan.Cancelled)}
	}
	results, err := b.sink.UpdateMeetings(ctx, ms)
	b.countCRM(b.conn.Provider, "meetings.batch.update", err)
	if err != nil {
		return b.classify(ctx, err)
	}
	if err := b.crashAt("write.updated"); err != nil {
		return err
	}
	// Associations: add the new ones, remove only those Rapport added.
	var add, remove []crm.AssociationChange
	wantCompanies := make([][]string, len(ops))
	wantContacts := make([][]string, len(ops))
	for i, o := range ops {
		if results[i].Err != nil || o.W.Desired.Cancel {
			wantCompanies[i], wantContacts[i] = o.Row.CompanyIDs, o.Row.ContactIDs
			continue
		}
		wantCompanies[i], wantContacts[i] = o.W.Desired.CompanyIDs, contactIDs(o, contacts)
		addCo, rmCo := plan.AssociationDiff(o.Row.CompanyIDs, wantCompanies[i])
		addCt, rmCt := plan.AssociationDiff(o.Row.ContactIDs, wantContacts[i])
		if len(addCo)+len(addCt) > 0 {
			add = append(add, crm.AssociationChange{MeetingID: o.Row.CRMID, CompanyIDs: addCo, ContactIDs: addCt})
		}
		if len(rmCo)+len(rmCt) > 0 {
			remove = append(remove, crm.AssociationChange{MeetingID: o.Row.CRMID, CompanyIDs: rmCo, ContactIDs: rmCt})
		}
	}
	if len(add) > 0 {
		err := b.sink.AddAssociations(ctx, add)
		b.countCRM(b.conn.Provider, "associations.batch.create", err)
		if err != nil {
			return b.classify(ctx, err)
		}
	}
	if len(remove) > 0 {
		err := b.sink.RemoveAssociations(ctx, remove)
		b.countCRM(b.conn.Provider, "associations.batch.archive", err)
		if err != nil {
			return b.classify(ctx, err)
		}
	}
	var out ledger.WriteOutcome
	var done []plan.Op
	for i, r := range results {
		o := ops[i]
		if r.Err != nil {
			if crm.ClassOf(r.Err) == crm.NotFound {
				// A person deleted the meeting in the CRM: it stays deleted.
				out.Deleted = append(out.Deleted, o.Row.ID)
				continue
			}
			out.Failed = append(out.Failed, b.failed(ctx, o, r.Err))
			continue
		}
		out.Written = append(out.Written, ledger.Written{MeetingID: o.Row.ID, CRMID: o.Row.CRMID, Hash: o.W.Hash,
			CompanyIDs: wantCompanies[i], ContactIDs: wantContacts[i], Cancelled: o.W.Desired.Cancel})
		done = append(done, o)
	}
	if err := b.ledger.RecordWrites(ctx, out, b.now()); err != nil {
		return fmt.Errorf("record updates: %w", err)
	}
	return b.written(ctx, done)
}

// failed handles one input's failure: a permanent error parks the meeting
// in `failed` with a dead letter; anything else is retried with the batch.
func (b *writeBatch) failed(ctx context.Context, o plan.Op, err error) ledger.Failure {
	f := ledger.Failure{MeetingID: o.Row.ID, Reason: scrub(err.Error())}
	if crm.ClassOf(err) == crm.Permanent {
		f.Permanent = true
		b.deadLetter(ctx, b.ws, b.t, plan.DeadPermanent, map[string]any{"meeting_key": o.W.Key, "crm_connection_id": b.conn.ID}, err)
		return f
	}
	if b.retryErr == nil {
		b.retryErr = err
	}
	return f
}

// written queues the write-back of the CRM id to every copy not yet linked
// and observes the webhook-to-CRM latency.
func (b *writeBatch) written(ctx context.Context, done []plan.Op) error {
	if len(done) == 0 {
		return nil
	}
	now := b.now()
	ids := make([]int64, len(done))
	for i, o := range done {
		ids[i] = o.Row.ID
		if seen := b.payloads[o.W.Key].SeenAt; !seen.IsZero() {
			b.metrics.latency.Observe(now.Sub(seen).Seconds())
		}
	}
	b.metrics.written.Add(float64(len(done)))
	links, err := b.ledger.CopiesToLink(ctx, ids)
	if err != nil {
		return err
	}
	if err := b.crashAt("write.recorded"); err != nil {
		return err
	}
	return b.enqueueAll(ctx, nil, links)
}

// classify hands a whole-call CRM error to the error table. A whole call
// answered "not found" is retried, not dropped: the records it names are
// handled one by one on the retry.
func (b *writeBatch) classify(ctx context.Context, err error) error {
	if crm.ClassOf(err) == crm.NotFound {
		return err
	}
	return b.fail(ctx, b.t, subject{b.ws, b.conn.ID}, err)
}

// ownerField is an owner's e-mail as the owners cache names it: hashed,
// since employees' addresses are attendees' addresses too, and Redis keeps
// no calendar content in the clear.
func ownerField(email string) string {
	h := sha256.Sum256([]byte(strings.ToLower(email)))
	return hex.EncodeToString(h[:12])
}

// owners maps owner e-mails (hashed: ownerField) to CRM owner ids, cached
// in Redis for an hour.
func (b *writeBatch) owners(ctx context.Context) (map[string]string, error) {
	key := "rapport:owners:" + b.conn.ID
	if m, err := b.rdb.HGetAll(ctx, key).Result(); err == nil && len(m) > 0 {
		return m, nil
	}
	list, err := b.sink.Owners(ctx)
	b.countCRM(b.conn.Provider, "owners.list", err)
	if err != nil {
		return nil, err
	}
	m := map[string]string{"": ""} // marks a loaded (possibly empty) list
	for _, o := range list {
		m[ownerField(o.Email)] = o.ID
	}
	pipe := b.rdb.TxPipeline()
	pipe.HSet(ctx, key, m)
	pipe.Expire(ctx, key, time.Hour)
	_, _ = pipe.Exec(ctx)
	return m, nil
}
