package hubspot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/provider"
)

// Paths (2026-03 date-versioned; account-info has no dated version).
const (
	pathObjects     = "/crm/objects/2026-03/"
	pathProperties  = "/crm/properties/2026-03/meetings"
	pathOwners      = "/crm/owners/2026-03/"
	pathAssoc       = "/crm/associations/2026-03/meetings/"
	pathAccountInfo = "/account-info/v3/details"
)

// batchSize is HubSpot's limit of inputs per batch request.
const batchSize = 100

// maxBody bounds a response body read into memory.
const maxBody = 64 << 20

// Client is a HubSpot CRM client for one connected portal. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	ts   oauth2.TokenSource
	base string
	lim  *limiter
	// The GCRA limits in force for the burst and the search windows: from
	// the config, lowered when HubSpot's headers state a smaller limit.
	general atomic.Pointer[provider.Limit]
	search  atomic.Pointer[provider.Limit]

	tracePrefix string
	traceSeq    atomic.Uint64

	portalMu sync.Mutex
	portal   string
	loc      atomic.Pointer[time.Location]
}

var _ crm.Sink = (*Client)(nil)

// New returns a client that authenticates with tokens from ts. A token
// source error that is a *crm.Error keeps its class; an
// *oauth2.RetrieveError answered 400 or 401 (e.g. invalid_grant) is
// crm.Auth; any other is crm.Transient.
func New(cfg Config, ts oauth2.TokenSource) (*Client, error) {
	if ts == nil {
		return nil, errors.New("hubspot: nil token source")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("hubspot: trace id prefix: %w", err)
	}
	c := &Client{
		cfg:         cfg,
		ts:          ts,
		base:        strings.TrimRight(cfg.BaseURL, "/"),
		lim:         newLimiter(cfg.Limiter),
		tracePrefix: "rapport-" + hex.EncodeToString(b[:]),
		portal:      cfg.PortalID,
	}
	g, s := gcraLimit(cfg.RateLimit), gcraLimit(Limit{Requests: cfg.SearchPerSecond, Window: time.Second})
	c.general.Store(&g)
	c.search.Store(&s)
	return c, nil
}

// traceID returns a new objectWriteTraceId, unique across the client's
// lifetime and across processes.
func (c *Client) traceID() string {
	return c.tracePrefix + "-" + strconv.FormatUint(c.traceSeq.Add(1), 36)
}

// request describes one API call.
type request struct {
	op     string // endpoint name for metrics, logs and errors
	method string
	path   string
	query  url.Values
	body   any
	search bool // counts against the search limit instead of the burst
	// replayable requests may be sent again after an unknown outcome (a
	// timeout, a 5xx) without writing twice: reads, searches, updates,
	// upserts, association changes. Batch create is not: the caller
	// recovers by searching.
	replayable bool
	// unlimited skips the limiter (the account-info call that tells which
	// portal's limit to use).
	unlimited bool
}

// send performs req with rate limiting and retries and decodes a successful
// body into out (if non-nil). It returns the final status.
func (c *Client) send(ctx context.Context, req request, out any) (int, error) {
	var body []byte
	if req.body != nil {
		var err error
		if body, err = json.Marshal(req.body); err != nil {
			return 0, &crm.Error{Class: crm.Permanent, Op: req.op, Err: fmt.Errorf("encode request: %w", err)}
		}
	}
	var key string
	limits := &c.general
	if req.search {
		limits = &c.search
	}
	if !req.unlimited {
		portal, err := c.portalID(ctx)
		if err != nil {
			return 0, err
		}
		key = "hubspot:" + portal
		if req.search {
			key += ":search"
		}
	}
	for attempt := 0; ; attempt++ {
		if !req.unlimited {
			if err := c.throttle(ctx, req.op, key, *limits.Load()); err != nil {
				return 0, err
			}
		}
		status, hdr, respBody, sent, err := c.exchange(ctx, req, body)
		var cerr *crm.Error
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return status, &crm.Error{Class: crm.Transient, Op: req.op, Err: ctx.Err()}
			}
			if !errors.As(err, &cerr) {
				cerr = &crm.Error{Class: crm.Transient, Op: req.op, Err: err}
			}
		default:
			if !req.unlimited {
				c.observe(key, hdr, limits)
			}
			if status >= 200 && status < 300 {
				if out != nil && status != http.StatusNoContent && len(respBody) > 0 {
					if err := json.Unmarshal(respBody, out); err != nil {
						return status, &crm.Error{Class: crm.Transient, Op: req.op, Err: fmt.Errorf("decode %d response: %w", status, err)}
					}
				}
				return status, nil
			}
			cerr = classify(req.op, status, hdr, respBody, c.cfg.Clock(), c.loc.Load(), req.search)
		}
		if cerr.Class == crm.RateLimited && !req.unlimited {
			c.lim.pause(key, cerr.Wait)
			var ae *APIError
			if errors.As(cerr, &ae) && ae.PolicyName == policyDaily {
				c.lim.pause(strings.TrimSuffix(key, ":search"), cerr.Wait)
				c.lim.pause(strings.TrimSuffix(key, ":search")+":search", cerr.Wait)
			}
		}
		retryable := cerr.Class == crm.Transient || cerr.Class == crm.RateLimited
		notApplied := !sent || status == http.StatusTooManyRequests || status == http.StatusLocked
		if !retryable || attempt >= c.cfg.MaxRetries || (!req.replayable && !notApplied) || cerr.Wait > c.cfg.MaxWait {
			return status, cerr
		}
		c.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "hubspot: retrying",
			slog.String("op", req.op), slog.Int("status", status), slog.Int("attempt", attempt+1),
			slog.String("class", cerr.Class.String()), slog.Duration("wait", cerr.Wait))
		if cerr.Class == crm.RateLimited && !req.unlimited {
			continue // throttle sleeps through the pause just set
		}
		if err := sleep(ctx, c.backoff(attempt, cerr.Wait)); err != nil {
			return status, &crm.Error{Class: crm.Transient, Op: req.op, Err: err}
		}
	}
}

// backoff is the jittered exponential delay before retry attempt+1, at
// least wait.
func (c *Client) backoff(attempt int, wait time.Duration) time.Duration {
	d := c.cfg.RetryBase << min(attempt, 10)
	d = min(d, 30*time.Second)
	return max(jitterHalf(d), wait)
}

// throttle waits until the limiter lets one request through on key.
func (c *Client) throttle(ctx context.Context, op, key string, lim provider.Limit) error {
	for {
		if d := c.lim.pausedFor(key); d > 0 {
			if d > c.cfg.MaxWait {
				return &crm.Error{Class: crm.RateLimited, Wait: d, Op: op,
					Err: fmt.Errorf("HubSpot rate limit reached for portal %s; paused for %s", strings.TrimPrefix(key, "hubspot:"), d.Round(time.Second))}
			}
			if err := c.wait(ctx, op, d); err != nil {
				return err
			}
			continue
		}
		d, err := c.lim.allow(ctx, key, lim)
		if err != nil {
			if ctx.Err() != nil {
				return &crm.Error{Class: crm.Transient, Op: op, Err: ctx.Err()}
			}
			return &crm.Error{Class: crm.Transient, Op: op, Err: fmt.Errorf("rate limiter: %w", err)}
		}
		if d <= 0 {
			return nil
		}
		if err := c.wait(ctx, op, d); err != nil {
			return err
		}
	}
}

func (c *Client) wait(ctx context.Context, op string, d time.Duration) error {
	if c.cfg.OnRateLimitWait != nil {
		c.cfg.OnRateLimitWait(d)
	}
	if err := sleep(ctx, d); err != nil {
		return &crm.Error{Class: crm.Transient, Op: op, Err: err}
	}
	return nil
}

// observe adapts to HubSpot's rate-limit headers. A stated limit lower than
// the configured one (RAPPORT_HUBSPOT_RATE_LIMIT set too high) replaces it.
// When the window is nearly spent — e.g. another client of the same app
// uses the portal without sharing the limiter — the key pauses until the
// interval has passed.
func (c *Client) observe(key string, h http.Header, limits *atomic.Pointer[provider.Limit]) {
	rem, err := strconv.Atoi(h.Get(hdrRemain))
	if err != nil {
		return
	}
	mx, _ := strconv.Atoi(h.Get(hdrMax))
	cur := limits.Load()
	interval := cur.Period
	if ms, err := strconv.Atoi(h.Get(hdrInterval)); err == nil && ms > 0 {
		interval = time.Duration(ms) * time.Millisecond
	}
	if mx > 0 {
		stated := gcraLimit(Limit{Requests: mx, Window: interval})
		// Compare request rates: stated.Rate/stated.Period < cur.Rate/cur.Period.
		if int64(stated.Rate+stated.Burst)*int64(cur.Period) < int64(cur.Rate+cur.Burst)*int64(stated.Period) {
			if limits.CompareAndSwap(cur, &stated) {
				c.cfg.Logger.Warn("hubspot: HubSpot states a lower rate limit than configured; using it",
					slog.String("key", key), slog.Int("max", mx), slog.Duration("interval", interval))
			}
		}
	}
	if rem > mx/20 {
		return
	}
	c.lim.pause(key, interval)
	c.cfg.Logger.Debug("hubspot: rate limit nearly spent; pausing",
		slog.String("key", key), slog.Int("remaining", rem), slog.Duration("pause", interval))
}

// exchange sends one HTTP request. sent reports whether the request may have
// reached HubSpot.
func (c *Client) exchange(ctx context.Context, req request, body []byte) (status int, h http.Header, respBody []byte, sent bool, err error) {
	tok, err := c.ts.Token()
	if err != nil {
		return 0, nil, nil, false, tokenError(req.op, err)
	}
	u := c.base + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, rd)
	if err != nil {
		return 0, nil, nil, false, &crm.Error{Class: crm.Permanent, Op: req.op, Err: err}
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(hr)
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(hr)
	if err != nil {
		c.record(req.op, 0, time.Since(start))
		var op *net.OpError
		sent = !(errors.As(err, &op) && op.Op == "dial")
		return 0, nil, nil, sent, &crm.Error{Class: crm.Transient, Op: req.op, Err: err}
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	c.record(req.op, resp.StatusCode, time.Since(start))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, true, &crm.Error{Class: crm.Transient, Op: req.op, Err: fmt.Errorf("read response: %w", err)}
	}
	return resp.StatusCode, resp.Header, respBody, true, nil
}

func (c *Client) record(op string, status int, d time.Duration) {
	if c.cfg.OnRequest != nil {
		c.cfg.OnRequest(op, status, d)
	}
}

func tokenError(op string, err error) error {
	var ce *crm.Error
	if errors.As(err, &ce) {
		return err
	}
	class := crm.Transient
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil &&
		(re.Response.StatusCode == http.StatusBadRequest || re.Response.StatusCode == http.StatusUnauthorized) {
		class = crm.Auth
	}
	return &crm.Error{Class: class, Op: op, Err: fmt.Errorf("get access token: %w", err)}
}

// portalID is the portal whose limits apply, from the config or asked once
// from the account-info API.
func (c *Client) portalID(ctx context.Context) (string, error) {
	c.portalMu.Lock()
	defer c.portalMu.Unlock()
	if c.portal != "" {
		return c.portal, nil
	}
	info, err := c.accountInfo(ctx)
	if err != nil {
		return "", err
	}
	c.portal = info.PortalID.String()
	return c.portal, nil
}

func (c *Client) accountInfo(ctx context.Context) (accountInfo, error) {
	var info accountInfo
	_, err := c.send(ctx, request{op: "account.details", method: http.MethodGet, path: pathAccountInfo, replayable: true, unlimited: true}, &info)
	if err != nil {
		return info, err
	}
	if info.PortalID == "" {
		return info, &crm.Error{Class: crm.Permanent, Op: "account.details", Err: errors.New("account info without portalId")}
	}
	if info.TimeZone != "" {
		if loc, err := time.LoadLocation(info.TimeZone); err == nil {
			c.loc.Store(loc)
		}
	}
	return info, nil
}

// chunk splits n inputs into [start, end) ranges of at most size.
func chunk(n, size int) [][2]int {
	var out [][2]int
	for s := 0; s < n; s += size {
		out = append(out, [2]int{s, min(s+size, n)})
	}
	return out
}

// stops reports whether err, failing one chunk of a batch operation, makes
// the remaining chunks pointless: bad credentials, a rate limit the client
// gave up waiting for, HubSpot failing, or the caller giving up.
func stops(err error) bool {
	switch crm.ClassOf(err) {
	case crm.Permanent, crm.NotFound:
		return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	return true
}
