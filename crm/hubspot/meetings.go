package hubspot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"

	"github.com/rapportsync/rapport/crm"
)

// meetingProps are the properties read back by searches.
var meetingProps = []string{
	crm.PropKey, crm.PropTimestamp, crm.PropTitle, crm.PropBody, crm.PropStart, crm.PropEnd,
	crm.PropLocation, crm.PropExternalURL, crm.PropOutcome, crm.PropOwner, crm.PropICalUID,
}

// batchIndex maps the entries of a batch response back to input positions.
type batchIndex struct {
	byTrace map[string]int
	byKey   map[string]int // rapport_meeting_key, or the id of an upsert input
	byID    map[string]int // HubSpot id of an update input
}

func newBatchIndex() batchIndex {
	return batchIndex{byTrace: map[string]int{}, byKey: map[string]int{}, byID: map[string]int{}}
}

// apply fills out (one entry per input) from a 200/201/207 batch response.
// Results are matched by objectWriteTraceId, else by key property or id;
// errors by the trace ids or ids in their context. An input mentioned nowhere
// gets the first unmatched error, or an unknown-outcome error.
func (ix batchIndex) apply(op string, status int, resp batchResponse, out []crm.Result, logger *slog.Logger) {
	done := make([]bool, len(out))
	for _, r := range resp.Results {
		i, ok := ix.byTrace[r.TraceID]
		if !ok || r.TraceID == "" {
			if i, ok = ix.byKey[r.prop(crm.PropKey)]; !ok || r.prop(crm.PropKey) == "" {
				i, ok = ix.byID[r.ID]
			}
		}
		if !ok || done[i] {
			logger.Warn("hubspot: batch result matches no input", slog.String("op", op), slog.String("id", r.ID))
			continue
		}
		out[i] = crm.Result{ID: r.ID}
		done[i] = true
	}
	var unmatched error
	for _, be := range resp.Errors {
		err := inputError(op, status, be)
		matched := false
		mark := func(i int, ok bool) {
			if ok && !done[i] {
				out[i] = crm.Result{Err: err}
				done[i] = true
				matched = true
			}
		}
		for _, t := range be.Context["objectWriteTraceId"] {
			i, ok := ix.byTrace[t]
			mark(i, ok)
		}
		ids := append([]string{be.ID}, be.Context["ids"]...)
		for _, id := range ids {
			if id == "" {
				continue
			}
			i, ok := ix.byID[id]
			mark(i, ok)
			i, ok = ix.byKey[id]
			mark(i, ok)
		}
		if !matched && unmatched == nil {
			unmatched = err
		}
	}
	for i := range out {
		if done[i] {
			continue
		}
		if unmatched != nil {
			out[i] = crm.Result{Err: unmatched}
		} else {
			out[i] = crm.Result{Err: unknownOutcome(op)}
		}
	}
}

// CreateMeetings creates meetings with their associations, 100 per call.
// Results are in input order. A chunk that fails as a whole fails its
// inputs with that error, which is also returned; after an auth, rate-limit
// or transient failure the remaining chunks are not attempted and carry the
// same error. A batch create is not retried after an unknown outcome (a
// timeout, a 5xx): the caller searches by key before trying again.
//
// With upsert, meetings are upserted by the key property and their
// associations added afterwards in as few association calls as possible; a
// meeting whose associations failed has both ID and Err set.
func (c *Client) CreateMeetings(ctx context.Context, ms []crm.Meeting, upsert bool) ([]crm.Result, error) {
	out := make([]crm.Result, len(ms))
	if upsert {
		return out, c.upsertMeetings(ctx, ms, out)
	}
	const op = "meetings.batch.create"
	var first error
	for _, r := range chunk(len(ms), batchSize) {
		part := out[r[0]:r[1]]
		if first != nil && stops(first) {
			fill(part, first)
			continue
		}
		ix := newBatchIndex()
		inputs := make([]createInput, len(part))
		for i, m := range ms[r[0]:r[1]] {
			props := meetingProperties(m)
			in := createInput{Properties: props, TraceID: c.traceID()}
			for _, id := range m.CompanyIDs {
				in.Associations = append(in.Associations, assocSpec{To: objectRef{ID: id}, Types: []assocType{{categoryDefined, assocMeetingToCompany}}})
			}
			for _, id := range m.ContactIDs {
				in.Associations = append(in.Associations, assocSpec{To: objectRef{ID: id}, Types: []assocType{{categoryDefined, assocMeetingToContact}}})
			}
			inputs[i] = in
			ix.byTrace[in.TraceID] = i
			if k := props[crm.PropKey]; k != "" {
				if _, dup := ix.byKey[k]; dup {
					ix.byKey[k] = -1
				} else {
					ix.byKey[k] = i
				}
			}
		}
		for k, i := range ix.byKey {
			if i < 0 {
				delete(ix.byKey, k) // a key given twice cannot tell its results apart
			}
		}
		var resp batchResponse
		status, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathObjects + "meetings/batch/create",
			body: batchInputs[createInput]{Inputs: inputs}}, &resp)
		if err != nil {
			fill(part, err)
			if first == nil {
				first = err
			}
			continue
		}
		ix.apply(op, status, resp, part, c.cfg.Logger)
	}
	return out, first
}

func meetingProperties(m crm.Meeting) map[string]string {
	props := make(map[string]string, len(m.Properties)+1)
	for k, v := range m.Properties {
		props[k] = v
	}
	if m.Key != "" {
		props[crm.PropKey] = m.Key
	}
	return props
}

func fill(rs []crm.Result, err error) {
	for i := range rs {
		rs[i] = crm.Result{Err: err}
	}
}

func (c *Client) upsertMeetings(ctx context.Context, ms []crm.Meeting, out []crm.Result) error {
	const op = "meetings.batch.upsert"
	var first error
	for _, r := range chunk(len(ms), batchSize) {
		part := out[r[0]:r[1]]
		if first != nil && stops(first) {
			fill(part, first)
			continue
		}
		ix := newBatchIndex()
		var inputs []updateInput
		pos := []int{} // input position of each sent input
		for i, m := range ms[r[0]:r[1]] {
			if m.Key == "" {
				part[i] = crm.Result{Err: &crm.Error{Class: crm.Permanent, Op: op, Err: errors.New("upsert needs the meeting key")}}
				continue
			}
			if _, dup := ix.byKey[m.Key]; dup {
				part[i] = crm.Result{Err: &crm.Error{Class: crm.Permanent, Op: op, Err: errors.New("meeting key given twice in one batch")}}
				continue
			}
			in := updateInput{ID: m.Key, IDProperty: crm.PropKey, Properties: meetingProperties(m), TraceID: c.traceID()}
			ix.byTrace[in.TraceID] = len(inputs)
			ix.byKey[m.Key] = len(inputs)
			inputs = append(inputs, in)
			pos = append(pos, i)
		}
		if err := c.sendUpdates(ctx, op, "meetings/batch/upsert", inputs, pos, part, ix); err != nil && first == nil {
			first = err
		}
	}

	// Associations of the meetings now written, all chunks together.
	var companies, contacts []assocPair
	owner := map[string][]int{} // meeting id → input positions
	for i, m := range ms {
		id := out[i].ID
		if id == "" || out[i].Err != nil {
			continue
		}
		owner[id] = append(owner[id], i)
		for _, to := range m.CompanyIDs {
			companies = append(companies, assocPair{from: id, to: to})
		}
		for _, to := range m.ContactIDs {
			contacts = append(contacts, assocPair{from: id, to: to})
		}
	}
	failed := map[string]error{}
	err1 := c.createAssociations(ctx, "companies", assocMeetingToCompany, companies, failed)
	err2 := c.createAssociations(ctx, "contacts", assocMeetingToContact, contacts, failed)
	for id, err := range failed {
		for _, i := range owner[id] {
			out[i].Err = err
		}
	}
	return errors.Join(first, err1, err2)
}

// UpdateMeetings updates the properties of existing meetings by ID, 100 per
// call. Results are in input order; see CreateMeetings for whole-chunk
// failures.
func (c *Client) UpdateMeetings(ctx context.Context, ms []crm.Meeting) ([]crm.Result, error) {
	const op = "meetings.batch.update"
	out := make([]crm.Result, len(ms))
	var first error
	for _, r := range chunk(len(ms), batchSize) {
		part := out[r[0]:r[1]]
		if first != nil && stops(first) {
			fill(part, first)
			continue
		}
		ix := newBatchIndex()
		var inputs []updateInput
		var pos []int
		for i, m := range ms[r[0]:r[1]] {
			if m.ID == "" {
				part[i] = crm.Result{Err: &crm.Error{Class: crm.Permanent, Op: op, Err: errors.New("update needs the meeting id")}}
				continue
			}
			if _, dup := ix.byID[m.ID]; dup {
				part[i] = crm.Result{Err: &crm.Error{Class: crm.Permanent, Op: op, Err: errors.New("meeting id given twice in one batch")}}
				continue
			}
			props := make(map[string]string, len(m.Properties))
			for k, v := range m.Properties {
				props[k] = v
			}
			in := updateInput{ID: m.ID, Properties: props, TraceID: c.traceID()}
			ix.byTrace[in.TraceID] = len(inputs)
			ix.byID[m.ID] = len(inputs)
			inputs = append(inputs, in)
			pos = append(pos, i)
		}
		if err := c.sendUpdates(ctx, op, "meetings/batch/update", inputs, pos, part, ix); err != nil && first == nil {
			first = err
		}
	}
	return out, first
}

// sendUpdates posts one chunk of update-shaped inputs (batch update or
// upsert) and files each input's result at its position in part.
func (c *Client) sendUpdates(ctx context.Context, op, path string, inputs []updateInput, pos []int, part []crm.Result, ix batchIndex) error {
	if len(inputs) == 0 {
		return nil
	}
	var resp batchResponse
	sent := make([]crm.Result, len(inputs))
	status, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathObjects + path,
		body: batchInputs[updateInput]{Inputs: inputs}, replayable: true}, &resp)
	if err != nil {
		fill(sent, err)
	} else {
		ix.apply(op, status, resp, sent, c.cfg.Logger)
	}
	for j, res := range sent {
		part[pos[j]] = res
	}
	return err
}

// ReadMeetings reads meetings by id with the given properties (and the key
// property) and their company and contact associations: one batch read and
// two association reads per 100 ids.
func (c *Client) ReadMeetings(ctx context.Context, ids []string, props []string) (map[string]crm.Meeting, error) {
	const op = "meetings.batch.read"
	ids = uniq(ids)
	found := make(map[string]crm.Meeting, len(ids))
	propList := uniq(append(append([]string{}, props...), crm.PropKey))
	for _, r := range chunk(len(ids), batchSize) {
		refs := make([]objectRef, 0, r[1]-r[0])
		for _, id := range ids[r[0]:r[1]] {
			refs = append(refs, objectRef{ID: id})
		}
		resp, err := c.batchRead(ctx, op, "meetings", batchReadRequest{Inputs: refs, Properties: propList})
		if err != nil {
			return found, err
		}
		for _, o := range resp.Results {
			p := o.props()
			found[o.ID] = crm.Meeting{ID: o.ID, Key: p[crm.PropKey], Properties: p}
		}
	}
	have := make([]string, 0, len(found))
	for id := range found {
		have = append(have, id)
	}
	sort.Strings(have)
	companies, err := c.readAssociations(ctx, "companies", have)
	if err != nil {
		return found, err
	}
	contacts, err := c.readAssociations(ctx, "contacts", have)
	if err != nil {
		return found, err
	}
	for id, m := range found {
		m.CompanyIDs = companies[id]
		m.ContactIDs = contacts[id]
		found[id] = m
	}
	return found, nil
}

// batchRead reads a batch of records of one object type. Records that do
// not exist are simply absent from the answer: HubSpot lists them as 207
// errors of category OBJECT_NOT_FOUND, or, when none of the inputs exists,
// answers the whole call 404 with that category — "none found", not a
// failure to retry. Any other input error fails the read.
func (c *Client) batchRead(ctx context.Context, op, objectType string, body batchReadRequest) (batchResponse, error) {
	var resp batchResponse
	status, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathObjects + objectType + "/batch/read",
		body: body, replayable: true}, &resp)
	if err != nil {
		if noneFound(err) {
			return batchResponse{}, nil
		}
		return resp, err
	}
	for _, be := range resp.Errors {
		if be.Category != categoryNotFound {
			return resp, inputError(op, status, be)
		}
	}
	return resp, nil
}

// categoryNotFound is HubSpot's error category for records that do not exist.
const categoryNotFound = "OBJECT_NOT_FOUND"

// noneFound reports whether err is HubSpot's whole-call 404 OBJECT_NOT_FOUND
// answer to a batch read none of whose inputs exists.
func noneFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Category == categoryNotFound
}

// FindMeetingsByKey finds meetings by Rapport's key property through the
// search API (eventually consistent). Search results carry no
// associations. If several meetings carry one key, the oldest (lowest id)
// is returned.
func (c *Client) FindMeetingsByKey(ctx context.Context, keys []string) (map[string]crm.Meeting, error) {
	objs, err := c.searchMeetingsIn(ctx, crm.PropKey, keys)
	out := make(map[string]crm.Meeting, len(objs))
	for _, o := range objs {
		p := o.props()
		k := p[crm.PropKey]
		if prev, ok := out[k]; ok && idLess(prev.ID, o.ID) {
			continue
		}
		out[k] = crm.Meeting{ID: o.ID, Key: k, Properties: p}
	}
	return out, err
}

// FindMeetingsByICalUID finds meetings by hs_i_cal_uid, as logged by
// HubSpot's own calendar sync, ordered by id.
func (c *Client) FindMeetingsByICalUID(ctx context.Context, uids []string) (map[string][]crm.Meeting, error) {
	objs, err := c.searchMeetingsIn(ctx, crm.PropICalUID, uids)
	out := map[string][]crm.Meeting{}
	for _, o := range objs {
		p := o.props()
		u := p[crm.PropICalUID]
		out[u] = append(out[u], crm.Meeting{ID: o.ID, Key: p[crm.PropKey], Properties: p})
	}
	for _, ms := range out {
		sort.Slice(ms, func(i, j int) bool { return idLess(ms[i].ID, ms[j].ID) })
	}
	return out, err
}

// HasCalendarSyncMeetings implements crm.Sink with one search for a single
// meeting whose source is HubSpot's own calendar sync.
func (c *Client) HasCalendarSyncMeetings(ctx context.Context) (bool, error) {
	req := searchRequest{
		FilterGroups: []filterGroup{{Filters: []filter{{PropertyName: crm.PropSource, Operator: "EQ", Value: crm.SourceCalendarSync}}}},
		Properties:   []string{crm.PropSource},
		Limit:        1,
	}
	var resp searchResponse
	if _, err := c.send(ctx, request{op: "meetings.search", method: http.MethodPost, path: pathObjects + "meetings/search",
		body: req, search: true, replayable: true}, &resp); err != nil {
		return false, err
	}
	return resp.Total > 0 || len(resp.Results) > 0, nil
}

// idLess orders numeric ids numerically.
func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// Search limits.
const (
	searchPage    = 200    // results per search request
	searchCap     = 10_000 // results one query can page through
	searchInLimit = 100    // values of one IN filter
)

// searchMeetingsIn finds meetings whose prop is one of values.
func (c *Client) searchMeetingsIn(ctx context.Context, prop string, values []string) ([]object, error) {
	var vals []string
	for _, v := range uniq(values) {
		if v != "" {
			vals = append(vals, v)
		}
	}
	var out []object
	for _, r := range chunk(len(vals), searchInLimit) {
		objs, err := c.searchIn(ctx, prop, vals[r[0]:r[1]])
		out = append(out, objs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// searchIn pages through one IN query; if it matches more than search can
// page through, it splits the values.
func (c *Client) searchIn(ctx context.Context, prop string, values []string) ([]object, error) {
	const op = "meetings.search"
	req := searchRequest{
		FilterGroups: []filterGroup{{Filters: []filter{{PropertyName: prop, Operator: "IN", Values: values}}}},
		Sorts:        []searchSort{{PropertyName: "hs_object_id", Direction: "ASCENDING"}},
		Properties:   meetingProps,
		Limit:        searchPage,
	}
	var out []object
	for {
		var resp searchResponse
		if _, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathObjects + "meetings/search",
			body: req, search: true, replayable: true}, &resp); err != nil {
			return out, err
		}
		if resp.Total > searchCap && req.After == "" && len(values) > 1 {
			h := len(values) / 2
			a, err := c.searchIn(ctx, prop, values[:h])
			if err != nil {
				return a, err
			}
			b, err := c.searchIn(ctx, prop, values[h:])
			return append(a, b...), err
		}
		out = append(out, resp.Results...)
		next := resp.Paging.after()
		if next == "" {
			return out, nil
		}
		if n, err := strconv.Atoi(next); err == nil && n >= searchCap {
			return out, &crm.Error{Class: crm.Permanent, Op: op,
				Err: fmt.Errorf("more than %d meetings have %s = %q; HubSpot search cannot page through them", searchCap, prop, values[0])}
		}
		req.After = next
	}
}

// assocPair is one meeting → object association.
type assocPair struct{ from, to string }

// createAssociations adds meeting → toType associations, 100 per call. The
// meetings whose associations failed are recorded in failed; the first
// whole-call error is returned.
func (c *Client) createAssociations(ctx context.Context, toType string, typeID int, pairs []assocPair, failed map[string]error) error {
	op := "associations." + toType + ".batch.create"
	var first error
	for _, r := range chunk(len(pairs), batchSize) {
		part := pairs[r[0]:r[1]]
		if first != nil && stops(first) {
			for _, p := range part {
				failed[p.from] = first
			}
			continue
		}
		inputs := make([]assocCreateInput, len(part))
		for i, p := range part {
			inputs[i] = assocCreateInput{From: objectRef{ID: p.from}, To: objectRef{ID: p.to}, Types: []assocType{{categoryDefined, typeID}}}
		}
		var resp struct {
			Errors []batchError `json:"errors"`
		}
		status, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathAssoc + toType + "/batch/create",
			body: batchInputs[assocCreateInput]{Inputs: inputs}, replayable: true}, &resp)
		if err != nil {
			for _, p := range part {
				failed[p.from] = err
			}
			if first == nil {
				first = err
			}
			continue
		}
		for _, be := range resp.Errors {
			ierr := inputError(op, status, be)
			// An error naming its meetings fails only those (the context
			// keys are not documented; without them, every meeting of the
			// call is reported, and adding associations again is harmless).
			if from := be.Context["fromObjectId"]; len(from) > 0 {
				for _, id := range from {
					failed[id] = ierr
				}
				continue
			}
			for _, p := range part {
				failed[p.from] = ierr
			}
		}
	}
	return first
}

// AddAssociations adds associations of meetings to companies and contacts
// (idempotent), 100 pairs per call.
func (c *Client) AddAssociations(ctx context.Context, changes []crm.AssociationChange) error {
	var companies, contacts []assocPair
	for _, ch := range changes {
		for _, to := range ch.CompanyIDs {
			companies = append(companies, assocPair{ch.MeetingID, to})
		}
		for _, to := range ch.ContactIDs {
			contacts = append(contacts, assocPair{ch.MeetingID, to})
		}
	}
	failed := map[string]error{}
	err := errors.Join(
		c.createAssociations(ctx, "companies", assocMeetingToCompany, companies, failed),
		c.createAssociations(ctx, "contacts", assocMeetingToContact, contacts, failed))
	if err != nil {
		return err
	}
	return summarise("associations.batch.create", failed)
}

// summarise turns per-meeting failures into one error with the class of one
// of them.
func summarise(op string, failed map[string]error) error {
	if len(failed) == 0 {
		return nil
	}
	ids := make([]string, 0, len(failed))
	for id := range failed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) })
	e := failed[ids[0]]
	return &crm.Error{Class: crm.ClassOf(e), Wait: crm.WaitOf(e), Op: op,
		Err: fmt.Errorf("associations of %d meeting(s) failed, e.g. meeting %s: %w", len(ids), ids[0], e)}
}

// RemoveAssociations removes associations of meetings to companies and
// contacts (all association types between each pair), 100 meetings per
// call.
func (c *Client) RemoveAssociations(ctx context.Context, changes []crm.AssociationChange) error {
	var errs []error
	for _, toType := range []string{"companies", "contacts"} {
		op := "associations." + toType + ".batch.archive"
		var inputs []assocArchiveInput
		for _, ch := range changes {
			ids := ch.CompanyIDs
			if toType == "contacts" {
				ids = ch.ContactIDs
			}
			for _, r := range chunk(len(ids), batchSize) {
				in := assocArchiveInput{From: objectRef{ID: ch.MeetingID}}
				for _, id := range ids[r[0]:r[1]] {
					in.To = append(in.To, objectRef{ID: id})
				}
				inputs = append(inputs, in)
			}
		}
		for _, r := range chunk(len(inputs), batchSize) {
			var resp struct {
				Errors []batchError `json:"errors"`
			}
			status, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathAssoc + toType + "/batch/archive",
				body: batchInputs[assocArchiveInput]{Inputs: inputs[r[0]:r[1]]}, replayable: true}, &resp)
			if err != nil {
				errs = append(errs, err)
				if stops(err) {
					return errors.Join(errs...)
				}
				continue
			}
			for _, be := range resp.Errors {
				if be.Category != "OBJECT_NOT_FOUND" {
					errs = append(errs, inputError(op, status, be))
					break
				}
			}
		}
	}
	return errors.Join(errs...)
}

// readAssociations returns the ids of toType objects associated with each
// meeting, 100 meetings per call.
func (c *Client) readAssociations(ctx context.Context, toType string, ids []string) (map[string][]string, error) {
	op := "associations." + toType + ".batch.read"
	out := map[string][]string{}
	for _, r := range chunk(len(ids), batchSize) {
		refs := make([]objectRef, 0, r[1]-r[0])
		for _, id := range ids[r[0]:r[1]] {
			refs = append(refs, objectRef{ID: id})
		}
		var resp assocReadResponse
		if _, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathAssoc + toType + "/batch/read",
			body: batchInputs[objectRef]{Inputs: refs}, replayable: true}, &resp); err != nil {
			return out, err
		}
		// Errors name meetings without associations of this type.
		for _, res := range resp.Results {
			from := string(res.From.ID)
			for _, to := range res.To {
				out[from] = append(out[from], string(to.ToObjectID))
			}
		}
	}
	for _, v := range out {
		sort.Slice(v, func(i, j int) bool { return idLess(v[i], v[j]) })
	}
	return out, nil
}

// uniq returns s without duplicates, in first-seen order.
func uniq(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
