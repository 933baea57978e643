package crmtest

import (
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rapportsync/rapport/crm"
)

// The demo's view of the portal: an index of companies with meetings and a
// timeline per company, as a HubSpot user would see them on the company
// record. Served without auth or rate limits.

var timelineTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Fake HubSpot — companies</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}</style></head>
<body><h1>Companies with meetings</h1>
{{if not .}}<p>No meetings logged yet.</p>{{else}}
<table><tr><th>Company</th><th>Domains</th><th>Meetings</th></tr>
{{range .}}<tr><td><a href="/timeline/companies/{{.ID}}">{{.Name}}</a></td><td>{{.Domains}}</td><td>{{.Count}}</td></tr>
{{end}}</table>{{end}}
</body></html>`))

var companyTmpl = template.Must(template.New("company").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Name}} — timeline</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left;vertical-align:top}</style></head>
<body><p><a href="/timeline/">All companies</a></p>
<h1>{{.Name}}</h1><p>{{.Domains}}</p>
{{if not .Meetings}}<p>No meetings.</p>{{else}}
<table><tr><th>Time</th><th>Title</th><th>Outcome</th><th>Contacts</th></tr>
{{range .Meetings}}<tr><td>{{.Time}}</td><td>{{.Title}}</td><td>{{.Outcome}}</td><td>{{range .Contacts}}{{.}}<br>{{end}}</td></tr>
{{end}}</table>{{end}}
</body></html>`))

type timelineCompany struct {
	ID, Name, Domains string
	Count             int
}

type timelineMeeting struct {
	Time, Title, Outcome string
	Contacts             []string
	at                   time.Time
	id                   string
}

func companyDomains(r *record) string {
	d := r.props["domain"]
	if a := r.props["hs_additional_domains"]; a != "" {
		d += "; " + a
	}
	return d
}

func (s *Server) timelineIndex(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := s.store
	counts := map[string]int{}
	for _, m := range st.meetings.recs {
		for id := range m.companies {
			counts[id]++
		}
	}
	var list []timelineCompany
	for id, n := range counts {
		c := st.companies.get(id)
		if c == nil {
			continue
		}
		list = append(list, timelineCompany{ID: id, Name: c.props["name"], Domains: companyDomains(c), Count: n})
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b timelineCompany) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return cmpID(a.ID, b.ID)
	})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = timelineTmpl.Execute(w, list)
}

func (s *Server) timelineCompany(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	st := s.store
	c := st.companies.get(id)
	if c == nil {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	page := struct {
		Name, Domains string
		Meetings      []timelineMeeting
	}{Name: c.props["name"], Domains: companyDomains(c)}
	for _, m := range st.meetings.recs {
		if !m.companies[id] {
			continue
		}
		at, _ := parseTime(m.props[crm.PropTimestamp])
		tm := timelineMeeting{Time: at.Format("Mon 2 Jan 2006 15:04 MST"), Title: m.props[crm.PropTitle],
			Outcome: m.props[crm.PropOutcome], at: at, id: m.id}
		for _, cid := range sortedIDs(m.contacts) {
			if ct := st.contacts.get(cid); ct != nil {
				name := strings.TrimSpace(ct.props["firstname"] + " " + ct.props["lastname"])
				tm.Contacts = append(tm.Contacts, strings.TrimSpace(name+" <"+ct.props["email"]+">"))
			}
		}
		page.Meetings = append(page.Meetings, tm)
	}
	s.mu.Unlock()
	slices.SortFunc(page.Meetings, func(a, b timelineMeeting) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmpID(a.id, b.id)
	})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = companyTmpl.Execute(w, page)
}
