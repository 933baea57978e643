package rules

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// examplesDir is the example rule set at the root of the repository, the
// one docs/rules.md points people to.
var examplesDir = filepath.Join("..", "examples", "rules")

// TestExamples checks and runs the example rules' own test cases, so that
// `make test` fails when an example or the language drifts; every rule must
// decide at least one case.
func TestExamples(t *testing.T) {
	t.Parallel()
	if errs := Check(examplesDir); errs != nil {
		t.Fatalf("rules check %s:\n%v", examplesDir, errs)
	}
	s, err := Load(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunTests(examplesDir, s)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed > 0 || rep.Passed == 0 {
		t.Fatalf("rules test %s:\n%s", examplesDir, rep)
	}
	decided := make(map[string]bool)
	for _, r := range rep.Results {
		decided[r.Decision.Rule] = true
	}
	for _, r := range s.Rules() {
		if !decided[r.Name] {
			t.Errorf("no test case of %s is decided by rule %s", examplesDir, r.Name)
		}
	}
	if !decided[DefaultRuleName] {
		t.Errorf("no test case of %s falls through to the default", examplesDir)
	}
	if !s.ReadsContactProperties() {
		t.Error("the examples read a contact property, but ReadsContactProperties is false")
	}
	// The first file is the built-in rules less the last: kept verbatim,
	// so that Explain words them as the built-in ones.
	builtin := Default().Rules()
	for i, r := range s.Rules()[:len(builtin)-1] {
		if b := builtin[i]; r.Name != b.Name || r.When != b.When || r.Action != b.Action || r.Reason != b.Reason {
			t.Errorf("example rule %d = %s, want the built-in %s unchanged", i, r.Name, b.Name)
		}
	}
}

// TestExampleCI checks the CI examples: valid YAML that runs both commands,
// and a hook script the shell can parse.
func TestExampleCI(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "examples", "ci")
	for _, name := range []string{"github-actions.yml", "pre-commit-config.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, want := range []string{"rapport rules check", "rapport rules test"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not run %q", name, want)
			}
		}
	}
	hook := filepath.Join(dir, "pre-commit")
	fi, err := os.Stat(hook)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", hook)
	}
	if out, err := exec.Command("sh", "-n", hook).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v\n%s", hook, err, out)
	}
}
