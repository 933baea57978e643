package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
	for _, name := range []string{"serve", "worker", "run", "demo", "bench", "rules check", "rules test", "migrate"} {
		var out bytes.Buffer
		run(context.Background(), append(strings.Fields(name), "--help"), &out, &out, func(string) string { return "" })
		if !strings.Contains(out.String(), "Usage: rapport "+name) {
			t.Errorf("rapport %s --help does not describe it:\n%s", name, out.String())
		}
	}
}
