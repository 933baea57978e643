package google

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	gcal "google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/rapportsync/rapport/calendar"
)

// DefaultBaseURL is Google's Calendar v3 API root.
const DefaultBaseURL = "https://www.googleapis.com/calendar/v3/"

// Operation names, as they appear in calendar.Error.Op.
const (
	opList  = "events.list"
	opWatch = "events.watch"
	opStop  = "channels.stop"
	opPatch = "events.patch"
	opGet   = "events.get"
)

// Limits Google applies to private extended properties; it drops longer keys
// and truncates longer values silently, so they are refused here instead.
const (
	maxPropKey   = 44
	maxPropValue = 1024
)

// Config configures a Source. The zero value of every field means its
// default.
type Config struct {
	// BaseURL is the Calendar v3 API root (RAPPORT_GOOGLE_API_URL). Default
	// DefaultBaseURL. A missing trailing slash is added: without it the
	// client drops the last path segment.
	BaseURL string
	// HTTPClient sends the requests; its Transport is wrapped to add the
	// OAuth token. Default: a client with a 30-second timeout.
	HTTPClient *http.Client
	// PageSize is events.list maxResults. Default and maximum 2500.
	PageSize int
	// MaxRetries is how often one call is retried after a rate limit or a
	// transient failure before the classified error is returned. Default 3;
	// negative disables retries.
	MaxRetries int
	// BaseBackoff is the backoff ceiling of the first retry, doubled on each
	// further one; each wait is drawn uniformly from [0, ceiling] (full
	// jitter). Default 200ms.
	BaseBackoff time.Duration
	// MaxBackoff caps the backoff ceiling. Default 10s.
	MaxBackoff time.Duration
	// MaxWait is the longest wait the server asks for (Retry-After, quota)
	// that is slept inside a call; a longer one is returned at once as
	// RateLimited with that Wait, for the caller to schedule. Default 30s.
	MaxWait time.Duration
	// QuotaWait is the wait reported for 403 quotaExceeded and
	// dailyLimitExceeded, which come without Retry-After. Default 5m.
	QuotaWait time.Duration
	// Clock reads Retry-After dates. Default time.Now.
	Clock func() time.Time
	// Throttle, if set, is called before every request; it waits for the
	// client-side rate limit (Google allows 600 requests a minute per user)
	// or returns the error to fail the call with, e.g. a RateLimited
	// calendar.Error carrying a long wait.
	Throttle func(ctx context.Context) error
	// Logger receives retry diagnostics at debug level. Default discards.
	Logger *slog.Logger
	// OnRequest, if set, is told of every HTTP request by endpoint name
	// (events.list, events.patch, …) and status (0: no response): the
	// metrics hook.
	OnRequest func(endpoint string, status int)
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if !strings.HasSuffix(c.BaseURL, "/") {
		c.BaseURL += "/"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.PageSize == 0 {
		c.PageSize = 2500
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.QuotaWait == 0 {
		c.QuotaWait = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("google: base URL %q (RAPPORT_GOOGLE_API_URL) must be an absolute http(s) URL", c.BaseURL)
	}
	if c.PageSize < 1 || c.PageSize > 2500 {
		return fmt.Errorf("google: page size %d must be between 1 and 2500", c.PageSize)
	}
	if c.BaseBackoff < 0 || c.MaxBackoff < c.BaseBackoff || c.MaxWait < 0 || c.QuotaWait < 0 {
		return errors.New("google: backoff settings must be positive with MaxBackoff ≥ BaseBackoff")
	}
	return nil
}

// Source is one Google account's calendars. It is safe for concurrent use.
type Source struct {
	cfg Config
	svc *gcal.Service
}

var (
	_ calendar.Source  = (*Source)(nil)
	_ calendar.Watcher = (*Source)(nil)
	_ calendar.Linker  = (*Source)(nil)
)

// New returns a Source that authorises its requests with tokens from ts. ts
// is asked for a token on every request, so pass a caching source
// (oauth2.ReuseTokenSource, or the vault's).
func New(ctx context.Context, cfg Config, ts oauth2.TokenSource) (*Source, error) {
	if ts == nil {
		return nil, errors.New("google: token source required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base := cfg.HTTPClient
	transport := base.Transport
	if cfg.OnRequest != nil {
		transport = counting(transport, cfg.OnRequest)
	}
	client := &http.Client{
		Transport:     &oauth2.Transport{Source: ts, Base: transport},
		CheckRedirect: base.CheckRedirect,
		Jar:           base.Jar,
		Timeout:       base.Timeout,
	}
	svc, err := gcal.NewService(ctx, option.WithEndpoint(cfg.BaseURL), option.WithHTTPClient(client))
	if err != nil {
		return nil, fmt.Errorf("google: create calendar service: %w", err)
	}
	return &Source{cfg: cfg, svc: svc}, nil
}

// List returns one page of changes of a calendar: with req.Cursor the changes
// since it (deleted events included, as cancellations), without it a full
// listing of the events ending after req.TimeMin. Instances of recurring
// series come expanded (singleEvents). A CursorExpired error means the cursor
// must be dropped and a full listing started.
//
// showDeleted is left unset in both modes, as Google wants the parameters of
// an incremental listing to equal those of its full listing: a full listing
// thus holds live events only, while an incremental one always carries
// deletions.
func (s *Source) List(ctx context.Context, req calendar.ListRequest) (calendar.Page, error) {
	if req.CalendarID == "" {
		return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opList, Err: errors.New("calendar id required")}
	}
	if len(req.EventIDs) > 0 {
		return s.get(ctx, req.CalendarID, req.EventIDs)
	}
	var res *gcal.Events
	err := s.retry(ctx, opList, func(ctx context.Context) error {
		call := s.svc.Events.List(req.CalendarID).Context(ctx).
			SingleEvents(true).
			MaxResults(int64(s.cfg.PageSize))
		if req.Cursor != "" {
			call.SyncToken(req.Cursor)
		} else if !req.TimeMin.IsZero() {
			call.TimeMin(req.TimeMin.UTC().Format(time.RFC3339))
		}
		if req.PageToken != "" {
			call.PageToken(req.PageToken)
		}
		var err error
		res, err = call.Do()
		return err
	})
	if err != nil {
		return calendar.Page{}, err
	}

	page := calendar.Page{NextPageToken: res.NextPageToken}
	if res.NextPageToken == "" {
		// Only the last page carries the cursor.
		page.NextCursor = res.NextSyncToken
		if page.NextCursor == "" {
			return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opList,
				Err: errors.New("last page carries no nextSyncToken")}
		}
	}
	page.Events = make([]calendar.Event, 0, len(res.Items))
	for _, item := range res.Items {
		ev, err := normalize(item, res.TimeZone)
		if err != nil {
			return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opList, Err: err}
		}
		page.Events = append(page.Events, ev)
	}
	return page, nil
}

// get reads events by id (events.get each): a page of just them, no
// cursor. An event that no longer exists comes back as a minimal
// cancellation.
func (s *Source) get(ctx context.Context, calendarID string, ids []string) (calendar.Page, error) {
	var page calendar.Page
	for _, id := range ids {
		var item *gcal.Event
		err := s.retry(ctx, opGet, func(ctx context.Context) error {
			var err error
			item, err = s.svc.Events.Get(calendarID, id).Context(ctx).Do()
			return err
		})
		if calendar.ClassOf(err) == calendar.NotFound {
			page.Events = append(page.Events, calendar.Event{ID: id, Status: calendar.StatusCancelled, Source: providerName})
			continue
		}
		if err != nil {
			return calendar.Page{}, err
		}
		ev, err := normalize(item, "")
		if err != nil {
			return calendar.Page{}, &calendar.Error{Class: calendar.Permanent, Op: opGet, Err: err}
		}
		page.Events = append(page.Events, ev)
	}
	return page, nil
}

// Watch opens a push channel for a calendar's events that delivers to
// address (HTTPS for Google). The returned Channel holds the token in clear,
// once; store calendar.HashToken(ch.Token) only.
func (s *Source) Watch(ctx context.Context, req calendar.WatchRequest) (calendar.Channel, error) {
	calendarID, address := req.CalendarID, req.Address
	fail := func(class calendar.Class, err error) (calendar.Channel, error) {
		return calendar.Channel{}, &calendar.Error{Class: class, Op: opWatch, Err: err}
	}
	if calendarID == "" || address == "" {
		return fail(calendar.Permanent, errors.New("calendar id and address required"))
	}
	var idb [16]byte
	var tokb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return fail(calendar.Transient, err)
	}
	if _, err := rand.Read(tokb[:]); err != nil {
		return fail(calendar.Transient, err)
	}
	id := hex.EncodeToString(idb[:])
	token := base64.RawURLEncoding.EncodeToString(tokb[:])

	var res *gcal.Channel
	// A retry reuses id and token: if the first attempt did open the channel,
	// the retry fails instead of leaving a second, unknown channel behind.
	err := s.retry(ctx, opWatch, func(ctx context.Context) error {
		var err error
		res, err = s.svc.Events.Watch(calendarID, &gcal.Channel{
			Id:      id,
			Type:    "web_hook",
			Address: address,
			Token:   token,
		}).Context(ctx).Do()
		return err
	})
	if err != nil {
		return calendar.Channel{}, err
	}
	if res.ResourceId == "" {
		return fail(calendar.Permanent, errors.New("answer carries no resourceId"))
	}
	ch := calendar.Channel{ID: id, ResourceID: res.ResourceId, Token: token}
	if res.Expiration > 0 {
		ch.Expiration = time.UnixMilli(res.Expiration).UTC()
	}
	return ch, nil
}

// StopWatch stops a channel. A channel Google no longer knows is not an
// error.
func (s *Source) StopWatch(ctx context.Context, ch calendar.Channel) error {
	err := s.retry(ctx, opStop, func(ctx context.Context) error {
		return s.svc.Channels.Stop(&gcal.Channel{Id: ch.ID, ResourceId: ch.ResourceID}).Context(ctx).Do()
	})
	if calendar.ClassOf(err) == calendar.NotFound {
		return nil
	}
	return err
}

// PatchPrivate sets private extended properties of one copy of an event
// (an instance id patches that instance only). Google merges the keys, so
// the copy's other keys stay untouched; nothing else is sent.
func (s *Source) PatchPrivate(ctx context.Context, calendarID, eventID string, props map[string]string) error {
	if len(props) == 0 {
		return nil
	}
	for k, v := range props {
		if k == "" || len(k) > maxPropKey || len(v) > maxPropValue {
			return &calendar.Error{Class: calendar.Permanent, Op: opPatch,
				Err: fmt.Errorf("extended property %.50q: keys must be 1 to %d bytes and values at most %d bytes", k, maxPropKey, maxPropValue)}
		}
	}
	ev := &gcal.Event{ExtendedProperties: &gcal.EventExtendedProperties{Private: props}}
	return s.retry(ctx, opPatch, func(ctx context.Context) error {
		_, err := s.svc.Events.Patch(calendarID, eventID, ev).Context(ctx).Fields("etag").Do()
		return err
	})
}
