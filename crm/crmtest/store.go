package crmtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rapportsync/rapport/crm"
)

// record is one CRM object. Search sees searchProps until visibleAt, then
// props, which is how the fake imitates HubSpot's eventually consistent
// search index.
type record struct {
	id          string
	props       map[string]string
	created     time.Time
	updated     time.Time
	visibleAt   time.Time
	searchProps map[string]string // nil before the first version is visible
	companies   map[string]bool   // meetings: associated companies
	contacts    map[string]bool   // meetings: associated contacts
	companyID   string            // contacts: primary company
}

func (r *record) visible(now time.Time) map[string]string {
	if !now.Before(r.visibleAt) {
		return r.props
	}
	return r.searchProps
}

func (r *record) meeting() crm.Meeting {
	m := crm.Meeting{ID: r.id, Key: r.props[crm.PropKey], Properties: clone(r.props)}
	m.CompanyIDs = sortedIDs(r.companies)
	m.ContactIDs = sortedIDs(r.contacts)
	return m
}

// collection is the records of one object type, with value indexes on a
// few properties so that searches by key stay fast with 100k meetings.
type collection struct {
	objectType string // "meetings", "companies", "contacts"
	typeID     string // HubSpot's object type id
	recs       map[string]*record
	order      []string // ids in creation order (ascending)
	index      map[string]map[string]map[string]bool
}

func newCollection(objectType, typeID string, indexed ...string) *collection {
	c := &collection{objectType: objectType, typeID: typeID, recs: map[string]*record{}, index: map[string]map[string]map[string]bool{}}
	for _, p := range indexed {
		c.index[p] = map[string]map[string]bool{}
	}
	return c
}

func (c *collection) get(id string) *record { return c.recs[id] }

func (c *collection) reindex(id string, old, cur map[string]string) {
	for p, idx := range c.index {
		ov, nv := strings.ToLower(old[p]), strings.ToLower(cur[p])
		if ov == nv && old != nil {
			continue
		}
		if old != nil && ov != "" {
			delete(idx[ov], id)
			if len(idx[ov]) == 0 {
				delete(idx, ov)
			}
		}
		if cur != nil && nv != "" {
			if idx[nv] == nil {
				idx[nv] = map[string]bool{}
			}
			idx[nv][id] = true
		}
	}
}

func (c *collection) remove(id string) {
	r := c.recs[id]
	if r == nil {
		return
	}
	c.reindex(id, r.props, nil)
	delete(c.recs, id)
	if i, ok := slices.BinarySearchFunc(c.order, id, cmpID); ok {
		c.order = slices.Delete(c.order, i, i+1)
	}
}

// store is the portal's data.
type store struct {
	opts      Options
	nextID    int64
	companies *collection
	contacts  *collection
	meetings  *collection
	owners    []ownerOut
	props     map[string]propertyDef // custom meeting properties
}

func newStore(opts Options) *store {
	return &store{
		opts:      opts,
		nextID:    100_000,
		companies: newCollection("companies", "0-2", "domain"),
		contacts:  newCollection("contacts", "0-1", "email"),
		meetings:  newCollection("meetings", "0-47", crm.PropKey, crm.PropICalUID),
		props:     map[string]propertyDef{},
	}
}

func (st *store) newID() string {
	st.nextID++
	return strconv.FormatInt(st.nextID, 10)
}

// modifiedProp is the last-modified property of an object type.
func modifiedProp(objectType string) string {
	if objectType == "contacts" {
		return "lastmodifieddate"
	}
	return "hs_lastmodifieddate"
}

func createdProp(objectType string) string {
	if objectType == "meetings" {
		return "hs_createdate"
	}
	return "createdate"
}

// create adds a record with props (already validated and normalised).
// Seeded records (immediate) are visible to search at once.
func (st *store) create(c *collection, id string, props map[string]string, now time.Time, immediate bool) *record {
	if id == "" {
		id = st.newID()
	} else if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > st.nextID {
		st.nextID = n
	}
	r := &record{id: id, created: now, companies: map[string]bool{}, contacts: map[string]bool{}}
	p := clone(props)
	p["hs_object_id"] = id
	p[createdProp(c.objectType)] = iso(now)
	if p[modifiedProp(c.objectType)] == "" {
		p[modifiedProp(c.objectType)] = iso(now)
	}
	r.props = p
	r.updated = now
	if !immediate {
		r.visibleAt = now.Add(st.opts.SearchLag)
	}
	c.recs[id] = r
	if n := len(c.order); n == 0 || cmpID(c.order[n-1], id) < 0 {
		c.order = append(c.order, id)
	} else if i, ok := slices.BinarySearchFunc(c.order, id, cmpID); !ok {
		c.order = slices.Insert(c.order, i, id)
	}
	c.reindex(id, nil, p)
	return r
}

// update sets properties (an empty value clears one) and bumps the
// modified date.
func (st *store) update(c *collection, r *record, set map[string]string, now time.Time) {
	if st.opts.SearchLag > 0 {
		if !now.Before(r.visibleAt) {
			r.searchProps = r.props
		}
		r.visibleAt = now.Add(st.opts.SearchLag)
	}
	old := r.props
	p := clone(old)
	for k, v := range set {
		if v == "" {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	p[modifiedProp(c.objectType)] = iso(now)
	r.props = p
	r.updated = now
	c.reindex(r.id, old, p)
}

func (st *store) setProp(c *collection, id, prop, value string) bool {
	r := c.get(id)
	if r == nil {
		return false
	}
	if datetimeProps[prop] && value != "" {
		if t, ok := parseTime(value); ok {
			value = iso(t)
		}
	}
	st.update(c, r, map[string]string{prop: value}, st.opts.Now())
	return true
}

func (st *store) addCompany(co crm.Company) string {
	now := st.opts.Now()
	p := map[string]string{"name": co.Name}
	if len(co.Domains) > 0 {
		p["domain"] = co.Domains[0]
	}
	if len(co.Domains) > 1 {
		p["hs_additional_domains"] = strings.Join(co.Domains[1:], ";")
	}
	if !co.UpdatedAt.IsZero() {
		p["hs_lastmodifieddate"] = iso(co.UpdatedAt)
	}
	for k, v := range co.Properties {
		if _, taken := p[k]; !taken {
			p[k] = v
		}
	}
	return st.create(st.companies, co.ID, dropEmpty(p), now, true).id
}

func (st *store) addContact(email, name, companyID string) string {
	first, last, _ := strings.Cut(strings.TrimSpace(name), " ")
	p := dropEmpty(map[string]string{"email": strings.ToLower(strings.TrimSpace(email)), "firstname": first, "lastname": last})
	if companyID != "" {
		p["associatedcompanyid"] = companyID
	}
	r := st.create(st.contacts, "", p, st.opts.Now(), true)
	r.companyID = companyID
	return r.id
}

func (st *store) addOwner(email string) string {
	id := st.newID()
	now := iso(st.opts.Now())
	local, _, _ := strings.Cut(email, "@")
	st.owners = append(st.owners, ownerOut{ID: id, Email: email, Type: "PERSON", FirstName: local,
		UserID: st.nextID + 9_000_000, CreatedAt: now, UpdatedAt: now})
	return id
}

func (st *store) ownerExists(id string) bool {
	for _, o := range st.owners {
		if o.ID == id {
			return true
		}
	}
	return false
}

func (st *store) deleteMeeting(id string) bool {
	if st.meetings.get(id) == nil {
		return false
	}
	st.meetings.remove(id)
	return true
}

func (st *store) meetingSnapshot() []crm.Meeting {
	out := make([]crm.Meeting, 0, len(st.meetings.order))
	for _, id := range st.meetings.order {
		out = append(out, st.meetings.recs[id].meeting())
	}
	return out
}

// Meeting properties.

// meetingBuiltins are HubSpot's meeting properties a client may write.
var meetingBuiltins = map[string]bool{
	crm.PropTimestamp: true, crm.PropTitle: true, crm.PropBody: true, crm.PropStart: true, crm.PropEnd: true,
	crm.PropLocation: true, crm.PropExternalURL: true, crm.PropOutcome: true, crm.PropOwner: true,
	crm.PropICalUID: true, crm.PropNotes: true, "hs_activity_type": true, "hs_meeting_source": true,
	"hs_meeting_location_type": true, "hs_attachment_ids": true,
}

// readOnlyProps are computed by HubSpot.
var readOnlyProps = map[string]bool{
	"hs_object_id": true, "hs_createdate": true, "hs_lastmodifieddate": true, "createdate": true, "lastmodifieddate": true,
}

var datetimeProps = map[string]bool{
	crm.PropTimestamp: true, crm.PropStart: true, crm.PropEnd: true,
	"hs_lastmodifieddate": true, "hs_createdate": true, "createdate": true, "lastmodifieddate": true,
}

var outcomes = map[string]bool{"SCHEDULED": true, "COMPLETED": true, "RESCHEDULED": true, "NO_SHOW": true, "CANCELED": true}

// propError is one invalid property value, in HubSpot's words.
type propError struct {
	name, code, message string
}

func (e propError) errorOut(traceID string, ctx map[string][]string) errorOut {
	detail, _ := json.Marshal([]map[string]any{{"isValid": false, "message": e.message, "error": e.code, "name": e.name}})
	out := errorOut{Status: "error", Category: "VALIDATION_ERROR",
		Message: "Property values were not valid: " + string(detail),
		Errors:  []errorDetailOut{{Message: e.message, Code: e.code, In: e.name}}, Context: ctx}
	if traceID != "" {
		if out.Context == nil {
			out.Context = map[string][]string{}
		}
		out.Context["objectWriteTraceId"] = []string{traceID}
	}
	return out
}

// meetingProps converts and validates meeting property values for a create
// (hs_timestamp required) or an update.
// maxTextChars is HubSpot's limit on a text property value, in characters.
const maxTextChars = 65536

func (st *store) meetingProps(raw rawProps, creating bool) (map[string]string, *propError) {
	props := make(map[string]string, len(raw))
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v, ok := rawString(raw[k])
		if !ok {
			return nil, &propError{k, "INVALID_TYPE", fmt.Sprintf("%q is not a valid value for %s", string(raw[k]), k)}
		}
		switch {
		case readOnlyProps[k]:
			return nil, &propError{k, "READ_ONLY_VALUE", k + " is a read only property; its value cannot be set."}
		case !meetingBuiltins[k] && st.props[k].Name == "":
			return nil, &propError{k, "PROPERTY_DOESNT_EXIST", fmt.Sprintf("Property %q does not exist", k)}
		}
		if v == "" {
			props[k] = ""
			continue
		}
		if n := utf8.RuneCountInString(v); n > maxTextChars {
			return nil, &propError{k, "MAX_CHARACTERS", fmt.Sprintf("%s has %d characters; the limit is %d", k, n, maxTextChars)}
		}
		if datetimeProps[k] {
			t, ok := parseTime(v)
			if !ok {
				return nil, &propError{k, "INVALID_DATE", fmt.Sprintf("%s was not a valid long or date-time. It was %q", k, v)}
			}
			v = iso(t)
		}
		if k == crm.PropOutcome && !outcomes[v] {
			return nil, &propError{k, "INVALID_OPTION", fmt.Sprintf("%q was not one of the allowed options for %s", v, k)}
		}
		if k == crm.PropOwner && !st.ownerExists(v) {
			return nil, &propError{k, "INVALID_OWNER_ID", fmt.Sprintf("%q is not a valid owner id", v)}
		}
		props[k] = v
	}
	if creating && props[crm.PropTimestamp] == "" {
		return nil, &propError{crm.PropTimestamp, "REQUIRED_FIELD", "hs_timestamp is required"}
	}
	return props, nil
}

// uniqueConflict returns the id of another meeting already holding a value
// of a unique property among props.
func (st *store) uniqueConflict(props map[string]string, self string) (string, string) {
	for k, v := range props {
		if v == "" || !st.props[k].HasUniqueValue {
			continue
		}
		if idx, ok := st.meetings.index[k]; ok {
			for id := range idx[strings.ToLower(v)] {
				if id != self {
					return k, id
				}
			}
			continue
		}
		for id, r := range st.meetings.recs {
			if id != self && strings.EqualFold(r.props[k], v) {
				return k, id
			}
		}
	}
	return "", ""
}

// Search.

const (
	searchMaxLimit = 200
	searchCap      = 10_000
)

type searchError struct{ message string }

// search runs a CRM search over the records visible to search now.
func (st *store) search(c *collection, in searchIn, now time.Time) (searchOut, *searchError) {
	limit := 10
	if in.Limit != nil {
		limit = *in.Limit
	}
	if limit < 0 || limit > searchMaxLimit {
		return searchOut{}, &searchError{fmt.Sprintf("limit must be between 0 and %d", searchMaxLimit)}
	}
	offset := 0
	if in.After != "" {
		n, err := strconv.Atoi(in.After)
		if err != nil || n < 0 {
			return searchOut{}, &searchError{"Invalid after value " + strconv.Quote(in.After)}
		}
		offset = n
	}
	if offset >= searchCap {
		return searchOut{}, &searchError{fmt.Sprintf("The maximum number of results for a search is %d; after must be less than %d.", searchCap, searchCap)}
	}
	if len(in.FilterGroups) > 5 {
		return searchOut{}, &searchError{"There can be at most 5 filterGroups"}
	}
	nf := 0
	for _, g := range in.FilterGroups {
		if len(g.Filters) > 6 {
			return searchOut{}, &searchError{"A filterGroup can have at most 6 filters"}
		}
		nf += len(g.Filters)
		for _, f := range g.Filters {
			if !operators[f.Operator] {
				return searchOut{}, &searchError{fmt.Sprintf("Unknown operator %q for filter on %s", f.Operator, f.PropertyName)}
			}
			if len(f.Values) > 100 {
				return searchOut{}, &searchError{fmt.Sprintf("Too many values (%d) in the %s filter on %s; at most 100 are allowed", len(f.Values), f.Operator, f.PropertyName)}
			}
			if f.PropertyName == "" {
				return searchOut{}, &searchError{"A filter needs a propertyName"}
			}
		}
	}
	if nf > 18 {
		return searchOut{}, &searchError{"There can be at most 18 filters in a search"}
	}
	sortProp, desc := "hs_object_id", false
	if len(in.Sorts) > 1 {
		return searchOut{}, &searchError{"Only one sort is allowed"}
	}
	if len(in.Sorts) == 1 {
		var s struct{ PropertyName, Direction string }
		var name string
		if json.Unmarshal(in.Sorts[0], &name) == nil {
			s.PropertyName, s.Direction = strings.TrimPrefix(name, "-"), "ASCENDING"
			if strings.HasPrefix(name, "-") {
				s.Direction = "DESCENDING"
			}
		} else if err := json.Unmarshal(in.Sorts[0], &s); err != nil || s.PropertyName == "" {
			return searchOut{}, &searchError{"Invalid sort"}
		}
		sortProp, desc = s.PropertyName, s.Direction == "DESCENDING"
	}

	type hit struct {
		r     *record
		props map[string]string
		key   sortKey
	}
	var hits []hit
	consider := func(r *record) {
		p := r.visible(now)
		if p == nil || !matchGroups(in, p) {
			return
		}
		hits = append(hits, hit{r, p, makeSortKey(sortProp, p[sortProp])})
	}
	if ids, ok := st.candidates(c, in); ok {
		for id := range ids {
			if r := c.recs[id]; r != nil {
				consider(r)
			}
		}
	} else {
		for _, id := range c.order {
			consider(c.recs[id])
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		r := a.key.compare(b.key)
		if desc {
			r = -r
		}
		if r == 0 {
			r = cmpID(a.r.id, b.r.id)
		}
		return r
	})
	out := searchOut{Total: len(hits), Results: []objectOut{}}
	end := min(offset+limit, len(hits), searchCap)
	for i := offset; i < end; i++ {
		out.Results = append(out.Results, st.out(c, hits[i].r, hits[i].props, in.Properties))
	}
	if end < len(hits) && end < searchCap {
		out.Paging = &pagingOut{Next: &nextOut{After: strconv.Itoa(end)}}
	}
	return out, nil
}

// candidates narrows a single-group search with an EQ or IN filter on an
// indexed property to the ids the index holds.
func (st *store) candidates(c *collection, in searchIn) (map[string]bool, bool) {
	if len(in.FilterGroups) != 1 {
		return nil, false
	}
	for _, f := range in.FilterGroups[0].Filters {
		idx, ok := c.index[f.PropertyName]
		if !ok {
			continue
		}
		var vals []string
		switch {
		case f.Operator == "EQ" && f.Value != nil:
			vals = []string{*f.Value}
		case f.Operator == "IN":
			vals = f.Values
		default:
			continue
		}
		ids := map[string]bool{}
		for _, v := range vals {
			for id := range idx[strings.ToLower(v)] {
				ids[id] = true
			}
		}
		return ids, true
	}
	return nil, false
}

var operators = map[string]bool{
	"EQ": true, "NEQ": true, "LT": true, "LTE": true, "GT": true, "GTE": true, "BETWEEN": true,
	"IN": true, "NOT_IN": true, "HAS_PROPERTY": true, "NOT_HAS_PROPERTY": true,
	"CONTAINS_TOKEN": true, "NOT_CONTAINS_TOKEN": true,
}

// matchGroups: any group whose filters all match (no groups: everything).
func matchGroups(in searchIn, p map[string]string) bool {
	if len(in.FilterGroups) == 0 {
		return true
	}
	for _, g := range in.FilterGroups {
		ok := true
		for _, f := range g.Filters {
			if !matchFilter(f, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func matchFilter(f searchFilter, p map[string]string) bool {
	v, has := p[f.PropertyName]
	has = has && v != ""
	val := ""
	if f.Value != nil {
		val = *f.Value
	}
	switch f.Operator {
	case "HAS_PROPERTY":
		return has
	case "NOT_HAS_PROPERTY":
		return !has
	case "EQ":
		return has && compareValues(f.PropertyName, v, val) == 0
	case "NEQ":
		return !has || compareValues(f.PropertyName, v, val) != 0
	case "LT":
		return has && compareValues(f.PropertyName, v, val) < 0
	case "LTE":
		return has && compareValues(f.PropertyName, v, val) <= 0
	case "GT":
		return has && compareValues(f.PropertyName, v, val) > 0
	case "GTE":
		return has && compareValues(f.PropertyName, v, val) >= 0
	case "BETWEEN":
		hi := ""
		if f.HighValue != nil {
			hi = *f.HighValue
		}
		return has && compareValues(f.PropertyName, v, val) >= 0 && compareValues(f.PropertyName, v, hi) <= 0
	case "IN", "NOT_IN":
		in := false
		for _, x := range f.Values {
			if has && compareValues(f.PropertyName, v, x) == 0 {
				in = true
				break
			}
		}
		return in == (f.Operator == "IN")
	case "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN":
		return has && containsToken(v, val) == (f.Operator == "CONTAINS_TOKEN")
	}
	return false
}

// containsToken matches a token of v (split on spaces, ';' and ','), or v
// as a whole, against tok, which may contain * wildcards.
func containsToken(v, tok string) bool {
	v, tok = strings.ToLower(v), strings.ToLower(tok)
	match := func(s string) bool {
		if strings.Contains(tok, "*") {
			ok, _ := path.Match(tok, s)
			return ok
		}
		return s == tok
	}
	if match(v) {
		return true
	}
	for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ';' || r == ',' || r == '\t' }) {
		if match(t) {
			return true
		}
	}
	return false
}

// compareValues compares a stored value with another value of the same
// property: as instants for datetimes, numbers when both are numeric, else
// as case-insensitive strings.
func compareValues(prop, a, b string) int {
	if datetimeProps[prop] {
		ta, oka := parseTime(a)
		tb, okb := parseTime(b)
		if oka && okb {
			return ta.Compare(tb)
		}
	}
	if fa, err := strconv.ParseFloat(a, 64); err == nil {
		if fb, err := strconv.ParseFloat(b, 64); err == nil {
			return cmp.Compare(fa, fb)
		}
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

// sortKey is a property value parsed once for sorting, ordered like
// compareValues orders values.
type sortKey struct {
	numeric bool
	num     float64
	str     string
}

func makeSortKey(prop, v string) sortKey {
	if datetimeProps[prop] {
		if t, ok := parseTime(v); ok {
			return sortKey{numeric: true, num: float64(t.UnixMilli())}
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return sortKey{numeric: true, num: f}
	}
	return sortKey{str: strings.ToLower(v)}
}

// compare puts numbers before text.
func (k sortKey) compare(o sortKey) int {
	switch {
	case k.numeric && o.numeric:
		return cmp.Compare(k.num, o.num)
	case k.numeric != o.numeric:
		if k.numeric {
			return -1
		}
		return 1
	}
	return strings.Compare(k.str, o.str)
}

// defaultProps are returned when a request names no properties.
var defaultProps = map[string][]string{
	"meetings":  {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"},
	"companies": {"createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"},
	"contacts":  {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"},
}

// out renders a record with the wanted properties (null when unset).
func (st *store) out(c *collection, r *record, props map[string]string, want []string) objectOut {
	if len(want) == 0 {
		want = defaultProps[c.objectType]
	}
	o := objectOut{ID: r.id, CreatedAt: iso(r.created), UpdatedAt: iso(r.updated), Properties: make(map[string]*string, len(want)+3)}
	for _, k := range append(append([]string{}, want...), "hs_object_id", createdProp(c.objectType), modifiedProp(c.objectType)) {
		if v, ok := props[k]; ok && v != "" {
			o.Properties[k] = &v
		} else {
			o.Properties[k] = nil
		}
	}
	return o
}

// Helpers.

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+4)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func dropEmpty(m map[string]string) map[string]string {
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return m
}

func sortedIDs(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.SortFunc(out, cmpID)
	return out
}

// cmpID orders numeric ids numerically.
func cmpID(a, b string) int {
	if len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	return strings.Compare(a, b)
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// parseTime reads epoch milliseconds or RFC 3339 (or a date).
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// rawString renders a JSON scalar as HubSpot stores it: text.
func rawString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b), true
	}
	return "", false
}
