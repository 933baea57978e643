package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/rapportsync/rapport/internal/app"
)

func runVersion(_ context.Context, e *env, _ *app.Config, _ any, _ []string) error {
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintln(e.stdout, versionLine(info))
	return nil
}

// versionLine describes a build: the module version Go stamped (a tag, a
// pseudo-version from the commit, or "(devel)") and the VCS revision,
// its time and whether the tree had uncommitted changes.
func versionLine(info *debug.BuildInfo) string {
	if info == nil {
		return "rapport (version unknown: built without module information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	set := map[string]string{}
	for _, s := range info.Settings {
		set[s.Key] = s.Value
	}
	var parts []string
	if rev := set["vcs.revision"]; rev != "" {
		p := "revision " + rev[:min(12, len(rev))]
		if t := set["vcs.time"]; t != "" {
			p += " of " + t
		}
		if set["vcs.modified"] == "true" {
			p += " with uncommitted changes"
		}
		parts = append(parts, p)
	} else {
		parts = append(parts, "no revision recorded")
	}
	if info.GoVersion != "" {
		p := "built with " + info.GoVersion
		if set["GOOS"] != "" {
			p += " for " + set["GOOS"] + "/" + set["GOARCH"]
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("rapport %s (%s)", version, strings.Join(parts, ", "))
}
