package matching

import (
	"slices"
	"strings"

	"github.com/rapportsync/rapport/calendar"
)

// Classifier classifies attendees for the rules environment. Its fields are
// read, never written, by Classify, so one Classifier may serve concurrent
// callers.
type Classifier struct {
	// Internal holds the workspace's internal domains: an address is internal
	// when its host equals one or is a subdomain of one.
	Internal []string
	// Blocked holds the blocked domains (rule files' blocked_domains), with
	// the same subdomain rule.
	Blocked []string
	// FreeMail is the free-mail set; nil means DefaultFreeMail().
	FreeMail *FreeMail
	// Index holds the workspace's companies; nil matches none.
	Index *Index
}

// Class is what the rules environment knows of one attendee beyond the
// calendar's own fields.
type Class struct {
	// Address is the parsed address; zero when Valid is false.
	Address
	Valid    bool
	Internal bool
	FreeMail bool
	Blocked  bool
	// Resource is the calendar's resource flag, or a resource-calendar
	// address (a room or group calendar).
	Resource bool
	// Companies are the matched companies, ordered by id; empty for
	// internal, free-mail, blocked, resource and invalid addresses.
	Companies []CompanyRef
}

// External reports whether the attendee counts as external in the rules
// environment: not internal, not a resource, not blocked. An invalid address
// is external, since it names no one Rapport knows.
func (c Class) External() bool {
	return !c.Internal && !c.Resource && !c.Blocked
}

// Classify classifies one attendee.
func (c *Classifier) Classify(a calendar.Attendee) Class {
	cl := Class{Resource: a.Resource}
	addr, err := ParseAddress(a.Email)
	if err != nil {
		return cl
	}
	cl.Address = addr
	cl.Valid = true
	cl.Resource = cl.Resource || isResourceHost(addr.Host)
	cl.Internal = underAny(addr.Host, c.Internal)
	cl.Blocked = underAny(addr.Host, c.Blocked)
	fm := c.FreeMail
	if fm == nil {
		fm = DefaultFreeMail()
	}
	cl.FreeMail = fm.contains(addr.Host, addr.Registrable)
	if c.Index != nil && !cl.Internal && !cl.FreeMail && !cl.Blocked && !cl.Resource {
		cl.Companies = c.Index.Lookup(addr)
	}
	return cl
}

// ClassifyAll classifies attendees, returning their classes in the same order
// and the distinct matched companies in order of first appearance.
func (c *Classifier) ClassifyAll(as []calendar.Attendee) ([]Class, []CompanyRef) {
	classes := make([]Class, len(as))
	var companies []CompanyRef
	// A linear scan dedupes the usual handful of companies; a domain shared
	// by many companies switches to a set.
	var seen map[string]struct{}
	for i, a := range as {
		classes[i] = c.Classify(a)
		for _, ref := range classes[i].Companies {
			if seen == nil && len(companies) >= 16 {
				seen = make(map[string]struct{}, 2*len(companies))
				for _, r := range companies {
					seen[r.ID] = struct{}{}
				}
			}
			if seen != nil {
				if _, dup := seen[ref.ID]; dup {
					continue
				}
				seen[ref.ID] = struct{}{}
			} else if slices.ContainsFunc(companies, func(r CompanyRef) bool { return r.ID == ref.ID }) {
				continue
			}
			companies = append(companies, ref)
		}
	}
	return classes, companies
}

// resourceCalendarHost is the parent of Google's resource-calendar hosts:
// rooms and equipment (c_…@resource.calendar.google.com), group and
// imported calendars (…@group.calendar.google.com, …@import.calendar.google.com).
const resourceCalendarHost = "calendar.google.com"

func isResourceHost(host string) bool {
	return underDomain(host, resourceCalendarHost)
}

// underAny reports whether host is one of domains or a subdomain of one.
// The configured domains are normalised on the fly; the common case, an
// already normal domain, costs a scan and no allocation.
func underAny(host string, domains []string) bool {
	for _, d := range domains {
		if !isNormalHost(d) {
			n, err := NormalizeDomain(d)
			if err != nil {
				continue
			}
			d = n
		}
		if underDomain(host, d) {
			return true
		}
	}
	return false
}

// isNormalHost reports whether d is already in the form NormalizeDomain
// returns, as far as a cheap scan can tell: lower-case LDH without a
// trailing dot or surrounding space. Hosts that pass are compared as they
// are; a malformed one then simply matches nothing.
func isNormalHost(d string) bool {
	if d == "" || strings.HasSuffix(d, ".") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
