package calendly

import (
	"encoding/base64"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, wireResource[wireUser]{s.wireUserLocked(c.user)})
}

func (s *Server) handleUser(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[r.PathValue("uuid")]
	if u == nil || u.org != c.user.org {
		errNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, wireResource[wireUser]{s.wireUserLocked(u)})
}

// handleMemberships is GET /organization_memberships?user=…|organization=…
// (either or both). Anyone may read their own membership; listing an
// organization's members needs its membership.
func (s *Server) handleMemberships(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	userURI, orgURI := q.Get("user"), q.Get("organization")
	if userURI == "" && orgURI == "" {
		errInvalid("user or organization is required").write(w)
		return
	}
	s.mu.Lock()
	var items []wireMembership
	var ids []string
	for id := range s.users {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		u := s.users[id]
		if u.org != c.user.org {
			continue
		}
		if userURI != "" && s.userURI(u.uuid) != userURI || orgURI != "" && s.orgURI(u.org) != orgURI {
			continue
		}
		items = append(items, wireMembership{
			URI: s.membershipURI(u.uuid), Role: string(u.role), User: s.wireUserLocked(u),
			Organization: s.orgURI(u.org), CreatedAt: ts(u.created), UpdatedAt: ts(u.created),
		})
	}
	s.mu.Unlock()
	if orgURI != "" && len(items) == 0 && orgURI != s.orgURI(c.user.org) {
		errNoPermission.write(w)
		return
	}
	writePage(w, r, s.URL()+"organization_memberships", items)
}

func (s *Server) handleEventType(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	et := s.eventTypes[r.PathValue("uuid")]
	if et == nil {
		errNotFound.write(w)
		return
	}
	if et.org != c.user.org {
		errNoPermission.write(w)
		return
	}
	owner := s.users[et.owner]
	writeJSON(w, http.StatusOK, wireResource[wireEventType]{wireEventType{
		URI: s.eventTypeURI(et.uuid), Name: et.name, Active: true, Slug: strings.ToLower(strings.ReplaceAll(et.name, " ", "-")),
		SchedulingURL: "https://calendly.com/" + et.uuid, Duration: et.duration, Kind: et.kind,
		Type: "StandardEventType", Color: "#0069ff", CreatedAt: ts(et.created), UpdatedAt: ts(et.created),
		Profile: wireProfile{Type: "User", Name: owner.name, Owner: s.userURI(owner.uuid)}, CustomQuestions: []any{},
	}})
}

// canSeeLocked reports whether c may read ev: its hosts, and the owners
// and admins of its organization.
func (s *Server) canSeeLocked(c caller, ev *event) bool {
	if ev.org != c.user.org {
		return false
	}
	return c.user.role != RoleUser || slices.Contains(ev.hosts, c.user.uuid)
}

// handleEvents is GET /scheduled_events: organization (owners and admins)
// or user (that user, or an admin of its organization), min_start_time
// (inclusive) and max_start_time (exclusive) on the start, status, sort
// start_time:asc|desc, count ≤ 100, page_token.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	orgURI, userURI := q.Get("organization"), q.Get("user")
	if orgURI == "" && userURI == "" {
		errInvalid("organization or user is required").write(w)
		return
	}
	var minStart, maxStart time.Time
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"min_start_time", &minStart}, {"max_start_time", &maxStart}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errInvalid(p.name + " is not a valid date-time").write(w)
				return
			}
			*p.t = t
		}
	}
	status := q.Get("status")
	if status != "" && status != "active" && status != "canceled" {
		errInvalid("status must be active or canceled").write(w)
		return
	}
	desc := false
	switch q.Get("sort") {
	case "", "start_time:asc":
	case "start_time:desc":
		desc = true
	default:
		errInvalid("sort is not supported").write(w)
		return
	}

	s.mu.Lock()
	var userID string
	if orgURI != "" {
		if orgURI != s.orgURI(c.user.org) || c.user.role == RoleUser {
			s.mu.Unlock()
			errNoPermission.write(w)
			return
		}
	}
	if userURI != "" {
		userID = s.uuidOf(userURI, "users/")
		u := s.users[userID]
		if u == nil || u.org != c.user.org || (userID != c.user.uuid && c.user.role == RoleUser) {
			s.mu.Unlock()
			errNoPermission.write(w)
			return
		}
	}
	var evs []*event
	for _, ev := range s.events {
		switch {
		case ev.org != c.user.org,
			userID != "" && !slices.Contains(ev.hosts, userID),
			!minStart.IsZero() && ev.start.Before(minStart),
			!maxStart.IsZero() && !ev.start.Before(maxStart),
			status != "" && ev.status != status:
			continue
		}
		evs = append(evs, ev)
	}
	sort.Slice(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if !a.start.Equal(b.start) {
			return a.start.Before(b.start) != desc
		}
		return a.uuid < b.uuid
	})
	items := make([]wireEvent, 0, len(evs))
	for _, ev := range evs {
		items = append(items, s.wireEventLocked(ev, !s.listOmitsCE))
	}
	s.mu.Unlock()
	writePage(w, r, s.URL()+"scheduled_events", items)
}

func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events[r.PathValue("uuid")]
	if ev == nil || ev.org != c.user.org {
		errNotFound.write(w)
		return
	}
	if !s.canSeeLocked(c, ev) {
		errNoPermission.write(w)
		return
	}
	writeJSON(w, http.StatusOK, wireResource[wireEvent]{s.wireEventLocked(ev, true)})
}

// handleInvitees is GET /scheduled_events/{uuid}/invitees: every invitee
// (status filters), in booking order, paginated.
func (s *Server) handleInvitees(w http.ResponseWriter, r *http.Request, c caller) {
	status := r.URL.Query().Get("status")
	s.mu.Lock()
	ev := s.events[r.PathValue("uuid")]
	if ev == nil || ev.org != c.user.org {
		s.mu.Unlock()
		errNotFound.write(w)
		return
	}
	if !s.canSeeLocked(c, ev) {
		s.mu.Unlock()
		errNoPermission.write(w)
		return
	}
	items := []wireInvitee{}
	for _, id := range ev.invitees {
		if inv := s.invitees[id]; status == "" || inv.status == status {
			items = append(items, s.wireInviteeLocked(inv))
		}
	}
	s.mu.Unlock()
	writePage(w, r, s.eventURI(ev.uuid)+"/invitees", items)
}

func (s *Server) handleInvitee(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events[r.PathValue("uuid")]
	inv := s.invitees[r.PathValue("invitee")]
	if ev == nil || inv == nil || inv.event != ev.uuid || ev.org != c.user.org {
		errNotFound.write(w)
		return
	}
	if !s.canSeeLocked(c, ev) {
		errNoPermission.write(w)
		return
	}
	writeJSON(w, http.StatusOK, wireResource[wireInvitee]{s.wireInviteeLocked(inv)})
}

// writePage answers one page of items with Calendly's pagination object.
// Page tokens are opaque: the offset and a hash of the other query
// parameters, so a token used with another query is refused.
func writePage[T any](w http.ResponseWriter, r *http.Request, base string, items []T) {
	q := r.URL.Query()
	count := defaultPageSize
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			errInvalid("count must be between 1 and 100").write(w)
			return
		}
		count = n
	}
	key := queryKey(q)
	offset := 0
	if tok := q.Get("page_token"); tok != "" {
		var ok bool
		if offset, ok = decodePageToken(tok, key); !ok || offset > len(items) {
			errInvalid("page_token is invalid").write(w)
			return
		}
	}
	end := min(offset+count, len(items))
	page := wirePagination{Count: end - offset}
	link := func(off int) (*string, *string) {
		t := encodePageToken(off, key)
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("count", strconv.Itoa(count))
		nq.Set("page_token", t)
		u := base + "?" + nq.Encode()
		return &u, &t
	}
	if end < len(items) {
		page.NextPage, page.NextPageToken = link(end)
	}
	if offset > 0 {
		page.PreviousPage, page.PreviousPageToken = link(max(0, offset-count))
	}
	writeJSON(w, http.StatusOK, wireCollection[T]{Collection: items[offset:end], Pagination: page})
}

func queryKey(q url.Values) uint64 {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "page_token" && k != "count" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	h := fnv.New64a()
	for _, k := range keys {
		h.Write([]byte(k + "=" + strings.Join(q[k], ",") + "&"))
	}
	return h.Sum64()
}

func encodePageToken(offset int, key uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset) + ":" + strconv.FormatUint(key, 36)))
}

func decodePageToken(tok string, key uint64) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	off, k, ok := strings.Cut(string(b), ":")
	if !ok || k != strconv.FormatUint(key, 36) {
		return 0, false
	}
	n, err := strconv.Atoi(off)
	return n, err == nil && n >= 0
}

func cmpString(a, b string) int { return strings.Compare(a, b) }
