package rules

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/calendar"
)

const propsDecl = `crm_properties:
  companies: [lifecyclestage, hubspot_owner_id, annualrevenue, closedate]
  contacts: [jobtitle]
`

// ruleWhen is a rule file with one rule r whose when is x (single-quoted).
func ruleWhen(x string) string {
	return "version: 1\nrules:\n  - name: r\n    action: log\n    when: '" + strings.ReplaceAll(x, "'", "''") + "'\n"
}

func TestPropertyCheckErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "misspelled company property",
			files: map[string]string{"a.yaml": ruleWhen(`any(companies, .properties.lifecyclestag == "customer")`) + propsDecl},
			want:  []string{`a.yaml:5:39: when: company property "lifecyclestag" is not declared under crm_properties.companies (did you mean "lifecyclestage"?)`},
		},
		{
			name:  "undeclared contact property",
			files: map[string]string{"a.yaml": ruleWhen(`any(external, .contact != nil && .contact.properties.seniority == "vp")`) + propsDecl},
			want:  []string{`a.yaml:5:65: when: contact property "seniority" is not declared under crm_properties.contacts (declared: jobtitle)`},
		},
		{
			name:  "nothing declared",
			files: map[string]string{"a.yaml": ruleWhen(`owner.company.properties.industry == "x"`)},
			want:  []string{`a.yaml:5:37: when: company property "industry" is not declared under crm_properties.companies; declare it in a rule file: crm_properties: {companies: [industry]}`},
		},
		{
			name:  "a contact property declared for companies",
			files: map[string]string{"a.yaml": ruleWhen(`event.organizer.contact.properties.lifecyclestage == "lead"`) + propsDecl},
			want:  []string{`a.yaml:5:47: when: contact property "lifecyclestage" is not declared under crm_properties.contacts (declared: jobtitle)`},
		},
		{
			name:  "index form and get",
			files: map[string]string{"a.yaml": ruleWhen(`companies[0].properties["lifecycle"] == "" || get(companies[0].properties, "lifecyclestage") == ""`) + propsDecl},
			want: []string{
				`a.yaml:5:36: when: company property "lifecycle" is not declared under crm_properties.companies (declared: annualrevenue, closedate, hubspot_owner_id, lifecyclestage)`,
				`a.yaml:5:75: when: company.properties is read one property at a time, by name (company.properties.annualrevenue)`,
			},
		},
		{
			name:  "computed key",
			files: map[string]string{"a.yaml": ruleWhen(`companies[0].properties[event.title] == "x"`) + propsDecl},
			want:  []string{`a.yaml:5:36: when: company properties are read by name (company.properties.annualrevenue), not with a computed key`},
		},
		{
			name:  "whole map",
			files: map[string]string{"a.yaml": ruleWhen(`"lifecyclestage" in owner.contact.properties`) + propsDecl},
			want:  []string{`a.yaml:5:46: when: contact.properties is read one property at a time, by name (contact.properties.jobtitle)`},
		},
		{
			name:  "map of properties",
			files: map[string]string{"a.yaml": ruleWhen(`len(map(companies, .properties)) > 0`) + propsDecl},
			want:  []string{`a.yaml:5:32: when: company.properties is read one property at a time, by name (company.properties.annualrevenue)`},
		},
		{
			name: "position inside a block scalar",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: r
    action: log
    when: |
      any(companies,
          .properties.lifecyclestage == "customer" &&
          .properties.hubspot_owner == "1")
` + propsDecl},
			want: []string{`a.yaml:8:23: when: company property "hubspot_owner" is not declared under crm_properties.companies (did you mean "hubspot_owner_id"?)`},
		},
		{
			name: "bad crm_properties",
			files: map[string]string{"a.yaml": okRule + `crm_properties:
  companies: [Lifecycle Stage, "", ok_name, [x]]
  contacts: jobtitle
  deals: [amount]
`},
			want: []string{
				`a.yaml:7:15: crm_properties.companies: "Lifecycle Stage" is not a HubSpot property's internal name (lower-case letters, digits and underscores, starting with a letter, e.g. lifecyclestage)`,
				`a.yaml:7:32: crm_properties.companies: "" is not a HubSpot property's internal name (lower-case letters, digits and underscores, starting with a letter, e.g. lifecyclestage)`,
				`a.yaml:7:45: crm_properties.companies entry must be a string, got a list`,
				`a.yaml:8:13: crm_properties.contacts must be a list, got the string "jobtitle"`,
				`a.yaml:9:3: unknown key "deals" in crm_properties (want companies, contacts)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tt.files)
			_, err := Load(dir)
			if diff := cmp.Diff(tt.want, errorLines(dir, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCRMPropertiesAcrossFiles(t *testing.T) {
	t.Parallel()
	// A property read in one file may be declared in another, before or
	// after it.
	s := loadRules(t, map[string]string{
		"10-rules.yaml": ruleWhen(`any(companies, .properties.lifecyclestage == "customer")`),
		"20-props.yaml": "version: 1\ncrm_properties: {companies: [lifecyclestage, industry], contacts: [jobtitle]}\n",
		"30-more.yaml":  "version: 1\ncrm_properties: {companies: [industry, annualrevenue]}\n",
	})
	companies, contacts := s.CRMProperties()
	if diff := cmp.Diff([]string{"annualrevenue", "industry", "lifecyclestage"}, companies); diff != "" {
		t.Errorf("companies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"jobtitle"}, contacts); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
	if !s.ReadsCompanyProperties() || s.ReadsContactProperties() {
		t.Errorf("reads companies %t, contacts %t; want true, false (jobtitle is declared, never read)",
			s.ReadsCompanyProperties(), s.ReadsContactProperties())
	}

	tests := []struct {
		when                       string
		readsCompany, readsContact bool
	}{
		{`true`, false, false},
		{`any(external, .contact?.properties.jobtitle contains "VP")`, false, true},
		{`owner.contact.properties.jobtitle == ""`, false, true},
		{`let c = event.organizer.contact; c.properties.jobtitle == ""`, false, true},
		{`companies[0].properties.industry == "" && owner.contact.properties["jobtitle"] == ""`, true, true},
	}
	for _, tt := range tests {
		s := loadRules(t, map[string]string{"a.yaml": ruleWhen(tt.when) + "crm_properties: {companies: [industry], contacts: [jobtitle]}\n"})
		if s.ReadsCompanyProperties() != tt.readsCompany || s.ReadsContactProperties() != tt.readsContact {
			t.Errorf("%s: reads companies %t, contacts %t; want %t, %t", tt.when,
				s.ReadsCompanyProperties(), s.ReadsContactProperties(), tt.readsCompany, tt.readsContact)
		}
	}
	if c, k := Default().CRMProperties(); c != nil || k != nil || Default().ReadsContactProperties() {
		t.Errorf("built-in rules declare %v %v", c, k)
	}
}

// TestPropertyValues checks the values expressions read, on every path to
// a company or contact, and that company properties are fetched once per
// matched company and only when read.
func TestPropertyValues(t *testing.T) {
	t.Parallel()
	ev := meeting(guest("CFO@Acme.Example"), guest("ops@globex.example"), guest("jo@gmail.com"))
	companyProps := map[string]map[string]string{
		"101": {"lifecyclestage": "customer", "hubspot_owner_id": "7", "annualrevenue": "1250000.50", "closedate": "1767225600000"},
		"202": {"lifecyclestage": "lead"},
	}
	var calls atomic.Int32
	in := Input{
		Event: ev, Owner: "rep@northwind.test", Internal: internal, Index: testIndex(nil),
		CompanyProperties: func(id string) map[string]string {
			calls.Add(1)
			return companyProps[id]
		},
		ContactProperties: map[string]map[string]string{
			"cfo@acme.example": {"jobtitle": "VP Finance"},
			"jo@gmail.com":     {"jobtitle": ""},
		},
		Contacts: map[string]string{"cfo@acme.example": "c-1"},
	}
	exprs := []string{
		`companies[0].properties.lifecyclestage == "customer" && companies[1].properties.lifecyclestage == "lead"`,
		`event.attendees[1].company.properties.hubspot_owner_id == "7"`,
		`external[1].company.properties.hubspot_owner_id == ""`,
		`companies[1].properties["annualrevenue"] == ""`,
		`any(companies, .properties.lifecyclestage in ["opportunity", "customer"])`,
		`external[0].contact.id == "c-1" && external[0].contact.properties.jobtitle startsWith "VP"`,
		`external[2].contact.id == "" && external[2].contact.properties.jobtitle == ""`,
		`external[1].contact == nil && owner.contact == nil`,
		`number(companies[0].properties.annualrevenue) > 1e6`,
		`date(companies[0].properties.closedate) == date("2026-01-01T00:00:00Z")`,
		`has(companies[0].properties.closedate) && !has(companies[1].properties.closedate)`,
	}
	for _, x := range exprs {
		s := loadRules(t, map[string]string{"a.yaml": ruleWhen(x) + propsDecl})
		calls.Store(0)
		if d := s.Decide(in); d.Rule != "r" {
			t.Errorf("%s: false (trace %+v)", x, d.Trace)
		}
		if n := calls.Load(); s.ReadsCompanyProperties() && n != 2 || !s.ReadsCompanyProperties() && n != 0 {
			t.Errorf("%s: CompanyProperties called %d times, want once per matched company (2) when read", x, n)
		}
	}

	// Not read, not fetched; no callback, no values; contacts without
	// ContactProperties still have ids.
	s := loadRules(t, map[string]string{"a.yaml": ruleWhen(`external[0].contact.id == "c-1"`) + propsDecl})
	calls.Store(0)
	if d := s.Decide(in); d.Rule != "r" || calls.Load() != 0 {
		t.Errorf("unread properties: rule %s, %d calls; want r, 0", d.Rule, calls.Load())
	}
	s = loadRules(t, map[string]string{"a.yaml": ruleWhen(`companies[0].properties.lifecyclestage == "" && external[0].contact.properties.jobtitle == ""`) + propsDecl})
	bare := in
	bare.CompanyProperties, bare.ContactProperties = nil, nil
	if d := s.Decide(bare); d.Rule != "r" {
		t.Errorf("without properties: trace %+v", d.Trace)
	}
}

// TestPropertyHelpers checks number, date and has on the values HubSpot
// returns; a value they cannot read makes the rule not match, with the
// reason in the trace.
func TestPropertyHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		when    string
		value   string
		match   bool
		wantErr string
	}{
		{when: `number(VAL) == 12500`, value: "12500", match: true},
		{when: `number(VAL) == 0.75`, value: " 0.75 ", match: true},
		{when: `number(VAL) < 0`, value: "-3", match: true},
		{when: `number(VAL) > 0`, value: "", wantErr: "number: the value is empty"},
		{when: `number(VAL) > 0`, value: "12,500", wantErr: `number: "12,500" is not a number`},
		{when: `number(VAL) > 0`, value: "NaN", wantErr: `number: "NaN" is not a number`},
		{when: `number(VAL) > 0`, value: "Inf", wantErr: `number: "Inf" is not a number`},
		{when: `date(VAL) == date("2026-01-01T00:00:00Z")`, value: "1767225600000", match: true},
		{when: `date(VAL) == date("2026-01-01T00:00:00Z")`, value: "2026-01-01", match: true},
		{when: `date(VAL) == date("2026-01-01T00:00:00Z")`, value: "2026-01-01T00:00:00.000Z", match: true},
		{when: `date(VAL) == date("2026-01-01T00:00:00Z")`, value: "2026-01-01T01:00:00+01:00", match: true},
		{when: `date(VAL).Year() == 2026 && date(VAL) < now()`, value: "1767225600000", match: true},
		{when: `date(VAL) > event.start`, value: "", wantErr: "date: the value is empty"},
		{when: `date(VAL) > event.start`, value: "next week", wantErr: `date: "next week" is neither milliseconds since the epoch nor an ISO 8601 date`},
		{when: `date(VAL) > event.start`, value: "99999999999999999999", wantErr: `date: "99999999999999999999" is out of range`},
		// expr's own forms of date still work.
		{when: `date(VAL, "02/01/2006") == date("2026-01-01")`, value: "01/01/2026", match: true},
		{when: `date(VAL, "2006-01-02 15:04", "Europe/Paris") == date("2025-12-31T23:00:00Z")`, value: "2026-01-01 00:00", match: true},
		{when: `has(VAL)`, value: "x", match: true},
		{when: `has(VAL)`, value: "  ", match: false},
		{when: `!has(VAL)`, value: "", match: true},
	}
	for _, tt := range tests {
		x := strings.ReplaceAll(tt.when, "VAL", "companies[0].properties.closedate")
		s := loadRules(t, map[string]string{"a.yaml": ruleWhen(x) + propsDecl})
		d := s.Decide(Input{
			Event: meeting(guest("cfo@acme.example")), Internal: internal, Index: testIndex(nil),
			CompanyProperties: func(string) map[string]string { return map[string]string{"closedate": tt.value} },
		})
		if got := d.Rule == "r"; got != tt.match {
			t.Errorf("%s with %q: match %t, want %t (trace %+v)", tt.when, tt.value, got, tt.match, d.Trace)
		}
		if got := d.Trace[0].Err; !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (got == "") {
			t.Errorf("%s with %q: trace error %q, want %q", tt.when, tt.value, got, tt.wantErr)
		}
	}
}

func TestPropertyHelperCompileErrors(t *testing.T) {
	t.Parallel()
	for when, want := range map[string]string{
		`number(3) > 1`:                     "a.yaml:5:19: when: cannot use int as argument (type string) to call number ",
		`has(event.start)`:                  "a.yaml:5:22: when: cannot use time.Time as argument (type string) to call has ",
		`date(1767225600000) > event.start`: "a.yaml:5:12: when: not enough arguments to call date",
	} {
		dir := writeDir(t, map[string]string{"a.yaml": ruleWhen(when)})
		_, err := Load(dir)
		if got := strings.Join(errorLines(dir, err), "\n"); got != want {
			t.Errorf("%s: error %q, want %q", when, got, want)
		}
	}
}

// TestRunTestsProperties: test cases give companies and contacts with
// properties; a failure notes a property no rule file declares.
func TestRunTestsProperties(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"a.yaml": `version: 1
crm_properties: {companies: [lifecyclestage], contacts: [jobtitle]}
rules:
  - name: customer
    when: any(companies, .properties.lifecyclestage == "customer")
    action: log
  - name: vp
    when: any(external, .contact?.properties.jobtitle contains "VP")
    action: log
`,
		"a_test.yaml": `version: 1
tests:
  - name: customer
    event: {attendees: [rep@northwind.test, cfo@acme.example]}
    internal_domains: [northwind.test]
    companies: [{id: "101", name: Acme, domains: [acme.example], properties: {lifecyclestage: customer}}]
    expect: {action: log, rule: customer}
  - name: a lead is not a customer
    event: {attendees: [rep@northwind.test, cfo@acme.example]}
    internal_domains: [northwind.test]
    companies: [{id: "101", name: Acme, domains: [acme.example], properties: {lifecyclestage: lead}}]
    expect: {action: skip}
  - name: vp without a company
    event: {attendees: [rep@northwind.test, Ana@Prospect.example]}
    internal_domains: [northwind.test]
    contacts: [{email: ana@prospect.example, id: "c-5", properties: {jobtitle: SVP Sales}}]
    expect: {action: log, rule: vp}
  - name: misspelled in the test
    event: {attendees: [rep@northwind.test, cfo@acme.example]}
    internal_domains: [northwind.test]
    companies: [{id: "101", domains: [acme.example], properties: {lifecylestage: customer, empty: }}]
    contacts: [{email: cfo@acme.example, properties: {title: VP}}]
    expect: {action: log}
`,
	})
	rep, err := RunTests(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 3 || rep.Failed != 1 {
		t.Fatalf("report:\n%s", rep)
	}
	for _, want := range []string{
		`note: the test gives company property "empty", which no rule file declares under crm_properties.companies`,
		`note: the test gives company property "lifecylestage", which no rule file declares under crm_properties.companies`,
		`note: the test gives contact property "title", which no rule file declares under crm_properties.contacts`,
	} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
}

func TestTestFileContactsForms(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"a.yaml": okRule, "t_test.yaml": `tests:
  - name: t
    event: {}
    contacts: [{id: "1"}, {email: a@b.example, id: [x], properties: {jobtitle: [VP]}, phone: 1}, "x@y.example"]
    companies: [{id: "1", properties: [lifecyclestage]}]
    expect: {action: log}
`})
	_, err := RunTests(dir, nil)
	want := []string{
		`t_test.yaml:4:16: contact is missing "email"`,
		`t_test.yaml:4:52: contact id must be a string, got a list`,
		`t_test.yaml:4:80: property jobtitle must be a string, got a list`,
		`t_test.yaml:4:87: unknown key "phone" in a contact (want email, id, properties)`,
		`t_test.yaml:4:98: a contact must be a mapping, got the string "x@y.example"`,
		`t_test.yaml:5:39: company properties must be a mapping, got a list`,
	}
	if diff := cmp.Diff(want, errorLines(dir, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// BenchmarkDecideProperties: four rules reading company and contact
// properties over ten attendees.
func BenchmarkDecideProperties(b *testing.B) {
	dir := writeDir(b, map[string]string{"a.yaml": `version: 1
crm_properties: {companies: [lifecyclestage, hubspot_owner_id, annualrevenue], contacts: [jobtitle]}
rules:
  - name: vip
    when: any(external, .contact != nil && .contact.properties.jobtitle contains "Chief")
    action: log
  - name: big
    when: any(companies, has(.properties.annualrevenue) && number(.properties.annualrevenue) > 1e9)
    action: log
  - name: team
    when: any(companies, .properties.hubspot_owner_id in ["1", "2", "3"])
    action: log
  - name: customer
    when: any(companies, .properties.lifecyclestage in ["opportunity", "customer"])
    action: log
`})
	s, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	props := map[string]map[string]string{
		"101": {"lifecyclestage": "customer", "hubspot_owner_id": "9", "annualrevenue": "1000000"},
		"202": {"lifecyclestage": "lead"},
		"303": {},
	}
	in := Input{
		Event: meeting(
			guest("se@northwind.test"),
			guest("cto@eng.northwind.test"),
			guest("someone@gmail.com"),
			calendar.Attendee{Email: "c_1888@resource.calendar.google.com", Resource: true},
			guest("ceo@unknown.example"),
			guest("ops@globex-eu.example"),
			guest("it@eu.initech.example"),
			guest("buyer@mail.acme.example"),
			guest("cfo@acme.example"),
		),
		Owner: "rep@northwind.test", Internal: internal, Index: testIndex(s.FreeMail()),
		CompanyProperties: func(id string) map[string]string { return props[id] },
		ContactProperties: map[string]map[string]string{"cfo@acme.example": {"jobtitle": "VP Finance"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := s.Decide(in); d.Rule != "customer" {
			b.Fatal(d.Rule, d.Trace)
		}
	}
}
