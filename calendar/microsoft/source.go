package microsoft

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/calendar"
)

// PrimaryCalendar is the calendar id of the mailbox's default calendar.
const PrimaryCalendar = "primary"

// Defaults for a listing whose window is open at one end: Graph's
// calendarView needs both.
const (
	defaultBackfill  = 90 * 24 * time.Hour
	defaultLookahead = 365 * 24 * time.Hour
)

// cursorPrefix starts every cursor and page token this package writes.
const cursorPrefix = "graph1."

// position is what a cursor or page token carries: Graph's whole
// @odata.deltaLink (or @odata.nextLink) and the window it is bound to.
//
// Encoding: "graph1." followed by the unpadded base64url of the JSON
// {"s": window start, "e": window end (Unix seconds), "l": the link}.
type position struct {
	Start int64  `json:"s"`
	End   int64  `json:"e"`
	Link  string `json:"l"`
}

func (p position) encode() string {
	b, _ := json.Marshal(p)
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func decodePosition(s string) (position, bool) {
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok {
		return position{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return position{}, false
	}
	var p position
	if json.Unmarshal(b, &p) != nil || p.Link == "" || p.End <= p.Start {
		return position{}, false
	}
	return p, true
}

func (p position) window() (time.Time, time.Time) {
	return time.Unix(p.Start, 0).UTC(), time.Unix(p.End, 0).UTC()
}

// List returns one page of changes of a calendar ("primary" or a Graph
// calendar id) through a calendarView delta round bound to a window:
// without req.Cursor a full listing of [TimeMin, TimeMax+Slide), with it
// the changes since. A cursor whose window no longer covers the requested
// one answers CursorExpired, as do Graph's expired delta tokens; list in
// full again then.
//
// Events leave a delta view as "@removed" entries whether they were deleted
// or moved out of the window, so each removal costs one GET of the event:
// gone (or cancelled) is a cancellation, still there is the event with
// OutOfWindow set. Graph's delta answer carries little of an occurrence and
// cannot $expand extended properties, so a page also costs one GET per
// series master of its occurrences and, unless SkipPrivate, one GET per
// single event or exception on it to read Rapport's ids back:
//
//	calls per page = 1 + masters + removals + (singles and exceptions)
func (s *Source) List(ctx context.Context, req calendar.ListRequest) (calendar.Page, error) {
	fail := func(class calendar.Class, format string, args ...any) (calendar.Page, error) {
		return calendar.Page{}, &calendar.Error{Class: class, Op: opDelta, Err: fmt.Errorf(format, args...)}
	}
	if req.CalendarID == "" {
		return fail(calendar.Permanent, "calendar id required")
	}
	if len(req.EventIDs) > 0 {
		return fail(calendar.Permanent, "listing events by id is not supported: Graph notifications are followed by a delta listing")
	}
	var pos position
	switch {
	case req.PageToken != "":
		p, ok := decodePosition(req.PageToken)
		if !ok || !s.underBase(p.Link) {
			return fail(calendar.Permanent, "page token is not one this adapter wrote for %s", s.cfg.BaseURL)
		}
		pos = p
	case req.Cursor != "":
		p, ok := decodePosition(req.Cursor)
		if !ok || !s.underBase(p.Link) {
			// Not ours (another base URL, an older format): list in full.
			return fail(calendar.CursorExpired, "cursor is not one this adapter wrote for %s", s.cfg.BaseURL)
		}
		start, end := p.window()
		if !req.TimeMin.IsZero() && req.TimeMin.Before(start) {
			return fail(calendar.CursorExpired, "the sync window grew back: cursor starts %s, window %s", start.Format(time.RFC3339), req.TimeMin.UTC().Format(time.RFC3339))
		}
		if !req.TimeMin.IsZero() && req.TimeMin.Sub(start) > s.cfg.Slide {
			return fail(calendar.CursorExpired, "the sync window moved on: cursor starts %s, window %s", start.Format(time.RFC3339), req.TimeMin.UTC().Format(time.RFC3339))
		}
		if !req.TimeMax.IsZero() && req.TimeMax.After(end) {
			return fail(calendar.CursorExpired, "the sync window moved on: cursor ends %s, window %s", end.Format(time.RFC3339), req.TimeMax.UTC().Format(time.RFC3339))
		}
		pos = p
	default:
		start, end := req.TimeMin, req.TimeMax
		if start.IsZero() {
			start = s.cfg.Clock().Add(-defaultBackfill)
		}
		if end.IsZero() {
			end = start.Add(defaultLookahead)
		} else {
			end = end.Add(s.cfg.Slide)
		}
		start, end = start.UTC().Truncate(time.Second), end.UTC().Truncate(time.Second)
		if !end.After(start) {
			return fail(calendar.Permanent, "empty window [%s, %s)", start.Format(time.RFC3339), end.Format(time.RFC3339))
		}
		q := url.Values{}
		q.Set("startDateTime", start.Format(time.RFC3339))
		q.Set("endDateTime", end.Format(time.RFC3339))
		pos = position{Start: start.Unix(), End: end.Unix(), Link: s.endpoint(viewPath(req.CalendarID)+"/delta", q)}
	}

	var res deltaPage
	err := s.do(ctx, request{op: opDelta, method: http.MethodGet, url: pos.Link, idempotent: true,
		prefer: []string{"odata.maxpagesize=" + strconv.Itoa(s.cfg.PageSize)}}, &res)
	if err != nil {
		return calendar.Page{}, err
	}
	var page calendar.Page
	switch {
	case res.NextLink != "":
		if !s.underBase(res.NextLink) {
			return fail(calendar.Permanent, "@odata.nextLink points outside %s", s.cfg.BaseURL)
		}
		page.NextPageToken = position{Start: pos.Start, End: pos.End, Link: res.NextLink}.encode()
	case res.DeltaLink != "":
		if !s.underBase(res.DeltaLink) {
			return fail(calendar.Permanent, "@odata.deltaLink points outside %s", s.cfg.BaseURL)
		}
		page.NextCursor = position{Start: pos.Start, End: pos.End, Link: res.DeltaLink}.encode()
	default:
		return fail(calendar.Permanent, "delta page carries neither @odata.nextLink nor @odata.deltaLink")
	}
	start, end := pos.window()
	page.Events, err = s.resolve(ctx, res.Value, start, end)
	if err != nil {
		return calendar.Page{}, err
	}
	return page, nil
}

// viewPath is the calendarView of a calendar.
func viewPath(calendarID string) string {
	if calendarID == PrimaryCalendar {
		return "me/calendarView"
	}
	return "me/calendars/" + url.PathEscape(calendarID) + "/calendarView"
}

// resolve turns one delta page into events, fetching what the page lacks:
// series masters of occurrences, the fate of removed events and, unless
// SkipPrivate, extended properties. The fetches of a page run
// concurrently, bounded by the connection's gate.
func (s *Source) resolve(ctx context.Context, items []event, start, end time.Time) ([]calendar.Event, error) {
	var (
		mu       sync.Mutex
		masters  = map[string]*event{} // nil value: the master is gone
		removed  = map[string]*event{} // nil value: the event is gone
		props    = map[string][]extendedProperty{}
		needProp []string
	)
	wantMaster := map[string]bool{}
	for i := range items {
		it := &items[i]
		switch {
		case it.ID == "":
			return nil, &calendar.Error{Class: calendar.Permanent, Op: opDelta, Err: errors.New("delta entry without id")}
		case it.Removed != nil:
			removed[it.ID] = nil
		case it.Type == "occurrence" && it.SeriesMasterID != "":
			wantMaster[it.SeriesMasterID] = true
		case !s.cfg.SkipPrivate && it.Type != "occurrence":
			needProp = append(needProp, it.ID)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Concurrency)
	getMaster := func(id string) {
		g.Go(func() error {
			ev, err := s.getEvent(gctx, id, false)
			if err != nil && calendar.ClassOf(err) != calendar.NotFound {
				return err
			}
			mu.Lock()
			masters[id] = ev
			mu.Unlock()
			return nil
		})
	}
	for id := range wantMaster {
		getMaster(id)
	}
	removedIDs := make([]string, 0, len(removed))
	for id := range removed {
		removedIDs = append(removedIDs, id)
	}
	for _, id := range removedIDs {
		g.Go(func() error {
			ev, err := s.getEvent(gctx, id, !s.cfg.SkipPrivate)
			if err != nil && calendar.ClassOf(err) != calendar.NotFound {
				return err
			}
			mu.Lock()
			removed[id] = ev
			mu.Unlock()
			return nil
		})
	}
	for _, id := range needProp {
		g.Go(func() error {
			ev, err := s.getProps(gctx, id)
			if err != nil {
				if calendar.ClassOf(err) == calendar.NotFound {
					return nil // deleted since: the next delta says so
				}
				return err
			}
			mu.Lock()
			props[id] = ev.ExtendedProperties
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// A removed occurrence that still exists needs its master too.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Concurrency)
	more := map[string]bool{}
	for _, ev := range removed {
		if ev != nil && ev.Type == "occurrence" && ev.SeriesMasterID != "" {
			if _, ok := masters[ev.SeriesMasterID]; !ok {
				more[ev.SeriesMasterID] = true
			}
		}
	}
	for id := range more {
		getMaster(id)
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	out := make([]calendar.Event, 0, len(items))
	for i := range items {
		it := &items[i]
		if it.Removed != nil {
			ev, ok, err := s.removal(it.ID, removed[it.ID], masters, start, end)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, ev)
			}
			continue
		}
		var master *event
		if it.Type == "occurrence" {
			if master = masters[it.SeriesMasterID]; master == nil {
				// The series went between the delta page and the GET: the
				// next round carries the occurrence's removal.
				continue
			}
		}
		if p, ok := props[it.ID]; ok {
			it.ExtendedProperties = p
		}
		ev, err := normalize(it, master, s.account)
		if err != nil {
			return nil, &calendar.Error{Class: calendar.Permanent, Op: opDelta, Err: err}
		}
		out = append(out, ev)
	}
	return out, nil
}

// removal decides what an @removed entry is, from the event as a GET found
// it (nil: gone).
func (s *Source) removal(id string, cur *event, masters map[string]*event, start, end time.Time) (calendar.Event, bool, error) {
	gone := calendar.Event{ID: id, Status: calendar.StatusCancelled}
	if cur == nil {
		return gone, true, nil
	}
	var master *event
	if cur.Type == "occurrence" {
		if master = masters[cur.SeriesMasterID]; master == nil {
			return gone, true, nil
		}
	}
	ev, err := normalize(cur, master, s.account)
	if err != nil {
		return calendar.Event{}, false, &calendar.Error{Class: calendar.Permanent, Op: opGet, Err: err}
	}
	if ev.Status == calendar.StatusCancelled {
		return ev, true, nil
	}
	if ev.End.After(start) && ev.Start.Before(end) {
		// Back in the window already: an ordinary change.
		return ev, true, nil
	}
	ev.OutOfWindow = true
	return ev, true, nil
}

// getEvent reads one event (an occurrence, exception, single event or
// series master); withProps also reads Rapport's extended properties. A
// missing event is a NotFound error.
func (s *Source) getEvent(ctx context.Context, id string, withProps bool) (*event, error) {
	q := url.Values{}
	if withProps {
		q.Set("$expand", expandProps)
	}
	var ev event
	if err := s.do(ctx, request{op: opGet, method: http.MethodGet, url: s.endpoint("me/events/"+url.PathEscape(id), q), idempotent: true}, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// getProps reads only Rapport's extended properties of an event.
func (s *Source) getProps(ctx context.Context, id string) (*event, error) {
	q := url.Values{}
	q.Set("$select", "id")
	q.Set("$expand", expandProps)
	var ev event
	if err := s.do(ctx, request{op: opGet, method: http.MethodGet, url: s.endpoint("me/events/"+url.PathEscape(id), q), idempotent: true}, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// PatchPrivate writes Rapport's ids (calendar.PropMeetingID, PropKey) into
// one copy of an event as single-value extended properties; Graph keeps the
// event's other properties. Patching an occurrence makes it an exception,
// as any change of one occurrence does. Keys other than those two are
// refused: they have no property name in CONTRACT.md.
func (s *Source) PatchPrivate(ctx context.Context, calendarID, eventID string, props map[string]string) error {
	if len(props) == 0 {
		return nil
	}
	if eventID == "" {
		return &calendar.Error{Class: calendar.Permanent, Op: opPatch, Err: errors.New("event id required")}
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		if extProps[k] == "" {
			return &calendar.Error{Class: calendar.Permanent, Op: opPatch,
				Err: fmt.Errorf("private property %.50q: only %s and %s are stored on Microsoft 365 events", k, calendar.PropMeetingID, calendar.PropKey)}
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	list := make([]extendedProperty, 0, len(keys))
	for _, k := range keys {
		list = append(list, extendedProperty{ID: extProps[k], Value: props[k]})
	}
	body := map[string]any{"singleValueExtendedProperties": list}
	return s.do(ctx, request{op: opPatch, method: http.MethodPatch, url: s.endpoint("me/events/"+url.PathEscape(eventID), nil),
		body: body, idempotent: true}, nil)
}
