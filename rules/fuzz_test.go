package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader as a rule file and as a test
// file. Neither may panic; every mistake must be a positioned error; a set
// that loads must decide.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"testdata/example/10-skip.yaml", "testdata/example/20-log.yaml", "testdata/example/more_test.yaml", "default.yaml",
		"../examples/rules/20-policy.yaml", "../examples/rules/policy_test.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(okRule))
	f.Add([]byte("version: 1\nrules:\n  - name: r\n    when: |\n      event.title ==\n        \"x\" && nope\n    action: log\n"))
	f.Add([]byte("version: 1\nrules:\n  - name: r\n    when: \"a \\u00e9 \\\"b\" && ''\n    action: log\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("version: 1\nownership: {hs_meeting_body: crm}\nfree_mail: {add: [x.example]}\n"))
	f.Add([]byte("version: 1\ncrm_properties: {companies: [lifecyclestage], contacts: [jobtitle]}\nrules:\n  - name: r\n    when: any(companies, .properties.lifecyclestage == \"customer\") || owner.contact?.properties.jobtitle == \"x\" || number(companies[0].properties[\"lifecyclestage\"]) > date(\"1\").Unix()\n    action: log\n"))
	f.Add([]byte("version: 1\ntests:\n  - name: t\n    event: {booking: {event_type: Demo, answers: [{question: q, answer: a}], utm: {source: s}}, show_as: free}\n    companies: [{id: \"1\", properties: {a: b}}]\n    contacts: [{email: a@b.example, id: \"2\", properties: {c: d}}]\n    expect: {action: log}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(dir)
		var list ErrorList
		switch {
		case err == nil:
			s.Decide(Input{Event: meeting(guest("cfo@acme.example")), Owner: "rep@northwind.test", Internal: internal, Index: testIndex(s.FreeMail())})
		case errors.As(err, &list):
			for _, e := range list {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Errorf("bad error %q", e.Error())
				}
			}
		case len(data) <= maxFileSize:
			t.Errorf("Load error %v is not an ErrorList", err)
		}
		if s == nil {
			s = Default()
		}
		_, _ = RunTests(dir, s)
	})
}
