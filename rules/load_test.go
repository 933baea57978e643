package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeDir writes files into a fresh directory and returns it.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// errorLines returns err's lines with dir removed from the file names.
func errorLines(dir string, err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), "\n")
}

const okRule = `version: 1
rules:
  - name: ok
    when: "true"
    action: log
`

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name: "unknown top-level key",
			files: map[string]string{"a.yaml": `version: 1
rulez: []
`},
			want: []string{`a.yaml:2:1: unknown key "rulez" in a rule file (want version, rules, default, free_mail, blocked_domains, ownership, crm_properties)`},
		},
		{
			name: "unknown rule key",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: r
    when: "true"
    action: log
    priority: 3
`},
			want: []string{`a.yaml:6:5: unknown key "priority" in a rule (want name, when, action, reason)`},
		},
		{
			name: "wrong types",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: [r]
    when: {a: b}
    action: log
    reason: [x]
  - just a string
default: 3
`},
			want: []string{
				`a.yaml:3:11: name must be a string, got a list`,
				`a.yaml:4:11: when must be a string, got a mapping`,
				`a.yaml:6:13: reason must be a string, got a list`,
				`a.yaml:7:5: a rule must be a mapping, got the string "just a string"`,
				`a.yaml:8:10: default must be "log" or "skip", got "3"`,
			},
		},
		{
			name:  "rules not a list",
			files: map[string]string{"a.yaml": "version: 1\nrules: {name: x}\n"},
			want:  []string{`a.yaml:2:8: rules must be a list, got a mapping`},
		},
		{
			name:  "file not a mapping",
			files: map[string]string{"a.yaml": "- version: 1\n"},
			want:  []string{`a.yaml:1:1: a rule file must be a mapping, got a list`},
		},
		{
			name: "duplicate rule name in one file",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: same
    when: "true"
    action: log
  - name: same
    when: "false"
    action: skip
`},
			want: []string{`a.yaml:6:11: duplicate rule name "same" (first defined at a.yaml:3:11)`},
		},
		{
			name: "duplicate rule name across files",
			files: map[string]string{
				"10-a.yaml": okRule,
				"20-b.yaml": `version: 1
rules:
  - name: ok
    when: "false"
    action: skip
`,
			},
			want: []string{`20-b.yaml:3:11: duplicate rule name "ok" (first defined at DIR/10-a.yaml:3:11)`},
		},
		{
			name: "missing name, when and action",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - reason: nothing else
`},
			want: []string{
				`a.yaml:3:5: rule is missing "name"`,
				`a.yaml:3:5: rule is missing "when"`,
				`a.yaml:3:5: rule is missing "action"`,
			},
		},
		{
			name: "unknown action",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: r
    when: "true"
    action: delete
`},
			want: []string{`a.yaml:5:13: action must be "log" or "skip", got "delete"`},
		},
		{
			name:  "bad default",
			files: map[string]string{"a.yaml": "version: 1\ndefault: maybe\n"},
			want:  []string{`a.yaml:2:10: default must be "log" or "skip", got "maybe"`},
		},
		{
			name: "default set twice",
			files: map[string]string{
				"a.yaml": "version: 1\ndefault: log\n",
				"b.yaml": "version: 1\ndefault: skip\n",
			},
			want: []string{`b.yaml:2:10: default is already set at DIR/a.yaml:2:10`},
		},
		{
			name:  "bad version",
			files: map[string]string{"a.yaml": "version: 2\n", "b.yaml": "version: \"1\"\n"},
			want: []string{
				`a.yaml:1:10: version must be 1, got 2`,
				`b.yaml:1:10: version must be 1, got the string "1"`,
			},
		},
		{
			name:  "missing version",
			files: map[string]string{"a.yaml": "default: skip\n"},
			want:  []string{`a.yaml:1:1: missing version (want version: 1)`},
		},
		{
			name: "ownership",
			files: map[string]string{"a.yaml": `version: 1
ownership:
  hs_meeting_body: calendar
  hs_meeting_colour: crm
  hs_meeting_title: nobody
  hs_i_cal_uid: crm
`},
			want: []string{
				`a.yaml:4:3: unknown meeting property "hs_meeting_colour" in ownership (Rapport writes hs_meeting_body, hs_meeting_end_time, hs_meeting_external_url, hs_meeting_location, hs_meeting_outcome, hs_meeting_start_time, hs_meeting_title, hs_timestamp, hubspot_owner_id)`,
				`a.yaml:5:21: owner of hs_meeting_title must be "calendar" or "crm", got "nobody"`,
				`a.yaml:6:3: unknown meeting property "hs_i_cal_uid" in ownership (Rapport writes hs_meeting_body, hs_meeting_end_time, hs_meeting_external_url, hs_meeting_location, hs_meeting_outcome, hs_meeting_start_time, hs_meeting_title, hs_timestamp, hubspot_owner_id)`,
			},
		},
		{
			name: "ownership set twice",
			files: map[string]string{
				"a.yaml": "version: 1\nownership:\n  hs_meeting_body: crm\n",
				"b.yaml": "version: 1\nownership:\n  hs_meeting_body: calendar\n",
			},
			want: []string{`b.yaml:3:3: ownership of "hs_meeting_body" is already set at DIR/a.yaml:3:3`},
		},
		{
			name:  "ownership not a mapping",
			files: map[string]string{"a.yaml": "version: 1\nownership: [hs_meeting_body]\n"},
			want:  []string{`a.yaml:2:12: ownership must be a mapping, got a list`},
		},
		{
			name: "free mail and blocked domains",
			files: map[string]string{"a.yaml": `version: 1
free_mail:
  add: [gmx.net, "user@gmx.de", localhost]
  remove: ["*.proton.me"]
  replace: [x.com]
blocked_domains: [competitor.example, "https://rival.example/"]
`},
			want: []string{
				`a.yaml:3:18: free_mail.add: "user@gmx.de" is not a domain name (want e.g. example.com)`,
				`a.yaml:3:33: free_mail.add: "localhost" is not a domain name (want e.g. example.com)`,
				`a.yaml:4:12: free_mail.remove: "*.proton.me" is not a domain name (want e.g. example.com)`,
				`a.yaml:5:3: unknown key "replace" in free_mail (want add, remove)`,
				`a.yaml:6:39: blocked_domains: "https://rival.example/" is not a domain name (want e.g. example.com)`,
			},
		},
		{
			name:  "blocked domains not a list",
			files: map[string]string{"a.yaml": "version: 1\nblocked_domains: rival.example\n"},
			want:  []string{`a.yaml:2:18: blocked_domains must be a list, got the string "rival.example"`},
		},
		{
			name:  "duplicate key",
			files: map[string]string{"a.yaml": "version: 1\ndefault: log\ndefault: skip\n"},
			want:  []string{`a.yaml:3:1: duplicate key "default" in a rule file (first at line 2)`},
		},
		{
			name:  "yaml syntax",
			files: map[string]string{"a.yaml": "version: 1\nrules:\n  - name: x\n   when: y\n"},
			// The parser reports the line of the construct it was in.
			want: []string{`a.yaml:2:1: invalid YAML: did not find expected '-' indicator`},
		},
		{
			name:  "empty file",
			files: map[string]string{"a.yaml": "# nothing yet\n"},
			want:  []string{`a.yaml:1:1: empty file`},
		},
		{
			name:  "two documents",
			files: map[string]string{"a.yaml": okRule + "---\nversion: 1\n"},
			want:  []string{`a.yaml:6:1: a file holds one YAML document; found another one here`},
		},
		{
			name: "alias",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: a
    when: &w event.all_day
    action: skip
  - name: b
    when: *w
    action: skip
`},
			want: []string{`a.yaml:7:11: aliases (*w) are not supported`},
		},
		{
			name:  "custom tag",
			files: map[string]string{"a.yaml": "version: 1\ndefault: !action log\n"},
			want:  []string{`a.yaml:2:10: tag !action is not supported`},
		},
		{
			name: "bad names",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: default
    when: "true"
    action: log
  - name: " padded"
    when: "true"
    action: log
  - name: ""
    when: "true"
    action: log
`},
			want: []string{
				`a.yaml:3:11: name "default" is reserved for decisions no rule matched`,
				`a.yaml:6:11: name " padded" must not have leading or trailing spaces or control characters`,
				`a.yaml:9:11: name must not be empty`,
			},
		},
		{
			name: "empty or null when",
			files: map[string]string{"a.yaml": `version: 1
rules:
  - name: a
    when: "  "
    action: log
  - name: b
    when:
    action: log
`},
			want: []string{
				`a.yaml:4:11: when must not be empty`,
				`a.yaml:7:10: when must be a string, got nothing`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tt.files)
			s, err := Load(dir)
			if s != nil {
				t.Errorf("Load returned a set despite errors")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load error = %v (%T), want an ErrorList", err, err)
			}
			// errorLines strips the directory, "DIR/" marks where.
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "DIR/", "")
			}
			if diff := cmp.Diff(want, errorLines(dir, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if got := Check(dir); len(got) != len(tt.want) {
				t.Errorf("Check returned %d errors, want %d: %v", len(got), len(tt.want), got)
			}
		})
	}
}

// TestCompileErrorPosition checks that an expression's error points into the
// YAML file, for each way of writing a scalar.
func TestCompileErrorPosition(t *testing.T) {
	t.Parallel()
	rule := func(when string) string {
		return "version: 1\nrules:\n  - name: r\n    action: log\n    when: " + when + "\n"
	}
	tests := []struct {
		name string
		when string
		want string
	}{
		{"plain", `event.titel == "x"`, `a.yaml:5:17: when: type event has no field titel`},
		{"plain, later on the line", `event.title == "x" || attendee.email == ""`, `a.yaml:5:33: when: unknown name attendee`},
		{"single-quoted with escaped quote", `'event.title == ''x'' && evnt'`, `a.yaml:5:36: when: unknown name evnt`},
		{"double-quoted with escapes", `"event.title == \"\u00e9\" && nope"`, `a.yaml:5:41: when: unknown name nope`},
		{"syntax error at the end", `event.title ==`, `a.yaml:5:24: when: unexpected token EOF`},
		{"wrong result type", `event.title`, `a.yaml:5:11: when: expected bool, but got string`},
		{"literal block", "|\n      event.all_day ||\n        event.titel == \"x\"", `a.yaml:7:15: when: type event has no field titel`},
		{"literal block after a blank line", "|\n      event.all_day ||\n\n      domain(1) == \"x\"", `a.yaml:8:14: when: cannot use int as argument (type string) to call domain `},
		{"folded block", ">-\n      event.all_day\n      && evnt.all_day", `a.yaml:7:10: when: unknown name evnt`},
		{"multi-line plain", "event.all_day\n      && owner.respons == \"declined\"", `a.yaml:6:16: when: type attendee has no field respons`},
		{"attendee field inside a predicate", `any(external, .compnay != nil)`, `a.yaml:5:26: when: type attendee has no field compnay`},
		{"typed domain function", `domain(owner) == "x"`, `a.yaml:5:18: when: cannot use attendee as argument (type string) to call domain `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"a.yaml": rule(tt.when)})
			_, err := Load(dir)
			if diff := cmp.Diff([]string{tt.want}, errorLines(dir, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMaxNodes(t *testing.T) {
	t.Parallel()
	when := strings.Repeat("event.all_day && ", 1500) + "true"
	dir := writeDir(t, map[string]string{"a.yaml": "version: 1\nrules:\n  - name: big\n    action: log\n    when: " + when + "\n"})
	_, err := Load(dir)
	got := errorLines(dir, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], "a.yaml:5:") || !strings.Contains(got[0], "exceeds maximum allowed nodes") {
		t.Errorf("errors = %q, want one positioned MaxNodes error", got)
	}
}

func TestLoadDirectoryErrors(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"rules_test.yaml": "tests: []\n", "README.md": "hello"})
	if _, err := Load(dir); !errors.Is(err, ErrNoRuleFiles) {
		t.Errorf("Load of a directory without rule files: error = %v, want ErrNoRuleFiles", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing directory: error = %v, want one wrapping os.ErrNotExist", err)
	}
	if errs := Check(filepath.Join(dir, "missing")); len(errs) != 1 {
		t.Errorf("Check of a missing directory = %v, want one error", errs)
	}
	big := writeDir(t, map[string]string{"a.yaml": okRule + "# " + strings.Repeat("x", maxFileSize) + "\n"})
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("Load of a huge file: error = %v, want the size limit", err)
	}
}

// TestRuleFileSelection checks which names are rule files and which are
// test files: .yml counts as much as .yaml.
func TestRuleFileSelection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rule, test bool
	}{
		{"rules.yaml", true, false},
		{"rules.yml", true, false},
		{"Rules.YML", true, false},
		{"10-skip.Yaml", true, false},
		{"rules_test.yaml", false, true},
		{"rules_test.yml", false, true},
		{"rules_TEST.YML", false, true},
		{"latest.yaml", true, false},
		{"_test.yaml", false, true},
		{"rules.yaml.bak", false, false},
		{"rules.json", false, false},
		{"yml", false, false},
		{"README.md", false, false},
	}
	for _, tt := range tests {
		if got := isRuleFile(tt.name); got != tt.rule {
			t.Errorf("isRuleFile(%q) = %t, want %t", tt.name, got, tt.rule)
		}
		if got := isTestFile(tt.name); got != tt.test {
			t.Errorf("isTestFile(%q) = %t, want %t", tt.name, got, tt.test)
		}
	}
}

// TestLoadYML: a directory of .yml files loads all of them, and their test
// files run; a broken .yml is reported, not ignored.
func TestLoadYML(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"10-a.yaml": okRule,
		"20-b.yml": `version: 1
rules:
  - name: from-yml
    when: "false"
    action: skip
`,
		"a_test.yml": `version: 1
tests:
  - name: yml test runs
    event: {title: x}
    expect: {action: log, rule: ok}
`,
	})
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Rules()); got != 2 || s.Rules()[1].Name != "from-yml" {
		t.Errorf("rules = %+v, want ok and from-yml", s.Rules())
	}
	rep, err := RunTests(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 1 || rep.Failed != 0 {
		t.Errorf("report %s, want 1 passed", rep)
	}

	broken := writeDir(t, map[string]string{"10-a.yaml": okRule, "20-b.yml": "version: 1\nrules: [\n"})
	if errs := Check(broken); len(errs) != 1 || !strings.Contains(errs[0].Error(), "20-b.yml:") {
		t.Errorf("Check of a broken .yml = %v, want its error", errs)
	}
	only := writeDir(t, map[string]string{"rules.yml": okRule})
	if _, err := Load(only); err != nil {
		t.Errorf("Load of a directory of .yml only: %v", err)
	}
}

func TestLoadOrderAndMerge(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"20-second.yaml": `version: 1
rules:
  - name: second
    when: "true"
    action: skip
blocked_domains: [Rival.Example, b.example]
free_mail:
  remove: [gmail.com]
`,
		"10-first.yaml": `version: 1
rules:
  - name: first
    when: event.title == "x"
    action: log
    reason: titled x
default: log
blocked_domains: [rival.example.]
free_mail:
  add: [corp-mail.example]
`,
		"10-first_test.yaml": "not: [a rule file",
		".hidden.yaml":       "broken: [",
		"notes.md":           "ignored: true",
		"old.yaml.bak":       "ignored: true",
	})
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range s.Rules() {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"first", "second"}, names); diff != "" {
		t.Errorf("rule order (-want +got):\n%s", diff)
	}
	if r := s.Rules()[0]; r.Reason != "titled x" || r.Action != ActionLog || r.When != `event.title == "x"` || r.Line != 3 || r.Col != 11 {
		t.Errorf("first rule = %+v", r)
	}
	if s.DefaultAction() != ActionLog {
		t.Errorf("DefaultAction = %q, want log", s.DefaultAction())
	}
	if diff := cmp.Diff([]string{"b.example", "rival.example"}, s.Blocked()); diff != "" {
		t.Errorf("Blocked (-want +got):\n%s", diff)
	}
	fm := s.FreeMail()
	if !fm.Contains("corp-mail.example") || fm.Contains("gmail.com") || !fm.Contains("yahoo.com") {
		t.Errorf("FreeMail: corp-mail.example %t, gmail.com %t, yahoo.com %t; want true, false, true",
			fm.Contains("corp-mail.example"), fm.Contains("gmail.com"), fm.Contains("yahoo.com"))
	}
}

func TestDefaultSet(t *testing.T) {
	t.Parallel()
	s := Default()
	if s != Default() {
		t.Error("Default compiles the built-in rules more than once")
	}
	if !strings.HasPrefix(s.Version(), "sha256:") || !strings.HasSuffix(s.Version(), "+builtin") {
		t.Errorf("Version = %q", s.Version())
	}
	if s.DefaultAction() != ActionSkip {
		t.Errorf("DefaultAction = %q, want skip", s.DefaultAction())
	}
	// The embedded file is also a valid rules directory of one's own.
	dir := writeDir(t, map[string]string{"default.yaml": string(DefaultYAML())})
	own, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Split(own.Version(), "+")[0], strings.Split(s.Version(), "+")[0]; got != want {
		t.Errorf("content hash of default.yaml loaded from a directory = %s, built in = %s", got, want)
	}
}

func TestOwnership(t *testing.T) {
	t.Parallel()
	def := Default().Ownership()
	want := map[string]Owner{
		"hs_timestamp":            OwnerCalendar,
		"hs_meeting_title":        OwnerCalendar,
		"hs_meeting_start_time":   OwnerCalendar,
		"hs_meeting_end_time":     OwnerCalendar,
		"hs_meeting_location":     OwnerCalendar,
		"hs_meeting_external_url": OwnerCalendar,
		"hs_meeting_outcome":      OwnerCRM,
		"hs_meeting_body":         OwnerCRM,
		"hubspot_owner_id":        OwnerCRM,
	}
	if diff := cmp.Diff(want, def.Map()); diff != "" {
		t.Errorf("default ownership (-want +got):\n%s", diff)
	}
	if got := (Ownership{}).Of("hs_meeting_title"); got != OwnerCalendar {
		t.Errorf("zero Ownership.Of(title) = %q, want calendar", got)
	}
	if got := def.Of("hs_internal_meeting_notes"); got != "" {
		t.Errorf("Of(notes) = %q, want \"\" (Rapport never writes notes)", got)
	}

	dir := writeDir(t, map[string]string{"a.yaml": okRule + `ownership:
  hs_meeting_body: calendar
  hs_meeting_title: crm
`})
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := s.Ownership()
	if o.Of("hs_meeting_body") != OwnerCalendar || o.Of("hs_meeting_title") != OwnerCRM || o.Of("hs_meeting_location") != OwnerCalendar {
		t.Errorf("overridden ownership = %v", o.Map())
	}
	wantCal := []string{"hs_meeting_body", "hs_meeting_end_time", "hs_meeting_external_url", "hs_meeting_location", "hs_meeting_start_time", "hs_timestamp"}
	if diff := cmp.Diff(wantCal, o.CalendarOwned()); diff != "" {
		t.Errorf("CalendarOwned (-want +got):\n%s", diff)
	}
	o.Map()["hs_meeting_body"] = OwnerCRM
	if s.Ownership().Of("hs_meeting_body") != OwnerCalendar {
		t.Error("changing the map returned by Map changed the set")
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"a.yaml": okRule})
	s1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version() != s2.Version() || !strings.HasPrefix(s1.Version(), "sha256:") || len(s1.Version()) != len("sha256:")+12 {
		t.Errorf("versions of the same content: %q and %q", s1.Version(), s2.Version())
	}
	// A test file is not part of the rules.
	if err := os.WriteFile(filepath.Join(dir, "a_test.yaml"), []byte("tests: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s3, _ := Load(dir); s3.Version() != s1.Version() {
		t.Errorf("a test file changed the version: %q → %q", s1.Version(), s3.Version())
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(okRule+"default: log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s4, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s4.Version() == s1.Version() {
		t.Errorf("version did not change with the content: %q", s4.Version())
	}
	// Renaming a file changes the version too: order is part of the rules.
	if err := os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if s5, _ := Load(dir); s5.Version() == s4.Version() {
		t.Error("version did not change with a file name")
	}
}

func TestVersionGit(t *testing.T) {
	t.Parallel()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	const other = "fedcba9876543210fedcba9876543210fedcba98"
	tests := []struct {
		name  string
		files map[string]string // relative to the repository root
		want  string            // suffix of the version
	}{
		{"branch ref", map[string]string{".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": commit + "\n"}, "+git:0123456789ab"},
		{"detached head", map[string]string{".git/HEAD": other + "\n"}, "+git:fedcba987654"},
		{"packed ref", map[string]string{".git/HEAD": "ref: refs/heads/main\n", ".git/packed-refs": "# pack-refs with: peeled\n" + other + " refs/heads/dev\n" + commit + " refs/heads/main\n"}, "+git:0123456789ab"},
		{"linked worktree", map[string]string{
			".git":                                "gitdir: ../main/.git/worktrees/wt\n",
			"../main/.git/worktrees/wt/HEAD":      "ref: refs/heads/feature\n",
			"../main/.git/worktrees/wt/commondir": "../..\n",
			"../main/.git/refs/heads/feature":     other + "\n",
		}, "+git:fedcba987654"},
		{"no commit yet", map[string]string{".git/HEAD": "ref: refs/heads/main\n"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := filepath.Join(t.TempDir(), "repo")
			for name, text := range tt.files {
				p := filepath.Join(root, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(root, "crm", "rules")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(okRule), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, suffix, _ := strings.Cut(s.Version(), "+")
			if suffix != "" {
				suffix = "+" + suffix
			}
			if suffix != tt.want {
				t.Errorf("Version = %q, want suffix %q", s.Version(), tt.want)
			}
		})
	}
}

// TestLoadFiles: rule files given by content load as the same files in a
// directory do, with the same version (no git commit), and mistakes are
// positioned by file name.
func TestLoadFiles(t *testing.T) {
	files := map[string][]byte{
		"20-log.yaml":  []byte("version: 1\nrules:\n  - name: customer\n    when: any(external, .company != nil)\n    action: log\n"),
		"10-skip.yaml": []byte("version: 1\nrules:\n  - name: private\n    when: event.visibility == \"private\"\n    action: skip\n"),
		"x_test.yaml":  []byte("not: a rule file"),
		"README.md":    []byte("ignored"),
		".hidden.yaml": []byte("ignored: true"),
	}
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fromDir, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != strings.Split(fromDir.Version(), "+")[0] {
		t.Errorf("version %s, want the directory's content hash %s", got.Version(), fromDir.Version())
	}
	if rs := got.Rules(); len(rs) != 2 || rs[0].Name != "private" || rs[1].Name != "customer" {
		t.Errorf("rules %v, want private then customer", rs)
	}
	_, err = LoadFiles(map[string][]byte{"p.yaml": []byte("version: 1\nrules:\n  - name: r\n    when: evnt.title == \"\"\n    action: log\n")})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:4:") {
		t.Errorf("error %v, want one at p.yaml:4", err)
	}
	for _, bad := range []string{"../x.yaml", "a/b.yaml", ""} {
		if _, err := LoadFiles(map[string][]byte{bad: []byte("version: 1\n")}); err == nil {
			t.Errorf("file name %q accepted", bad)
		}
	}
	if _, err := LoadFiles(map[string][]byte{"notes.txt": nil}); !errors.Is(err, ErrNoRuleFiles) {
		t.Errorf("no rule files: %v", err)
	}
}
