package calendartest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Parameters Google refuses together with syncToken.
var syncTokenForbidden = []string{
	"iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty",
	"timeMin", "timeMax", "updatedMin",
}

const (
	defaultMaxResults = 250
	maxMaxResults     = 2500
)

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	c, err := s.calendar(r.PathValue("calendarId"))
	if err != nil {
		errNotFound.write(w)
		return
	}
	q := r.URL.Query()
	single, err := boolParam(q.Get("singleEvents"))
	if err != nil {
		errInvalid("singleEvents", "Invalid boolean value for singleEvents.").write(w)
		return
	}
	showDeleted, err := boolParam(q.Get("showDeleted"))
	if err != nil {
		errInvalid("showDeleted", "Invalid boolean value for showDeleted.").write(w)
		return
	}
	max := defaultMaxResults
	if v := q.Get("maxResults"); v != "" {
		if max, err = strconv.Atoi(v); err != nil || max < 1 {
			errInvalid("maxResults", "Invalid value for maxResults.").write(w)
			return
		}
		max = min(max, maxMaxResults)
	}
	syncToken, pageToken := q.Get("syncToken"), q.Get("pageToken")
	if syncToken != "" {
		for _, p := range syncTokenForbidden {
			if q.Has(p) {
				errSyncTokenRestrictions(p).write(w)
				return
			}
		}
	}
	var timeMin, timeMax int64
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"timeMin", &timeMin}, {"timeMax", &timeMax}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				errInvalid(p.name, "Bad Request").write(w)
				return
			}
			*p.dst = t.UnixNano()
		}
	}
	if timeMin != 0 && timeMax != 0 && timeMax <= timeMin {
		apiError{code: 400, domain: "calendar", reason: "timeRangeEmpty", message: "The specified time range is empty.",
			locationType: "parameter", location: "timeMax"}.write(w)
		return
	}

	s.mu.Lock()
	emptyPages, ttl := s.emptyPages, s.tokenTTL
	s.mu.Unlock()
	now := s.now()

	c.mu.Lock()
	var st listState
	switch {
	case pageToken != "":
		var ok bool
		st, ok = s.decodeToken(pageToken)
		if !ok || st.Cal != c.id || st.Issued != 0 || st.Single != single {
			c.mu.Unlock()
			errInvalid("pageToken", "Invalid page token value.").write(w)
			return
		}
		if st.Incremental && st.Gen != c.gen {
			c.mu.Unlock()
			errFullSyncRequired.write(w)
			return
		}
	case syncToken != "":
		tok, ok := s.decodeToken(syncToken)
		expired := ttl > 0 && now.Sub(time.UnixMilli(tok.Issued)) > ttl
		if !ok || tok.Cal != c.id || tok.Issued == 0 || tok.Gen != c.gen || expired {
			c.mu.Unlock()
			errFullSyncRequired.write(w)
			return
		}
		if tok.Single != single {
			c.mu.Unlock()
			errInvalid("singleEvents", "singleEvents must equal the value of the initial full sync.").write(w)
			return
		}
		st = listState{Cal: c.id, Incremental: true, Gen: c.gen, After: tok.After, Snap: c.seq, Single: single}
	default:
		st = listState{Cal: c.id, Snap: c.seq, Single: single, ShowDeleted: showDeleted, TimeMin: timeMin, TimeMax: timeMax}
	}
	bodies, next, more := c.page(st, max)
	if emptyPages > 0 && len(bodies) > 0 && st.Empty < emptyPages {
		bodies, next, more = nil, st, true
		next.Empty = st.Empty + 1
	} else {
		next.Empty = 0
	}
	var tokenField, token string
	if more {
		tokenField, token = "nextPageToken", s.encodeToken(next)
	} else {
		tokenField = "nextSyncToken"
		token = s.encodeToken(listState{Cal: c.id, Gen: c.gen, After: st.Snap, Single: st.Single, Issued: now.UnixMilli()})
	}
	tz := c.tz
	c.mu.Unlock()

	// Item bodies are immutable once stored; write them without the lock.
	var b bytes.Buffer
	b.Grow(256 + len(token) + len(bodies)*1024)
	b.WriteString(`{"kind":"calendar#events","etag":"\"`)
	b.WriteString(strconv.FormatInt(now.UnixMicro(), 10))
	b.WriteString(`\"","summary":`)
	writeString(&b, c.id)
	b.WriteString(`,"updated":"`)
	b.WriteString(now.UTC().Format(updatedFormat))
	b.WriteString(`","timeZone":`)
	writeString(&b, tz)
	b.WriteString(`,"accessRole":"owner","defaultReminders":[],"`)
	b.WriteString(tokenField)
	b.WriteString(`":`)
	writeString(&b, token)
	b.WriteString(`,"items":[`)
	for i, body := range bodies {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(body)
	}
	b.WriteString("]}")
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b.Bytes())
}

func writeString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s)
	b.Write(q)
}

func boolParam(v string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, errors.New("bad boolean")
}

// encodeToken signs st into an opaque token. Tokens from another server, or
// tampered with, fail decodeToken.
func (s *Server) encodeToken(st listState) string {
	payload, _ := json.Marshal(st)
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(payload)[:len(payload)+16])
}

func (s *Server) decodeToken(tok string) (listState, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) <= 16 {
		return listState{}, false
	}
	payload, sum := raw[:len(raw)-16], raw[len(raw)-16:]
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	if !hmac.Equal(mac.Sum(nil)[:16], sum) {
		return listState{}, false
	}
	var st listState
	if err := json.Unmarshal(payload, &st); err != nil {
		return listState{}, false
	}
	return st, true
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	c, err := s.calendar(r.PathValue("calendarId"))
	if err != nil {
		errNotFound.write(w)
		return
	}
	c.mu.Lock()
	it := c.items[r.PathValue("eventId")]
	var body []byte
	if it != nil {
		body = it.body
	}
	c.mu.Unlock()
	if body == nil {
		errNotFound.write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(body)
}

// Limits Google applies to extended properties, silently.
const (
	maxPropKey   = 44
	maxPropValue = 1024
)

// handlePatch supports what Rapport and scripted tests patch: extended
// properties (merged key by key; a null value deletes a key), summary,
// description, location and visibility.
func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request) {
	calID, eventID := r.PathValue("calendarId"), r.PathValue("eventId")
	c, err := s.calendar(calID)
	if err != nil {
		errNotFound.write(w)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		errBadRequest("Unreadable body.").write(w)
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		apiError{code: 400, domain: "global", reason: "parseError", message: "Parse Error"}.write(w)
		return
	}
	var (
		props struct {
			Private map[string]*string `json:"private"`
			Shared  map[string]*string `json:"shared"`
		}
		strs = map[string]*string{}
	)
	for k, v := range fields {
		switch k {
		case "extendedProperties":
			if err := json.Unmarshal(v, &props); err != nil {
				errInvalid("extendedProperties", "Invalid extendedProperties.").write(w)
				return
			}
		case "summary", "description", "location", "visibility":
			var sv string
			if err := json.Unmarshal(v, &sv); err != nil {
				errInvalid(k, "Invalid value for "+k+".").write(w)
				return
			}
			strs[k] = &sv
		default:
			errBadRequest("calendartest: patching " + k + " is not supported").write(w)
			return
		}
	}

	c.mu.Lock()
	if it := c.items[eventID]; it != nil && it.minimal {
		c.mu.Unlock()
		errDeleted.write(w)
		return
	}
	_, err = c.update(eventID, s.now(), func(e *EventSpec, _ *override) error {
		e.Private = mergeProps(e.Private, props.Private)
		e.Shared = mergeProps(e.Shared, props.Shared)
		for k, v := range strs {
			switch k {
			case "summary":
				e.Summary = *v
			case "description":
				e.Description = *v
			case "location":
				e.Location = *v
			case "visibility":
				e.Visibility = *v
			}
		}
		return nil
	})
	var body []byte
	if err == nil {
		body = c.items[eventID].body
	}
	c.mu.Unlock()
	switch {
	case errors.Is(err, ErrUnknownEvent):
		errNotFound.write(w)
		return
	case err != nil:
		errInvalid("event", err.Error()).write(w)
		return
	}
	s.changed(calID)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(body)
}

func mergeProps(dst map[string]string, patch map[string]*string) map[string]string {
	for k, v := range patch {
		if len(k) > maxPropKey {
			continue
		}
		if v == nil {
			delete(dst, k)
			continue
		}
		if dst == nil {
			dst = make(map[string]string)
		}
		val := *v
		if len(val) > maxPropValue {
			val = val[:maxPropValue]
		}
		dst[k] = val
	}
	if len(dst) == 0 {
		return nil
	}
	return dst
}
