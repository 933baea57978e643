package rules

import (
	_ "embed"
	"maps"
	"slices"
	"sync"

	"github.com/expr-lang/expr/vm"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/matching"
)

// Action is what a decision asks of the pipeline.
type Action string

// Actions, as rule files spell them.
const (
	// ActionLog writes the meeting to the CRM (or passes a change of a logged
	// meeting, a cancellation included, through to it).
	ActionLog Action = "log"
	// ActionSkip leaves the event out of the CRM.
	ActionSkip Action = "skip"
)

// DefaultRuleName is Decision.Rule when no rule matched and the set's default
// action decided. No rule may take this name.
const DefaultRuleName = "default"

// Rule is one compiled rule of a Set.
type Rule struct {
	Name   string
	When   string
	Action Action
	Reason string
	// File, Line and Col locate the rule's name in its rule file.
	File string
	Line int
	Col  int

	program *vm.Program
}

// Set is an immutable, compiled rule set. It is safe for concurrent use.
type Set struct {
	rules    []Rule
	def      Action
	freeMail *matching.FreeMail
	// freeAdd and freeDel are the free_mail section, sorted, for Diff.
	freeAdd   []string
	freeDel   []string
	blocked   []string
	ownership Ownership
	version   string
	// crm_properties of every file, sorted, and whether any expression
	// reads a property of each kind.
	crmCompanies   []string
	crmContacts    []string
	readsCompanies bool
	readsContacts  bool

	// vms recycles expr VMs: a VM keeps its stack between runs, and one
	// Decide runs several programs.
	vms sync.Pool
}

// Rules returns the set's rules in evaluation order.
func (s *Set) Rules() []Rule { return slices.Clone(s.rules) }

// DefaultAction returns the action taken when no rule matches.
func (s *Set) DefaultAction() Action { return s.def }

// Version identifies the rules' content: "sha256:<12 hex>" of the rule files,
// followed by "+git:<12 hex>" when the directory is in a git checkout, or by
// "+builtin" for the built-in rules.
func (s *Set) Version() string { return s.version }

// FreeMail returns the built-in free-mail list adjusted by the rule files'
// free_mail section.
func (s *Set) FreeMail() *matching.FreeMail { return s.freeMail }

// Blocked returns the rule files' blocked domains (lower-case ASCII).
func (s *Set) Blocked() []string { return slices.Clone(s.blocked) }

// Ownership returns who owns each meeting property Rapport writes.
func (s *Set) Ownership() Ownership { return s.ownership }

// CRMProperties returns the CRM properties the rule files declare under
// crm_properties (the union over every file, sorted): the company and
// contact properties to load from the CRM for the expressions to read.
func (s *Set) CRMProperties() (companies, contacts []string) {
	return slices.Clone(s.crmCompanies), slices.Clone(s.crmContacts)
}

// ReadsCompanyProperties reports whether some expression reads a company
// property; when none does, Input.CompanyProperties is never called.
func (s *Set) ReadsCompanyProperties() bool { return s.readsCompanies }

// ReadsContactProperties reports whether some expression reads a contact
// property. Contact properties cost a CRM lookup per attendee, so a caller
// fills Input.ContactProperties only when this is true; a declared but
// unread property does not count.
func (s *Set) ReadsContactProperties() bool { return s.readsContacts }

// Owner says which side owns a meeting property.
type Owner string

// Owners, as the ownership section spells them.
const (
	// OwnerCalendar: written on create and overwritten from the calendar on
	// every update.
	OwnerCalendar Owner = "calendar"
	// OwnerCRM: written on create, never updated afterwards.
	OwnerCRM Owner = "crm"
)

// defaultOwnership is the table of ARCHITECTURE.md section 4. The outcome is
// CRM-owned: people record COMPLETED or NO_SHOW there; the pipeline still sets
// CANCELED when the event is cancelled, whoever owns the outcome.
var defaultOwnership = map[string]Owner{
	crm.PropTimestamp:   OwnerCalendar,
	crm.PropTitle:       OwnerCalendar,
	crm.PropStart:       OwnerCalendar,
	crm.PropEnd:         OwnerCalendar,
	crm.PropLocation:    OwnerCalendar,
	crm.PropExternalURL: OwnerCalendar,
	crm.PropOutcome:     OwnerCRM,
	crm.PropBody:        OwnerCRM,
	crm.PropOwner:       OwnerCRM,
}

// Ownership maps each meeting property Rapport writes (crm.Prop*) to its
// owner. The zero value holds the default table. Identity properties (the
// meeting key and iCalUID) are written on create only and are not in it.
type Ownership struct {
	m map[string]Owner
}

// Of returns the owner of a meeting property; "" for a property Rapport does
// not write.
func (o Ownership) Of(prop string) Owner {
	if o.m == nil {
		return defaultOwnership[prop]
	}
	return o.m[prop]
}

// CalendarOwned lists the properties the calendar owns, sorted: the ones an
// update of the event overwrites.
func (o Ownership) CalendarOwned() []string {
	var out []string
	for p, w := range o.Map() {
		if w == OwnerCalendar {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Map returns a copy of the whole table.
func (o Ownership) Map() map[string]Owner {
	if o.m == nil {
		return maps.Clone(defaultOwnership)
	}
	return maps.Clone(o.m)
}

// writtenProperties lists the properties an ownership section may name.
func writtenProperties() []string {
	return slices.Sorted(maps.Keys(defaultOwnership))
}
