package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// effectWords say what an effect does, for a person.
var effectWords = map[string]string{
	"create":   "created in the CRM",
	"restore":  "restored in the CRM",
	"update":   "written to the CRM again",
	"withdraw": "withdrawn (outcome CANCELED)",
	"cancel":   "cancelled",
	"keep":     "left in the CRM as last written",
	"none":     "nothing written",
}

func effectList(m map[string]int) string {
	var parts []string
	for _, e := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[e], effectWords[e]))
	}
	return strings.Join(parts, ", ")
}

func shortKey(k string) string { return k[:min(12, len(k))] }

func planTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04Z") }

func domainList(ds []string) string {
	if len(ds) == 0 {
		return "-"
	}
	return strings.Join(ds, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Text prints the plan for a terminal, like `terraform plan`: + for a
// meeting newly logged, - for one no longer logged.
func (p RulesPlan) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Rules plan for workspace %s\n", p.WorkspaceID)
	fmt.Fprintf(&b, "  live rules:      %s\n  candidate rules: %s\n", p.LiveVersion, p.CandidateVersion)
	fmt.Fprintf(&b, "  window:          %s to %s\n", planTime(p.WindowStart), planTime(p.WindowEnd))
	fmt.Fprintf(&b, "  read:            %d %s (%d calendar calls, %d CRM calls), %d event copies, %d meetings\n\n",
		p.Calendars, plural(p.Calendars, "calendar", "calendars"), p.CalendarCalls, p.CRMCalls, p.EventCopies, p.Meetings)
	if p.NewlyLogged+p.NoLongerLogged == 0 {
		fmt.Fprintf(&b, "No changes: the candidate rules decide every meeting of the window as the live rules do (%d logged, %d skipped).\n",
			p.UnchangedLogged, p.Unchanged-p.UnchangedLogged)
		return b.String()
	}
	fmt.Fprintf(&b, "Plan: %d newly logged, %d no longer logged, %d unchanged.\n", p.NewlyLogged, p.NoLongerLogged, p.Unchanged)
	for _, c := range p.Changes {
		sign, what := "+", "newly logged"
		if c.Change != "newly_logged" {
			sign, what = "-", "no longer logged"
		}
		fmt.Fprintf(&b, "\n%s %d %s by rule %s: %s\n", sign, c.Meetings, what, c.Rule, effectList(c.Effects))
		for _, e := range c.Examples {
			fmt.Fprintf(&b, "    %s %s  %s  %-32s %s (was: %s)\n", sign, shortKey(e.Key), planTime(e.Start), domainList(e.Domains), e.Effect, e.WasRule)
		}
		if more := c.Meetings - len(c.Examples); more > 0 {
			fmt.Fprintf(&b, "    … and %d more\n", more)
		}
	}
	fmt.Fprintf(&b, "\n= %d unchanged: %d logged, %d skipped.\n", p.Unchanged, p.UnchangedLogged, p.Unchanged-p.UnchangedLogged)
	return b.String()
}

// Markdown prints the plan for a pull-request comment.
func (p RulesPlan) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Rules plan: `%s` → `%s`\n\n", p.LiveVersion, p.CandidateVersion)
	fmt.Fprintf(&b, "Workspace `%s`, window %s to %s: %d %s listed (%d calendar calls, %d CRM calls), %d event copies, %d meetings.\n\n",
		p.WorkspaceID, planTime(p.WindowStart), planTime(p.WindowEnd), p.Calendars, plural(p.Calendars, "calendar", "calendars"),
		p.CalendarCalls, p.CRMCalls, p.EventCopies, p.Meetings)
	fmt.Fprintf(&b, "| | meetings |\n|---|---:|\n| newly logged | %d |\n| no longer logged | %d |\n| unchanged | %d (%d logged, %d skipped) |\n",
		p.NewlyLogged, p.NoLongerLogged, p.Unchanged, p.UnchangedLogged, p.Unchanged-p.UnchangedLogged)
	for _, c := range p.Changes {
		what := "Newly logged"
		if c.Change != "newly_logged" {
			what = "No longer logged"
		}
		fmt.Fprintf(&b, "\n#### %s by rule `%s`: %d\n\n%s.\n\n", what, c.Rule, c.Meetings, capitalise(effectList(c.Effects)))
		b.WriteString("| meeting key | start | domains | effect | was |\n|---|---|---|---|---|\n")
		for _, e := range c.Examples {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | `%s` |\n", shortKey(e.Key), planTime(e.Start), domainList(e.Domains), e.Effect, e.WasRule)
		}
		if more := c.Meetings - len(c.Examples); more > 0 {
			fmt.Fprintf(&b, "\n… and %d more.\n", more)
		}
	}
	return b.String()
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
