package microsoft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/internal/provider"
)

// Endpoint names, as OnRequest and calendar.Error.Op see them.
const (
	opDelta        = "calendarView.delta"
	opGet          = "events.get"
	opCalendar     = "calendars.get"
	opPatch        = "events.patch"
	opSubscribe    = "subscriptions.create"
	opRenew        = "subscriptions.renew"
	opUnsubscribe  = "subscriptions.delete"
	maxAnswerBytes = 16 << 20
)

// Source is one Microsoft 365 mailbox's calendars. It is safe for
// concurrent use.
type Source struct {
	cfg     Config
	base    *url.URL
	connID  string
	account string
	tokens  oauth2.TokenSource
	limiter provider.Limiter
	gate    chan struct{}
}

var (
	_ calendar.Source  = (*Source)(nil)
	_ calendar.Watcher = (*Source)(nil)
	_ calendar.Renewer = (*Source)(nil)
	_ calendar.Linker  = (*Source)(nil)
)

func newSource(cfg Config, c calendar.Conn, gate chan struct{}) (*Source, error) {
	if c.Tokens == nil {
		return nil, errors.New("microsoft: token source required")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, base: base, connID: c.ID, account: c.Account, tokens: c.Tokens, limiter: c.Limiter, gate: gate}, nil
}

// request is one Graph call.
type request struct {
	op     string
	method string
	// url is absolute: built from the base, or a nextLink/deltaLink that
	// underBase accepted.
	url  string
	body any
	// prefer adds Prefer preferences beyond the time zone and body type.
	prefer []string
	// idempotent calls are retried after transient failures too; others
	// only after a 429, which Graph answers before doing anything.
	idempotent bool
}

// endpoint returns the absolute URL of a path under the base.
func (s *Source) endpoint(path string, q url.Values) string {
	u := s.base.JoinPath(path)
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// underBase reports whether link is a URL under the configured base, the
// only kind a stored cursor or page token may make us call.
func (s *Source) underBase(link string) bool {
	u, err := url.Parse(link)
	if err != nil || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, s.base.Scheme) && strings.EqualFold(u.Host, s.base.Host) &&
		strings.HasPrefix(u.Path, s.base.Path)
}

// do sends r, retrying rate limits and transient failures with backoff, and
// decodes a 2xx answer into out (when non-nil). Every error it returns is a
// *calendar.Error.
func (s *Source) do(ctx context.Context, r request, out any) error {
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return &calendar.Error{Class: calendar.Permanent, Op: r.op, Err: err}
		}
	}
	for attempt := 0; ; attempt++ {
		cerr := s.attempt(ctx, r, body, out)
		if cerr == nil {
			return nil
		}
		if ctx.Err() != nil {
			return cerr
		}
		retryable := cerr.Class == calendar.Transient && r.idempotent || cerr.Class == calendar.RateLimited
		ceiling := s.backoffCeiling(attempt)
		if !retryable || attempt >= s.cfg.MaxRetries || cerr.Wait > s.cfg.MaxWait {
			if cerr.Class == calendar.RateLimited && cerr.Wait == 0 {
				cerr.Wait = ceiling
			}
			return cerr
		}
		wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
		if cerr.Wait > 0 {
			// Graph said how long; a little jitter keeps workers told the
			// same from coming back at once.
			wait = cerr.Wait + time.Duration(rand.Int64N(int64(s.cfg.BaseBackoff)+1))
		}
		s.cfg.Logger.DebugContext(ctx, "microsoft: retrying",
			slog.String("op", r.op), slog.String("connection_id", s.connID),
			slog.Int("attempt", attempt+1), slog.String("class", cerr.Class.String()),
			slog.Duration("wait", wait))
		if err := s.cfg.Sleep(ctx, wait); err != nil {
			cerr.Err = errors.Join(cerr.Err, err)
			return cerr
		}
	}
}

// backoffCeiling is BaseBackoff·2^attempt, capped at MaxBackoff.
func (s *Source) backoffCeiling(attempt int) time.Duration {
	d := s.cfg.BaseBackoff
	for i := 0; i < attempt && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// attempt sends r once: budget, gate, token, request, answer.
func (s *Source) attempt(ctx context.Context, r request, body []byte, out any) *calendar.Error {
	if err := s.throttle(ctx, r.op); err != nil {
		return err
	}
	select {
	case s.gate <- struct{}{}:
	case <-ctx.Done():
		return &calendar.Error{Class: calendar.Transient, Op: r.op, Err: ctx.Err()}
	}
	defer func() { <-s.gate }()

	tok, err := s.tokens.Token()
	if err != nil {
		return s.classifyErr(r.op, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, rd)
	if err != nil {
		return &calendar.Error{Class: calendar.Permanent, Op: r.op, Err: errors.New("cannot build the request")}
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	prefer := append([]string{`outlook.timezone="UTC"`, `outlook.body-content-type="text"`}, r.prefer...)
	req.Header.Set("Prefer", strings.Join(prefer, ", "))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		s.observe(r.op, 0)
		return s.classifyErr(r.op, err)
	}
	defer resp.Body.Close()
	s.observe(r.op, resp.StatusCode)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return s.classifyErr(r.op, err)
	}
	if resp.StatusCode/100 != 2 {
		return s.classifyStatus(r.op, resp, raw)
	}
	if len(raw) > maxAnswerBytes {
		return &calendar.Error{Class: calendar.Permanent, Op: r.op, Err: fmt.Errorf("answer larger than %d bytes", maxAnswerBytes)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &calendar.Error{Class: calendar.Permanent, Op: r.op, Err: fmt.Errorf("answer (HTTP %d) is not the expected JSON", resp.StatusCode)}
		}
	}
	return nil
}

func (s *Source) observe(op string, status int) {
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(op, status)
	}
}

// throttle takes one request from the mailbox's budget, waiting up to
// MaxWait; a longer wait fails the call as RateLimited with that wait.
func (s *Source) throttle(ctx context.Context, op string) *calendar.Error {
	if s.limiter == nil {
		return nil
	}
	key := Name + ":" + s.connID
	var waited time.Duration
	for {
		wait, err := s.limiter.Allow(ctx, key, s.cfg.PerMailbox)
		if err != nil {
			return &calendar.Error{Class: calendar.Transient, Op: op, Err: fmt.Errorf("mailbox rate limiter: %w", err)}
		}
		if wait <= 0 {
			return nil
		}
		if waited+wait > s.cfg.MaxWait {
			return &calendar.Error{Class: calendar.RateLimited, Wait: wait, Op: op,
				Err: errors.New("the mailbox's request budget is spent")}
		}
		if err := s.cfg.Sleep(ctx, wait); err != nil {
			return &calendar.Error{Class: calendar.Transient, Op: op, Err: err}
		}
		waited += wait
	}
}
