package crmtest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Association type ids the fake knows (meeting → company, meeting →
// contact).
const (
	assocMeetingCompany = 188
	assocMeetingContact = 200
)

const maxBatch = 100

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	const obj = "/crm/objects/2026-03/"
	const asc = "/crm/associations/2026-03/meetings/{toType}/batch/"
	st := s.store
	s.handle(mux, "GET "+obj+"companies", "companies.list", kindGeneral, s.listCompanies)
	s.handle(mux, "POST "+obj+"companies/search", "companies.search", kindSearch, s.searchHandler(st.companies))
	s.handle(mux, "POST "+obj+"contacts/search", "contacts.search", kindSearch, s.searchHandler(st.contacts))
	s.handle(mux, "POST "+obj+"contacts/batch/read", "contacts.batch.read", kindGeneral, s.batchRead(st.contacts, "contacts.batch.read"))
	s.handle(mux, "POST "+obj+"meetings", "meetings.create", kindGeneral, s.createMeeting)
	s.handle(mux, "POST "+obj+"meetings/batch/create", "meetings.batch.create", kindGeneral, s.batchCreate)
	s.handle(mux, "POST "+obj+"meetings/batch/update", "meetings.batch.update", kindGeneral, s.batchUpdate(false))
	s.handle(mux, "POST "+obj+"meetings/batch/upsert", "meetings.batch.upsert", kindGeneral, s.batchUpdate(true))
	s.handle(mux, "POST "+obj+"meetings/batch/read", "meetings.batch.read", kindGeneral, s.batchRead(st.meetings, "meetings.batch.read"))
	s.handle(mux, "POST "+obj+"meetings/search", "meetings.search", kindSearch, s.searchHandler(st.meetings))
	s.handle(mux, "GET "+obj+"meetings/{id}", "meetings.get", kindGeneral, s.getMeeting)
	s.handle(mux, "PATCH "+obj+"meetings/{id}", "meetings.update", kindGeneral, s.patchMeeting)
	s.handle(mux, "DELETE "+obj+"meetings/{id}", "meetings.archive", kindGeneral, s.deleteMeeting)
	for _, t := range []string{"companies", "contacts"} {
		p := strings.Replace(asc, "{toType}", t, 1)
		s.handle(mux, "POST "+p+"create", "associations."+t+".batch.create", kindGeneral, s.assocCreate(t))
		s.handle(mux, "POST "+p+"archive", "associations."+t+".batch.archive", kindGeneral, s.assocArchive(t))
		s.handle(mux, "POST "+p+"read", "associations."+t+".batch.read", kindGeneral, s.assocRead(t))
	}
	s.handle(mux, "GET /crm/properties/2026-03/meetings/{name}", "properties.get", kindGeneral, s.getProperty)
	s.handle(mux, "POST /crm/properties/2026-03/meetings", "properties.create", kindGeneral, s.createProperty)
	s.handle(mux, "GET /crm/owners/2026-03/{$}", "owners.list", kindGeneral, s.listOwners)
	s.handle(mux, "GET /account-info/v3/details", "account.details", kindGeneral, s.accountInfo)
	s.handle(mux, "GET /account-info/2026-03/details", "account.details", kindGeneral, s.accountInfo)
	s.handle(mux, "GET /timeline/{$}", "", kindPage, s.timelineIndex)
	s.handle(mux, "GET /timeline/companies/{id}", "", kindPage, s.timelineCompany)
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil)
		return false
	}
	return true
}

func checkBatchSize(w http.ResponseWriter, n int) bool {
	if n > maxBatch {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Batch input size %d exceeds the limit of %d inputs.", n, maxBatch), nil)
		return false
	}
	return true
}

func stamp() (string, string) { n := iso(time.Now()); return n, n }

// batchReply writes a batch write's answer: okStatus when every input
// succeeded, else 207. Results come back in no particular order, as
// HubSpot's do.
func batchReply(w http.ResponseWriter, okStatus int, results []objectOut, errs []errorOut) {
	rand.Shuffle(len(results), func(i, j int) { results[i], results[j] = results[j], results[i] })
	started, done := stamp()
	out := batchOut{Status: "COMPLETE", Results: results, StartedAt: started, CompletedAt: done}
	if results == nil {
		out.Results = []objectOut{}
	}
	status := okStatus
	if len(errs) > 0 {
		out.Errors, out.NumErrors, status = errs, len(errs), http.StatusMultiStatus
	}
	writeJSON(w, status, out)
}

// injected reports whether a fault was injected for input i of a batch
// write. Called with s.mu held.
func (s *Server) injected(op string, i int, props map[string]string) bool {
	if s.fail207[i] {
		return true
	}
	return s.failInput != nil && s.failInput(op, i, props)
}

func injectedError(traceID, id string) errorOut {
	e := errorOut{Status: "error", Category: "INTERNAL_ERROR", Message: "An internal error occurred while writing this object (injected).", Context: map[string][]string{}}
	if traceID != "" {
		e.Context["objectWriteTraceId"] = []string{traceID}
	}
	if id != "" {
		e.Context["ids"] = []string{id}
	}
	return e
}

// checkAssociations validates associations given at create and returns the
// company and contact ids.
func (st *store) checkAssociations(specs []assocSpec) (companies, contacts []string, err *errorOut) {
	fail := func(msg string) (_, _ []string, _ *errorOut) {
		return nil, nil, &errorOut{Status: "error", Category: "VALIDATION_ERROR", Message: msg}
	}
	for _, a := range specs {
		if len(a.Types) == 0 {
			return fail("An association needs at least one type")
		}
		for _, t := range a.Types {
			if t.Category != "" && t.Category != "HUBSPOT_DEFINED" {
				return fail(fmt.Sprintf("Unknown association category %q", t.Category))
			}
			switch t.TypeID {
			case assocMeetingCompany:
				if st.companies.get(a.To.ID) == nil {
					return fail(fmt.Sprintf("Association target company %s does not exist", a.To.ID))
				}
				companies = append(companies, a.To.ID)
			case assocMeetingContact:
				if st.contacts.get(a.To.ID) == nil {
					return fail(fmt.Sprintf("Association target contact %s does not exist", a.To.ID))
				}
				contacts = append(contacts, a.To.ID)
			default:
				return fail(fmt.Sprintf("Association type %d is not valid from meetings", t.TypeID))
			}
		}
	}
	return companies, contacts, nil
}

func withTrace(e errorOut, traceID string) errorOut {
	if traceID != "" {
		if e.Context == nil {
			e.Context = map[string][]string{}
		}
		e.Context["objectWriteTraceId"] = []string{traceID}
	}
	return e
}

func (s *Server) batchCreate(w http.ResponseWriter, r *http.Request) {
	const op = "meetings.batch.create"
	var in struct {
		Inputs []createIn `json:"inputs"`
	}
	if !decode(w, r, &in) || !checkBatchSize(w, len(in.Inputs)) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.fail207 = nil }()
	st := s.store
	now := s.opts.Now()
	type plan struct {
		props              map[string]string
		companies, contact []string
		err                *errorOut
	}
	plans := make([]plan, len(in.Inputs))
	batchKeys := map[string]bool{}
	for i, inp := range in.Inputs {
		p := &plans[i]
		props, perr := st.meetingProps(inp.Properties, true)
		if perr != nil {
			e := perr.errorOut(inp.TraceID, nil)
			p.err = &e
			continue
		}
		companies, contacts, aerr := st.checkAssociations(inp.Associations)
		if aerr != nil {
			e := withTrace(*aerr, inp.TraceID)
			p.err = &e
			continue
		}
		if e := st.uniqueError(props, "", batchKeys, inp.TraceID); e != nil {
			p.err = e
			continue
		}
		if s.refuse != nil && s.refuse(op, i, props) {
			e := refusedError(inp.TraceID)
			p.err = &e
			continue
		}
		if s.injected(op, i, props) {
			e := injectedError(inp.TraceID, "")
			p.err = &e
			continue
		}
		p.props, p.companies, p.contact = props, companies, contacts
	}
	// Without objectWriteTraceIds HubSpot fails the whole batch on the first
	// invalid input.
	var errs []errorOut
	for i, p := range plans {
		if p.err == nil {
			continue
		}
		if in.Inputs[i].TraceID == "" {
			writeJSON(w, http.StatusBadRequest, p.err)
			return
		}
		errs = append(errs, *p.err)
	}
	var results []objectOut
	for i, p := range plans {
		if p.err != nil {
			continue
		}
		rec := st.create(st.meetings, "", dropEmpty(p.props), now, false)
		for _, id := range p.companies {
			rec.companies[id] = true
		}
		for _, id := range p.contact {
			rec.contacts[id] = true
		}
		o := st.out(st.meetings, rec, rec.props, keys(p.props))
		o.TraceID = in.Inputs[i].TraceID
		results = append(results, o)
	}
	batchReply(w, http.StatusCreated, results, errs)
}

// uniqueError checks unique properties against stored meetings (other than
// self) and against earlier inputs of the same batch.
func (st *store) uniqueError(props map[string]string, self string, batch map[string]bool, traceID string) *errorOut {
	prop, other := st.uniqueConflict(props, self)
	for k, v := range props {
		if v != "" && st.props[k].HasUniqueValue {
			bk := k + "\x00" + strings.ToLower(v)
			if batch[bk] && other == "" {
				prop, other = k, "(another input of this batch)"
			}
			batch[bk] = true
		}
	}
	if other == "" {
		return nil
	}
	// HubSpot's wording for this case is unconfirmed.
	e := withTrace(errorOut{Status: "error", Category: "VALIDATION_ERROR", SubCategory: "UNIQUE_VALUE_CONFLICT",
		Message: fmt.Sprintf("A meeting with the value %q for the unique property %s already exists: %s", props[prop], prop, other)}, traceID)
	return &e
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// batchUpdate serves batch/update (by id, or idProperty) and batch/upsert.
func (s *Server) batchUpdate(upsert bool) http.HandlerFunc {
	op := "meetings.batch.update"
	if upsert {
		op = "meetings.batch.upsert"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Inputs []updateIn `json:"inputs"`
		}
		if !decode(w, r, &in) || !checkBatchSize(w, len(in.Inputs)) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		defer func() { s.fail207 = nil }()
		st := s.store
		now := s.opts.Now()
		seen := map[string]bool{}
		for _, inp := range in.Inputs {
			k := inp.IDProperty + "\x00" + strings.ToLower(inp.ID)
			if seen[k] {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Duplicate IDs found in batch input: ["+inp.ID+"]. IDs must be unique", nil)
				return
			}
			seen[k] = true
			if upsert && (inp.IDProperty == "" || !st.props[inp.IDProperty].HasUniqueValue) {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("idProperty %q is not a property with unique values; batch upsert needs one", inp.IDProperty), nil)
				return
			}
			if !upsert && inp.IDProperty != "" && inp.IDProperty != "hs_object_id" && !st.props[inp.IDProperty].HasUniqueValue {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("idProperty %q is not a unique property", inp.IDProperty), nil)
				return
			}
		}
		type plan struct {
			rec   *record
			props map[string]string
			err   *errorOut
		}
		plans := make([]plan, len(in.Inputs))
		batchKeys := map[string]bool{}
		for i, inp := range in.Inputs {
			p := &plans[i]
			p.rec = st.lookup(st.meetings, inp.IDProperty, inp.ID)
			if p.rec == nil && !upsert {
				e := withTrace(errorOut{Status: "error", Category: "OBJECT_NOT_FOUND",
					Message: "Object not found.  objectId are usually numeric.", Context: map[string][]string{"ids": {inp.ID}}}, inp.TraceID)
				p.err = &e
				continue
			}
			props, perr := st.meetingProps(inp.Properties, p.rec == nil)
			if perr != nil {
				e := perr.errorOut(inp.TraceID, map[string][]string{"ids": {inp.ID}})
				p.err = &e
				continue
			}
			if p.rec == nil {
				props[inp.IDProperty] = inp.ID
			}
			self := ""
			if p.rec != nil {
				self = p.rec.id
			}
			if e := st.uniqueError(props, self, batchKeys, inp.TraceID); e != nil {
				p.err = e
				continue
			}
			if s.injected(op, i, props) {
				e := injectedError(inp.TraceID, inp.ID)
				p.err = &e
				continue
			}
			p.props = props
		}
		var errs []errorOut
		for i, p := range plans {
			if p.err == nil {
				continue
			}
			if in.Inputs[i].TraceID == "" {
				writeJSON(w, http.StatusBadRequest, p.err)
				return
			}
			errs = append(errs, *p.err)
		}
		var results []objectOut
		for i, p := range plans {
			if p.err != nil {
				continue
			}
			rec, isNew := p.rec, p.rec == nil
			if isNew {
				rec = st.create(st.meetings, "", dropEmpty(p.props), now, false)
			} else {
				st.update(st.meetings, rec, p.props, now)
			}
			o := st.out(st.meetings, rec, rec.props, keys(p.props))
			o.TraceID = in.Inputs[i].TraceID
			if upsert {
				o.New = &isNew
			}
			results = append(results, o)
		}
		batchReply(w, http.StatusOK, results, errs)
	}
}

// lookup finds a record by id or by a unique/indexed property.
func (st *store) lookup(c *collection, idProperty, id string) *record {
	if idProperty == "" || idProperty == "hs_object_id" {
		return c.get(id)
	}
	if idx, ok := c.index[idProperty]; ok {
		for rid := range idx[strings.ToLower(id)] {
			return c.recs[rid]
		}
		return nil
	}
	for _, rid := range c.order {
		if strings.EqualFold(c.recs[rid].props[idProperty], id) {
			return c.recs[rid]
		}
	}
	return nil
}

func (s *Server) batchRead(c *collection, op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in batchReadIn
		if !decode(w, r, &in) || !checkBatchSize(w, len(in.Inputs)) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.store
		if in.IDProperty != "" && in.IDProperty != "hs_object_id" {
			_, indexed := c.index[in.IDProperty]
			if !indexed && !st.props[in.IDProperty].HasUniqueValue {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("idProperty %q is not a unique property", in.IDProperty), nil)
				return
			}
		}
		var results []objectOut
		var missing []string
		for _, ref := range in.Inputs {
			rec := st.lookup(c, in.IDProperty, ref.ID)
			if rec == nil {
				missing = append(missing, ref.ID)
				continue
			}
			results = append(results, st.out(c, rec, rec.props, in.Properties))
		}
		var errs []errorOut
		if len(missing) > 0 {
			name := strings.ToUpper(strings.TrimSuffix(c.objectType, "s"))
			msg := fmt.Sprintf("Could not get some %s objects, they may be deleted or not exist. Check that ids are valid.", name)
			if len(results) == 0 {
				// None of the inputs exists: HubSpot fails the whole call.
				writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", msg, map[string][]string{"ids": missing})
				return
			}
			errs = append(errs, errorOut{Status: "error", Category: "OBJECT_NOT_FOUND", Message: msg,
				Context: map[string][]string{"ids": missing}})
		}
		batchReply(w, http.StatusOK, results, errs)
	}
}

func (s *Server) searchHandler(c *collection) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in searchIn
		if !decode(w, r, &in) {
			return
		}
		s.mu.Lock()
		out, serr := s.store.search(c, in, s.opts.Now())
		s.mu.Unlock()
		if serr != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", serr.message, nil)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func queryLimit(w http.ResponseWriter, r *http.Request, def, max int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("limit must be between 1 and %d", max), nil)
		return 0, false
	}
	return n, true
}

func (s *Server) listCompanies(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, 10, 100)
	if !ok {
		return
	}
	q := r.URL.Query()
	var props []string
	for _, v := range q["properties"] {
		props = append(props, splitList(v)...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.store.companies
	start := 0
	if a := q.Get("after"); a != "" {
		start, _ = slices.BinarySearchFunc(c.order, a, cmpID)
	}
	out := listOut{Results: []objectOut{}}
	end := min(start+limit, len(c.order))
	for _, id := range c.order[start:end] {
		rec := c.recs[id]
		out.Results = append(out.Results, s.store.out(c, rec, rec.props, props))
	}
	if end < len(c.order) {
		next := c.order[end]
		out.Paging = &pagingOut{Next: &nextOut{After: next, Link: s.URL() + r.URL.Path + "?after=" + next}}
	}
	writeJSON(w, http.StatusOK, out)
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.", nil)
}

// meetingOut renders a meeting with the properties and associations a
// single GET asks for.
func (st *store) meetingOut(rec *record, props, assocs []string) objectOut {
	o := st.out(st.meetings, rec, rec.props, props)
	for _, a := range assocs {
		var set map[string]bool
		typ := ""
		switch a {
		case "companies", "company":
			set, typ, a = rec.companies, "meeting_to_company", "companies"
		case "contacts", "contact":
			set, typ, a = rec.contacts, "meeting_to_contact", "contacts"
		default:
			continue
		}
		if len(set) == 0 {
			continue
		}
		if o.Associations == nil {
			o.Associations = map[string]assocListOut{}
		}
		var l assocListOut
		for _, id := range sortedIDs(set) {
			l.Results = append(l.Results, assocItemOut{ID: id, Type: typ})
		}
		o.Associations[a] = l
	}
	return o
}

func (s *Server) getMeeting(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.store.meetings.get(r.PathValue("id"))
	if rec == nil {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, s.store.meetingOut(rec, splitList(q.Get("properties")), splitList(q.Get("associations"))))
}

func (s *Server) createMeeting(w http.ResponseWriter, r *http.Request) {
	var in createIn
	if !decode(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store
	props, perr := st.meetingProps(in.Properties, true)
	if perr != nil {
		writeJSON(w, http.StatusBadRequest, perr.errorOut("", nil))
		return
	}
	companies, contacts, aerr := st.checkAssociations(in.Associations)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	if e := st.uniqueError(props, "", map[string]bool{}, ""); e != nil {
		writeJSON(w, http.StatusBadRequest, e)
		return
	}
	rec := st.create(st.meetings, "", dropEmpty(props), s.opts.Now(), false)
	for _, id := range companies {
		rec.companies[id] = true
	}
	for _, id := range contacts {
		rec.contacts[id] = true
	}
	writeJSON(w, http.StatusCreated, st.out(st.meetings, rec, rec.props, keys(props)))
}

func (s *Server) patchMeeting(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Properties rawProps `json:"properties"`
	}
	if !decode(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store
	rec := st.meetings.get(r.PathValue("id"))
	if rec == nil {
		notFound(w)
		return
	}
	props, perr := st.meetingProps(in.Properties, false)
	if perr != nil {
		writeJSON(w, http.StatusBadRequest, perr.errorOut("", nil))
		return
	}
	if e := st.uniqueError(props, rec.id, map[string]bool{}, ""); e != nil {
		writeJSON(w, http.StatusBadRequest, e)
		return
	}
	st.update(st.meetings, rec, props, s.opts.Now())
	writeJSON(w, http.StatusOK, st.out(st.meetings, rec, rec.props, keys(props)))
}

func (s *Server) deleteMeeting(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.store.deleteMeeting(r.PathValue("id"))
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Associations (v4 shapes).

func (st *store) assocTarget(toType string) (*collection, int) {
	if toType == "companies" {
		return st.companies, assocMeetingCompany
	}
	return st.contacts, assocMeetingContact
}

func assocSet(rec *record, toType string) map[string]bool {
	if toType == "companies" {
		return rec.companies
	}
	return rec.contacts
}

func (s *Server) assocCreate(toType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Inputs []assocCreateIn `json:"inputs"`
		}
		if !decode(w, r, &in) || !checkBatchSize(w, len(in.Inputs)) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.store
		target, typeID := st.assocTarget(toType)
		var results []assocCreateResult
		var errs []errorOut
		for _, a := range in.Inputs {
			// The context keys naming the pair are the fake's choice; HubSpot's
			// are undocumented.
			ctx := map[string][]string{"fromObjectId": {a.From.ID}, "toObjectId": {a.To.ID}}
			if e := st.associate(a, toType, typeID, target); e != nil {
				e.Context = ctx
				errs = append(errs, *e)
				continue
			}
			results = append(results, assocCreateResult{FromObjectTypeID: "0-47", FromObjectID: number(a.From.ID),
				ToObjectTypeID: target.typeID, ToObjectID: number(a.To.ID), Labels: []string{}})
		}
		started, done := stamp()
		body := map[string]any{"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": done}
		if results == nil {
			body["results"] = []assocCreateResult{}
		}
		status := http.StatusOK
		if len(errs) > 0 {
			body["errors"], body["numErrors"], status = errs, len(errs), http.StatusMultiStatus
		}
		writeJSON(w, status, body)
	}
}

// associate adds one meeting → toType association.
func (st *store) associate(a assocCreateIn, toType string, typeID int, target *collection) *errorOut {
	for _, t := range a.Types {
		if t.TypeID != typeID {
			return &errorOut{Status: "error", Category: "VALIDATION_ERROR",
				Message: fmt.Sprintf("association type id %d doesn't exist between meetings and %s", t.TypeID, toType)}
		}
	}
	from, to := st.meetings.get(a.From.ID), target.get(a.To.ID)
	if from == nil || to == nil {
		return &errorOut{Status: "error", Category: "OBJECT_NOT_FOUND",
			Message: fmt.Sprintf("Could not find the objects of association meeting %s → %s %s", a.From.ID, toType, a.To.ID)}
	}
	assocSet(from, toType)[a.To.ID] = true
	return nil
}

func (s *Server) assocArchive(toType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Inputs []assocArchiveIn `json:"inputs"`
		}
		if !decode(w, r, &in) || !checkBatchSize(w, len(in.Inputs)) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range in.Inputs {
			from := s.store.meetings.get(a.From.ID)
			if from == nil {
				continue
			}
			for _, to := range a.To {
				delete(assocSet(from, toType), to.ID)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) assocRead(toType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Inputs []objRef `json:"inputs"`
		}
		if !decode(w, r, &in) {
			return
		}
		if len(in.Inputs) > 1000 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Batch input size exceeds the limit of 1000 inputs.", nil)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		_, typeID := s.store.assocTarget(toType)
		results := []assocReadResult{}
		for _, ref := range in.Inputs {
			rec := s.store.meetings.get(ref.ID)
			if rec == nil || len(assocSet(rec, toType)) == 0 {
				continue
			}
			res := assocReadResult{From: objRef{ID: ref.ID}}
			for _, id := range sortedIDs(assocSet(rec, toType)) {
				res.To = append(res.To, assocToOut{ToObjectID: number(id),
					AssociationTypes: []assocTypeOut{{Category: "HUBSPOT_DEFINED", TypeID: typeID}}})
			}
			results = append(results, res)
		}
		started, done := stamp()
		writeJSON(w, http.StatusOK, map[string]any{"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": done})
	}
}

// Properties.

func builtinProperty(name string) propertyDef {
	typ, field := "string", "text"
	if datetimeProps[name] {
		typ, field = "datetime", "date"
	}
	return propertyDef{Name: name, Label: name, Type: typ, FieldType: field, GroupName: "meetinginformation", FormField: false}
}

func (s *Server) getProperty(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	p, ok := s.store.props[name]
	s.mu.Unlock()
	switch {
	case ok:
		writeJSON(w, http.StatusOK, p)
	case meetingBuiltins[name] || readOnlyProps[name]:
		writeJSON(w, http.StatusOK, builtinProperty(name))
	default:
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Unable to find property %s for object type meetings", name), nil)
	}
}

func (s *Server) createProperty(w http.ResponseWriter, r *http.Request) {
	var p propertyDef
	if !decode(w, r, &p) {
		return
	}
	if p.Name == "" || p.Label == "" || p.Type == "" || p.FieldType == "" || p.GroupName == "" {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "A property needs name, label, type, fieldType and groupName", nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store
	if _, ok := st.props[p.Name]; ok || meetingBuiltins[p.Name] || readOnlyProps[p.Name] {
		writeError(w, http.StatusConflict, "OBJECT_ALREADY_EXISTS", fmt.Sprintf("A property named '%s' already exists.", p.Name), nil)
		return
	}
	if p.HasUniqueValue {
		if !s.opts.UniqueValueSupport {
			// The fake's wording: whether and how HubSpot refuses this for
			// meetings is unconfirmed.
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Properties with unique values are not supported for object type meetings.", nil)
			return
		}
		n := 0
		for _, q := range st.props {
			if q.HasUniqueValue {
				n++
			}
		}
		if n >= 10 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "An object can have at most 10 unique value properties.", nil)
			return
		}
		if _, ok := st.meetings.index[p.Name]; !ok {
			idx := map[string]map[string]bool{}
			st.meetings.index[p.Name] = idx
			for id, rec := range st.meetings.recs {
				if v := strings.ToLower(rec.props[p.Name]); v != "" {
					if idx[v] == nil {
						idx[v] = map[string]bool{}
					}
					idx[v][id] = true
				}
			}
		}
	}
	p.CreatedAt, p.UpdatedAt = stamp()
	p.FormField = true
	st.props[p.Name] = p
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) listOwners(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, 100, 500)
	if !ok {
		return
	}
	start, _ := strconv.Atoi(r.URL.Query().Get("after"))
	s.mu.Lock()
	defer s.mu.Unlock()
	owners := s.store.owners
	start = min(max(start, 0), len(owners))
	end := min(start+limit, len(owners))
	out := map[string]any{"results": append([]ownerOut{}, owners[start:end]...)}
	if end < len(owners) {
		out["paging"] = pagingOut{Next: &nextOut{After: strconv.Itoa(end)}}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) accountInfo(w http.ResponseWriter, r *http.Request) {
	var portal any = s.opts.PortalID
	if n, err := strconv.ParseInt(s.opts.PortalID, 10, 64); err == nil {
		portal = n
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"portalId":              portal,
		"accountType":           "STANDARD",
		"timeZone":              s.opts.TimeZone,
		"companyCurrency":       "USD",
		"additionalCurrencies":  []string{},
		"utcOffset":             "+00:00",
		"utcOffsetMilliseconds": 0,
		"uiDomain":              "app.hubspot.com",
		"dataHostingLocation":   "na1",
	})
}
