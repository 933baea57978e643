package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rapportsync/rapport/internal/testenv"
)

func writeRules(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRulesCheckCRMProperties: a read of a company or contact property
// that no file declares, or a misspelling of one declared, is refused by
// rules check with its file:line:col.
func TestRulesCheckCRMProperties(t *testing.T) {
	dir := writeRules(t, map[string]string{
		"10-props.yaml": "version: 1\ncrm_properties:\n  companies: [lifecyclestage]\n  contacts: [jobtitle]\n",
		"20-policy.yaml": `version: 1
rules:
  - name: leads
    when: any(companies, .properties.lifecyclestag == "lead")
    action: skip
  - name: owned
    when: any(companies, .properties.hubspot_owner_id == "7")
    action: log
  - name: vip
    when: any(external, .contact != nil && .contact.properties.job_title matches "VP")
    action: log
`,
	})
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"rules", "check", dir}, &out, &errs, func(string) string { return "" })
	if code != 1 {
		t.Fatalf("rules check exited %d, want 1:\n%s%s", code, out.String(), errs.String())
	}
	f := filepath.Join(dir, "20-policy.yaml")
	want := []string{
		f + `:4:38: when: company property "lifecyclestag" is not declared under crm_properties.companies (did you mean "lifecyclestage"?)`,
		f + `:7:38: when: company property "hubspot_owner_id" is not declared under crm_properties.companies (declared: lifecyclestage)`,
		f + `:10:64: when: contact property "job_title" is not declared under crm_properties.contacts (did you mean "jobtitle"?)`,
	}
	got := strings.Split(strings.TrimSpace(errs.String()), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules check said:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRulesPlanCommand: the flags may follow DIR; mistakes in the
// candidate rules are told before connecting to anything; the plan of a
// workspace that does not exist fails in one sentence.
func TestRulesPlanCommand(t *testing.T) {
	good := writeRules(t, map[string]string{"rules.yaml": "version: 1\nrules:\n  - name: all\n    when: true\n    action: log\n"})
	bad := writeRules(t, map[string]string{"rules.yaml": "version: 1\nrules:\n  - name: all\n    when: evnt.title != \"\"\n    action: log\n"})
	none := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rules", "plan", "--help"}, 0, "--workspace"},
		{[]string{"rules", "plan", good}, 2, "--workspace is required"},
		{[]string{"rules", "plan", good, "--workspace", "w", "--format", "html"}, 2, `--format "html"`},
		{[]string{"rules", "plan", bad, "--workspace", "w"}, 1, filepath.Join(bad, "rules.yaml") + ":4:11: when: unknown name evnt"},
	} {
		var out bytes.Buffer
		if code := run(context.Background(), c.args, &out, &out, none); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("rapport %s: exit %d, output:\n%s\nwant exit %d and %q", strings.Join(c.args, " "), code, out.String(), c.code, c.want)
		}
	}
	env := serviceEnv(t, map[string]string{
		"RAPPORT_DATABASE_URL": testenv.DSN(t),
		"RAPPORT_REDIS_URL":    fmt.Sprintf("redis://%s/%d", testenv.RedisAddr(), testenv.RedisDB(t)),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"rules", "plan", good, "--workspace", "00000000-0000-0000-0000-000000000001", "--format", "markdown"}, &stdout, &stderr, env)
	if code != 1 || !strings.Contains(stderr.String(), "not found") {
		t.Errorf("plan of a missing workspace: exit %d\n%s", code, stderr.String())
	}
}
