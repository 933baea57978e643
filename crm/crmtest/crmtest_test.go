package crmtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/crmtest"
)

func newFake(t testing.TB, o crmtest.Options) *crmtest.Server {
	t.Helper()
	s := crmtest.NewServer(o)
	t.Cleanup(s.Close)
	return s
}

// call sends a raw request and decodes the JSON answer.
func call(t testing.TB, s *crmtest.Server, method, path string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, resp.Header, out
}

const obj = "/crm/objects/2026-03/"

func TestRateLimitAnswers(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: 3, Window: time.Minute, SearchPerSecond: 1})
	for i := 0; i < 3; i++ {
		status, h, _ := call(t, s, "GET", "/crm/owners/2026-03/", nil)
		if status != 200 || h.Get("X-HubSpot-RateLimit-Remaining") != fmt.Sprint(2-i) || h.Get("X-HubSpot-RateLimit-Max") != "3" ||
			h.Get("X-HubSpot-RateLimit-Interval-Milliseconds") != "60000" {
			t.Fatalf("call %d: %d %v", i, status, h)
		}
	}
	status, _, body := call(t, s, "GET", "/crm/owners/2026-03/", nil)
	want := map[string]any{"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
		"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING", "groupName": "apps-hubapi"}
	delete(body, "correlationId")
	if diff := cmp.Diff(want, body); status != 429 || diff != "" {
		t.Fatalf("status %d, body (-want +got):\n%s", status, diff)
	}
	// Search has its own limit.
	if status, _, _ := call(t, s, "POST", obj+"companies/search", map[string]any{}); status != 200 {
		t.Fatalf("first search: %d", status)
	}
	status, _, body = call(t, s, "POST", obj+"companies/search", map[string]any{})
	if status != 429 || body["policyName"] != "SECONDLY" {
		t.Fatalf("second search: %d %v", status, body)
	}
	if s.RateLimited() != 2 || s.TotalCalls() != 6 {
		t.Errorf("429s %d, calls %d", s.RateLimited(), s.TotalCalls())
	}
}

func searchIDs(t *testing.T, s *crmtest.Server, body map[string]any) []string {
	t.Helper()
	status, _, out := call(t, s, "POST", obj+"companies/search", body)
	if status != 200 {
		t.Fatalf("search %v: %d %v", body, status, out)
	}
	var ids []string
	for _, r := range out["results"].([]any) {
		ids = append(ids, r.(map[string]any)["id"].(string))
	}
	return ids
}

func TestCompanySearch(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1, SearchPerSecond: -1})
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a := s.AddCompany(crm.Company{Name: "Acme Corp", Domains: []string{"acme.com", "acme.de"}, UpdatedAt: base.Add(3 * time.Hour)})
	b := s.AddCompany(crm.Company{Name: "Beta", Domains: []string{"beta.io"}, UpdatedAt: base.Add(1 * time.Hour)})
	c := s.AddCompany(crm.Company{Name: "Gamma Acme", Domains: []string{"gamma.org"}, UpdatedAt: base.Add(2 * time.Hour)})
	f := func(prop, op string, v any) map[string]any {
		m := map[string]any{"propertyName": prop, "operator": op}
		if vs, ok := v.([]string); ok {
			m["values"] = vs
		} else {
			m["value"] = v
		}
		return map[string]any{"filterGroups": []any{map[string]any{"filters": []any{m}}}}
	}
	ms := fmt.Sprint(base.Add(90 * time.Minute).UnixMilli())
	tests := []struct {
		name string
		body map[string]any
		want []string
	}{
		{"EQ is case-insensitive", f("domain", "EQ", "ACME.com"), []string{a}},
		{"IN", f("domain", "IN", []string{"beta.io", "gamma.org"}), []string{b, c}},
		{"GT ms on datetime", f("hs_lastmodifieddate", "GT", ms), []string{a, c}},
		{"CONTAINS_TOKEN", f("name", "CONTAINS_TOKEN", "acme"), []string{a, c}},
		{"CONTAINS_TOKEN on additional domains", f("hs_additional_domains", "CONTAINS_TOKEN", "acme.de"), []string{a}},
		{"sorted", func() map[string]any {
			m := f("hs_lastmodifieddate", "GTE", "0")
			m["sorts"] = []any{map[string]any{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}}
			return m
		}(), []string{a, c, b}},
		{"OR of groups", map[string]any{"filterGroups": []any{
			map[string]any{"filters": []any{map[string]any{"propertyName": "domain", "operator": "EQ", "value": "beta.io"}}},
			map[string]any{"filters": []any{map[string]any{"propertyName": "domain", "operator": "EQ", "value": "gamma.org"}}},
		}}, []string{b, c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, searchIDs(t, s, tt.body)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []map[string]any{{"limit": 201}, {"after": "10000"}, f("domain", "LIKE", "x")} {
		if status, _, body := call(t, s, "POST", obj+"companies/search", bad); status != 400 || body["category"] != "VALIDATION_ERROR" {
			t.Errorf("search %v: %d %v, want 400 VALIDATION_ERROR", bad, status, body)
		}
	}
}

func TestSearchCapsAtTenThousand(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1, SearchPerSecond: -1})
	for i := 0; i < 10_050; i++ {
		s.AddCompany(crm.Company{Name: "c"})
	}
	_, _, out := call(t, s, "POST", obj+"companies/search", map[string]any{"limit": 200, "after": "9800"})
	if out["total"].(float64) != 10_050 || len(out["results"].([]any)) != 200 || out["paging"] != nil {
		t.Fatalf("last page: total %v, %d results, paging %v", out["total"], len(out["results"].([]any)), out["paging"])
	}
}

func TestBatchCreateWithoutTraceIDsFailsWhole(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1})
	status, _, body := call(t, s, "POST", obj+"meetings/batch/create", map[string]any{"inputs": []any{
		map[string]any{"properties": map[string]any{"hs_timestamp": 1700000000000}},
		map[string]any{"properties": map[string]any{"hs_meeting_title": "no timestamp"}},
	}})
	if status != 400 || body["category"] != "VALIDATION_ERROR" || len(s.Meetings()) != 0 {
		t.Fatalf("%d %v; %d meetings", status, body, len(s.Meetings()))
	}
	status, _, body = call(t, s, "POST", obj+"meetings/batch/create", map[string]any{"inputs": []any{
		map[string]any{"properties": map[string]any{"hs_timestamp": 1700000000000}, "objectWriteTraceId": "a"},
		map[string]any{"properties": map[string]any{"hs_meeting_title": "no timestamp"}, "objectWriteTraceId": "b"},
	}})
	errs := body["errors"].([]any)
	ctx := errs[0].(map[string]any)["context"].(map[string]any)
	if status != 207 || body["numErrors"].(float64) != 1 || ctx["objectWriteTraceId"].([]any)[0] != "b" {
		t.Fatalf("%d %v", status, body)
	}
	res := body["results"].([]any)[0].(map[string]any)
	if res["objectWriteTraceId"] != "a" || res["properties"].(map[string]any)["hs_timestamp"] != "2023-11-14T22:13:20.000Z" {
		t.Errorf("result %v", res)
	}
}

func TestContactsBatchReadMissing(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1})
	id := s.AddContact("ann@acme.com", "Ann Lee", "")
	status, _, body := call(t, s, "POST", obj+"contacts/batch/read", map[string]any{
		"idProperty": "email", "properties": []string{"email"},
		"inputs": []any{map[string]any{"id": "ANN@acme.com"}, map[string]any{"id": "x@y.z"}, map[string]any{"id": "q@y.z"}},
	})
	if status != 207 {
		t.Fatalf("status %d", status)
	}
	e := body["errors"].([]any)[0].(map[string]any)
	if e["category"] != "OBJECT_NOT_FOUND" || fmt.Sprint(e["context"].(map[string]any)["ids"]) != "[x@y.z q@y.z]" {
		t.Errorf("error %v", e)
	}
	if r := body["results"].([]any)[0].(map[string]any); r["id"] != id {
		t.Errorf("result %v", r)
	}
}

// TestContactsBatchReadNoneFound: when none of the inputs exists, HubSpot
// answers the whole batch read 404 OBJECT_NOT_FOUND instead of a 207.
func TestContactsBatchReadNoneFound(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1})
	status, _, body := call(t, s, "POST", obj+"contacts/batch/read", map[string]any{
		"idProperty": "email", "properties": []string{"email"},
		"inputs": []any{map[string]any{"id": "x@y.z"}, map[string]any{"id": "q@y.z"}},
	})
	if status != 404 {
		t.Fatalf("status %d, want 404", status)
	}
	if body["category"] != "OBJECT_NOT_FOUND" || !strings.HasPrefix(body["message"].(string), "Could not get some CONTACT objects") {
		t.Errorf("body %v", body)
	}
}

func TestMeetingReadBackWithAssociations(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1})
	co := s.AddCompany(crm.Company{Name: "Acme"})
	status, _, body := call(t, s, "POST", obj+"meetings", map[string]any{
		"properties":   map[string]any{"hs_timestamp": "2026-11-02T09:00:00Z", "hs_meeting_title": "Kickoff"},
		"associations": []any{map[string]any{"to": map[string]any{"id": co}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 188}}}},
	})
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	id := body["id"].(string)
	_, _, got := call(t, s, "GET", obj+"meetings/"+id+"?properties=hs_meeting_title&associations=companies,contacts", nil)
	assoc := got["associations"].(map[string]any)["companies"].(map[string]any)["results"].([]any)[0].(map[string]any)
	if assoc["id"] != co || assoc["type"] != "meeting_to_company" || got["properties"].(map[string]any)["hs_meeting_title"] != "Kickoff" {
		t.Fatalf("read back %v", got)
	}
	if status, _, _ := call(t, s, "DELETE", obj+"meetings/"+id, nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _, _ := call(t, s, "GET", obj+"meetings/"+id, nil); status != 404 {
		t.Fatalf("get after delete: %d", status)
	}
}

func TestUnknownTokenAndFaults(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1, AccessToken: "good"})
	status, _, body := call(t, s, "GET", "/crm/owners/2026-03/", nil)
	if status != 401 || body["category"] != "INVALID_AUTHENTICATION" {
		t.Fatalf("%d %v", status, body)
	}
	s2 := newFake(t, crmtest.Options{Limit: -1})
	s2.FailNext(2, 503)
	for _, want := range []int{503, 503, 200} {
		if status, _, _ := call(t, s2, "GET", "/crm/owners/2026-03/", nil); status != want {
			t.Fatalf("status %d, want %d", status, want)
		}
	}
}

func TestTimelinePages(t *testing.T) {
	s := newFake(t, crmtest.Options{Limit: -1})
	co := s.AddCompany(crm.Company{Name: "Acme <b>", Domains: []string{"acme.com"}})
	ct := s.AddContact("ann@acme.com", "Ann Lee", co)
	call(t, s, "POST", obj+"meetings/batch/create", map[string]any{"inputs": []any{map[string]any{
		"properties": map[string]any{"hs_timestamp": "2026-11-02T09:00:00Z", "hs_meeting_title": "<script>alert(1)</script>", "hs_meeting_outcome": "SCHEDULED"},
		"associations": []any{
			map[string]any{"to": map[string]any{"id": co}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 188}}},
			map[string]any{"to": map[string]any{"id": ct}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}}},
		},
		"objectWriteTraceId": "t",
	}}})
	page := func(path string) string {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if idx := page("/timeline/"); !strings.Contains(idx, "/timeline/companies/"+co) || !strings.Contains(idx, "Acme &lt;b&gt;") {
		t.Errorf("index:\n%s", idx)
	}
	p := page("/timeline/companies/" + co)
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "SCHEDULED", "Ann Lee &lt;ann@acme.com&gt;", "Mon 2 Nov 2026 09:00"} {
		if !strings.Contains(p, want) {
			t.Errorf("company page lacks %q:\n%s", want, p)
		}
	}
	if strings.Contains(p, "<script>") {
		t.Error("company page not escaped")
	}
}

// BenchmarkBatchCreate measures the fake writing meetings 100 per request,
// as a backfill does.
func BenchmarkBatchCreate(b *testing.B) {
	s := newFake(b, crmtest.Options{Limit: -1})
	inputs := make([]any, 100)
	n := 0
	body := func() map[string]any {
		for i := range inputs {
			n++
			inputs[i] = map[string]any{"properties": map[string]any{"hs_timestamp": "2026-11-02T09:00:00Z",
				"hs_meeting_title": "m", "hs_i_cal_uid": fmt.Sprint(n)}, "objectWriteTraceId": fmt.Sprint(n)}
		}
		return map[string]any{"inputs": inputs}
	}
	for b.Loop() {
		if status, _, _ := call(b, s, "POST", obj+"meetings/batch/create", body()); status != 201 {
			b.Fatal(status)
		}
	}
	b.ReportMetric(float64(len(s.Meetings()))/b.Elapsed().Seconds(), "meetings/s")
}
