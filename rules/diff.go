package rules

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Diff summarises in one line what changed from old to new, for the log
// line of a reload: rules added, removed and edited (by name), a change of
// their order, of the default action, of crm_properties, blocked_domains,
// free_mail and ownership. A reload that changed only comments or layout
// says "no change to the rules". A nil old is a first load.
func Diff(old, new *Set) string {
	if new == nil {
		return "no rules"
	}
	if old == nil {
		return fmt.Sprintf("loaded %d %s, default %s", len(new.rules), plural(len(new.rules), "rule", "rules"), new.def)
	}
	var parts []string
	oldRules := make(map[string]*Rule, len(old.rules))
	for i := range old.rules {
		oldRules[old.rules[i].Name] = &old.rules[i]
	}
	newRules := make(map[string]*Rule, len(new.rules))
	for i := range new.rules {
		newRules[new.rules[i].Name] = &new.rules[i]
	}
	var added, removed, edited, oldOrder, newOrder []string
	for _, r := range new.rules {
		o, ok := oldRules[r.Name]
		switch {
		case !ok:
			added = append(added, r.Name)
		default:
			newOrder = append(newOrder, r.Name)
			if o.When != r.When || o.Action != r.Action || o.Reason != r.Reason {
				edited = append(edited, r.Name)
			}
		}
	}
	for _, r := range old.rules {
		if _, ok := newRules[r.Name]; !ok {
			removed = append(removed, r.Name)
		} else {
			oldOrder = append(oldOrder, r.Name)
		}
	}
	for _, c := range []struct {
		what  string
		names []string
	}{{"added", added}, {"removed", removed}, {"edited", edited}} {
		if len(c.names) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s %s", plural(len(c.names), "rule", "rules"), c.what, strings.Join(c.names, ", ")))
		}
	}
	if !slices.Equal(oldOrder, newOrder) {
		parts = append(parts, "rules reordered")
	}
	if old.def != new.def {
		parts = append(parts, fmt.Sprintf("default %s → %s", old.def, new.def))
	}
	if c := listDiff(old.crmCompanies, new.crmCompanies); c != "" {
		parts = append(parts, "crm_properties.companies "+c)
	}
	if c := listDiff(old.crmContacts, new.crmContacts); c != "" {
		parts = append(parts, "crm_properties.contacts "+c)
	}
	if c := listDiff(old.blocked, new.blocked); c != "" {
		parts = append(parts, "blocked_domains "+c)
	}
	if c := listDiff(old.freeAdd, new.freeAdd); c != "" {
		parts = append(parts, "free_mail.add "+c)
	}
	if c := listDiff(old.freeDel, new.freeDel); c != "" {
		parts = append(parts, "free_mail.remove "+c)
	}
	oldOwn, newOwn := old.ownership.Map(), new.ownership.Map()
	for _, p := range slices.Sorted(maps.Keys(newOwn)) {
		if oldOwn[p] != newOwn[p] {
			parts = append(parts, fmt.Sprintf("ownership of %s %s → %s", p, oldOwn[p], newOwn[p]))
		}
	}
	if len(parts) == 0 {
		return "no change to the rules"
	}
	return strings.Join(parts, "; ")
}

// listDiff describes the change between two sorted lists as "+a +b -c", or
// "" when they are equal.
func listDiff(old, new []string) string {
	var out []string
	for _, n := range new {
		if !slices.Contains(old, n) {
			out = append(out, "+"+n)
		}
	}
	for _, o := range old {
		if !slices.Contains(new, o) {
			out = append(out, "-"+o)
		}
	}
	return strings.Join(out, " ")
}
