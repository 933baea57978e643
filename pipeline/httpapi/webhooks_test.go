package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// googleHeaders are a valid "exists" notification for channel ch-1.
func googleHeaders() map[string]string {
	return map[string]string{
		"X-Goog-Channel-ID":         "ch-1",
		"X-Goog-Channel-Token":      "tok-1",
		"X-Goog-Channel-Expiration": "Tue, 31 Mar 2026 01:13:52 GMT",
		"X-Goog-Resource-ID":        "res-1",
		"X-Goog-Resource-URI":       "https://www.googleapis.com/calendar/v3/calendars/primary/events?alt=json",
		"X-Goog-Resource-State":     "exists",
		"X-Goog-Message-Number":     "42",
	}
}

func (e *env) google(h map[string]string, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	var kv []string
	for k, v := range h {
		kv = append(kv, k, v)
	}
	return e.do("POST", "/webhooks/google", body, kv...)
}

func TestGoogleWebhook(t *testing.T) {
	t.Parallel()
	// with returns the good headers changed by name, value pairs; an empty
	// value removes the header.
	with := func(kv ...string) map[string]string {
		h := googleHeaders()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(h, kv[i])
			} else {
				h[kv[i]] = kv[i+1]
			}
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		headers  map[string]string
		body     string
		status   int
		code     string
		enqueued []string
	}{
		{"change", googleHeaders(), "", 200, "", []string{"cal-1"}},
		{"not_exists", with("X-Goog-Resource-State", "not_exists"), "", 200, "", []string{"cal-1"}},
		{"sync handshake", with("X-Goog-Resource-State", "sync"), "", 200, "", nil},
		{"bad token", with("X-Goog-Channel-Token", "tok-2"), "", 403, "bad_token", nil},
		{"no token", with("X-Goog-Channel-Token", ""), "", 403, "bad_token", nil},
		{"bad token on sync", with("X-Goog-Resource-State", "sync", "X-Goog-Channel-Token", "tok-2"), "", 403, "bad_token", nil},
		{"unknown channel", with("X-Goog-Channel-ID", "ch-404"), "", 404, "unknown_channel", nil},
		{"other resource", with("X-Goog-Resource-ID", "res-2"), "", 404, "unknown_channel", nil},
		{"no channel id", with("X-Goog-Channel-ID", ""), "", 400, "malformed_notification", nil},
		{"no resource id", with("X-Goog-Resource-ID", ""), "", 400, "malformed_notification", nil},
		{"no state", with("X-Goog-Resource-State", ""), "", 400, "malformed_notification", nil},
		{"bad state", with("X-Goog-Resource-State", "gone"), "", 400, "malformed_notification", nil},
		{"no message number", with("X-Goog-Message-Number", ""), "", 400, "malformed_notification", nil},
		{"bad message number", with("X-Goog-Message-Number", "x"), "", 400, "malformed_notification", nil},
		{"no headers", map[string]string{}, "", 400, "malformed_notification", nil},
		{"oversize body", googleHeaders(), strings.Repeat("x", 5<<10), 413, "too_large", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.google(tc.headers, tc.body)
			if tc.code != "" {
				checkError(t, w.Code, w.Body.String(), tc.status, tc.code)
			} else if w.Code != tc.status {
				t.Errorf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if diff := cmp.Diff(tc.enqueued, e.svc.snapshot().enqueued); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
			if strings.Contains(e.logs.String(), "tok-") {
				t.Errorf("a channel token reached the logs:\n%s", e.logs)
			}
		})
	}
}

// TestProviderWebhooks: a provider's webhook reaches the pipeline by the
// provider's name; an unknown provider is a 404 with nothing queued, and a
// handshake reply is answered verbatim.
func TestProviderWebhooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do("POST", "/webhooks/nowhere", `{"value":[]}`)
	checkError(t, w.Code, w.Body.String(), http.StatusNotFound, "unknown_channel")
	w = e.do("POST", "/webhooks/echo/lifecycle?validationToken=a%2Bb%20c", "")
	if w.Code != 200 || w.Body.String() != "a+b c" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("handshake: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = e.do("POST", "/webhooks/echo", "{}")
	checkError(t, w.Code, w.Body.String(), http.StatusBadRequest, "malformed_notification")
	if len(e.svc.enqueued) != 0 {
		t.Errorf("queued %v", e.svc.enqueued)
	}
}

// signHubSpot returns the v3 signature headers for a request to target.
func signHubSpot(secret, method, uri, body string, at time.Time) []string {
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + uri + body + ts))
	return []string{"X-HubSpot-Signature-v3", base64.StdEncoding.EncodeToString(m.Sum(nil)), "X-HubSpot-Request-Timestamp", ts,
		"Content-Type", "application/json"}
}

const companyEvents = `[
 {"eventId":1,"subscriptionId":7,"portalId":4711,"appId":3,"occurredAt":1774440000000,"subscriptionType":"company.propertyChange","attemptNumber":0,"objectId":101,"propertyName":"domain","propertyValue":"acme.example","changeSource":"CRM_UI"},
 {"eventId":2,"subscriptionId":8,"portalId":4711,"appId":3,"occurredAt":1774440000001,"subscriptionType":"company.creation","attemptNumber":0,"objectId":102},
 {"eventId":3,"subscriptionId":9,"portalId":815,"appId":3,"occurredAt":1774440000002,"subscriptionType":"object.propertyChange","objectTypeId":"0-2","objectId":103,"propertyName":"hs_additional_domains"},
 {"eventId":4,"subscriptionId":10,"portalId":999,"appId":3,"occurredAt":1774440000003,"subscriptionType":"contact.creation","objectId":5}
]`

func TestHubSpotWebhook(t *testing.T) {
	t.Parallel()
	const uri = "https://rapport.example/webhooks/hubspot"
	for _, tc := range []struct {
		name    string
		target  string
		body    string
		headers func(e *env, body string) []string
		status  int
		code    string
		changed []string
	}{
		{"company events", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			200, "", []string{"4711", "815"}},
		{"query string signed", "/webhooks/hubspot?source=app%3A1", companyEvents,
			func(e *env, b string) []string {
				return signHubSpot(hubspotSecret, "POST", uri+"?source=app:1", b, e.clock.Now())
			}, 200, "", []string{"4711", "815"}},
		{"no company events", "/webhooks/hubspot", `[{"portalId":1,"subscriptionType":"contact.creation","objectId":5}]`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			200, "", nil},
		{"empty batch", "/webhooks/hubspot", `[]`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			200, "", nil},
		{"4 minutes old", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now().Add(-4*time.Minute))
			}, 200, "", []string{"4711", "815"}},
		{"stale", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now().Add(-6*time.Minute))
			}, 401, "stale", nil},
		{"from the future", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now().Add(6*time.Minute))
			}, 401, "stale", nil},
		{"wrong secret", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string { return signHubSpot("other", "POST", uri, b, e.clock.Now()) },
			401, "bad_signature", nil},
		{"body changed", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b+" ", e.clock.Now()) },
			401, "bad_signature", nil},
		{"other uri", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				return signHubSpot(hubspotSecret, "POST", "https://evil.example/webhooks/hubspot", b, e.clock.Now())
			}, 401, "bad_signature", nil},
		{"timestamp changed", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				h := signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now())
				h[3] = strconv.FormatInt(e.clock.Now().Add(time.Second).UnixMilli(), 10)
				return h
			}, 401, "bad_signature", nil},
		{"signature not base64", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				h := signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now())
				h[1] = "!!!"
				return h
			}, 401, "bad_signature", nil},
		{"bad timestamp", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string {
				h := signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now())
				h[3] = "yesterday"
				return h
			}, 401, "bad_timestamp", nil},
		{"unsigned", "/webhooks/hubspot", companyEvents,
			func(e *env, b string) []string { return nil }, 401, "unsigned", nil},
		{"malformed", "/webhooks/hubspot", `[{"portalId":`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			400, "malformed_events", nil},
		{"object not array", "/webhooks/hubspot", `{"portalId":1}`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			400, "malformed_events", nil},
		{"two arrays", "/webhooks/hubspot", `[] []`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			400, "malformed_events", nil},
		{"company event without portal", "/webhooks/hubspot", `[{"subscriptionType":"company.creation","objectId":5}]`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			400, "malformed_events", nil},
		{"oversize", "/webhooks/hubspot", `[` + strings.Repeat(`{"portalId":1},`, 400) + `{}]`,
			func(e *env, b string) []string { return signHubSpot(hubspotSecret, "POST", uri, b, e.clock.Now()) },
			413, "too_large", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.do("POST", tc.target, tc.body, tc.headers(e, tc.body)...)
			if tc.code != "" {
				checkError(t, w.Code, w.Body.String(), tc.status, tc.code)
			} else if w.Code != tc.status {
				t.Errorf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if diff := cmp.Diff(tc.changed, e.svc.snapshot().crmChanged); diff != "" {
				t.Errorf("CRMChanged (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("no secret configured", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.svc.hubspotSecret = ""
		w := e.do("POST", "/webhooks/hubspot", companyEvents, signHubSpot("", "POST", uri, companyEvents, e.clock.Now())...)
		checkError(t, w.Code, w.Body.String(), 503, "not_configured")
		if len(e.svc.snapshot().crmChanged) != 0 {
			t.Error("an unverifiable webhook enqueued work")
		}
	})
}

func allowedWebhookStatus(code int) bool {
	return code == http.StatusOK || code >= 400 && code < 500
}

func FuzzGoogleWebhook(f *testing.F) {
	h := googleHeaders()
	f.Add(h["X-Goog-Channel-ID"], h["X-Goog-Channel-Token"], h["X-Goog-Resource-ID"], h["X-Goog-Resource-State"], h["X-Goog-Message-Number"], h["X-Goog-Channel-Expiration"], "")
	f.Add("ch-1", "tok-1", "res-1", "sync", "1", "", "")
	f.Add("ch-1", "tok-2", "res-1", "exists", "7", "", "body")
	f.Add("", "", "", "", "", "", "")
	f.Add("ch-1\x00", "tok-1 ", "res-1", "not_exists", "-1", "Mon, 99 Foo 2026", "")
	f.Add(strings.Repeat("c", 65), strings.Repeat("t", 257), "r", "exists", "99999999999999999999", "x", "")
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, channel, token, resource, state, num, exp, body string) {
		before := len(e.svc.snapshot().enqueued)
		req := httptest.NewRequest("POST", "/webhooks/google", strings.NewReader(body))
		for k, v := range map[string]string{
			"X-Goog-Channel-ID": channel, "X-Goog-Channel-Token": token, "X-Goog-Resource-ID": resource,
			"X-Goog-Resource-State": state, "X-Goog-Message-Number": num, "X-Goog-Channel-Expiration": exp,
		} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if !allowedWebhookStatus(w.Code) {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if enq := e.svc.snapshot().enqueued[before:]; len(enq) > 0 && (w.Code != 200 || channel != "ch-1" || token != "tok-1") {
			t.Fatalf("enqueued %v for status %d", enq, w.Code)
		}
	})
}

func FuzzHubSpotWebhook(f *testing.F) {
	f.Add([]byte(companyEvents))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"portalId":"4711","subscriptionType":"company.creation"}]`))
	f.Add([]byte(`[{"portalId":-1,"subscriptionType":"company.deletion"}]`))
	f.Add([]byte(`[{"portalId":1e3,"subscriptionType":"object.creation","objectTypeId":"0-2"}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Add([]byte{0xff, 0xfe})
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		before := len(e.svc.snapshot().crmChanged)
		hdr := signHubSpot(hubspotSecret, "POST", "https://rapport.example/webhooks/hubspot", string(body), e.clock.Now())
		// e.do would call f.Helper inside the fuzz target: serve directly.
		post := func(headers ...string) *httptest.ResponseRecorder {
			req := httptest.NewRequest("POST", "/webhooks/hubspot", strings.NewReader(string(body)))
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			return w
		}
		w := post(hdr...)
		if !allowedWebhookStatus(w.Code) {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w.Code != 200 && len(e.svc.snapshot().crmChanged) > before {
			t.Fatalf("status %d but CRMChanged called", w.Code)
		}
		// Unsigned, the same body never gets through.
		w = post()
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("unsigned: status %d", w.Code)
		}
	})
}
