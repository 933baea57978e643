package httpapi

import (
	"strings"
	"testing"
)

// TestRootPointsTheWay: the server's address answers a person with links
// to the console and the health checks; other unknown paths stay 404.
func TestRootPointsTheWay(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	for _, link := range []string{`href="/admin/"`, `href="/healthz"`, `href="/metrics"`} {
		if !strings.Contains(w.Body.String(), link) {
			t.Errorf("GET / lacks %s:\n%s", link, w.Body)
		}
	}
	if w := e.do("GET", "/nothing-here", ""); w.Code != 404 {
		t.Errorf("GET /nothing-here = %d, want 404", w.Code)
	}
}
