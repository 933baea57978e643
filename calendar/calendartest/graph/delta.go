package graph

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

const defaultPageSize = 10

// deltaToken is what a $deltatoken stands for: a calendar's view of a
// window as of a sequence number.
type deltaToken struct {
	mailbox    string
	calendar   string
	path       string
	start, end time.Time
	seq        int64
	gen        int
	issued     time.Time
}

// round is a delta round in progress: its entries, fixed when it began.
type round struct {
	tok     deltaToken // the state the round ends at (seq = snapshot)
	entries []entry
	pos     int
}

type entry struct {
	id      string
	removed bool
}

func inView(v version, start, end time.Time) bool {
	return v.live && v.end.After(start) && v.start.Before(end)
}

func (s *Server) handleDelta(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	q := r.URL.Query()
	for _, p := range []string{"$expand", "$select", "$filter", "$orderby", "$search", "$top", "$skip"} {
		if q.Has(p) {
			// Graph's documentation: calendarView delta supports none of them.
			writeError(w, http.StatusBadRequest, "ErrorInvalidUrlQuery",
				"The following parameters are not supported with change tracking over the 'CalendarView' resource: '"+p+"'.")
			return
		}
	}
	pr, err := parsePrefer(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ErrorTimeZoneNotSupported", "A valid TimeZone value must be specified.")
		return
	}
	size := pr.pageSize
	if size == 0 {
		size = defaultPageSize
	}
	calID := r.PathValue("calendarId")
	if calID == "" {
		calID = Primary
	}
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	c := mb.calendars[calID]
	if c == nil {
		writeError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	var rd *round
	switch {
	case q.Has("$skiptoken"):
		rd = s.rounds[q.Get("$skiptoken")]
		if rd == nil || rd.tok.mailbox != mb.address || rd.tok.calendar != calID {
			writeError(w, http.StatusBadRequest, "BadRequest", "Invalid skip token.")
			return
		}
		if rd.tok.gen != mb.gen {
			writeError(w, http.StatusGone, "syncStateNotFound", "The sync state generation is not found.")
			return
		}
	case q.Has("$deltatoken"):
		tok := s.deltas[q.Get("$deltatoken")]
		if tok == nil || tok.mailbox != mb.address || tok.calendar != calID {
			writeError(w, http.StatusBadRequest, "BadRequest", "Invalid delta token.")
			return
		}
		if tok.gen != mb.gen || s.deltaTTL > 0 && now.Sub(tok.issued) > s.deltaTTL {
			writeError(w, http.StatusGone, "syncStateNotFound", "The sync state generation is not found.")
			return
		}
		rd = &round{tok: *tok}
		rd.tok.seq, rd.tok.issued = s.seq, now
		for _, it := range c.items {
			if it.kind == "seriesMaster" {
				continue
			}
			cur, _ := it.at(s.seq)
			if cur.seq <= tok.seq {
				continue // unchanged since the token
			}
			was, existed := it.at(tok.seq)
			wasIn := existed && inView(was, tok.start, tok.end)
			switch {
			case inView(cur, tok.start, tok.end):
				rd.entries = append(rd.entries, entry{id: it.id})
			case wasIn:
				rd.entries = append(rd.entries, entry{id: it.id, removed: true})
			}
		}
		sortEntries(rd.entries, c)
	default:
		start, err1 := parseWindow(q.Get("startDateTime"))
		end, err2 := parseWindow(q.Get("endDateTime"))
		if err1 != nil || err2 != nil || !end.After(start) {
			writeError(w, http.StatusBadRequest, "ErrorInvalidParameter",
				"This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.")
			return
		}
		rd = &round{tok: deltaToken{mailbox: mb.address, calendar: calID, path: r.URL.Path, start: start, end: end, seq: s.seq, gen: mb.gen, issued: now}}
		for _, it := range c.items {
			if it.kind == "seriesMaster" {
				continue
			}
			if v, ok := it.at(s.seq); ok && inView(v, start, end) {
				rd.entries = append(rd.entries, entry{id: it.id})
			}
		}
		sortEntries(rd.entries, c)
	}

	page := rd.entries[rd.pos:min(len(rd.entries), rd.pos+size)]
	rd.pos += len(page)
	value := make([]map[string]any, 0, len(page))
	for _, e := range page {
		it := c.items[e.id]
		switch {
		case e.removed || it == nil || it.deleted:
			value = append(value, map[string]any{"@odata.type": "#microsoft.graph.event", "id": e.id, "@removed": map[string]any{"reason": "deleted"}})
		case it.kind == "occurrence":
			value = append(value, pr.stripped(it))
		default:
			value = append(value, pr.render(mb, it, nil))
		}
	}
	base := s.ts.URL + rd.tok.path
	out := map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)", "value": value}
	if rd.pos < len(rd.entries) {
		skip := randomToken(16)
		s.rounds[skip] = rd
		out["@odata.nextLink"] = base + "?$skiptoken=" + url.QueryEscape(skip)
	} else {
		dt := randomToken(16)
		tok := rd.tok
		s.deltas[dt] = &tok
		out["@odata.deltaLink"] = base + "?$deltatoken=" + url.QueryEscape(dt)
	}
	writeJSON(w, http.StatusOK, out)
}

func sortEntries(es []entry, c *calendarState) {
	sort.Slice(es, func(i, j int) bool {
		a, b := c.items[es[i].id], c.items[es[j].id]
		if !a.spec.Start.Equal(b.spec.Start) {
			return a.spec.Start.Before(b.spec.Start)
		}
		return a.id < b.id
	})
}

// parseWindow reads startDateTime/endDateTime: ISO 8601 with or without an
// offset (UTC then).
func parseWindow(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Parse("2006-01-02T15:04:05", v)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	pr, err := parsePrefer(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ErrorTimeZoneNotSupported", "A valid TimeZone value must be specified.")
		return
	}
	props, err := expandedProps(r.URL.Query().Get("$expand"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "Parsing OData Select and Expand failed: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, it, err := s.lookup(mb.address, r.PathValue("eventId"))
	if err != nil {
		writeError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	out := pr.render(mb, it, props)
	if sel := r.URL.Query().Get("$select"); sel != "" {
		keep := map[string]bool{"@odata.etag": true, "id": true, "singleValueExtendedProperties": true}
		for _, f := range strings.Split(sel, ",") {
			keep[strings.TrimSpace(f)] = true
		}
		for k := range out {
			if !keep[k] {
				delete(out, k)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// handlePatch supports what Rapport patches: single-value extended
// properties (merged by id), and subject. Patching an occurrence makes it
// an exception.
func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "Unreadable body.")
		return
	}
	var body struct {
		Subject *string `json:"subject"`
		Props   []struct {
			ID    string  `json:"id"`
			Value *string `json:"value"`
		} `json:"singleValueExtendedProperties"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "RequestBodyRead", "Invalid request body: "+err.Error())
		return
	}
	for _, p := range body.Props {
		if !strings.HasPrefix(p.ID, "String {") || !strings.Contains(p.ID, "} Name ") || p.Value == nil {
			writeError(w, http.StatusBadRequest, "ErrorInvalidProperty", "The extended property id or value is invalid.")
			return
		}
	}
	pr, _ := parsePrefer(r.Header)
	s.mu.Lock()
	_, c, it, err := s.lookup(mb.address, r.PathValue("eventId"))
	if err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	for _, p := range body.Props {
		if it.props == nil {
			it.props = map[string]string{}
		}
		for k := range it.props {
			if strings.EqualFold(k, p.ID) {
				delete(it.props, k)
			}
		}
		it.props[p.ID] = *p.Value
	}
	if body.Subject != nil {
		it.spec.Subject = *body.Subject
	}
	if it.kind == "occurrence" {
		it.kind = "exception"
	}
	s.touch(it, s.now())
	out := pr.render(mb, it, nil)
	s.mu.Unlock()
	s.changed(mb.address, c.id, it.id)
	writeJSON(w, http.StatusOK, out)
}
