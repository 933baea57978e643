package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/rules"
)

func TestCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		code int
		out  string // substring of stdout+stderr
	}{
		{[]string{"--help"}, nil, 0, "Commands:"},
		{nil, nil, 2, "Usage: rapport"},
		{[]string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{[]string{"migrate", "--help"}, nil, 0, "--database-url"},
		{[]string{"migrate", "--no-such-flag"}, nil, 2, "flag provided but not defined"},
		{[]string{"migrate", "extra"}, nil, 2, "takes no arguments"},
		{[]string{"migrate"}, map[string]string{"RAPPORT_DATABASE_URL": "mysql://x/y"}, 1, "RAPPORT_DATABASE_URL"},
		{[]string{"rules"}, nil, 2, "say which"},
		{[]string{"rules", "--help"}, nil, 0, "show-default"},
		{[]string{"keys", "--help"}, nil, 0, "rotate"},
		{[]string{"rules", "frob"}, nil, 2, "rapport rules --help"},
		{[]string{"version"}, nil, 0, "rapport "},
		{[]string{"version", "extra"}, nil, 2, "takes no arguments"},
		{[]string{"keys", "rotate"}, nil, 1, "RAPPORT_ENCRYPTION_KEYS"},
		{[]string{"rules", "check"}, nil, 2, "want DIR"},
		{[]string{"rules", "check", "--help"}, nil, 0, "Usage: rapport rules check"},
		{[]string{"demo", "--help"}, nil, 0, "--once"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tc.args, &out, &out, func(k string) string { return tc.env[k] })
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tc.code, tc.out)
			}
		})
	}
	for _, name := range []string{"serve", "worker", "run", "demo", "bench", "rules check", "rules test", "rules show-default", "migrate", "keys rotate", "version"} {
		var out bytes.Buffer
		run(context.Background(), append(strings.Fields(name), "--help"), &out, &out, func(string) string { return "" })
		if !strings.Contains(out.String(), "Usage: rapport "+name) {
			t.Errorf("rapport %s --help does not describe it:\n%s", name, out.String())
		}
	}
}

// TestHelpShowsTheSettingsACommandUses: --help lists exactly the
// variables a command reads.
func TestHelpShowsTheSettingsACommandUses(t *testing.T) {
	var all []string
	for _, v := range app.Variables() {
		all = append(all, v.Name)
	}
	cases := map[string][]string{
		"serve":              all,
		"worker":             all,
		"run":                all,
		"migrate":            {"RAPPORT_DATABASE_URL", "RAPPORT_LOG_FORMAT", "RAPPORT_LOG_LEVEL"},
		"keys rotate":        {"RAPPORT_DATABASE_URL", "RAPPORT_ENCRYPTION_KEYS", "RAPPORT_LOG_FORMAT", "RAPPORT_LOG_LEVEL"},
		"rules check":        nil,
		"rules test":         nil,
		"version":            nil,
		"rules show-default": nil,
	}
	for name, want := range cases {
		var out bytes.Buffer
		if code := run(context.Background(), append(strings.Fields(name), "--help"), &out, &out, func(string) string { return "" }); code != 0 {
			t.Fatalf("rapport %s --help exited %d", name, code)
		}
		help := out.String()
		for _, v := range all {
			listed := strings.Contains(help, "(env "+v+",") || strings.Contains(help, "(env "+v+")")
			if shown := slices.Contains(want, v); listed != shown {
				t.Errorf("rapport %s --help lists %s: %v, want %v", name, v, listed, shown)
			}
		}
		if want == nil && !strings.Contains(help, "reads no RAPPORT_* setting") {
			t.Errorf("rapport %s --help does not say it reads no setting:\n%s", name, help)
		}
	}
}

// TestRulesShowDefault prints the built-in rules, and the printed file,
// saved as *.yml, is a rule set that checks clean.
func TestRulesShowDefault(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"rules", "show-default"}, &out, &errs, func(string) string { return "" }); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if !bytes.Equal(out.Bytes(), rules.DefaultYAML()) {
		t.Fatalf("rules show-default printed something other than the built-in rules:\n%s", out.String())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var check bytes.Buffer
	if code := run(context.Background(), []string{"rules", "check", dir}, &check, &check, func(string) string { return "" }); code != 0 {
		t.Fatalf("rules check of the printed default exited %d: %s", code, check.String())
	}
	if want := len(rules.Default().Rules()); !strings.Contains(check.String(), ": "+strconv.Itoa(want)+" rules ok") {
		t.Errorf("rules check said %q, want %d rules ok", check.String(), want)
	}
}

func TestVersionLine(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/rapportsync/rapport", Version: "v0.0.0-20261202154200-72e093c20154+dirty"},
		Settings: []debug.BuildSetting{{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
			{Key: "vcs.revision", Value: "72e093c20154f29b3f634ad8e91ecfa5a16ed613"}, {Key: "vcs.time", Value: "2026-12-02T15:42:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	want := "rapport v0.0.0-20261202154200-72e093c20154+dirty (revision 72e093c20154 of 2026-12-02T15:42:00Z with uncommitted changes, built with go1.26.8 for linux/amd64)"
	if got := versionLine(info); got != want {
		t.Errorf("versionLine =\n%s\nwant\n%s", got, want)
	}
	if got := versionLine(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); got != "rapport (devel) (no revision recorded)" {
		t.Errorf("versionLine without VCS = %q", got)
	}
	if got := versionLine(nil); !strings.Contains(got, "unknown") {
		t.Errorf("versionLine(nil) = %q", got)
	}
}
