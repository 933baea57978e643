package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/rules"
)

// This file is the company side of the CRM properties the rules read
// (crm_properties.companies): their values ride along with the company
// index listing, are stored with the index and held in memory with it,
// and a change of one the rules read re-decides the upcoming meetings of
// that company.

// declaredCompanyProps returns the company properties a rule set declares,
// sorted and unique: the properties the index listing asks for.
func declaredCompanyProps(rs *rules.Set) []string {
	props, _ := rs.CRMProperties()
	slices.Sort(props)
	return slices.Compact(props)
}

// companyValues holds the values of some company properties for every
// company that has one, lean: one slice of values per company, aligned
// with names, with equal values sharing their string.
type companyValues struct {
	names []string
	vals  map[string][]string
}

// loadCompanyValues reads the stored values of the named properties.
func loadCompanyValues(ctx context.Context, l *ledger.Store, ws string, names []string) (*companyValues, error) {
	cv := &companyValues{names: names, vals: map[string][]string{}}
	intern := map[string]string{}
	err := l.EachCompanyProperties(ctx, ws, func(id string, props map[string]string) {
		var vs []string
		for i, n := range names {
			v := props[n]
			if v == "" {
				continue
			}
			if vs == nil {
				vs = make([]string, len(names))
			}
			if s, ok := intern[v]; ok {
				v = s
			} else if len(intern) < 10_000 {
				intern[v] = v
			}
			vs[i] = v
		}
		if vs != nil {
			cv.vals[id] = vs
		}
	})
	if err != nil {
		return nil, err
	}
	return cv, nil
}

// of returns a company's values by property name; nil when it has none.
func (cv *companyValues) of(id string) map[string]string {
	vs := cv.vals[id]
	if vs == nil {
		return nil
	}
	m := make(map[string]string, len(vs))
	for i, v := range vs {
		if v != "" {
			m[cv.names[i]] = v
		}
	}
	return m
}

// lookup is rules.Input.CompanyProperties for this view: nil when the
// rules read no company property.
func (v indexView) lookup() func(string) map[string]string {
	if v.props == nil {
		return nil
	}
	return v.props.of
}

// changedProperties returns the companies of a listed page whose value of
// one of the watched properties differs from the stored one.
func (c *core) changedProperties(ctx context.Context, ws string, cos []crm.Company, watch []string) ([]string, error) {
	ids := make([]string, len(cos))
	for i, co := range cos {
		ids[i] = co.ID
	}
	old, err := c.ledger.CompanyProperties(ctx, ws, ids)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, co := range cos {
		for _, p := range watch {
			if old[co.ID][p] != co.Properties[p] {
				out = append(out, co.ID)
				break
			}
		}
	}
	return out, nil
}

// redecideChunk bounds the companies of one lookup and the events of one
// fetch task.
const redecideChunk = 200

// redecideDelay holds a re-decision back until every process's index
// cache has seen the refresh that caused it (a cache re-checks the
// index's load time every indexRecheck).
const redecideDelay = indexRecheck + time.Second

// redecide queues a fetch of the live copies of the upcoming meetings of
// companies whose properties changed: each copy is read again and decided
// with the new values, so a meeting that stops qualifying before it
// happens is withdrawn (plan.Withdraws) and one that starts qualifying is
// logged. Past meetings stay as they are.
func (c *core) redecide(ctx context.Context, ws string, companies []string) error {
	if len(companies) == 0 {
		return nil
	}
	slices.Sort(companies)
	companies = slices.Compact(companies)
	nCompanies := len(companies)
	byCal := map[string][]string{}
	for len(companies) > 0 {
		n := min(len(companies), redecideChunk)
		got, err := c.ledger.UpcomingCopies(ctx, ws, companies[:n], c.now())
		if err != nil {
			return err
		}
		for cal, evs := range got {
			byCal[cal] = append(byCal[cal], evs...)
		}
		companies = companies[n:]
	}
	copies := 0
	for _, cal := range slices.Sorted(maps.Keys(byCal)) {
		evs := byCal[cal]
		slices.Sort(evs)
		evs = slices.Compact(evs)
		copies += len(evs)
		for len(evs) > 0 {
			n := min(len(evs), redecideChunk)
			if err := c.enqueueRedecide(ctx, cal, evs[:n]); err != nil {
				return err
			}
			evs = evs[n:]
		}
	}
	c.log.InfoContext(ctx, "company properties changed; deciding their upcoming meetings again", slog.String("workspace_id", ws),
		slog.Int("companies", nCompanies), slog.Int("copies", copies))
	return nil
}

// enqueueRedecide queues a sync of some events of a calendar, as
// enqueueFetch does, held back by redecideDelay.
func (c *core) enqueueRedecide(ctx context.Context, calID string, eventIDs []string) error {
	h := sha256.New()
	for _, id := range eventIDs {
		h.Write([]byte(id + "\x00"))
	}
	id := "redecide:" + calID + ":" + hex.EncodeToString(h.Sum(nil))[:24] + ":" + strconv.FormatInt(c.now().UnixNano(), 36)
	return c.enqueue(ctx, TaskSync, syncPayload{CalendarID: calID, EventIDs: eventIDs},
		asynq.Queue(QueueSync), asynq.TaskID(id), asynq.MaxRetry(10), asynq.Timeout(10*time.Minute), asynq.ProcessIn(redecideDelay))
}

var errPropertiesNotLoaded = errors.New("the company properties the rules read are not loaded yet")

// indexReady holds a sync back until the workspace's company index is
// loaded with every company property the rules read: deciding before would
// read "" for each. A missing property set queues the index refresh that
// loads it.
func (c *core) indexReady(ctx context.Context, ws string, rs *rules.Set) error {
	st, err := c.ledger.IndexState(ctx, ws)
	if err != nil {
		return err
	}
	if st.LoadedAt == nil {
		// Deciding now would skip every customer meeting.
		return &retryAfter{wait: 2 * time.Second, err: errIndexNotLoaded}
	}
	if !rs.ReadsCompanyProperties() {
		return nil
	}
	for _, p := range declaredCompanyProps(rs) {
		if !slices.Contains(st.Properties, p) {
			if err := c.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws}, asynq.Queue(QueueMaintenance),
				asynq.TaskID("index:"+ws+":"+bucket(c.now(), 10*time.Second))); err != nil {
				return err
			}
			return &retryAfter{wait: 2 * time.Second, err: errPropertiesNotLoaded}
		}
	}
	return nil
}
