package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// This file bounds what a request may carry before any handler reads it:
// ids and query values that are text, JSON strings without NUL, a limit on
// synchronous reconciliations.

// maxPathBytes bounds a request's path: the longest legitimate one (a
// meeting key under a workspace) is under 200 bytes.
const maxPathBytes = 2048

// cleanInput answers 400 to a request whose path or query is not short
// printable UTF-8 text: a NUL byte or invalid UTF-8 in an id would
// otherwise reach PostgreSQL, which refuses it with an internal error.
func cleanInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.Path) > maxPathBytes || !cleanParam(r.URL.Path) {
			writeError(w, http.StatusBadRequest, "invalid", "the request path must be printable UTF-8 text")
			return
		}
		// Pairs Query cannot parse are dropped here as in every handler.
		for k, vs := range r.URL.Query() {
			if !cleanParam(k) {
				writeError(w, http.StatusBadRequest, "invalid", "query parameter names must be printable UTF-8 text")
				return
			}
			for _, v := range vs {
				if !cleanParam(v) {
					writeError(w, http.StatusBadRequest, "invalid", "query parameter "+strconv.Quote(k)+" must be printable UTF-8 text")
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// errNULInBody: a JSON string holds "\u0000", which PostgreSQL's text
// cannot store.
var errNULInBody = errors.New(`a JSON string holds a NUL character (\u0000)`)

// checkText refuses a decoded body that is not valid UTF-8 (encoding/json
// would silently replace the bad bytes) or whose strings hold NUL.
func checkText(body []byte, v any) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: the body is not valid UTF-8", errBadBody)
	}
	if hasNUL(reflect.ValueOf(v)) {
		return fmt.Errorf("%w: %w", errBadBody, errNULInBody)
	}
	return nil
}

// hasNUL reports whether any string reachable from v holds a NUL.
func hasNUL(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		for i := 0; i < v.Len(); i++ {
			if v.String()[i] == 0 {
				return true
			}
		}
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasNUL(v.Elem())
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() && hasNUL(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return false // bytes, e.g. json.RawMessage: not text we store
		}
		for i := 0; i < v.Len(); i++ {
			if hasNUL(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if hasNUL(it.Key()) || hasNUL(it.Value()) {
				return true
			}
		}
	}
	return false
}

// syncReconcileRetry is the Retry-After of a refused synchronous
// reconciliation.
const syncReconcileRetry = "30"

// tryReconcileSlot takes one of the slots of synchronous reconciliations
// (?wait=true), which hold a request, a worker's worth of provider calls
// and database connections for their whole run. release gives it back.
func (s *Server) tryReconcileSlot() (release func(), ok bool) {
	select {
	case s.reconcileSlots <- struct{}{}:
		return func() { <-s.reconcileSlots }, true
	default:
		return nil, false
	}
}
