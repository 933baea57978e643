package repocheck

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository's top directory, from this package's.
var root = filepath.Join("..", "..")

// needTool returns the path of a tool a check needs; without it the test
// fails with the install hint, or skips under RAPPORT_TEST_ALLOW_SKIP=1.
func needTool(t *testing.T, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("RAPPORT_TEST_ALLOW_SKIP") == "1" {
		t.Skipf("%s is not installed (%s)", name, hint)
	}
	t.Fatalf("%s is not installed: %s (or set RAPPORT_TEST_ALLOW_SKIP=1 to skip this check)", name, hint)
	return ""
}

func TestDeployAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool", "apt-get install prometheus (Debian, Ubuntu) or brew install prometheus (macOS); .ci/run installs it")
	dir := filepath.Join(root, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "rapport-alerts.yml"}, {"test", "rules", "rapport-alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDeployAlertRulesAreTested: every alert has a promtool test case that
// sees it fire.
func TestDeployAlertRulesAreTested(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join(root, "deploy", "prometheus", "rapport-alerts.yml"), &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, filepath.Join(root, "deploy", "prometheus", "rapport-alerts_test.yml"), &tests)
	fires := map[string]bool{}
	quiet := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	names := exposed(t)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: want a test case where it fires and one where it does not", r.Alert)
			}
			checkQuery(t, "alert "+r.Alert, r.Expr, names)
		}
	}
	// What the operators asked for.
	for _, want := range []string{"RapportConnectionNeedsReauth", "RapportDeadLettersGrowing", "RapportCalendarSyncStale", "RapportChannelsExpiring", "RapportWriteLatencyHigh"} {
		if !fires[want] {
			t.Errorf("no alert %s", want)
		}
	}
	if n == 0 {
		t.Fatal("no alert rules read")
	}
}

// TestDeployDashboardNamesRealMetrics: every query of the Grafana
// dashboard names metrics, and labels, that /metrics really exposes.
func TestDeployDashboardNamesRealMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "rapport-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	names := exposed(t)
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]+)\s*\)$`)
	n := 0
	walk(dash, "dashboard", func(path, key, v string) {
		switch {
		case key == "expr":
			n++
			checkQuery(t, path, strings.ReplaceAll(v, "$job", "rapport"), names)
		case key == "query" && strings.HasPrefix(v, "label_values("):
			m := labelValues.FindStringSubmatch(v)
			if m == nil {
				t.Errorf("%s: cannot read %q", path, v)
				return
			}
			checkQuery(t, path, m[1], names)
			if l := m[2]; !targetLabels[l] && !contains(names[m[1]], l) {
				t.Errorf("%s: %s has no label %s", path, m[1], l)
			}
		}
	})
	if n < 10 {
		t.Errorf("found %d queries in the dashboard", n)
	}
}

// walk calls fn for every string value of v with its key and where it is
// (the title of the nearest panel, row or dashboard).
func walk(v any, where string, fn func(where, key, val string)) {
	switch x := v.(type) {
	case map[string]any:
		if title, ok := x["title"].(string); ok {
			where = fmt.Sprintf("%q", title)
		}
		for k, e := range x {
			if s, ok := e.(string); ok {
				fn(where, k, s)
			} else {
				walk(e, where, fn)
			}
		}
	case []any:
		for _, e := range x {
			walk(e, where, fn)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDeploySystemdUnit: systemd accepts the unit (its commands replaced
// by /bin/true, since rapport is not installed here).
func TestDeploySystemdUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "rapport.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"ExecStart=/usr/local/bin/rapport run", "ExecStartPre=/usr/local/bin/rapport migrate",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "EnvironmentFile=/etc/rapport/rapport.env"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit's syntax is not checked")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "rapport.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/rapport", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDeployEnvExampleNamesRealVariables: the example environment file
// names only variables Rapport reads.
func TestDeployEnvExampleNamesRealVariables(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "rapport.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	known := variables()
	for _, m := range regexp.MustCompile(`(?m)^#?(RAPPORT_[A-Z_]+)=`).FindAllStringSubmatch(string(b), -1) {
		if !known[m[1]] {
			t.Errorf("rapport.env.example sets %s, which Rapport does not read", m[1])
		}
	}
}
