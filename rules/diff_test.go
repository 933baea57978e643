package rules

import "testing"

func TestDiff(t *testing.T) {
	t.Parallel()
	base := `version: 1
crm_properties: {companies: [lifecyclestage], contacts: [jobtitle]}
blocked_domains: [rival.example]
free_mail: {add: [corp-mail.example]}
rules:
  - name: a
    when: "true"
    action: log
  - name: b
    when: event.all_day
    action: skip
  - name: c
    when: event.recurring
    action: skip
`
	tests := []struct {
		name string
		new  string
		want string
	}{
		{name: "same", new: base, want: "no change to the rules"},
		{name: "comments and layout only", new: "# a comment\n" + base + "\n\n", want: "no change to the rules"},
		{
			name: "added, removed, edited",
			new: `version: 1
crm_properties: {companies: [lifecyclestage], contacts: [jobtitle]}
blocked_domains: [rival.example]
free_mail: {add: [corp-mail.example]}
rules:
  - name: a
    when: "true"
    action: skip
  - name: c
    when: event.recurring
    action: skip
    reason: series are logged elsewhere
  - name: d
    when: "false"
    action: log
  - name: e
    when: "false"
    action: log
`,
			want: "rules added d, e; rule removed b; rules edited a, c",
		},
		{
			name: "reordered",
			new: `version: 1
crm_properties: {companies: [lifecyclestage], contacts: [jobtitle]}
blocked_domains: [rival.example]
free_mail: {add: [corp-mail.example]}
rules:
  - name: b
    when: event.all_day
    action: skip
  - name: a
    when: "true"
    action: log
  - name: c
    when: event.recurring
    action: skip
`,
			want: "rules reordered",
		},
		{
			name: "sections",
			new: `version: 1
crm_properties: {companies: [industry, lifecyclestage]}
blocked_domains: [other.example]
free_mail: {remove: [gmail.com]}
default: log
ownership: {hs_meeting_body: calendar}
rules:
  - name: a
    when: "true"
    action: log
  - name: b
    when: event.all_day
    action: skip
  - name: c
    when: event.recurring
    action: skip
`,
			want: "default skip → log; crm_properties.companies +industry; crm_properties.contacts -jobtitle; " +
				"blocked_domains +other.example -rival.example; free_mail.add -corp-mail.example; free_mail.remove +gmail.com; " +
				"ownership of hs_meeting_body crm → calendar",
		},
	}
	old := loadRules(t, map[string]string{"a.yaml": base})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Diff(old, loadRules(t, map[string]string{"a.yaml": tt.new})); got != tt.want {
				t.Errorf("Diff:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	if got, want := Diff(nil, Default()), "loaded 7 rules, default skip"; got != want {
		t.Errorf("Diff(nil, Default()) = %q, want %q", got, want)
	}
	if got, want := Diff(old, nil), "no rules"; got != want {
		t.Errorf("Diff(old, nil) = %q, want %q", got, want)
	}
	if got, want := Diff(Default(), old), "rules added a, b, c; rules removed skip-cancelled-before-logged, cancel-logged, skip-private, skip-all-day, skip-declined-by-owner, skip-non-default-event-type, customer-meeting; "+
		"crm_properties.companies +lifecyclestage; crm_properties.contacts +jobtitle; blocked_domains +rival.example; free_mail.add +corp-mail.example"; got != want {
		t.Errorf("Diff(Default(), old):\n got %s\nwant %s", got, want)
	}
}
