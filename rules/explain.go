package rules

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Explain says in one sentence why a decision was taken, in words for the
// people who run the CRM rather than for those who write rules:
//
//	logged by rule customer-meeting: acme.example matched Acme (company 101); northwind.test is internal
//	skipped: rock3-ventures.example is external but matches no HubSpot company; northwind.test is internal
//	skipped: the event is private (rule skip-private)
//
// It reads nothing but d, so it works as well on a decision read back from
// the trace the ledger stores (JSON) as on one just taken. Where attendees
// decide, it names the domains that counted as external (a company matched,
// free mail, no company) and why the others did not count (internal,
// blocked, a room or resource, an invalid address). The built-in rules get
// sentences of their own when the decision carries their name and reason,
// as it does when a rules directory keeps them unchanged; any other rule is
// named with its reason (or its condition, when it has none).
func Explain(d Decision) string {
	if d.Rule == "" && d.Action == "" {
		return "no decision was recorded"
	}
	if d.Rule != DefaultRuleName && !slices.ContainsFunc(d.Trace, func(s TraceStep) bool { return s.Rule == d.Rule }) {
		// Decided before or after the rules, by Rapport itself: a
		// cancellation record without content, a meeting outside the
		// window.
		verdict := "skipped"
		if d.Action == ActionLog {
			verdict = "not logged"
		}
		return verdict + ": " + orDefault(d.Reason, "Rapport decided it without the rules ("+d.Rule+")")
	}
	if s, ok := builtinSentence(d); ok {
		return s + failedRules(d)
	}
	att := summarize(d)
	var out string
	switch {
	case d.Rule == DefaultRuleName && d.Action == ActionLog:
		out = "logged: no rule matched, and the default is to log" + att.clause()
	case d.Rule == DefaultRuleName:
		out = "skipped: " + att.whyNoCustomer()
	case d.Action == ActionLog && d.Rule == "customer-meeting" && d.Reason == builtinReasons()["customer-meeting"] && len(att.matched) > 0:
		// The built-in rule's reason is what the matched companies show.
		out = "logged by rule customer-meeting: " + strings.Join(att.phrases(), "; ")
	default:
		out = fmt.Sprintf("%s by rule %s%s%s", verdictOf(d.Action), d.Rule, ruleReason(d.Reason), att.clause())
	}
	return out + failedRules(d)
}

func verdictOf(a Action) string {
	if a == ActionLog {
		return "logged"
	}
	return "skipped"
}

// ruleReason renders a rule's reason after its name: ": the reason", or
// " (when condition)" for a rule without one.
func ruleReason(reason string) string {
	if when, ok := strings.CutPrefix(reason, "when: "); ok {
		return " (when " + strings.Join(strings.Fields(when), " ") + ")"
	}
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// builtinReasons maps the built-in rules' names to their reasons.
var builtinReasons = sync.OnceValue(func() map[string]string {
	m := make(map[string]string)
	for _, r := range Default().rules {
		m[r.Name] = r.Reason
	}
	return m
})

// builtinSentence explains the built-in rules that attendees do not decide.
func builtinSentence(d Decision) (string, bool) {
	reason, ok := builtinReasons()[d.Rule]
	if !ok || reason != d.Reason {
		return "", false
	}
	var s string
	switch d.Rule {
	case "skip-cancelled-before-logged":
		s = "skipped: the event was cancelled before it was ever logged"
	case "cancel-logged":
		s = "sent to HubSpot as a cancellation: the meeting was logged, then cancelled"
	case "skip-private":
		s = "skipped: the event is " + orDefault(privacy(d.Event.Visibility), "private")
	case "skip-all-day":
		s = "skipped: it is an all-day event, not a meeting"
	case "skip-declined-by-owner":
		s = "skipped: the calendar's owner declined the meeting"
	case "skip-non-default-event-type":
		s = "skipped: it is " + eventTypeWords(d.Event.EventType) + ", not a meeting"
	default:
		return "", false
	}
	return s + " (rule " + d.Rule + ")", true
}

func privacy(v string) string {
	if v == "private" || v == "confidential" {
		return v
	}
	return ""
}

// eventTypeWords names a provider's event type.
func eventTypeWords(t string) string {
	switch t {
	case "outOfOffice":
		return "an out-of-office entry"
	case "focusTime":
		return "focus time"
	case "workingLocation":
		return "a working-location entry"
	case "birthday":
		return "a birthday"
	case "fromGmail":
		return "an entry Gmail created"
	case "":
		return "a calendar entry of another type"
	}
	return "a calendar entry of type " + t
}

// failedRules notes the rules, evaluated before the deciding one, that did
// not match because their expression failed: the decision might have been
// theirs.
func failedRules(d Decision) string {
	var failed []TraceStep
	for _, s := range d.Trace {
		if s.Err != "" {
			failed = append(failed, s)
		}
	}
	switch len(failed) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("; rule %s could not be evaluated (%s)", failed[0].Rule, failed[0].Err)
	}
	return fmt.Sprintf("; rule %s could not be evaluated (%s), nor could %d more", failed[0].Rule, failed[0].Err, len(failed)-1)
}

// attendees is a decision's attendees grouped by why they count or not,
// each group a list of distinct domains in order of appearance.
type attendees struct {
	matched  []matchedDomain // external, of a CRM company
	free     []string        // external, free mail
	unknown  []string        // external, no company
	invalid  int             // external, no valid address
	internal []string
	blocked  []string
	resource []string
	total    int
}

type matchedDomain struct {
	domain    string
	companies []string // "Acme (company 101)"
}

func summarize(d Decision) attendees {
	names := make(map[string]string, len(d.Companies))
	for _, c := range d.Companies {
		names[c.ID] = c.Name
	}
	var a attendees
	a.total = len(d.Attendees)
	for _, t := range d.Attendees {
		switch {
		case t.Resource:
			a.resource = addDomain(a.resource, t.Domain)
		case t.Blocked:
			a.blocked = addDomain(a.blocked, t.Domain)
		case t.Internal:
			a.internal = addDomain(a.internal, t.Domain)
		case t.Invalid || t.Domain == "":
			a.invalid++
		case len(t.Companies) > 0:
			a.addMatched(t.Domain, t.Companies, names)
		case t.FreeMail:
			a.free = addDomain(a.free, t.Domain)
		default:
			a.unknown = addDomain(a.unknown, t.Domain)
		}
	}
	return a
}

func addDomain(list []string, d string) []string {
	if d == "" || slices.Contains(list, d) {
		return list
	}
	return append(list, d)
}

func (a *attendees) addMatched(domain string, ids []string, names map[string]string) {
	i := slices.IndexFunc(a.matched, func(m matchedDomain) bool { return m.domain == domain })
	if i < 0 {
		a.matched = append(a.matched, matchedDomain{domain: domain})
		i = len(a.matched) - 1
	}
	m := &a.matched[i]
	for _, id := range ids {
		c := "company " + id
		if n := names[id]; n != "" {
			c = n + " (company " + id + ")"
		}
		if !slices.Contains(m.companies, c) {
			m.companies = append(m.companies, c)
		}
	}
}

func (a *attendees) external() int {
	return len(a.matched) + len(a.free) + len(a.unknown) + a.invalid
}

// whyNoCustomer explains a default skip: what the attendees were, such
// that no rule logged the meeting.
func (a *attendees) whyNoCustomer() string {
	switch {
	case a.total == 0:
		return "no rule matched, and the event lists no attendees"
	case len(a.matched) > 0:
		// Custom rules asked for more than a matched company.
		return "no rule matched (the default is skip), although " + strings.Join(a.phrases(), "; ")
	case a.external() == 0 && len(a.blocked) == 0 && len(a.resource) == 0:
		return "all attendees are internal (" + list(a.internal) + ")"
	case a.external() == 0:
		return "no attendee counts as external: " + strings.Join(a.otherPhrases(), "; ")
	case len(a.free) > 0 && len(a.unknown) == 0 && a.invalid == 0:
		return "every external attendee uses free mail (" + list(a.free) + ")" + a.others()
	case len(a.unknown) > 0 && len(a.free) == 0 && a.invalid == 0:
		return list(a.unknown) + " " + plural(len(a.unknown), "is", "are") + " external but " +
			plural(len(a.unknown), "matches", "match") + " no HubSpot company" + a.others()
	case a.invalid > 0 && len(a.free) == 0 && len(a.unknown) == 0:
		return "no external attendee has a valid address" + a.others()
	}
	return "no external attendee matches a HubSpot company" + a.clause()
}

// phrases describes every group, matched companies first and the
// attendees that did not count as external last.
func (a *attendees) phrases() []string {
	var p []string
	if len(a.matched) > 0 {
		m := make([]string, len(a.matched))
		for i, md := range a.matched {
			m[i] = md.domain + " matched " + list(md.companies)
		}
		p = append(p, list(m))
	}
	p = append(p, a.externalPhrases()...)
	return append(p, a.otherPhrases()...)
}

// clause is "; " and the phrases, or "" when there is none.
func (a *attendees) clause() string {
	p := a.phrases()
	if len(p) == 0 {
		return ""
	}
	return "; " + strings.Join(p, "; ")
}

// others lists only the attendees that did not count as external.
func (a *attendees) others() string {
	p := a.otherPhrases()
	if len(p) == 0 {
		return ""
	}
	return "; " + strings.Join(p, "; ")
}

func (a *attendees) externalPhrases() []string {
	var p []string
	if len(a.unknown) > 0 {
		p = append(p, list(a.unknown)+" "+plural(len(a.unknown), "matches", "match")+" no HubSpot company")
	}
	if len(a.free) > 0 {
		p = append(p, list(a.free)+" "+plural(len(a.free), "is", "are")+" free mail")
	}
	if a.invalid > 0 {
		p = append(p, fmt.Sprintf("%d %s no valid address", a.invalid, plural(a.invalid, "attendee has", "attendees have")))
	}
	return p
}

func (a *attendees) otherPhrases() []string {
	var p []string
	if len(a.internal) > 0 {
		p = append(p, list(a.internal)+" "+plural(len(a.internal), "is", "are")+" internal")
	}
	if len(a.blocked) > 0 {
		p = append(p, list(a.blocked)+" "+plural(len(a.blocked), "is", "are")+" blocked")
	}
	if len(a.resource) > 0 {
		p = append(p, list(a.resource)+" "+plural(len(a.resource), "is a room or resource", "are rooms or resources"))
	}
	return p
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// list joins words as English does: "a", "a and b", "a, b and c".
func list(w []string) string {
	switch len(w) {
	case 0:
		return ""
	case 1:
		return w[0]
	}
	return strings.Join(w[:len(w)-1], ", ") + " and " + w[len(w)-1]
}
