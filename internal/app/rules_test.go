package app

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rapportsync/rapport/rules"
)

// TestReloadRulesLogsWhatChanged: a SIGHUP reload that changes the
// version logs one line saying what changed; one that does not says so; a
// broken change is refused and the rules in force stay.
func TestReloadRulesLogsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\nrules:\n  - name: customer\n    when: any(external, .company != nil)\n    action: log\n")
	first, err := rules.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := &App{Config: &Config{RulesDir: dir}, Log: slog.New(slog.NewTextHandler(&logs, nil)), Rules: rules.NewHolder(first)}
	ctx := context.Background()

	write("version: 1\ncrm_properties:\n  companies: [lifecyclestage]\nrules:\n  - name: customer\n    when: any(companies, .properties.lifecyclestage == \"customer\")\n    action: log\n  - name: vip\n    when: false\n    action: log\n")
	if err := a.ReloadRules(ctx); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(logs.String())
	for _, want := range []string{`msg="rules reloaded"`, "version=" + a.Rules.Get().Version(), "previous_version=" + first.Version(),
		`changes="rule added vip; rule edited customer; crm_properties.companies +lifecyclestage"`} {
		if !strings.Contains(line, want) {
			t.Errorf("reload logged %q, want %q in it", line, want)
		}
	}
	if strings.Count(line, "\n") != 0 {
		t.Errorf("reload logged %d lines, want one", strings.Count(line, "\n")+1)
	}

	logs.Reset()
	if err := a.ReloadRules(ctx); err != nil || !strings.Contains(logs.String(), "rules reloaded: no change") {
		t.Errorf("an unchanged reload: %v, logged %q", err, logs.String())
	}
	in := a.Rules.Get().Version()
	write("version: 1\nrules:\n  - name: broken\n    when: evnt.title\n    action: log\n")
	if err := a.ReloadRules(ctx); err == nil || !strings.Contains(err.Error(), "rules.yaml:4:") || a.Rules.Get().Version() != in {
		t.Errorf("a broken reload: %v; version in force %s, want %s kept", err, a.Rules.Get().Version(), in)
	}
}
