package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
)

// testCase is one entry of a *_test.yaml file.
type testCase struct {
	name      string
	file      string
	line, col int
	in        Input // Index and CompanyProperties are built per run, from companies
	companies []crm.Company
	// companyProps holds the companies' properties by company id.
	companyProps map[string]map[string]string
	action       Action
	rule         string // "" when the test does not care
}

// The keys a test file may hold.
var (
	testFileKeys  = []string{"version", "tests"}
	testKeys      = []string{"name", "event", "owner", "workspace", "internal_domains", "companies", "contacts", "logged", "expect"}
	testEventKeys = []string{"id", "ical_uid", "title", "description", "location", "start", "end", "all_day", "status",
		"visibility", "event_type", "recurring", "organizer", "attendees", "conference_url", "source", "show_as", "booking"}
	testBookingKeys  = []string{"event_type", "answers", "utm", "rescheduled"}
	testAnswerKeys   = []string{"question", "answer"}
	testUTMKeys      = []string{"source", "medium", "campaign", "content", "term"}
	sourceNames      = []string{"google", "microsoft", "calendly"}
	showAsNames      = []string{"free", "tentative", "busy", "oof", "workingElsewhere", "unknown"}
	testAttendeeKeys = []string{"email", "name", "response", "optional", "resource", "organizer", "self"}
	testCompanyKeys  = []string{"id", "name", "domains", "properties"}
	testContactKeys  = []string{"email", "id", "properties"}
	testExpectKeys   = []string{"action", "rule"}
	testWorkspace    = []string{"id", "name"}
	statusNames      = []string{string(calendar.StatusConfirmed), string(calendar.StatusTentative), string(calendar.StatusCancelled)}
	visibilityNames  = []string{"default", "public", "private", "confidential"}
	responseNames    = []string{string(calendar.ResponseAccepted), string(calendar.ResponseDeclined),
		string(calendar.ResponseTentative), string(calendar.ResponseNeedsAction)}
)

// parseTests reads test files; mistakes are positioned errors in e.
func parseTests(files []ruleFile, e *errs) []testCase {
	var cases []testCase
	seen := make(map[string]string)
	for _, f := range files {
		w := &walker{file: f.path, e: e}
		root := w.document(f.data)
		if root == nil {
			continue
		}
		pairs, _ := w.mapping(root, "a test file", testFileKeys)
		hasTests := false
		for _, p := range pairs {
			switch p.key.Value {
			case "version":
				if p.val.ShortTag() != "!!int" || p.val.Value != "1" {
					w.fail(p.val, "version must be 1, got %s", kindName(p.val))
				}
			case "tests":
				hasTests = true
				items, _ := w.seq(p.val, "tests")
				for _, it := range items {
					if tc, ok := parseTest(w, it); ok {
						if first, dup := seen[tc.name]; dup {
							w.fail(it, "duplicate test name %q (first defined at %s)", tc.name, first)
							continue
						}
						seen[tc.name] = fmt.Sprintf("%s:%d:%d", tc.file, tc.line, tc.col)
						cases = append(cases, tc)
					}
				}
			}
		}
		if root.Kind == yaml.MappingNode && !hasTests {
			w.fail(root, "missing tests")
		}
	}
	return cases
}

func parseTest(w *walker, n *yaml.Node) (testCase, bool) {
	tc := testCase{file: w.file, line: n.Line, col: n.Column}
	pairs, ok := w.mapping(n, "a test", testKeys)
	if n.Kind != yaml.MappingNode {
		return tc, false
	}
	var hasName, hasEvent, hasExpect, hasOwner bool
	for _, p := range pairs {
		var ok1 bool
		switch p.key.Value {
		case "name":
			hasName = true
			tc.name, ok1 = w.str(p.val, "name")
			if ok1 && strings.TrimSpace(tc.name) == "" {
				w.fail(p.val, "name must not be empty")
				ok1 = false
			}
		case "event":
			hasEvent = true
			ok1 = parseEvent(w, p.val, &tc.in.Event)
		case "owner":
			hasOwner = true
			tc.in.Owner, ok1 = w.str(p.val, "owner")
		case "workspace":
			ok1 = parseWorkspace(w, p.val, &tc.in.Workspace)
		case "internal_domains":
			tc.in.Internal, ok1 = testDomains(w, p.val, "internal_domains")
		case "companies":
			tc.companies, tc.companyProps, ok1 = parseCompanies(w, p.val)
		case "contacts":
			tc.in.Contacts, tc.in.ContactProperties, ok1 = parseContacts(w, p.val)
		case "logged":
			tc.in.Logged, ok1 = w.boolean(p.val, "logged")
		case "expect":
			hasExpect = true
			ok1 = parseExpect(w, p.val, &tc)
		}
		ok = ok && ok1
	}
	for _, m := range []struct {
		has bool
		key string
	}{{hasName, "name"}, {hasEvent, "event"}, {hasExpect, "expect"}} {
		if !m.has {
			w.fail(n, "test is missing %q", m.key)
			ok = false
		}
	}
	if !hasOwner {
		// The organizer's calendar, unless the test says whose.
		tc.in.Owner = tc.in.Event.Organizer.Email
		for _, a := range tc.in.Event.Attendees {
			if tc.in.Owner == "" && a.Organizer {
				tc.in.Owner = a.Email
			}
		}
	}
	return tc, ok
}

func parseEvent(w *walker, n *yaml.Node, ev *calendar.Event) bool {
	pairs, ok := w.mapping(n, "event", testEventKeys)
	ev.Status = calendar.StatusConfirmed
	var startN, endN *yaml.Node
	for _, p := range pairs {
		var ok1 bool
		var s string
		switch p.key.Value {
		case "id":
			ev.ID, ok1 = w.str(p.val, "id")
		case "ical_uid":
			ev.ICalUID, ok1 = w.str(p.val, "ical_uid")
		case "title":
			ev.Title, ok1 = w.str(p.val, "title")
		case "description":
			ev.Description, ok1 = w.str(p.val, "description")
		case "location":
			ev.Location, ok1 = w.str(p.val, "location")
		case "conference_url":
			ev.ConferenceURL, ok1 = w.str(p.val, "conference_url")
		case "start":
			startN = p.val
			ev.Start, ev.StartDate, ok1 = testTime(w, p.val, "start")
		case "end":
			endN = p.val
			ev.End, ev.EndDate, ok1 = testTime(w, p.val, "end")
		case "all_day":
			ev.AllDay, ok1 = w.boolean(p.val, "all_day")
		case "status":
			s, ok1 = w.oneOf(p.val, "status", statusNames...)
			ev.Status = calendar.Status(s)
		case "visibility":
			ev.Visibility, ok1 = w.oneOf(p.val, "visibility", visibilityNames...)
		case "event_type":
			ev.EventType, ok1 = w.str(p.val, "event_type")
		case "recurring":
			var rec bool
			rec, ok1 = w.boolean(p.val, "recurring")
			if rec {
				ev.RecurringEventID = "recurring"
			}
		case "organizer":
			var org []calendar.Attendee
			org, ok1 = parseAttendees(w, []*yaml.Node{p.val}, "organizer")
			if ok1 {
				ev.Organizer = org[0]
				ev.Organizer.Organizer = true
			}
		case "attendees":
			var items []*yaml.Node
			if items, ok1 = w.seq(p.val, "attendees"); ok1 {
				ev.Attendees, ok1 = parseAttendees(w, items, "attendee")
			}
		case "source":
			ev.Source, ok1 = w.oneOf(p.val, "source", sourceNames...)
		case "show_as":
			ev.ShowAs, ok1 = w.oneOf(p.val, "show_as", showAsNames...)
		case "booking":
			ev.Booking, ok1 = parseBooking(w, p.val)
		}
		ok = ok && ok1
	}
	if ev.Source == "" {
		// Most events come from a calendar; a booking from Calendly.
		ev.Source = "google"
		if ev.Booking != nil {
			ev.Source = "calendly"
		}
	}
	if ok && startN != nil && endN != nil && ev.End.Before(ev.Start) {
		w.fail(endN, "end is before start")
		ok = false
	}
	if ev.StartDate != "" || ev.EndDate != "" {
		// A date without a time makes an all-day event.
		ev.AllDay = true
	}
	if ev.Organizer.Email != "" {
		for i := range ev.Attendees {
			if addressKey(ev.Attendees[i].Email) == addressKey(ev.Organizer.Email) {
				ev.Attendees[i].Organizer = true
			}
		}
	}
	for i := range ev.Attendees {
		if ev.Attendees[i].Response == "" {
			// An organizer has accepted their own meeting; an invitation
			// awaits an answer.
			ev.Attendees[i].Response = calendar.ResponseNeedsAction
			if ev.Attendees[i].Organizer {
				ev.Attendees[i].Response = calendar.ResponseAccepted
			}
		}
	}
	return ok
}

// testTime reads an RFC 3339 instant or a date (an all-day boundary).
func testTime(w *walker, n *yaml.Node, what string) (time.Time, string, bool) {
	s, ok := w.str(n, what)
	if !ok {
		return time.Time{}, "", false
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), "", true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, s, true
	}
	w.fail(n, "%s must be an RFC 3339 time (2026-03-25T14:00:00Z) or a date (2026-03-25), got %q", what, s)
	return time.Time{}, "", false
}

// parseAttendees reads attendees written as an address or as a mapping.
func parseAttendees(w *walker, items []*yaml.Node, what string) ([]calendar.Attendee, bool) {
	ok := true
	out := make([]calendar.Attendee, 0, len(items))
	for _, it := range items {
		var a calendar.Attendee
		if it.Kind == yaml.ScalarNode {
			var ok1 bool
			a.Email, ok1 = w.str(it, what)
			ok = ok && ok1
			out = append(out, a)
			continue
		}
		pairs, ok1 := w.mapping(it, what, testAttendeeKeys)
		ok = ok && ok1
		if it.Kind != yaml.MappingNode {
			continue
		}
		hasEmail := false
		for _, p := range pairs {
			var ok2 bool
			var s string
			switch p.key.Value {
			case "email":
				hasEmail = true
				a.Email, ok2 = w.str(p.val, "email")
			case "name":
				a.Name, ok2 = w.str(p.val, "name")
			case "response":
				s, ok2 = w.oneOf(p.val, "response", responseNames...)
				a.Response = calendar.Response(s)
			case "optional":
				a.Optional, ok2 = w.boolean(p.val, "optional")
			case "resource":
				a.Resource, ok2 = w.boolean(p.val, "resource")
			case "organizer":
				a.Organizer, ok2 = w.boolean(p.val, "organizer")
			case "self":
				a.Self, ok2 = w.boolean(p.val, "self")
			}
			ok = ok && ok2
		}
		if !hasEmail {
			w.fail(it, "%s is missing \"email\"", what)
			ok = false
		}
		out = append(out, a)
	}
	return out, ok
}

func parseBooking(w *walker, n *yaml.Node) (*calendar.Booking, bool) {
	pairs, ok := w.mapping(n, "booking", testBookingKeys)
	b := &calendar.Booking{}
	for _, p := range pairs {
		var ok1 bool
		switch p.key.Value {
		case "event_type":
			b.EventType, ok1 = w.str(p.val, "booking event_type")
		case "rescheduled":
			b.Rescheduled, ok1 = w.boolean(p.val, "booking rescheduled")
		case "utm":
			var fields []pair
			fields, ok1 = w.mapping(p.val, "booking utm", testUTMKeys)
			b.UTM = make(map[string]string, len(fields))
			for _, f := range fields {
				v, ok2 := w.str(f.val, "utm "+f.key.Value)
				ok1 = ok1 && ok2
				b.UTM["utm_"+f.key.Value] = v
			}
		case "answers":
			var items []*yaml.Node
			items, ok1 = w.seq(p.val, "booking answers")
			for _, it := range items {
				fields, ok2 := w.mapping(it, "a booking answer", testAnswerKeys)
				ok1 = ok1 && ok2
				var a calendar.Answer
				for _, f := range fields {
					var ok3 bool
					if f.key.Value == "question" {
						a.Question, ok3 = w.str(f.val, "question")
					} else {
						a.Answer, ok3 = w.str(f.val, "answer")
					}
					ok1 = ok1 && ok3
				}
				b.Answers = append(b.Answers, a)
			}
		}
		ok = ok && ok1
	}
	return b, ok
}

func parseWorkspace(w *walker, n *yaml.Node, ws *Workspace) bool {
	pairs, ok := w.mapping(n, "workspace", testWorkspace)
	for _, p := range pairs {
		var ok1 bool
		if p.key.Value == "id" {
			ws.ID, ok1 = w.str(p.val, "workspace id")
		} else {
			ws.Name, ok1 = w.str(p.val, "workspace name")
		}
		ok = ok && ok1
	}
	return ok
}

func testDomains(w *walker, n *yaml.Node, what string) ([]string, bool) {
	items, ok := w.seq(n, what)
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok1 := w.str(it, what+" entry")
		if !ok1 {
			ok = false
			continue
		}
		d, err := matching.NormalizeDomain(s)
		if err != nil {
			w.fail(it, "%s: %q is not a domain name (want e.g. example.com)", what, s)
			ok = false
			continue
		}
		out = append(out, d)
	}
	return out, ok
}

func parseCompanies(w *walker, n *yaml.Node) ([]crm.Company, map[string]map[string]string, bool) {
	items, ok := w.seq(n, "companies")
	var out []crm.Company
	var props map[string]map[string]string
	for _, it := range items {
		pairs, ok1 := w.mapping(it, "a company", testCompanyKeys)
		ok = ok && ok1
		if it.Kind != yaml.MappingNode {
			continue
		}
		var c crm.Company
		var cp map[string]string
		for _, p := range pairs {
			var ok2 bool
			switch p.key.Value {
			case "id":
				c.ID, ok2 = w.str(p.val, "company id")
			case "name":
				c.Name, ok2 = w.str(p.val, "company name")
			case "domains":
				c.Domains, ok2 = w.strs(p.val, "company domains")
			case "properties":
				cp, ok2 = parseProperties(w, p.val, "company properties")
			}
			ok = ok && ok2
		}
		if c.ID == "" {
			w.fail(it, "company is missing \"id\"")
			ok = false
		} else if cp != nil {
			if props == nil {
				props = make(map[string]map[string]string)
			}
			props[c.ID] = cp
		}
		out = append(out, c)
	}
	return out, props, ok
}

// parseProperties reads CRM property values: names to scalars, kept as
// written (HubSpot's values are strings).
func parseProperties(w *walker, n *yaml.Node, what string) (map[string]string, bool) {
	pairs, ok := w.mapping(n, what, nil)
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		v := ""
		if p.val.ShortTag() != "!!null" {
			var ok1 bool
			v, ok1 = w.str(p.val, "property "+p.key.Value)
			ok = ok && ok1
		}
		out[p.key.Value] = v
	}
	return out, ok
}

// parseContacts reads the contacts known to the CRM: a list of {email, id,
// properties}, or the short form, a mapping of e-mail to contact id.
func parseContacts(w *walker, n *yaml.Node) (map[string]string, map[string]map[string]string, bool) {
	ids := make(map[string]string)
	if n.Kind == yaml.MappingNode {
		pairs, ok := w.mapping(n, "contacts (e-mail: contact id)", nil)
		for _, p := range pairs {
			id, ok1 := w.str(p.val, "contact id")
			ok = ok && ok1
			ids[addressKey(p.key.Value)] = id
		}
		return ids, nil, ok
	}
	items, ok := w.seq(n, "contacts")
	var props map[string]map[string]string
	for _, it := range items {
		pairs, ok1 := w.mapping(it, "a contact", testContactKeys)
		ok = ok && ok1
		if it.Kind != yaml.MappingNode {
			continue
		}
		var email, id string
		var cp map[string]string
		hasEmail := false
		for _, p := range pairs {
			var ok2 bool
			switch p.key.Value {
			case "email":
				hasEmail = true
				email, ok2 = w.str(p.val, "contact email")
			case "id":
				id, ok2 = w.str(p.val, "contact id")
			case "properties":
				cp, ok2 = parseProperties(w, p.val, "contact properties")
			}
			ok = ok && ok2
		}
		if !hasEmail {
			w.fail(it, "contact is missing \"email\"")
			ok = false
			continue
		}
		key := addressKey(email)
		ids[key] = id
		if cp != nil {
			if props == nil {
				props = make(map[string]map[string]string)
			}
			props[key] = cp
		}
	}
	return ids, props, ok
}

func parseExpect(w *walker, n *yaml.Node, tc *testCase) bool {
	pairs, ok := w.mapping(n, "expect", testExpectKeys)
	hasAction := false
	for _, p := range pairs {
		var ok1 bool
		switch p.key.Value {
		case "action":
			hasAction = true
			var a string
			a, ok1 = w.oneOf(p.val, "action", actionNames...)
			tc.action = Action(a)
		case "rule":
			tc.rule, ok1 = w.str(p.val, "rule")
		}
		ok = ok && ok1
	}
	if n.Kind == yaml.MappingNode && !hasAction {
		w.fail(n, "expect is missing \"action\"")
		ok = false
	}
	return ok
}

// TestReport is the outcome of the test files of a directory.
type TestReport struct {
	Passed  int
	Failed  int
	Results []TestResult
}

// TestResult is the outcome of one test case.
type TestResult struct {
	Name string
	// File, Line and Col locate the test case.
	File     string
	Line     int
	Col      int
	Passed   bool
	Decision Decision
	// Diff explains a failure: expected against actual, with the rules
	// evaluated and the attendees' classes. Empty when the test passed.
	Diff string
}

// String lists the failures and ends with the line "N passed, N failed".
func (r TestReport) String() string {
	var b strings.Builder
	for _, res := range r.Results {
		if !res.Passed {
			fmt.Fprintf(&b, "FAIL %s:%d:%d: %s\n%s", res.File, res.Line, res.Col, res.Name, res.Diff)
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed", r.Passed, r.Failed)
	return b.String()
}

// RunTests runs the test cases of dir's *_test.yaml files against s (Load(dir)
// when s is nil). A mistake in a test file is an ErrorList, like Load's.
func RunTests(dir string, s *Set) (TestReport, error) {
	if s == nil {
		var err error
		if s, err = Load(dir); err != nil {
			return TestReport{}, err
		}
	}
	cases, err := loadTests(dir)
	if err != nil {
		return TestReport{}, err
	}
	var rep TestReport
	for _, tc := range cases {
		res := s.runTest(tc)
		if res.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func loadTests(dir string) ([]testCase, error) {
	files, err := readDir(dir, isTestFile)
	if err != nil {
		return nil, err
	}
	var e errs
	cases := parseTests(files, &e)
	if err := e.err(); err != nil {
		return nil, err
	}
	return cases, nil
}

func (s *Set) runTest(tc testCase) TestResult {
	in := tc.in
	in.Index = matching.NewIndex(s.freeMail)
	for _, c := range tc.companies {
		in.Index.Upsert(c)
	}
	if tc.companyProps != nil {
		in.CompanyProperties = func(id string) map[string]string { return tc.companyProps[id] }
	}
	d := s.Decide(in)
	res := TestResult{Name: tc.name, File: tc.file, Line: tc.line, Col: tc.col, Decision: d}
	res.Passed = d.Action == tc.action && (tc.rule == "" || d.Rule == tc.rule)
	if !res.Passed {
		res.Diff = s.explain(tc, d)
	}
	return res
}

// explain writes what a failed test expected, what it got and why.
func (s *Set) explain(tc testCase, d Decision) string {
	var b strings.Builder
	want := "action=" + string(tc.action)
	if tc.rule != "" {
		want += " rule=" + tc.rule
	}
	fmt.Fprintf(&b, "    expected: %s\n", want)
	fmt.Fprintf(&b, "    got:      action=%s rule=%s (%s)\n", d.Action, d.Rule, d.Reason)
	fmt.Fprintf(&b, "    why:      %s\n", Explain(d))
	if tc.rule != "" && tc.rule != DefaultRuleName && !s.hasRule(tc.rule) {
		fmt.Fprintf(&b, "    note: the rules have no rule named %q\n", tc.rule)
	}
	for _, n := range undeclared(tc.companyProps, s.crmCompanies) {
		fmt.Fprintf(&b, "    note: the test gives company property %q, which no rule file declares under crm_properties.companies\n", n)
	}
	for _, n := range undeclared(tc.in.ContactProperties, s.crmContacts) {
		fmt.Fprintf(&b, "    note: the test gives contact property %q, which no rule file declares under crm_properties.contacts\n", n)
	}
	b.WriteString("    rules evaluated:\n")
	for _, st := range d.Trace {
		switch {
		case st.Err != "":
			fmt.Fprintf(&b, "      %-32s error: %s\n", st.Rule, st.Err)
		default:
			fmt.Fprintf(&b, "      %-32s %t\n", st.Rule, st.Result)
		}
	}
	if len(d.Trace) == 0 {
		b.WriteString("      (none)\n")
	}
	b.WriteString("    attendees:\n")
	for _, a := range d.Attendees {
		fmt.Fprintf(&b, "      %-32s %s\n", orDefault(a.Domain, "(invalid address)"), a.classes())
	}
	if len(d.Attendees) == 0 {
		b.WriteString("      (none)\n")
	}
	return b.String()
}

// undeclared lists the property names of records that are not declared,
// sorted.
func undeclared(records map[string]map[string]string, declared []string) []string {
	var out []string
	for _, props := range records {
		for name := range props {
			if !slices.Contains(declared, name) && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *Set) hasRule(name string) bool {
	for i := range s.rules {
		if s.rules[i].Name == name {
			return true
		}
	}
	return false
}

// classes renders an attendee's classes as words, for people to read.
func (a AttendeeTrace) classes() string {
	var w []string
	for _, c := range []struct {
		on   bool
		name string
	}{
		{a.External, "external"}, {a.Internal, "internal"}, {a.FreeMail, "free_mail"}, {a.Blocked, "blocked"},
		{a.Resource, "resource"}, {a.Organizer, "organizer"}, {a.Self, "self"}, {a.Optional, "optional"},
	} {
		if c.on {
			w = append(w, c.name)
		}
	}
	w = append(w, a.Response)
	if len(a.Companies) > 0 {
		w = append(w, "companies="+strings.Join(a.Companies, ","))
	}
	if a.Contact != "" {
		w = append(w, "contact="+a.Contact)
	}
	return strings.Join(w, " ")
}

// Check loads and compiles the rule files of dir and reads its test files,
// returning every mistake ("file:line:col: message" for those in a file), or
// nil when there is none. It is `rapport rules check`.
func Check(dir string) []error {
	var out ErrorList
	_, err := Load(dir)
	var list ErrorList
	switch {
	case errors.As(err, &list):
		out = append(out, list...)
	case err != nil:
		return []error{err}
	}
	_, err = loadTests(dir)
	switch {
	case errors.As(err, &list):
		out = append(out, list...)
	case err != nil:
		return []error{err}
	}
	if len(out) == 0 {
		return nil
	}
	out.sort()
	return out.Errors()
}
