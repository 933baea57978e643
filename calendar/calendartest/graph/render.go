package graph

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// windowsZones are the Windows zones the fake writes events in: enough for
// tests, not CLDR's whole table (the adapter owns that).
var windowsZones = map[string]string{
	"UTC":                       "UTC",
	"W. Europe Standard Time":   "Europe/Berlin",
	"Romance Standard Time":     "Europe/Paris",
	"GMT Standard Time":         "Europe/London",
	"Eastern Standard Time":     "America/New_York",
	"Pacific Standard Time":     "America/Los_Angeles",
	"Tokyo Standard Time":       "Asia/Tokyo",
	"India Standard Time":       "Asia/Calcutta",
	"AUS Eastern Standard Time": "Australia/Sydney",
}

// windowsLocation loads a zone named the Windows way or the IANA way.
func windowsLocation(name string) (*time.Location, error) {
	if z, ok := windowsZones[name]; ok {
		name = z
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: time zone %q", ErrInvalidSpec, name)
	}
	return loc, nil
}

// prefs are a request's Prefer preferences.
type prefs struct {
	tz       string
	loc      *time.Location
	text     bool
	pageSize int
}

var preferItem = regexp.MustCompile(`([a-zA-Z.\-]+)\s*=\s*("[^"]*"|[^,\s]+)`)

func parsePrefer(h http.Header) (prefs, error) {
	p := prefs{tz: "UTC", loc: time.UTC}
	for _, v := range h.Values("Prefer") {
		for _, m := range preferItem.FindAllStringSubmatch(v, -1) {
			val := strings.Trim(m[2], `"`)
			switch strings.ToLower(m[1]) {
			case "outlook.timezone":
				loc, err := windowsLocation(val)
				if err != nil {
					return p, err
				}
				p.tz, p.loc = val, loc
			case "outlook.body-content-type":
				p.text = strings.EqualFold(val, "text")
			case "odata.maxpagesize":
				var n int
				if _, err := fmt.Sscanf(val, "%d", &n); err == nil && n > 0 {
					p.pageSize = n
				}
			}
		}
	}
	return p, nil
}

const graphTime = "2006-01-02T15:04:05.0000000"

func (p prefs) dateTime(t time.Time, allDay bool) map[string]any {
	if allDay {
		return map[string]any{"dateTime": t.UTC().Format("2006-01-02") + "T00:00:00.0000000", "timeZone": p.tz}
	}
	return map[string]any{"dateTime": t.In(p.loc).Format(graphTime), "timeZone": p.tz}
}

func etag(it *item) string { return `W/"` + it.changeKey + `"` }

// stripped renders an occurrence as calendarView delta sends it.
func (p prefs) stripped(it *item) map[string]any {
	return map[string]any{
		"@odata.type": "#microsoft.graph.event", "@odata.etag": etag(it), "id": it.id,
		"seriesMasterId": it.masterID, "type": it.kind,
		"start": p.dateTime(it.spec.Start, it.spec.AllDay), "end": p.dateTime(it.spec.End, it.spec.AllDay),
	}
}

// render renders an item as GET /me/events/{id} returns it. props, when
// not nil, are the extended property ids $expand asked for.
func (p prefs) render(mb *mailbox, it *item, props []string) map[string]any {
	sp := &it.spec
	org := Person{Address: mb.address}
	if sp.Organizer != nil {
		org = *sp.Organizer
	}
	body := sp.Body
	ctype := "text"
	if !p.text {
		ctype, body = "html", "<html><head></head><body><p>"+html.EscapeString(body)+"</p></body></html>"
	}
	atts := make([]map[string]any, 0, len(sp.Attendees))
	for _, a := range sp.Attendees {
		typ, resp := a.Type, a.Response
		if typ == "" {
			typ = "required"
		}
		if resp == "" {
			resp = "none"
		}
		atts = append(atts, map[string]any{
			"type":         typ,
			"status":       map[string]any{"response": resp, "time": "0001-01-01T00:00:00Z"},
			"emailAddress": map[string]any{"name": a.Name, "address": a.Address},
		})
	}
	isOrg := strings.EqualFold(org.Address, mb.address)
	own := sp.Response
	switch {
	case isOrg:
		own = "organizer"
	case own == "":
		own = "none"
	}
	sens, show := sp.Sensitivity, sp.ShowAs
	if sens == "" {
		sens = "normal"
	}
	if show == "" {
		show = "busy"
	}
	instance := time.Time{}
	if it.kind == "occurrence" || it.kind == "exception" {
		instance = it.orig
	}
	out := map[string]any{
		"@odata.etag":                etag(it),
		"id":                         it.id,
		"createdDateTime":            it.created.UTC().Format(time.RFC3339Nano),
		"lastModifiedDateTime":       it.modified.UTC().Format(time.RFC3339Nano),
		"changeKey":                  it.changeKey,
		"categories":                 []string{},
		"originalStartTimeZone":      sp.TimeZone,
		"originalEndTimeZone":        sp.TimeZone,
		"iCalUId":                    goidHex(withInstance(it.goid, instance)),
		"uid":                        goidHex(it.goid),
		"reminderMinutesBeforeStart": 15,
		"isReminderOn":               true,
		"hasAttachments":             false,
		"subject":                    sp.Subject,
		"bodyPreview":                sp.Body,
		"importance":                 "normal",
		"sensitivity":                sens,
		"isAllDay":                   sp.AllDay,
		"isCancelled":                it.cancelled,
		"isOrganizer":                isOrg,
		"responseRequested":          true,
		"seriesMasterId":             nil,
		"showAs":                     show,
		"type":                       it.kind,
		"webLink":                    "https://outlook.office365.com/owa/?itemid=" + it.id,
		"onlineMeetingUrl":           nil,
		"isOnlineMeeting":            sp.OnlineMeetingURL != "",
		"onlineMeetingProvider":      "unknown",
		"responseStatus":             map[string]any{"response": own, "time": "0001-01-01T00:00:00Z"},
		"body":                       map[string]any{"contentType": ctype, "content": body},
		"start":                      p.dateTime(sp.Start, sp.AllDay),
		"end":                        p.dateTime(sp.End, sp.AllDay),
		"location":                   map[string]any{"displayName": sp.Location, "locationType": "default"},
		"locations":                  []any{},
		"recurrence":                 nil,
		"attendees":                  atts,
		"organizer":                  map[string]any{"emailAddress": map[string]any{"name": org.Name, "address": org.Address}},
		"onlineMeeting":              nil,
	}
	if it.masterID != "" {
		out["seriesMasterId"] = it.masterID
		out["originalStart"] = it.orig.UTC().Format("2006-01-02T15:04:05Z")
	}
	if sp.OnlineMeetingURL != "" {
		out["onlineMeetingProvider"] = "teamsForBusiness"
		out["onlineMeeting"] = map[string]any{"joinUrl": sp.OnlineMeetingURL}
	}
	if it.kind == "seriesMaster" && sp.Recurrence != nil {
		out["recurrence"] = map[string]any{
			"pattern": map[string]any{"type": "daily", "interval": max(sp.Recurrence.Interval, 1)},
			"range": map[string]any{"type": "numbered", "numberOfOccurrences": sp.Recurrence.Count,
				"startDate": sp.Start.UTC().Format("2006-01-02"), "recurrenceTimeZone": sp.TimeZone},
		}
	}
	if props != nil {
		var list []map[string]any
		for _, id := range props {
			for k, v := range it.props {
				if strings.EqualFold(k, id) {
					list = append(list, map[string]any{"id": k, "value": v})
				}
			}
		}
		if len(list) > 0 {
			out["singleValueExtendedProperties"] = list
		}
	}
	return out
}

var expandFilter = regexp.MustCompile(`'((?:[^']|'')*)'`)

// expandedProps reads $expand=singleValueExtendedProperties($filter=id eq
// '…' or id eq '…'). It returns nil when nothing is expanded.
func expandedProps(expand string) ([]string, error) {
	if expand == "" {
		return nil, nil
	}
	if !strings.HasPrefix(expand, "singleValueExtendedProperties($filter=") || !strings.HasSuffix(expand, ")") {
		return nil, fmt.Errorf("unsupported $expand")
	}
	ids := []string{}
	for _, m := range expandFilter.FindAllStringSubmatch(expand, -1) {
		ids = append(ids, strings.ReplaceAll(m[1], "''", "'"))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("$expand filter names no property")
	}
	return ids, nil
}
