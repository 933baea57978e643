package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
)

// The sample is the made-up company the demo and the benchmark run on:
// Northwind's employees' calendars in the fake Google Calendar and its CRM
// in the fake HubSpot. It is generated from a seed, so two runs with the
// same spec (and the same day) hold the same data.

// sampleDomain is Northwind's internal domain.
const (
	sampleWorkspace = "Northwind"
	sampleDomain    = "northwind.test"
)

// Kinds of sample meetings; each kind exercises one path of the default
// rules.
const (
	kindCustomer  = "customer meeting"
	kindSeries    = "recurring customer series"
	kindInternal  = "internal meeting"
	kindFreeMail  = "free-mail guest"
	kindProspect  = "external, not in the CRM"
	kindDeclined  = "declined by the employee"
	kindPrivate   = "private"
	kindAllDay    = "all-day"
	kindOOO       = "out of office"
	kindCancelled = "cancelled before logging"
)

// sampleKinds lists the kinds in the order summaries print them.
var sampleKinds = []string{kindCustomer, kindSeries, kindInternal, kindFreeMail, kindProspect,
	kindDeclined, kindPrivate, kindAllDay, kindOOO, kindCancelled}

// sampleSpec sizes a sample.
type sampleSpec struct {
	Seed uint64
	// Calendars is the number of employees, each with one calendar.
	Calendars int
	// Events is the number of event copies to create, counting each
	// instance of a series and each colleague's copy (at least; the last
	// meeting may go a little over).
	Events int
	// Companies is the number of CRM companies.
	Companies int
	// Now anchors the window of events: from 60 days before to 28 days
	// after (inside Rapport's default backfill and lookahead).
	Now time.Time
}

// sampleCompany is a CRM company and the people of it who attend meetings.
type sampleCompany struct {
	ID, Name string
	// Domains as HubSpot holds them: the first is "domain", the rest
	// "hs_additional_domains" (a semicolon list with a URL in it).
	Domains []string
	// People are the addresses that attend meetings; the first Contacts of
	// them are HubSpot contacts.
	People   []string
	Contacts int
}

// sampleMeeting is one generated event (a series counts once).
type sampleMeeting struct {
	Kind string
	// Calendars hold the event: the first is where it was created, the
	// others are colleagues' copies (same event id and iCalUID).
	Calendars []string
	EventID   string
	ICalUID   string
	Title     string
	Start     time.Time
	End       time.Time
	Attendees []calendartest.Attendee
	// Companies are the CRM ids of the companies whose people attend.
	Companies []string
	// Instances is the number of live instances (1 for a single event).
	Instances int
	// Moved and Cancelled count a series' exceptions.
	Moved, Cancelled int
	// Logged is how many HubSpot meetings the default rules make of it.
	Logged int
}

// sample is what was generated.
type sample struct {
	Spec      sampleSpec
	Employees []string // e-mail addresses, also the calendar ids
	Companies []*sampleCompany
	byID      map[string]*sampleCompany
	Owners    int
	Contacts  int
	Meetings  []*sampleMeeting
	// Events counts event copies per kind; Expected is the number of
	// meetings the default rules log.
	Events   map[string]int
	Copies   int // colleagues' copies among the events
	Expected int
}

// TotalEvents is the number of event copies generated.
func (s *sample) TotalEvents() int {
	n := 0
	for _, v := range s.Events {
		n += v
	}
	return n
}

// company returns the company with a CRM id.
func (s *sample) company(id string) *sampleCompany { return s.byID[id] }

// sampleGen carries the generator's state.
type sampleGen struct {
	r      *rand.Rand
	spec   sampleSpec
	google *calendartest.Server
	hub    *crmtest.Server
	s      *sample
	zones  map[string]*time.Location
	slugs  map[string]bool
	// customers are the companies people attend meetings of (not the
	// free-mail one).
	customers []*sampleCompany
	prospects int
}

var (
	firstNames = []string{"alice", "bruno", "chen", "dana", "emil", "fatima", "goran", "hana", "ivan", "julia",
		"kofi", "lena", "mateo", "nora", "omar", "priya", "quentin", "rosa", "sven", "tara", "umar", "vera", "wei", "xenia", "yusuf", "zoe"}
	lastNames = []string{"moreau", "schmidt", "okafor", "rossi", "tanaka", "novak", "silva", "larsen", "kowalski", "haddad",
		"murphy", "jensen", "garcia", "nguyen", "petrov", "mensah", "fischer", "costa", "ali", "berg"}
	nameA = []string{"Blue", "North", "Silver", "Bright", "Iron", "Green", "Red", "Swift", "Quiet", "Golden", "Stone", "Clear",
		"Rapid", "Bold", "Lucky", "Deep", "High", "Wild", "True", "Prime", "Urban", "Polar", "Solar", "Lunar"}
	nameB = []string{"harbor", "field", "peak", "river", "forge", "leaf", "brook", "wave", "gate", "bridge", "pine", "light",
		"crest", "point", "works", "stack", "path", "ridge", "mill", "line", "spark", "cloud", "rock", "vale"}
	nameC = []string{"Logistics", "Labs", "Systems", "Foods", "Analytics", "Health", "Energy", "Bank", "Media", "Robotics",
		"Retail", "Insurance", "Studios", "Pharma", "Motors", "Software", "Capital", "Telecom", "Travel", "Networks"}
	topics         = []string{"renewal", "QBR", "pricing call", "onboarding", "security review", "product demo", "kickoff", "check-in", "roadmap review", "contract review", "integration workshop", "executive sponsor sync"}
	internalTitles = []string{"Team standup", "1:1", "Pipeline review", "Sprint planning", "Retro", "All-hands prep", "Hiring sync", "Forecast call"}
	privateTitles  = []string{"Doctor", "Lunch with an old colleague", "Bank appointment"}
	zones          = []string{"Europe/Berlin", "Europe/Berlin", "Europe/Berlin", "America/New_York", "Europe/London"}
	freeMail       = []string{"gmail.com", "outlook.com", "yahoo.com", "icloud.com", "gmx.net"}
	places         = []string{"Zoom", "Room 2.14", "Their office", "Google Meet", ""}
)

// generateSample fills the fakes with a sample and returns what it made.
func generateSample(spec sampleSpec, google *calendartest.Server, hub *crmtest.Server) (*sample, error) {
	if spec.Calendars < 1 || spec.Companies < 1 || spec.Events < 1 {
		return nil, fmt.Errorf("sample: calendars, companies and events must be positive")
	}
	if spec.Now.IsZero() {
		spec.Now = time.Now()
	}
	g := &sampleGen{
		r:      rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15)),
		spec:   spec,
		google: google,
		hub:    hub,
		s:      &sample{Spec: spec, byID: map[string]*sampleCompany{}, Events: map[string]int{}},
		zones:  map[string]*time.Location{},
		slugs:  map[string]bool{},
	}
	if err := g.employees(); err != nil {
		return nil, err
	}
	g.companies()
	for g.s.TotalEvents() < spec.Events {
		if err := g.meeting(); err != nil {
			return nil, err
		}
	}
	return g.s, nil
}

func (g *sampleGen) employees() error {
	seen := map[string]bool{}
	for i := 0; i < g.spec.Calendars; i++ {
		var email string
		if i < len(firstNames) && g.spec.Calendars <= len(firstNames) {
			email = firstNames[i] + "." + lastNames[i%len(lastNames)] + "@" + sampleDomain
		} else {
			email = firstNames[i%len(firstNames)] + "." + lastNames[(i/len(firstNames))%len(lastNames)]
			if i >= len(firstNames)*len(lastNames) {
				email += strconv.Itoa(i)
			}
			email += "@" + sampleDomain
		}
		if seen[email] {
			return fmt.Errorf("sample: duplicate employee %s", email)
		}
		seen[email] = true
		tz := zones[i%len(zones)]
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return fmt.Errorf("sample: time zone %s: %w (is the tzdata of the system installed?)", tz, err)
		}
		if err := g.google.AddCalendar(email, tz); err != nil {
			return err
		}
		g.zones[email] = loc
		g.s.Employees = append(g.s.Employees, email)
		// One employee in ten has no HubSpot user: their meetings get no
		// owner, as in real portals.
		if i%10 != 9 {
			g.hub.AddOwner(email)
			g.s.Owners++
		}
	}
	return nil
}

func (g *sampleGen) companies() {
	n := g.spec.Companies
	if n >= 10 {
		// Real portals hold a "gmail.com" company from a bad import; the
		// index must ignore it or every Gmail guest would match it.
		id := g.hub.AddCompany(crm.Company{Name: "Gmail (bad import)", Domains: []string{"gmail.com"}})
		c := &sampleCompany{ID: id, Name: "Gmail (bad import)", Domains: []string{"gmail.com"}}
		g.s.Companies = append(g.s.Companies, c)
		g.s.byID[id] = c
		n--
	}
	for range n {
		name, slug := g.companyName()
		c := &sampleCompany{Name: name}
		var peopleDomains []string
		switch x := g.r.IntN(100); {
		case x < 55: // plain, people also on a subdomain of it
			c.Domains = []string{slug + ".example"}
			peopleDomains = []string{slug + ".example", slug + ".example", "uk." + slug + ".example"}
		case x < 70: // registered on a subdomain
			c.Domains = []string{"sales." + slug + ".example"}
			peopleDomains = []string{"sales." + slug + ".example", "eu.sales." + slug + ".example"}
		case x < 95: // additional domains, typed as people type them
			c.Domains = []string{slug + ".example", slug + ".co.uk; https://www." + slug + "-group.example/about"}
			peopleDomains = []string{slug + ".example", slug + ".co.uk", slug + "-group.example"}
		default: // the domain field holds a URL
			c.Domains = []string{"https://www." + slug + ".example/"}
			peopleDomains = []string{slug + ".example"}
		}
		c.ID = g.hub.AddCompany(crm.Company{Name: name, Domains: c.Domains})
		people := 2 + g.r.IntN(3)
		for i := range people {
			c.People = append(c.People, g.person(peopleDomains[i%len(peopleDomains)]))
		}
		c.People = slices.Compact(c.People)
		if g.r.IntN(100) < 60 {
			c.Contacts = min(len(c.People), 1+g.r.IntN(2))
			for _, p := range c.People[:c.Contacts] {
				local, _, _ := strings.Cut(p, "@")
				first, last, _ := strings.Cut(local, ".")
				g.hub.AddContact(p, title(first)+" "+title(last), c.ID)
				g.s.Contacts++
			}
		}
		g.s.Companies = append(g.s.Companies, c)
		g.s.byID[c.ID] = c
		g.customers = append(g.customers, c)
	}
}

func (g *sampleGen) companyName() (name, slug string) {
	for i := 0; ; i++ {
		a, b, c := nameA[g.r.IntN(len(nameA))], nameB[g.r.IntN(len(nameB))], nameC[g.r.IntN(len(nameC))]
		name = a + title(b) + " " + c
		slug = strings.ToLower(a + b)
		if i > 3 {
			slug += strings.ToLower(c)
		}
		if i > 6 {
			n := len(g.slugs)
			slug += strconv.Itoa(n)
			name += " " + strconv.Itoa(n)
		}
		if !g.slugs[slug] {
			g.slugs[slug] = true
			return name, slug
		}
	}
}

func (g *sampleGen) person(domain string) string {
	return firstNames[g.r.IntN(len(firstNames))] + "." + lastNames[g.r.IntN(len(lastNames))] + "@" + domain
}

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func att(email, response string) calendartest.Attendee {
	return calendartest.Attendee{Email: email, ResponseStatus: response}
}

// slot draws a start time on a weekday between 08:00 and 16:30 in loc, on
// a day between minDay and maxDay days from today, and a duration.
func (g *sampleGen) slot(loc *time.Location, minDay, maxDay int) (time.Time, time.Time) {
	today := g.spec.Now.In(loc)
	for {
		d := minDay + g.r.IntN(maxDay-minDay+1)
		h, m := 8+g.r.IntN(9), 30*g.r.IntN(2)
		start := time.Date(today.Year(), today.Month(), today.Day()+d, h, m, 0, 0, loc)
		if wd := start.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		return start, start.Add(time.Duration(30+15*g.r.IntN(3)) * time.Minute)
	}
}

// colleagues picks n employees other than self.
func (g *sampleGen) colleagues(self string, n int) []string {
	n = min(n, len(g.s.Employees)-1)
	var out []string
	for len(out) < n {
		c := g.s.Employees[g.r.IntN(len(g.s.Employees))]
		if c != self && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// externals picks 1–3 people of 1–2 companies.
func (g *sampleGen) externals() ([]string, []string) {
	companies := []*sampleCompany{g.customers[g.r.IntN(len(g.customers))]}
	if g.r.IntN(100) < 25 && len(g.customers) > 1 {
		for {
			c := g.customers[g.r.IntN(len(g.customers))]
			if c != companies[0] {
				companies = append(companies, c)
				break
			}
		}
	}
	var people, ids []string
	for _, c := range companies {
		ids = append(ids, c.ID)
		k := 1 + g.r.IntN(min(2, len(c.People)))
		for _, p := range g.r.Perm(len(c.People))[:k] {
			people = append(people, c.People[p])
		}
	}
	if len(people) > 3 {
		people = people[:3]
	}
	slices.Sort(ids)
	return people, ids
}

func (g *sampleGen) meeting() error {
	owner := g.s.Employees[g.r.IntN(len(g.s.Employees))]
	loc := g.zones[owner]
	m := &sampleMeeting{Calendars: []string{owner}, Instances: 1}
	spec := calendartest.EventSpec{TimeZone: loc.String(), Location: places[g.r.IntN(len(places))]}
	if spec.Location == "Google Meet" {
		spec.Location, spec.HangoutLink = "", "https://meet.google.com/"+g.meetCode()
	}
	start, end := g.slot(loc, -60, 28)
	spec.Start, spec.End = start, end
	var ids []string
	customer := func() (string, []string) {
		var people []string
		people, ids = g.externals()
		return g.s.byID[ids[0]].Name + " " + topics[g.r.IntN(len(topics))], people
	}
	var series struct{ count int }
	switch x := g.r.IntN(100); {
	case x < 50: // customer meeting; one in five on 2–3 colleagues' calendars
		m.Kind, m.Logged = kindCustomer, 1
		t, people := customer()
		spec.Summary, spec.Description = t, "Agenda: "+topics[g.r.IntN(len(topics))]
		var colleagues []string
		if g.r.IntN(100) < 20 && len(g.s.Employees) > 2 {
			colleagues = g.colleagues(owner, 2+g.r.IntN(2))
		}
		spec.Attendees = append(spec.Attendees, att(owner, "accepted"))
		for _, c := range colleagues {
			spec.Attendees = append(spec.Attendees, att(c, "accepted"))
		}
		for _, p := range people {
			spec.Attendees = append(spec.Attendees, att(p, "accepted"))
		}
		if g.r.IntN(100) < 10 {
			spec.Attendees = append(spec.Attendees, att(g.person(freeMail[g.r.IntN(len(freeMail))]), "needsAction"))
		}
		if g.r.IntN(100) < 20 {
			// The customer sent the invitation.
			spec.Organizer = &calendartest.Person{Email: people[0]}
		}
		m.Calendars = append(m.Calendars, colleagues...)
		m.Companies = ids
	case x < 55: // weekly customer series, some with a moved and a cancelled instance
		m.Kind = kindSeries
		series.count = 4 + g.r.IntN(5)
		spec.Start, spec.End = g.slot(loc, -60, 28-7*(series.count-1))
		t, people := customer()
		spec.Summary = t + " (weekly)"
		spec.Recurrence = []string{"RRULE:FREQ=WEEKLY;COUNT=" + strconv.Itoa(series.count)}
		spec.Attendees = append(spec.Attendees, att(owner, "accepted"))
		for _, p := range people {
			spec.Attendees = append(spec.Attendees, att(p, "accepted"))
		}
		m.Companies = ids
	case x < 67: // internal; half of them on colleagues' calendars too
		m.Kind = kindInternal
		spec.Summary = internalTitles[g.r.IntN(len(internalTitles))]
		n := 1 + g.r.IntN(2)
		colleagues := g.colleagues(owner, n)
		spec.Attendees = append(spec.Attendees, att(owner, "accepted"))
		for _, c := range colleagues {
			spec.Attendees = append(spec.Attendees, att(c, "accepted"))
		}
		if g.r.IntN(2) == 0 {
			m.Calendars = append(m.Calendars, colleagues...)
		}
	case x < 74: // a guest with a free-mail address only
		m.Kind = kindFreeMail
		spec.Summary = "Intro call"
		spec.Attendees = []calendartest.Attendee{att(owner, "accepted"), att(g.person(freeMail[g.r.IntN(len(freeMail))]), "accepted")}
	case x < 79: // an external company that is not in the CRM
		m.Kind = kindProspect
		g.prospects++
		word := nameB[g.r.IntN(len(nameB))]
		spec.Summary = "Intro: " + title(word) + " Ventures"
		spec.Attendees = []calendartest.Attendee{att(owner, "accepted"), att(g.person(word+strconv.Itoa(g.prospects)+"-ventures.example"), "accepted")}
	case x < 84: // the customer invited, the employee declined
		m.Kind = kindDeclined
		t, people := customer()
		spec.Summary = t
		spec.Organizer = &calendartest.Person{Email: people[0]}
		spec.Attendees = []calendartest.Attendee{att(owner, "declined")}
		for _, p := range people {
			spec.Attendees = append(spec.Attendees, att(p, "accepted"))
		}
	case x < 88:
		m.Kind = kindPrivate
		_, people := customer()
		spec.Summary = privateTitles[g.r.IntN(len(privateTitles))]
		spec.Visibility = "private"
		spec.Attendees = []calendartest.Attendee{att(owner, "accepted"), att(people[0], "accepted")}
	case x < 92:
		m.Kind = kindAllDay
		t, people := customer()
		spec.Summary = "Offsite: " + t
		spec.Start, spec.End, spec.TimeZone = time.Time{}, time.Time{}, ""
		spec.StartDate = start.Format("2006-01-02")
		spec.Attendees = []calendartest.Attendee{att(owner, "accepted"), att(people[0], "accepted")}
	case x < 96:
		m.Kind = kindOOO
		spec.Summary = "Out of office"
		spec.EventType = "outOfOffice"
		spec.Location = ""
	default:
		m.Kind = kindCancelled
		t, people := customer()
		spec.Summary = t
		spec.Status = "cancelled"
		spec.Attendees = []calendartest.Attendee{att(owner, "accepted")}
		for _, p := range people {
			spec.Attendees = append(spec.Attendees, att(p, "accepted"))
		}
	}
	ev, err := g.google.Insert(owner, spec)
	if err != nil {
		return fmt.Errorf("sample: insert %s on %s: %w", m.Kind, owner, err)
	}
	m.EventID, m.ICalUID, m.Title = ev.ID, ev.ICalUID, spec.Summary
	m.Start, m.End, m.Attendees = spec.Start, spec.End, spec.Attendees
	for _, c := range m.Calendars[1:] {
		if _, err := g.google.InsertCopy(c, owner, ev.ID); err != nil {
			return fmt.Errorf("sample: copy to %s: %w", c, err)
		}
	}
	if series.count > 0 {
		m.Instances, m.Logged = series.count, series.count
		if series.count >= 5 && g.r.IntN(100) < 60 {
			// Move one instance a day later and cancel another.
			k1 := 1 + g.r.IntN(series.count-2)
			k2 := (k1 + 1 + g.r.IntN(series.count-2)) % series.count
			orig := func(k int) time.Time {
				s := spec.Start.In(loc)
				return time.Date(s.Year(), s.Month(), s.Day()+7*k, s.Hour(), s.Minute(), 0, 0, loc)
			}
			o1 := orig(k1)
			if _, err := g.google.MoveInstance(owner, ev.ID, o1, o1.Add(24*time.Hour), o1.Add(24*time.Hour+spec.End.Sub(spec.Start))); err != nil {
				return fmt.Errorf("sample: move instance: %w", err)
			}
			if err := g.google.CancelInstance(owner, ev.ID, orig(k2)); err != nil {
				return fmt.Errorf("sample: cancel instance: %w", err)
			}
			m.Moved, m.Cancelled = 1, 1
			m.Instances--
			m.Logged--
		}
	}
	g.s.Events[m.Kind] += m.Instances * len(m.Calendars)
	g.s.Copies += m.Instances * (len(m.Calendars) - 1)
	g.s.Expected += m.Logged
	g.s.Meetings = append(g.s.Meetings, m)
	return nil
}

func (g *sampleGen) meetCode() string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 0, 12)
	for i := range 10 {
		if i == 3 || i == 7 {
			b = append(b, '-')
		}
		b = append(b, letters[g.r.IntN(len(letters))])
	}
	return string(b)
}

// describe is a one-paragraph account of the sample for people.
func (s *sample) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workspace %s (%s): %d calendars, %d event copies (%d of them colleagues' copies), %d CRM companies, %d contacts, %d owners\n",
		sampleWorkspace, sampleDomain, len(s.Employees), s.TotalEvents(), s.Copies, len(s.Companies), s.Contacts, s.Owners)
	var series, moved, cancelled int
	for _, m := range s.Meetings {
		if m.Kind == kindSeries {
			series++
			moved += m.Moved
			cancelled += m.Cancelled
		}
	}
	var parts []string
	for _, k := range sampleKinds {
		if n := s.Events[k]; n > 0 {
			p := fmt.Sprintf("%s %d", k, n)
			if k == kindSeries {
				p += fmt.Sprintf(" (%d series, %d moved and %d cancelled instances)", series, moved, cancelled)
			}
			parts = append(parts, p)
		}
	}
	b.WriteString(wrap(strings.Join(parts, ", "), 100, "  "))
	return b.String()
}

// wrap breaks s into lines of at most width characters, each indented.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
	return b.String()
}
