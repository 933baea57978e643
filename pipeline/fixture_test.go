package pipeline_test

import (
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
)

const (
	rep = "rep@northwind.test"
	ae  = "ae@northwind.test"
	cs  = "cs@northwind.test"
)

// fixture is a realistic calendar set: three employees, customer meetings
// with three CRM companies (one registered on a subdomain, one with an
// additional co.uk domain), internal and free-mail meetings, a recurring
// series, private, all-day, declined and out-of-office events, and a
// meeting on three colleagues' calendars.
type fixture struct {
	acme, globex, initech, gmailCo string
	cfo, vp                        string // contact ids
	repOwner                       string
	renewal                        string // event id on rep's calendar
	series                         string
	qbr                            string // on ae's calendar, copied to rep and cs
	base                           time.Time
	logged                         int // meetings the default rules log
}

func att(email string) calendartest.Attendee {
	return calendartest.Attendee{Email: email, ResponseStatus: "accepted"}
}

func seed(h *harness) fixture {
	h.t.Helper()
	var f fixture
	f.acme = h.hub.AddCompany(crm.Company{Name: "Acme", Domains: []string{"acme.example", "acme.co.uk; https://www.acme-group.example/about"}})
	f.globex = h.hub.AddCompany(crm.Company{Name: "Globex", Domains: []string{"globex.example"}})
	f.initech = h.hub.AddCompany(crm.Company{Name: "Initech", Domains: []string{"sales.initech.example"}})
	f.gmailCo = h.hub.AddCompany(crm.Company{Name: "Gmail (bad import)", Domains: []string{"gmail.com"}})
	f.cfo = h.hub.AddContact("cfo@acme.example", "Ada CFO", f.acme)
	f.vp = h.hub.AddContact("vp@globex.example", "Vic VP", f.globex)
	f.repOwner = h.hub.AddOwner(rep)

	for _, c := range []string{rep, ae, cs} {
		h.addCalendar(c)
	}
	// Meetings a week ago and in the coming days, on the hour.
	f.base = time.Now().UTC().Truncate(time.Hour).Add(-7 * 24 * time.Hour)
	at := func(days, hours int) (time.Time, time.Time) {
		s := f.base.Add(time.Duration(days)*24*time.Hour + time.Duration(hours)*time.Hour)
		return s, s.Add(30 * time.Minute)
	}
	insert := func(cal string, spec calendartest.EventSpec) string {
		h.t.Helper()
		ev, err := h.google.Insert(cal, spec)
		if err != nil {
			h.t.Fatalf("insert %q: %v", spec.Summary, err)
		}
		return ev.ID
	}
	s, e := at(8, 1)
	f.renewal = insert(rep, calendartest.EventSpec{Summary: "Acme renewal", Description: "pricing", Location: "Room 1", Start: s, End: e,
		Attendees: []calendartest.Attendee{att(rep), att("CFO@Acme.Example")}, HangoutLink: "https://meet.google.com/abc-defg-hij"})
	s, e = at(1, 2)
	insert(rep, calendartest.EventSpec{Summary: "Internal standup", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att(ae)}})
	s, e = at(2, 3)
	insert(rep, calendartest.EventSpec{Summary: "Coffee", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att("pal@gmail.com")}})
	s, e = at(3, 4)
	f.series = insert(rep, calendartest.EventSpec{Summary: "Globex weekly", Start: s, End: e, TimeZone: "Europe/Berlin",
		Recurrence: []string{"RRULE:FREQ=WEEKLY;COUNT=3"}, Attendees: []calendartest.Attendee{att(rep), att("vp@globex.example")}})
	s, e = at(4, 1)
	insert(rep, calendartest.EventSpec{Summary: "Private Acme", Visibility: "private", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}})
	insert(rep, calendartest.EventSpec{Summary: "Acme offsite", StartDate: f.base.Add(5 * 24 * time.Hour).Format("2006-01-02"), Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}})
	s, e = at(6, 1)
	insert(rep, calendartest.EventSpec{Summary: "Declined Acme", Start: s, End: e, Attendees: []calendartest.Attendee{{Email: rep, ResponseStatus: "declined"}, att("cfo@acme.example")}})
	s, e = at(6, 5)
	insert(rep, calendartest.EventSpec{Summary: "Out of office", EventType: "outOfOffice", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att("cfo@acme.example")}})
	s, e = at(7, 2)
	insert(rep, calendartest.EventSpec{Summary: "Initech demo", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att("buyer@eu.sales.initech.example")}})
	s, e = at(7, 4)
	insert(rep, calendartest.EventSpec{Summary: "Acme UK", Start: s, End: e, Attendees: []calendartest.Attendee{att(rep), att("fd@mail.acme.co.uk")}})
	s, e = at(9, 1)
	f.qbr = insert(ae, calendartest.EventSpec{Summary: "Joint Acme QBR", Start: s, End: e,
		Attendees: []calendartest.Attendee{att(ae), att(rep), att(cs), att("cfo@acme.example")}})
	for _, c := range []string{rep, cs} {
		if _, err := h.google.InsertCopy(c, ae, f.qbr); err != nil {
			h.t.Fatal(err)
		}
	}
	f.logged = 1 + 3 + 1 + 1 + 1 // renewal, weekly ×3, Initech, Acme UK, QBR
	return f
}

// connectAll connects HubSpot and the three calendars, then starts the
// worker and waits for the initial sync to settle.
func (h *harness) connectAll() {
	h.t.Helper()
	h.startWorker()
	h.connectHubSpot()
	for _, c := range []string{rep, ae, cs} {
		h.connectGoogle(c, "tok-"+c)
	}
	h.settle()
}
