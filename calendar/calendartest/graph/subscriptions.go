package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Subscription limits for events (PROVIDERS.md): at most 10,070 minutes,
// and an expiry under 45 minutes is raised to 45.
const (
	MaxSubscriptionTTL = 10070 * time.Minute
	minSubscriptionTTL = 45 * time.Minute
	maxClientState     = 128
)

type sub struct {
	id           string
	mailbox      string
	calendar     string
	resource     string
	changeType   string
	notifyURL    string
	lifecycleURL string
	clientState  string
	expiration   time.Time
}

// Subscription describes a live subscription, for tests.
type Subscription struct {
	ID                       string
	Mailbox                  string
	CalendarID               string
	Resource                 string
	NotificationURL          string
	LifecycleNotificationURL string
	Expiration               time.Time
}

// Delivery records one notification POST the server made.
type Delivery struct {
	SubscriptionID string
	// Kind is "change" or a lifecycle event.
	Kind   string
	Items  int
	Status int
	Err    error
}

type subscriptionBody struct {
	ID                       string `json:"id,omitempty"`
	ChangeType               string `json:"changeType,omitempty"`
	NotificationURL          string `json:"notificationUrl,omitempty"`
	LifecycleNotificationURL string `json:"lifecycleNotificationUrl,omitempty"`
	Resource                 string `json:"resource,omitempty"`
	ExpirationDateTime       string `json:"expirationDateTime,omitempty"`
	ClientState              string `json:"clientState,omitempty"`
}

func (s *Server) subscriptionAnswer(sb *sub) map[string]any {
	return map[string]any{
		"@odata.context":            "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
		"id":                        sb.id,
		"resource":                  sb.resource,
		"applicationId":             "24d3b144-21ae-4080-943f-7067b395b913",
		"changeType":                sb.changeType,
		"clientState":               sb.clientState,
		"notificationUrl":           sb.notifyURL,
		"lifecycleNotificationUrl":  sb.lifecycleURL,
		"expirationDateTime":        sb.expiration.UTC().Format("2006-01-02T15:04:05Z"),
		"creatorId":                 "8ee44408-0679-472c-bc2a-692812af3437",
		"latestSupportedTlsVersion": "v1_2",
		"notificationUrlAppId":      nil,
		"includeResourceData":       false,
	}
}

// resourceCalendar maps a subscription resource to a calendar id.
func resourceCalendar(res string) (string, bool) {
	res = strings.TrimPrefix(res, "/")
	switch {
	case strings.EqualFold(res, "me/events"):
		return Primary, true
	case strings.HasPrefix(strings.ToLower(res), "me/calendars/") && strings.HasSuffix(strings.ToLower(res), "/events"):
		id := res[len("me/calendars/") : len(res)-len("/events")]
		return id, id != "" && !strings.Contains(id, "/")
	}
	return "", false
}

func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	var req subscriptionBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "Could not process subscription creation payload.")
		return
	}
	now := s.now()
	exp, err := time.Parse(time.RFC3339Nano, req.ExpirationDateTime)
	calID, okRes := resourceCalendar(req.Resource)
	switch {
	case !okRes:
		writeError(w, http.StatusBadRequest, "ExtensionError", "Operation: Create; Exception: [Status Code: BadRequest; Reason: The resource is not supported.]")
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "InvalidRequest", "expirationDateTime is required.")
		return
	case exp.Sub(now) > MaxSubscriptionTTL:
		writeError(w, http.StatusBadRequest, "ExtensionError",
			"Operation: Create; Exception: [Status Code: BadRequest; Reason: Subscription expiration can only be 10070 minutes in the future.]")
		return
	case !exp.After(now):
		writeError(w, http.StatusBadRequest, "InvalidRequest", "Subscription expiration must be in the future.")
		return
	case len(req.ClientState) > maxClientState:
		writeError(w, http.StatusBadRequest, "InvalidRequest", "clientState must be at most 128 characters.")
		return
	case req.ChangeType == "":
		writeError(w, http.StatusBadRequest, "InvalidRequest", "changeType is required.")
		return
	}
	for _, ct := range strings.Split(req.ChangeType, ",") {
		if ct = strings.TrimSpace(ct); ct != "created" && ct != "updated" && ct != "deleted" {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "Invalid changeType "+ct+".")
			return
		}
	}
	for i, u := range []string{req.NotificationURL, req.LifecycleNotificationURL} {
		if u == "" && i == 1 {
			continue // the lifecycle address is optional
		}
		if pu, err := url.Parse(u); err != nil || pu.Host == "" || (pu.Scheme != "https" && pu.Scheme != "http") {
			// Graph wants https; the fake allows http for loopback receivers.
			writeError(w, http.StatusBadRequest, "InvalidRequest", "The notification URL must be an https URL.")
			return
		}
	}
	s.mu.Lock()
	if mb.calendars[calID] == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "ResourceNotFound", "The calendar was not found.")
		return
	}
	timeout := s.validation
	s.mu.Unlock()

	// Graph validates each address before it answers.
	for _, u := range []string{req.NotificationURL, req.LifecycleNotificationURL} {
		if u == "" {
			continue
		}
		if err := s.validate(r.Context(), u, timeout); err != nil {
			writeError(w, http.StatusBadRequest, "ValidationError",
				"Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.")
			return
		}
	}
	if exp.Sub(now) < minSubscriptionTTL {
		exp = now.Add(minSubscriptionTTL)
	}
	sb := &sub{
		id: newGUID(), mailbox: mb.address, calendar: calID, resource: req.Resource, changeType: req.ChangeType,
		notifyURL: req.NotificationURL, lifecycleURL: req.LifecycleNotificationURL, clientState: req.ClientState,
		expiration: exp.Truncate(time.Second),
	}
	s.mu.Lock()
	s.subs[sb.id] = sb
	ans := s.subscriptionAnswer(sb)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, ans)
}

// validate performs Graph's handshake: POST url?validationToken=… and
// expect the decoded token back, 200, text/plain, within timeout.
func (s *Server) validate(ctx context.Context, address string, timeout time.Duration) error {
	token := "Validation: Testing client application reachability for subscription Request-Id: " + newGUID()
	u, err := url.Parse(address)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("validationToken", token)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := s.hook.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("validation answered %d", resp.StatusCode)
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"):
		return errors.New("validation answer is not text/plain")
	case string(b) != token:
		return errors.New("validation answer is not the token")
	}
	return nil
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	var req subscriptionBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "Could not process subscription update payload.")
		return
	}
	now := s.now()
	exp, err := time.Parse(time.RFC3339Nano, req.ExpirationDateTime)
	if err != nil || !exp.After(now) || exp.Sub(now) > MaxSubscriptionTTL {
		writeError(w, http.StatusBadRequest, "ExtensionError",
			"Operation: Update; Exception: [Status Code: BadRequest; Reason: Subscription expiration can only be 10070 minutes in the future.]")
		return
	}
	s.mu.Lock()
	sb := s.subs[r.PathValue("id")]
	if sb == nil || sb.mailbox != mb.address || !now.Before(sb.expiration) {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "ResourceNotFound", "The object was not found.")
		return
	}
	if exp.Sub(now) < minSubscriptionTTL {
		exp = now.Add(minSubscriptionTTL)
	}
	sb.expiration = exp.Truncate(time.Second)
	ans := s.subscriptionAnswer(sb)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handleUnsubscribe(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	s.mu.Lock()
	sb := s.subs[r.PathValue("id")]
	found := sb != nil && sb.mailbox == mb.address
	if found {
		delete(s.subs, sb.id)
	}
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, "ResourceNotFound", "The object was not found.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Subscriptions returns the live subscriptions of a mailbox.
func (s *Server) Subscriptions(address string) []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subscription
	for _, sb := range s.subs {
		if strings.EqualFold(sb.mailbox, address) {
			out = append(out, Subscription{ID: sb.id, Mailbox: sb.mailbox, CalendarID: sb.calendar, Resource: sb.resource,
				NotificationURL: sb.notifyURL, LifecycleNotificationURL: sb.lifecycleURL, Expiration: sb.expiration})
		}
	}
	return out
}

// changed is called after every change of a calendar's events.
func (s *Server) changed(address, calendarID, eventID string) {
	s.mu.Lock()
	auto := s.autoNotify
	s.mu.Unlock()
	if !auto {
		return
	}
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		_ = s.Notify(address, calendarID, eventID)
	}()
}

// Notify sends a change notification to every live subscription of a
// calendar, one item per event id (one "updated" item when none is given),
// and waits for the answers. It returns the failed deliveries.
func (s *Server) Notify(address, calendarID string, eventIDs ...string) error {
	now := s.now()
	s.mu.Lock()
	var targets []sub
	var userID string
	if mb := s.mailboxes[strings.ToLower(address)]; mb != nil {
		userID = mb.userID
	}
	for id, sb := range s.subs {
		if !strings.EqualFold(sb.mailbox, address) || sb.calendar != calendarID {
			continue
		}
		if !now.Before(sb.expiration) {
			delete(s.subs, id)
			continue
		}
		targets = append(targets, *sb)
	}
	s.mu.Unlock()
	if len(eventIDs) == 0 {
		eventIDs = []string{""}
	}
	var errs []error
	for _, sb := range targets {
		items := make([]map[string]any, 0, len(eventIDs))
		for _, id := range eventIDs {
			items = append(items, map[string]any{
				"subscriptionId":                 sb.id,
				"subscriptionExpirationDateTime": sb.expiration.UTC().Format("2006-01-02T15:04:05.0000000Z07:00"),
				"changeType":                     "updated",
				"resource":                       "Users/" + userID + "/Events/" + id,
				"resourceData": map[string]any{
					"@odata.type": "#Microsoft.Graph.Event", "@odata.id": "Users/" + userID + "/Events/" + id, "id": id,
				},
				"clientState": sb.clientState,
				"tenantId":    "84bd8158-6d4d-4958-8b9f-9d6445542f95",
			})
		}
		if d := s.deliver(sb.id, sb.notifyURL, "change", items); d.Err != nil {
			errs = append(errs, fmt.Errorf("notify subscription %s: %w", sb.id, d.Err))
		}
	}
	return errors.Join(errs...)
}

// Lifecycle sends a lifecycle notification (reauthorizationRequired,
// subscriptionRemoved or missed) to a subscription's lifecycle address and
// waits for the answer. subscriptionRemoved also removes the subscription,
// as Graph does.
func (s *Server) Lifecycle(subscriptionID, event string) error {
	switch event {
	case "reauthorizationRequired", "subscriptionRemoved", "missed":
	default:
		return fmt.Errorf("graph: unknown lifecycle event %q", event)
	}
	s.mu.Lock()
	sb := s.subs[subscriptionID]
	var cp sub
	if sb != nil {
		cp = *sb
		if event == "subscriptionRemoved" {
			delete(s.subs, subscriptionID)
		}
	}
	s.mu.Unlock()
	if sb == nil {
		return fmt.Errorf("subscription %q: %w", subscriptionID, ErrUnknownEvent)
	}
	address := cp.lifecycleURL
	if address == "" {
		address = cp.notifyURL
	}
	item := map[string]any{
		"subscriptionId":                 cp.id,
		"subscriptionExpirationDateTime": cp.expiration.UTC().Format("2006-01-02T15:04:05.0000000Z07:00"),
		"tenantId":                       "84bd8158-6d4d-4958-8b9f-9d6445542f95",
		"clientState":                    cp.clientState,
		"lifecycleEvent":                 event,
	}
	return s.deliver(cp.id, address, event, []map[string]any{item}).Err
}

// deliver POSTs one notification body.
func (s *Server) deliver(subID, address, kind string, items []map[string]any) Delivery {
	d := Delivery{SubscriptionID: subID, Kind: kind, Items: len(items)}
	body, _ := json.Marshal(map[string]any{"value": items})
	ctx, cancel := context.WithTimeout(context.Background(), s.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, address, bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
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

// Deliveries returns every notification sent so far.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// Flush waits until every asynchronous notification has been answered.
func (s *Server) Flush() { s.pending.Wait() }
