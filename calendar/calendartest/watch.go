package calendartest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// channelTTL is the lifetime of a channel that asks for none, and the
// longest one granted.
const channelTTL = 7 * 24 * time.Hour

type channel struct {
	id          string
	resourceID  string
	resourceURI string
	calendarID  string
	address     string
	token       string
	expiration  time.Time
	msg         int64 // last message number sent
}

// Delivery records one notification the server sent.
type Delivery struct {
	ChannelID     string
	State         string // sync or exists
	MessageNumber int64
	// Status is the receiver's HTTP status, zero when the request failed.
	Status int
	Err    error
}

// Channel describes an open push channel, for tests.
type Channel struct {
	ID         string
	ResourceID string
	CalendarID string
	Address    string
	Expiration time.Time
}

func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	calID := r.PathValue("calendarId")
	c, err := s.calendar(calID)
	if err != nil {
		errNotFound.write(w)
		return
	}
	var req channelResource
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError{code: 400, domain: "global", reason: "parseError", message: "Parse Error"}.write(w)
		return
	}
	switch {
	case req.ID == "" || len(req.ID) > 64:
		errInvalid("id", "Channel id must be 1 to 64 characters.").write(w)
		return
	case req.Type != "web_hook" && req.Type != "webhook":
		errInvalid("type", "Unsupported channel type: "+req.Type).write(w)
		return
	case len(req.Token) > 256:
		errInvalid("token", "Channel token must be at most 256 characters.").write(w)
		return
	}
	if u, err := url.Parse(req.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Google requires https; the fake allows http for loopback receivers.
		apiError{code: 400, domain: "global", reason: "push.webhookUrlNotHttps", message: "WebHook callback must be HTTPS: " + req.Address}.write(w)
		return
	}

	now := s.now()
	exp := now.Add(channelTTL)
	if req.Expiration > 0 {
		if t := time.UnixMilli(int64(req.Expiration)); t.After(now) && t.Before(exp) {
			exp = t
		}
	}
	ch := &channel{
		id:          req.ID,
		resourceID:  c.resourceID,
		resourceURI: s.URL() + "calendars/" + url.PathEscape(calID) + "/events?alt=json",
		calendarID:  calID,
		address:     req.Address,
		token:       req.Token,
		expiration:  exp.Truncate(time.Millisecond),
	}
	s.mu.Lock()
	if _, dup := s.channels[ch.id]; dup {
		s.mu.Unlock()
		errBadRequest("Channel id " + ch.id + " not unique").write(w)
		return
	}
	s.channels[ch.id] = ch
	ch.msg = 1
	s.mu.Unlock()

	writeJSON(w, http.StatusOK, channelResource{
		Kind:        "api#channel",
		ID:          ch.id,
		ResourceID:  ch.resourceID,
		ResourceURI: ch.resourceURI,
		Token:       ch.token,
		Expiration:  flexInt(ch.expiration.UnixMilli()),
	})
	// Google sends the sync message right away; it may arrive before the
	// watch answer does.
	snap := *ch
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		s.deliver(&snap, "sync", 1)
	}()
}

func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	var req channelResource
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError{code: 400, domain: "global", reason: "parseError", message: "Parse Error"}.write(w)
		return
	}
	s.mu.Lock()
	ch := s.channels[req.ID]
	found := ch != nil && ch.resourceID == req.ResourceID
	if found {
		delete(s.channels, req.ID)
	}
	s.mu.Unlock()
	if !found {
		apiError{code: 404, domain: "global", reason: "notFound",
			message: fmt.Sprintf("Channel '%s' not found for project 'calendartest'", req.ID)}.write(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Channels returns the open channels of a calendar.
func (s *Server) Channels(calendarID string) []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Channel
	for _, ch := range s.channels {
		if ch.calendarID == calendarID {
			out = append(out, Channel{ID: ch.id, ResourceID: ch.resourceID, CalendarID: ch.calendarID,
				Address: ch.address, Expiration: ch.expiration})
		}
	}
	return out
}

// Notify sends an "exists" notification, with Google's headers, to every
// open channel of a calendar and waits for the answers. It returns the
// failed deliveries (transport errors and answers other than 2xx).
func (s *Server) Notify(calendarID string) error {
	var errs []error
	for _, d := range s.notify(calendarID) {
		if d.Err != nil {
			errs = append(errs, fmt.Errorf("notify channel %s: %w", d.ChannelID, d.Err))
		}
	}
	return errors.Join(errs...)
}

// Flush waits until every asynchronous notification (sync messages and
// SetAutoNotify deliveries) has been answered.
func (s *Server) Flush() { s.pending.Wait() }

// Deliveries returns every notification sent so far, in the order they were
// answered.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// changed is called after every change of a calendar.
func (s *Server) changed(calendarID string) {
	s.mu.Lock()
	auto := s.autoNotify
	s.mu.Unlock()
	if !auto {
		return
	}
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		s.notify(calendarID)
	}()
}

func (s *Server) notify(calendarID string) []Delivery {
	now := s.now()
	type send struct {
		ch  channel
		msg int64
	}
	var sends []send
	s.mu.Lock()
	for id, ch := range s.channels {
		if ch.calendarID != calendarID {
			continue
		}
		if !now.Before(ch.expiration) {
			delete(s.channels, id)
			continue
		}
		ch.msg++
		sends = append(sends, send{*ch, ch.msg})
	}
	s.mu.Unlock()
	out := make([]Delivery, 0, len(sends))
	for _, sd := range sends {
		out = append(out, s.deliver(&sd.ch, "exists", sd.msg))
	}
	return out
}

// deliver POSTs one notification the way Google does: no body, X-Goog-*
// headers.
func (s *Server) deliver(ch *channel, state string, msg int64) Delivery {
	d := Delivery{ChannelID: ch.id, State: state, MessageNumber: msg}
	ctx, cancel := context.WithTimeout(context.Background(), s.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.address, http.NoBody)
	if err == nil {
		h := req.Header
		h.Set("X-Goog-Channel-ID", ch.id)
		if ch.token != "" {
			h.Set("X-Goog-Channel-Token", ch.token)
		}
		h.Set("X-Goog-Channel-Expiration", ch.expiration.UTC().Format(http.TimeFormat))
		h.Set("X-Goog-Resource-ID", ch.resourceID)
		h.Set("X-Goog-Resource-URI", ch.resourceURI)
		h.Set("X-Goog-Resource-State", state)
		h.Set("X-Goog-Message-Number", strconv.FormatInt(msg, 10))
		h.Set("User-Agent", "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)")
		var resp *http.Response
		if resp, err = s.hook.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			d.Status = resp.StatusCode
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("receiver answered %s", resp.Status)
			}
		}
	}
	d.Err = err
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return d
}
