package rules

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunTestsExample(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "example")
	if errs := Check(dir); errs != nil {
		t.Fatalf("Check: %v", errs)
	}
	rep, err := RunTests(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.String(), "8 passed, 0 failed"; got != want {
		t.Errorf("report:\n%s\nwant %q", got, want)
	}
	// The example's sections are in force.
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ownership().Of("hs_meeting_body") != OwnerCalendar || !s.FreeMail().Contains("corp-mail.example") {
		t.Error("ownership or free_mail of the example not applied")
	}
	if len(rep.Results) != 8 || rep.Results[0].Name != "customer meeting is logged" || rep.Results[0].Line != 2 || rep.Results[0].Col != 5 {
		t.Errorf("first result = %+v", rep.Results[0])
	}
}

func TestRunTestsFailing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "failing")
	rep, err := RunTests(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 1 || rep.Failed != 2 {
		t.Errorf("passed %d, failed %d; want 1, 2", rep.Passed, rep.Failed)
	}
	p := filepath.Join(dir, "rules_test.yaml")
	want := `FAIL ` + p + `:10:5: free-mail guest is logged, wrongly expected
    expected: action=log rule=custmer-meeting
    got:      action=skip rule=default (no rule matched; the default is skip)
    why:      skipped: every external attendee uses free mail (gmail.com); northwind.test is internal
    note: the rules have no rule named "custmer-meeting"
    rules evaluated:
      customer-meeting                 false
    attendees:
      northwind.test                   internal organizer self accepted
      gmail.com                        external free_mail declined
FAIL ` + p + `:17:5: right action, wrong rule
    expected: action=skip rule=customer-meeting
    got:      action=skip rule=default (no rule matched; the default is skip)
    why:      skipped: all attendees are internal (northwind.test)
    rules evaluated:
      customer-meeting                 false
    attendees:
      northwind.test                   internal organizer self accepted
      northwind.test                   internal needs_action
1 passed, 2 failed`
	if diff := cmp.Diff(want, rep.String()); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	// Against another set: the built-in rules pass the first test too.
	rep, err = RunTests(dir, Default())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Results[0].Passed || rep.Results[0].Decision.Rule != "customer-meeting" {
		t.Errorf("with the built-in rules: %+v", rep.Results[0])
	}
}

func TestRunTestsNoTests(t *testing.T) {
	t.Parallel()
	rep, err := RunTests(writeDir(t, map[string]string{"a.yaml": okRule}), nil)
	if err != nil || rep.String() != "0 passed, 0 failed" {
		t.Errorf("RunTests = %q, %v; want 0 passed, 0 failed", rep.String(), err)
	}
	if _, err := RunTests(writeDir(t, map[string]string{"a.yaml": "version: 3\n"}), nil); err == nil {
		t.Error("RunTests with broken rules: no error")
	}
}

func TestTestFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		want []string
	}{
		{
			name: "unknown keys everywhere",
			file: `tests:
  - name: t
    evnt: {}
    event: {title: x, colour: red, attendees: [{email: a@b.example, role: chair}]}
    expect: {action: log, because: x}
`,
			want: []string{
				`t_test.yaml:3:5: unknown key "evnt" in a test (want name, event, owner, workspace, internal_domains, companies, contacts, logged, expect)`,
				`t_test.yaml:4:23: unknown key "colour" in event (want id, ical_uid, title, description, location, start, end, all_day, status, visibility, event_type, recurring, organizer, attendees, conference_url, source, show_as, booking)`,
				`t_test.yaml:4:69: unknown key "role" in attendee (want email, name, response, optional, resource, organizer, self)`,
				`t_test.yaml:5:27: unknown key "because" in expect (want action, rule)`,
			},
		},
		{
			name: "missing name, event, expect and action",
			file: `tests:
  - logged: true
  - name: t
    event: {}
    expect: {rule: r}
`,
			want: []string{
				`t_test.yaml:2:5: test is missing "name"`,
				`t_test.yaml:2:5: test is missing "event"`,
				`t_test.yaml:2:5: test is missing "expect"`,
				`t_test.yaml:5:13: expect is missing "action"`,
			},
		},
		{
			name: "bad values",
			file: `tests:
  - name: t
    event:
      start: tomorrow
      end: 2026-03-25T14:00:00Z
      status: done
      visibility: secret
      all_day: "yes"
      attendees: [{name: no address}, {email: x@y.example, response: maybe}]
    internal_domains: [not a domain]
    companies: [{name: Acme}]
    logged: 1
    expect: {action: ignore}
`,
			want: []string{
				`t_test.yaml:4:14: start must be an RFC 3339 time (2026-03-25T14:00:00Z) or a date (2026-03-25), got "tomorrow"`,
				`t_test.yaml:6:15: status must be "confirmed", "tentative" or "cancelled", got "done"`,
				`t_test.yaml:7:19: visibility must be "default", "public", "private" or "confidential", got "secret"`,
				`t_test.yaml:8:16: all_day must be true or false, got the string "yes"`,
				`t_test.yaml:9:19: attendee is missing "email"`,
				`t_test.yaml:9:70: response must be "accepted", "declined", "tentative" or "needs_action", got "maybe"`,
				`t_test.yaml:10:24: internal_domains: "not a domain" is not a domain name (want e.g. example.com)`,
				`t_test.yaml:11:17: company is missing "id"`,
				`t_test.yaml:12:13: logged must be true or false, got 1`,
				`t_test.yaml:13:22: action must be "log" or "skip", got "ignore"`,
			},
		},
		{
			name: "bad booking",
			file: `tests:
  - name: t
    event:
      source: zoom
      show_as: away
      booking:
        event_type: [Demo]
        answers: [{question: "Team size", answr: "12"}, "12"]
        utm: {source: x, medium: 3, camp: y}
        rescheduled: sometimes
        extra: 1
    expect: {action: log}
`,
			want: []string{
				`t_test.yaml:4:15: source must be "google", "microsoft" or "calendly", got "zoom"`,
				`t_test.yaml:5:16: show_as must be "free", "tentative", "busy", "oof", "workingElsewhere" or "unknown", got "away"`,
				`t_test.yaml:7:21: booking event_type must be a string, got a list`,
				`t_test.yaml:8:43: unknown key "answr" in a booking answer (want question, answer)`,
				`t_test.yaml:8:57: a booking answer must be a mapping, got the string "12"`,
				`t_test.yaml:9:37: unknown key "camp" in booking utm (want source, medium, campaign, content, term)`,
				`t_test.yaml:10:22: booking rescheduled must be true or false, got the string "sometimes"`,
				`t_test.yaml:11:9: unknown key "extra" in booking (want event_type, answers, utm, rescheduled)`,
			},
		},
		{
			name: "end before start",
			file: `tests:
  - name: t
    event: {start: "2026-03-25T14:00:00Z", end: "2026-03-25T13:00:00Z"}
    expect: {action: log}
`,
			want: []string{`t_test.yaml:3:49: end is before start`},
		},
		{
			name: "duplicate test name",
			file: `tests:
  - name: t
    event: {}
    expect: {action: log}
  - name: t
    event: {}
    expect: {action: skip}
`,
			want: []string{`t_test.yaml:5:5: duplicate test name "t" (first defined at DIR/t_test.yaml:2:5)`},
		},
		{
			name: "not a test file",
			file: "rules: []\n",
			want: []string{
				`t_test.yaml:1:1: unknown key "rules" in a test file (want version, tests)`,
				`t_test.yaml:1:1: missing tests`,
			},
		},
		{
			name: "tests not a list",
			file: "tests: {name: t}\n",
			want: []string{`t_test.yaml:1:8: tests must be a list, got a mapping`},
		},
		{
			name: "syntax",
			file: "tests:\n\t- name: t\n",
			want: []string{`t_test.yaml:2:1: invalid YAML: found character that cannot start any token`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"a.yaml": okRule, "t_test.yaml": tt.file})
			_, err := RunTests(dir, nil)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("RunTests error = %v (%T), want an ErrorList", err, err)
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "DIR/", "")
			}
			if diff := cmp.Diff(want, errorLines(dir, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			// rules check reports test-file mistakes too.
			if got := Check(dir); len(got) != len(tt.want) {
				t.Errorf("Check returned %d errors, want %d: %v", len(got), len(tt.want), got)
			}
		})
	}
}

func TestCheckCombinesRuleAndTestErrors(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"a.yaml":      "version: 1\nrules:\n  - name: r\n    when: evnt.title\n    action: log\n",
		"a_test.yaml": "tests: 3\n",
	})
	var got []string
	for _, e := range Check(dir) {
		got = append(got, strings.ReplaceAll(e.Error(), dir+string(filepath.Separator), ""))
	}
	want := []string{
		"a.yaml:4:11: when: unknown name evnt",
		"a_test.yaml:1:8: tests must be a list, got 3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	if errs := Check(writeDir(t, map[string]string{"a.yaml": okRule})); errs != nil {
		t.Errorf("Check of a clean directory = %v", errs)
	}
}
