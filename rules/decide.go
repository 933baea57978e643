package rules

import (
	"slices"
	"strings"

	"github.com/expr-lang/expr/vm"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/matching"
)

// Workspace identifies the workspace an event belongs to.
type Workspace struct {
	ID   string
	Name string
}

// Input is everything a decision depends on.
type Input struct {
	Event calendar.Event
	// Owner is the e-mail address of the person whose calendar this copy of
	// the event is on.
	Owner     string
	Workspace Workspace
	// Internal holds the workspace's internal domains.
	Internal []string
	// Index holds the workspace's CRM companies; nil matches none.
	Index *matching.Index
	// Contacts maps lower-cased e-mail addresses to CRM contact ids, when
	// known.
	Contacts map[string]string
	// CompanyProperties returns the crm_properties.companies values of a
	// matched company, by property name as HubSpot returns them (a missing
	// name reads as ""). It is called once per matched company and
	// decision, and only when Set.ReadsCompanyProperties; nil gives every
	// company no values. The map is read, never written or kept.
	CompanyProperties func(companyID string) map[string]string
	// ContactProperties maps lower-cased e-mail addresses to the
	// crm_properties.contacts values of their CRM contacts. Fill it only
	// when Set.ReadsContactProperties: it costs a CRM lookup per attendee.
	// An attendee found here, or in Contacts, has a contact in the
	// environment.
	ContactProperties map[string]map[string]string
	// Logged reports that the meeting is already logged in the CRM: a
	// cancelled event never logged is skipped, while the cancellation of a
	// logged one must reach the CRM.
	Logged bool
}

// Decision is the outcome of evaluating a Set on one event, with what
// explains it. It holds attendee domains but no e-mail addresses, so it may
// be stored.
type Decision struct {
	Action Action `json:"action"`
	// Rule is the name of the deciding rule, DefaultRuleName when none
	// matched.
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	// Trace lists the rules evaluated, in order, up to the deciding one.
	Trace []TraceStep `json:"trace"`
	// Event holds the event's classes that rules commonly decide on, so
	// that Explain can say why from the stored decision alone.
	Event EventTrace `json:"event"`
	// Attendees describes the event's attendees in order, followed by the
	// organizer and the owner when they are not in the list (and their
	// addresses are known).
	Attendees []AttendeeTrace `json:"attendees"`
	// Companies are the distinct matched companies, in order of first
	// appearance among the attendees.
	Companies []matching.CompanyRef `json:"companies"`
	Version   string                `json:"version"`

	// ContactEmails are the normalised (lower-case) addresses of the
	// attendees that count as external and whose domain matched a company,
	// sorted and unique: the people to associate as CRM contacts. They come
	// from the attendee list, like Companies.
	//
	// Addresses are never serialised: a Decision is stored as the trace,
	// and the database keeps no addresses.
	ContactEmails []string `json:"-"`
	// OwnerEmails are the candidates for the CRM owner, best first and
	// unique: the organizer when internal (whether or not the attendee list
	// holds them), then the internal attendees that are not resources, in
	// list order. Normalised (lower-case); never serialised.
	OwnerEmails []string `json:"-"`
}

// EventTrace is what a decision records of the event itself: classes, never
// its title, description or people.
type EventTrace struct {
	Status     string `json:"status,omitempty"`
	Visibility string `json:"visibility,omitempty"`
	EventType  string `json:"event_type,omitempty"`
	AllDay     bool   `json:"all_day,omitempty"`
	Source     string `json:"source,omitempty"`
	ShowAs     string `json:"show_as,omitempty"`
	// BookingEventType is the booking page's event type ("Demo") of a
	// booking; empty for a calendar event.
	BookingEventType string `json:"booking_event_type,omitempty"`
	// Logged is the Input's: the meeting was already in the CRM.
	Logged bool `json:"logged,omitempty"`
}

// TraceStep is one evaluated rule.
type TraceStep struct {
	Rule   string `json:"rule"`
	Result bool   `json:"result"`
	// Err is the run-time error that made the rule not match.
	Err string `json:"error,omitempty"`
}

// AttendeeTrace is what a decision records of one attendee: the domain and
// classes, never the address.
type AttendeeTrace struct {
	// Domain is the address's host; empty for an invalid address.
	Domain    string `json:"domain"`
	Invalid   bool   `json:"invalid,omitempty"`
	External  bool   `json:"external,omitempty"`
	Internal  bool   `json:"internal,omitempty"`
	FreeMail  bool   `json:"free_mail,omitempty"`
	Blocked   bool   `json:"blocked,omitempty"`
	Resource  bool   `json:"resource,omitempty"`
	Organizer bool   `json:"organizer,omitempty"`
	Self      bool   `json:"self,omitempty"`
	Optional  bool   `json:"optional,omitempty"`
	Response  string `json:"response"`
	// Companies are the ids of the matched companies.
	Companies []string `json:"companies,omitempty"`
	// Contact is the CRM contact id, when known.
	Contact string `json:"contact,omitempty"`
}

// Decide classifies the event's attendees and evaluates the rules in order;
// the first rule whose `when` is true decides, else the default action. A
// rule whose expression fails at run time does not match; the error is in
// the trace.
func (s *Set) Decide(in Input) Decision {
	cl := matching.Classifier{Internal: in.Internal, Blocked: s.blocked, FreeMail: s.freeMail, Index: in.Index}
	env, d := s.environment(&cl, &in)
	d.Version = s.version
	d.Trace = make([]TraceStep, 0, len(s.rules))

	v := s.vms.Get().(*vm.VM)
	defer s.vms.Put(v)
	for i := range s.rules {
		r := &s.rules[i]
		step := TraceStep{Rule: r.Name}
		out, err := v.Run(r.program, env)
		if err != nil {
			step.Err, _ = exprError(err)
		} else {
			step.Result, _ = out.(bool)
		}
		d.Trace = append(d.Trace, step)
		if step.Result {
			d.Action, d.Rule, d.Reason = r.Action, r.Name, r.Reason
			if d.Reason == "" {
				d.Reason = "when: " + r.When
			}
			return d
		}
	}
	d.Action, d.Rule, d.Reason = s.def, DefaultRuleName, "no rule matched; the default is "+string(s.def)
	return d
}

// environment builds the expression environment of one event and the
// attendee part of its decision. Every attendee lives in one slice; the
// lists of the environment point into it.
func (s *Set) environment(cl *matching.Classifier, in *Input) (*evalEnv, Decision) {
	ev := &in.Event
	n := len(ev.Attendees)
	classes, companies := cl.ClassifyAll(ev.Attendees)

	// One allocation for the environment and its fixed parts.
	fixed := &struct {
		env evalEnv
		ev  eventEnv
		ws  workspaceEnv
	}{}
	env := &fixed.env
	env.Event, env.Workspace, env.Logged = &fixed.ev, &fixed.ws, in.Logged
	fixed.ws = workspaceEnv{ID: in.Workspace.ID, Name: in.Workspace.Name}
	*env.Event = eventEnv{
		ID:            ev.ID,
		ICalUID:       ev.ICalUID,
		Title:         ev.Title,
		Description:   ev.Description,
		Location:      ev.Location,
		Start:         ev.Start,
		End:           ev.End,
		AllDay:        ev.AllDay,
		Status:        orDefault(string(ev.Status), string(calendar.StatusConfirmed)),
		Visibility:    orDefault(ev.Visibility, "default"),
		EventType:     orDefault(ev.EventType, "default"),
		Recurring:     ev.RecurringEventID != "",
		ConferenceURL: ev.ConferenceURL,
		Source:        ev.Source,
		ShowAs:        ev.ShowAs,
		Booking:       bookingOf(ev.Booking),
	}
	if !ev.Start.IsZero() && !ev.End.IsZero() {
		env.Event.Duration = ev.End.Sub(ev.Start)
	}

	var d Decision
	d.Companies = companies
	d.Event = EventTrace{
		Status:     env.Event.Status,
		Visibility: env.Event.Visibility,
		EventType:  env.Event.EventType,
		AllDay:     ev.AllDay,
		Source:     ev.Source,
		ShowAs:     ev.ShowAs,
		Logged:     in.Logged,
	}
	if ev.Booking != nil {
		d.Event.BookingEventType = ev.Booking.EventType
	}
	if len(companies) > 0 {
		env.Companies = make([]*companyEnv, len(companies))
		cs := make([]companyEnv, len(companies))
		for i, c := range companies {
			cs[i] = companyEnv{ID: c.ID, Name: c.Name, Domain: c.Domain, Properties: s.companyProperties(in, c.ID)}
			env.Companies[i] = &cs[i]
		}
	}

	// Two spare slots for an owner and an organizer missing from the list.
	atts := make([]attendeeEnv, n, n+2)
	ptrs := make([]*attendeeEnv, 2*n)
	env.Event.Attendees = ptrs[:n:n]
	env.External = ptrs[n:n]
	d.Attendees = make([]AttendeeTrace, n, n+2)
	for i := range ev.Attendees {
		a := &atts[i]
		s.attendee(a, &ev.Attendees[i], &classes[i], env.Companies, in)
		env.Event.Attendees[i] = a
		if classes[i].External() {
			env.External = append(env.External, a)
		}
	}

	ownerAt := find(ev.Attendees, classes, in.Owner, nil)
	organizerAt := find(ev.Attendees, classes, ev.Organizer.Email, func(a *calendar.Attendee) bool { return a.Organizer })
	ownerKey := strings.TrimSpace(in.Owner)
	if ownerAt < 0 && ownerKey == "" {
		// No owner given: the provider's self flag says whose calendar.
		for i := range ev.Attendees {
			if ev.Attendees[i].Self {
				ownerAt = i
				break
			}
		}
		if ownerAt < 0 && ev.Organizer.Self {
			ownerAt = organizerAt
		}
	}

	extra := make([]matching.Class, 0, 2)
	var orgClass *matching.Class
	if organizerAt >= 0 {
		env.Event.Organizer = &atts[organizerAt]
		env.Event.Organizer.Organizer = true
		orgClass = &classes[organizerAt]
	} else {
		o := ev.Organizer
		o.Organizer = true
		o.Self = o.Self || ownerKey != "" && sameAddress(o.Email, ownerKey)
		if o.Response == "" {
			o.Response = calendar.ResponseAccepted
		}
		atts = append(atts, attendeeEnv{})
		a, c := s.synthesize(&atts[len(atts)-1], cl, &o, in)
		env.Event.Organizer = a
		extra = append(extra, c)
		orgClass = &c
		if o.Self && ownerAt < 0 {
			env.Owner = a
		}
	}
	switch {
	case ownerAt >= 0:
		env.Owner = &atts[ownerAt]
		env.Owner.Self = true
	case env.Owner == nil:
		// The owner is not in the list (a solo event, or attendees
		// omitted): having the event on their calendar, they attend.
		o := calendar.Attendee{Email: in.Owner, Self: true, Response: calendar.ResponseAccepted}
		atts = append(atts, attendeeEnv{})
		a, c := s.synthesize(&atts[len(atts)-1], cl, &o, in)
		env.Owner = a
		extra = append(extra, c)
	}

	// The attendees' company ids share one backing array.
	total := 0
	for i := range classes {
		total += len(classes[i].Companies)
	}
	ids := make([]string, 0, total)
	for i := range n {
		d.Attendees[i], ids = traceOf(&atts[i], &classes[i], ids)
	}
	// A synthesized owner or organizer is worth explaining when its address
	// is known.
	for i, c := range extra {
		if a := &atts[n+i]; a.Email != "" {
			var t AttendeeTrace
			t, ids = traceOf(a, &c, ids)
			d.Attendees = append(d.Attendees, t)
		}
	}
	d.ContactEmails = contactEmails(classes)
	d.OwnerEmails = ownerEmails(orgClass, classes)
	return env, d
}

// contactEmails lists the addresses of the external attendees of matched
// companies, sorted and unique.
func contactEmails(classes []matching.Class) []string {
	n := 0
	for i := range classes {
		if c := &classes[i]; c.Valid && c.External() && len(c.Companies) > 0 {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := range classes {
		if c := &classes[i]; c.Valid && c.External() && len(c.Companies) > 0 {
			out = append(out, c.Email)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ownerEmails lists the owner candidates: the organizer when internal, then
// the internal attendees that are not resources.
func ownerEmails(organizer *matching.Class, classes []matching.Class) []string {
	candidate := func(c *matching.Class) bool { return c != nil && c.Valid && c.Internal && !c.Resource }
	n := 0
	if candidate(organizer) {
		n++
	}
	for i := range classes {
		if candidate(&classes[i]) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	add := func(c *matching.Class) {
		if candidate(c) && !slices.Contains(out, c.Email) {
			out = append(out, c.Email)
		}
	}
	add(organizer)
	for i := range classes {
		add(&classes[i])
	}
	return out
}

// bookingOf is the environment's view of a booking; nil for a calendar
// event.
func bookingOf(b *calendar.Booking) *bookingEnv {
	if b == nil {
		return nil
	}
	be := &bookingEnv{
		EventType:   b.EventType,
		Rescheduled: b.Rescheduled,
		UTM: &utmEnv{
			Source:   utm(b.UTM, "source"),
			Medium:   utm(b.UTM, "medium"),
			Campaign: utm(b.UTM, "campaign"),
			Content:  utm(b.UTM, "content"),
			Term:     utm(b.UTM, "term"),
		},
	}
	if len(b.Answers) > 0 {
		as := make([]answerEnv, len(b.Answers))
		be.Answers = make([]*answerEnv, len(b.Answers))
		for i, a := range b.Answers {
			as[i] = answerEnv{Question: a.Question, Answer: a.Answer}
			be.Answers[i] = &as[i]
		}
	}
	return be
}

// utm reads one tracking parameter, keyed as the query parameter
// ("utm_source") or by its bare name ("source").
func utm(m map[string]string, name string) string {
	if v, ok := m["utm_"+name]; ok {
		return v
	}
	return m[name]
}

// synthesize fills a, an owner or organizer missing from the attendee list.
func (s *Set) synthesize(a *attendeeEnv, cl *matching.Classifier, att *calendar.Attendee, in *Input) (*attendeeEnv, matching.Class) {
	if strings.TrimSpace(att.Email) == "" {
		*a = attendeeEnv{Organizer: att.Organizer, Self: att.Self, Response: responseOf(att.Response)}
		return a, matching.Class{}
	}
	c := cl.Classify(*att)
	var companies []*companyEnv
	for _, ref := range c.Companies {
		companies = append(companies, &companyEnv{ID: ref.ID, Name: ref.Name, Domain: ref.Domain, Properties: s.companyProperties(in, ref.ID)})
	}
	s.attendee(a, att, &c, companies, in)
	return a, c
}

// addressKey is the form in which two addresses are compared: normalised
// when valid, else lower-cased.
func addressKey(email string) string {
	if a, err := matching.ParseAddress(email); err == nil {
		return a.Email
	}
	return strings.ToLower(strings.TrimSpace(email))
}

func sameAddress(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b)) || addressKey(a) == addressKey(b)
}

// find returns the index of the attendee with the given address, or flagged
// by flag, or -1. The address is compared as written first, the common case,
// and parsed only when that fails.
func find(as []calendar.Attendee, classes []matching.Class, email string, flag func(*calendar.Attendee) bool) int {
	email = strings.TrimSpace(email)
	for i := range as {
		if flag != nil && flag(&as[i]) || email != "" && strings.EqualFold(strings.TrimSpace(as[i].Email), email) {
			return i
		}
	}
	if email == "" {
		return -1
	}
	key := addressKey(email)
	for i := range as {
		k := strings.ToLower(strings.TrimSpace(as[i].Email))
		if classes[i].Valid {
			k = classes[i].Email
		}
		if k == key {
			return i
		}
	}
	return -1
}

// attendee fills one attendee of the environment; its company is the
// shared record of the first matched company.
func (s *Set) attendee(a *attendeeEnv, att *calendar.Attendee, c *matching.Class, companies []*companyEnv, in *Input) {
	*a = attendeeEnv{
		Email:     att.Email,
		Name:      att.Name,
		Domain:    c.Host,
		Internal:  c.Internal,
		FreeMail:  c.FreeMail,
		Blocked:   c.Blocked,
		Resource:  c.Resource,
		Organizer: att.Organizer,
		Self:      att.Self,
		Optional:  att.Optional,
		Response:  responseOf(att.Response),
	}
	if c.Valid {
		a.Email = c.Email
	}
	if len(c.Companies) > 0 {
		for _, ce := range companies {
			if ce.ID == c.Companies[0].ID {
				a.Company = ce
				break
			}
		}
	}
	if len(in.Contacts) > 0 || len(in.ContactProperties) > 0 && s.readsContacts {
		id, okID := lookup(in.Contacts, c, att)
		var props map[string]string
		okProps := false
		if s.readsContacts {
			props, okProps = lookup(in.ContactProperties, c, att)
		}
		if okID || okProps {
			a.Contact = &contactEnv{ID: id, Properties: props}
		}
	}
}

// lookup finds an attendee in a map keyed by lower-cased address: by the
// normalised address, else by the address as written, lower-cased.
func lookup[V any](m map[string]V, c *matching.Class, att *calendar.Attendee) (V, bool) {
	if c.Valid {
		if v, ok := m[c.Email]; ok {
			return v, true
		}
	}
	v, ok := m[strings.ToLower(strings.TrimSpace(att.Email))]
	return v, ok
}

// companyProperties returns a company's property values when an expression
// reads them.
func (s *Set) companyProperties(in *Input, id string) companyProps {
	if !s.readsCompanies || in.CompanyProperties == nil {
		return nil
	}
	return in.CompanyProperties(id)
}

// traceOf describes one attendee; its company ids are appended to ids and
// sliced from it.
func traceOf(a *attendeeEnv, c *matching.Class, ids []string) (AttendeeTrace, []string) {
	t := AttendeeTrace{
		Domain:    a.Domain,
		Invalid:   !c.Valid,
		External:  c.External(),
		Internal:  a.Internal,
		FreeMail:  a.FreeMail,
		Blocked:   a.Blocked,
		Resource:  a.Resource,
		Organizer: a.Organizer,
		Self:      a.Self,
		Optional:  a.Optional,
		Response:  a.Response,
	}
	if len(c.Companies) > 0 {
		start := len(ids)
		for _, ref := range c.Companies {
			ids = append(ids, ref.ID)
		}
		t.Companies = ids[start:len(ids):len(ids)]
	}
	if a.Contact != nil {
		t.Contact = a.Contact.ID
	}
	return t, ids
}

func responseOf(r calendar.Response) string {
	if r == "" {
		return string(calendar.ResponseNeedsAction)
	}
	return string(r)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
