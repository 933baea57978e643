package microsoft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
)

// graphError is Graph's error body: {"error":{"code","message",...}}.
type graphError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			Code string `json:"code"`
		} `json:"innerError"`
	} `json:"error"`
}

// classifyStatus classifies a non-2xx answer. This is the one table mapping
// Graph's failures to classes:
//
//	410; code syncStateNotFound, resyncRequired,
//	  syncStateInvalid (delta calls)          CursorExpired
//	410 (other calls: deleted item)           NotFound
//	429; 503 with Retry-After                 RateLimited, Wait from Retry-After
//	401                                       Auth
//	403 ErrorAccessDenied,
//	  Authorization_RequestDenied             Auth (consent missing or withdrawn)
//	404                                       NotFound
//	408, 409 (conflict), 5xx                  Transient
//	other 4xx                                 Permanent
//
// The error's text carries the operation, the status and Graph's error
// code only: Graph's messages can quote the mailbox address, and URLs carry
// it and the delta tokens in their query.
func (s *Source) classifyStatus(op string, resp *http.Response, raw []byte) *calendar.Error {
	var ge graphError
	_ = json.Unmarshal(raw, &ge)
	code := safeCode(ge.Error.Code)
	inner := safeCode(ge.Error.InnerError.Code)
	codes := strings.ToLower(code + " " + inner)
	text := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if code != "" {
		text += " " + code
	}
	if inner != "" && inner != code {
		text += "/" + inner
	}
	out := &calendar.Error{Class: calendar.Permanent, Op: op, Err: errors.New(text)}
	expired := strings.Contains(codes, "syncstatenotfound") || strings.Contains(codes, "resyncrequired") ||
		strings.Contains(codes, "syncstateinvalid")
	switch st := resp.StatusCode; {
	case op == opDelta && (st == http.StatusGone || expired):
		out.Class = calendar.CursorExpired
	case st == http.StatusGone:
		out.Class = calendar.NotFound
	case st == http.StatusTooManyRequests:
		out.Class, out.Wait = calendar.RateLimited, retryAfter(resp.Header, s.cfg.Clock())
	case st == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		out.Class, out.Wait = calendar.RateLimited, retryAfter(resp.Header, s.cfg.Clock())
	case st == http.StatusUnauthorized:
		out.Class = calendar.Auth
	case st == http.StatusForbidden && (strings.Contains(codes, "erroraccessdenied") || strings.Contains(codes, "authorization_requestdenied")):
		out.Class = calendar.Auth
	case st == http.StatusNotFound:
		out.Class = calendar.NotFound
	case st == http.StatusRequestTimeout || st == http.StatusConflict || st >= 500:
		out.Class = calendar.Transient
	}
	return out
}

// safeCode keeps an error code only if it looks like one (letters, digits,
// '_', '.', '-'; at most 64 bytes), so no free text leaks through it.
func safeCode(c string) string {
	if len(c) > 64 {
		return ""
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '.' || b == '-') {
			return ""
		}
	}
	return c
}

// scrubbed is an error whose text is replaced by a safe one while errors.Is
// and errors.As still reach the cause.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// classifyErr classifies a failure that is not an HTTP answer: the token
// source, the transport, reading the body.
//
//	already a *calendar.Error                  kept (a copy)
//	token refresh invalid_grant, other 4xx     Auth
//	token endpoint 429                         RateLimited
//	token endpoint 5xx, no answer              Transient
//	network errors, timeouts, cancellation     Transient
func (s *Source) classifyErr(op string, err error) *calendar.Error {
	var ce *calendar.Error
	if errors.As(err, &ce) {
		c := *ce
		return &c
	}
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) {
		out := &calendar.Error{Class: retrieveClass(rerr), Op: op}
		msg := "token refresh failed"
		if code := safeCode(rerr.ErrorCode); code != "" {
			msg += ": " + code
		}
		if rerr.Response != nil {
			msg += fmt.Sprintf(" (HTTP %d)", rerr.Response.StatusCode)
			if out.Class == calendar.RateLimited {
				out.Wait = retryAfter(rerr.Response.Header, s.cfg.Clock())
			}
		}
		out.Err = &scrubbed{msg: msg, err: rerr}
		return out
	}
	// A *url.Error's text holds the URL with its query (mailbox, tokens):
	// keep only what failed underneath.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	msg := "transport failure"
	switch {
	case errors.Is(err, context.Canceled):
		msg = "cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timed out"
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			msg = "timed out"
		}
	}
	return &calendar.Error{Class: calendar.Transient, Op: op, Err: &scrubbed{msg: msg, err: err}}
}

func retrieveClass(e *oauth2.RetrieveError) calendar.Class {
	if e.ErrorCode == "invalid_grant" {
		return calendar.Auth
	}
	if e.Response == nil {
		return calendar.Transient
	}
	switch code := e.Response.StatusCode; {
	case code == http.StatusTooManyRequests:
		return calendar.RateLimited
	case code >= 500 || code == http.StatusRequestTimeout:
		return calendar.Transient
	case code >= 400:
		return calendar.Auth
	}
	return calendar.Transient
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
