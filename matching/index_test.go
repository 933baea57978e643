package matching

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/rapportsync/rapport/crm"
)

func mustParse(t testing.TB, email string) Address {
	t.Helper()
	a, err := ParseAddress(email)
	if err != nil {
		t.Fatalf("ParseAddress(%q): %v", email, err)
	}
	return a
}

// lookupIDs returns the ids and matched domains of a lookup, for compact
// comparisons.
func lookupIDs(t testing.TB, ix *Index, email string) []string {
	t.Helper()
	var ids []string
	for _, r := range ix.Lookup(mustParse(t, email)) {
		ids = append(ids, r.ID+"@"+r.Domain)
	}
	return ids
}

func TestIndexLookup(t *testing.T) {
	t.Parallel()
	ix := NewIndex(DefaultFreeMail())
	for _, c := range []crm.Company{
		{ID: "101", Name: "Acme", Domains: []string{"acme.com", "https://www.acme.io/"}},
		{ID: "102", Name: "Acme Sales", Domains: []string{"sales.acme.com"}},
		{ID: "103", Name: "Acme UK", Domains: []string{"acme.co.uk"}},
		{ID: "104", Name: "Bücher", Domains: []string{"bücher.example"}},
		{ID: "105", Name: "Shared A", Domains: []string{"shared.test"}},
		{ID: "99", Name: "Shared B", Domains: []string{"SHARED.test"}},
		{ID: "abc", Name: "Shared C", Domains: []string{"www.shared.test"}},
		{ID: "106", Name: "Only EU", Domains: []string{"eu.only.test"}},
	} {
		ix.Upsert(c)
	}
	tests := []struct {
		email string
		want  []string
	}{
		{"jane@acme.com", []string{"101@acme.com"}},
		{"JANE+x@ACME.IO", []string{"101@acme.io"}},
		{"ops@mail.acme.com", []string{"101@acme.com"}},
		// A company on a subdomain matches that subdomain, exactly and below.
		{"bob@sales.acme.com", []string{"102@sales.acme.com"}},
		{"bob@eu.sales.acme.com", []string{"102@sales.acme.com"}},
		{"cfo@mail.eu.acme.co.uk", []string{"103@acme.co.uk"}},
		{"x@bücher.example", []string{"104@xn--bcher-kva.example"}},
		// One domain, several companies, ordered by id (decimal ids by value).
		{"a@shared.test", []string{"99@shared.test", "105@shared.test", "abc@shared.test"}},
		{"a@team.shared.test", []string{"99@shared.test", "105@shared.test", "abc@shared.test"}},
		// The parent of a company's subdomain is not the company.
		{"x@only.test", nil},
		{"x@eu.only.test", []string{"106@eu.only.test"}},
		{"x@other.test", nil},
		{"x@acme.co.uk.example", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, lookupIDs(t, ix, tt.email)); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tt.email, diff)
		}
	}
	// An Address built by hand without Registrable still walks up.
	if got := ix.Lookup(Address{Host: "mail.acme.com"}); len(got) != 1 || got[0].ID != "101" {
		t.Errorf("Lookup(host only) = %v, want company 101", got)
	}
	if got := ix.Lookup(Address{}); got != nil {
		t.Errorf("Lookup(zero) = %v, want nil", got)
	}
	got := ix.Lookup(mustParse(t, "x@acme.com"))
	want := []CompanyRef{{ID: "101", Name: "Acme", Domain: "acme.com"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lookup refs (-want +got):\n%s", diff)
	}
	if ix.Len() != 8 {
		t.Errorf("Len() = %d, want 8", ix.Len())
	}
}

func TestIndexUpsertReplaceRemove(t *testing.T) {
	t.Parallel()
	ix := NewIndex(nil)
	ix.Upsert(crm.Company{ID: "1", Name: "Acme", Domains: []string{"acme.com; acme.io"}})
	ix.Upsert(crm.Company{ID: "2", Name: "Beta", Domains: []string{"acme.io", "beta.com"}})
	if diff := cmp.Diff([]string{"1@acme.io", "2@acme.io"}, lookupIDs(t, ix, "x@acme.io")); diff != "" {
		t.Errorf("shared domain (-want +got):\n%s", diff)
	}

	// Replacing drops the old domains and takes the new name and domains.
	ix.Upsert(crm.Company{ID: "1", Name: "Acme Corp", Domains: []string{"acme.net"}})
	if got := lookupIDs(t, ix, "x@acme.com"); got != nil {
		t.Errorf("old domain still matches: %v", got)
	}
	if diff := cmp.Diff([]string{"2@acme.io"}, lookupIDs(t, ix, "x@acme.io")); diff != "" {
		t.Errorf("shared domain after replace (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]CompanyRef{{"1", "Acme Corp", "acme.net"}}, ix.Lookup(mustParse(t, "x@acme.net"))); diff != "" {
		t.Errorf("new domain (-want +got):\n%s", diff)
	}
	// Same content again is a no-op.
	ix.Upsert(crm.Company{ID: "1", Name: "Acme Corp", Domains: []string{"acme.net"}})
	if ix.Len() != 2 || ix.Domains() != 3 {
		t.Errorf("Len, Domains = %d, %d; want 2, 3", ix.Len(), ix.Domains())
	}
	// Only the name changes.
	ix.Upsert(crm.Company{ID: "1", Name: "Acme Inc", Domains: []string{"acme.net"}})
	if got := ix.Lookup(mustParse(t, "x@acme.net")); len(got) != 1 || got[0].Name != "Acme Inc" {
		t.Errorf("rename: %v", got)
	}

	ix.Remove("2")
	ix.Remove("2")
	ix.Remove("missing")
	for _, e := range []string{"x@acme.io", "x@beta.com"} {
		if got := lookupIDs(t, ix, e); got != nil {
			t.Errorf("Lookup(%q) after remove = %v", e, got)
		}
	}
	if ix.Len() != 1 || ix.Domains() != 1 {
		t.Errorf("Len, Domains = %d, %d; want 1, 1", ix.Len(), ix.Domains())
	}

	// A removed slot is reused, and the new company is not confused with the
	// old one.
	ix.Upsert(crm.Company{ID: "3", Name: "Gamma", Domains: []string{"gamma.com", "acme.net"}})
	if diff := cmp.Diff([]string{"1@acme.net", "3@acme.net"}, lookupIDs(t, ix, "x@acme.net")); diff != "" {
		t.Errorf("after reuse (-want +got):\n%s", diff)
	}
	ix.Remove("1")
	if diff := cmp.Diff([]CompanyRef{{"3", "Gamma", "acme.net"}}, ix.Lookup(mustParse(t, "x@acme.net"))); diff != "" {
		t.Errorf("after removing one of two (-want +got):\n%s", diff)
	}
	// A company without valid domains is held but matches nothing.
	ix.Upsert(crm.Company{ID: "4", Name: "Nowhere", Domains: []string{"n/a"}})
	ix.Upsert(crm.Company{Name: "No id", Domains: []string{"noid.com"}})
	if ix.Len() != 2 {
		t.Errorf("Len() = %d, want 2", ix.Len())
	}
	if got := lookupIDs(t, ix, "x@noid.com"); got != nil {
		t.Errorf("company without id indexed: %v", got)
	}
}

func TestIndexFreeMail(t *testing.T) {
	t.Parallel()
	ix := NewIndex(DefaultFreeMail())
	ix.Upsert(crm.Company{ID: "1", Name: "Gmail placeholder", Domains: []string{"gmail.com"}})
	ix.Upsert(crm.Company{ID: "2", Name: "Mixed", Domains: []string{"acme.com; hotmail.com"}})
	ix.Upsert(crm.Company{ID: "3", Name: "Clean", Domains: []string{"beta.com"}})
	if got := ix.FreeMailSkipped(); got != 2 {
		t.Errorf("FreeMailSkipped() = %d, want 2", got)
	}
	for _, e := range []string{"someone@gmail.com", "someone@hotmail.com"} {
		if got := lookupIDs(t, ix, e); got != nil {
			t.Errorf("Lookup(%q) = %v, want no company", e, got)
		}
	}
	if diff := cmp.Diff([]string{"2@acme.com"}, lookupIDs(t, ix, "x@acme.com")); diff != "" {
		t.Errorf("mixed company's other domain (-want +got):\n%s", diff)
	}
	// The count follows replacement and removal.
	ix.Upsert(crm.Company{ID: "2", Name: "Mixed", Domains: []string{"acme.com"}})
	ix.Upsert(crm.Company{ID: "1", Name: "Gmail placeholder", Domains: []string{"gmail.com"}})
	if got := ix.FreeMailSkipped(); got != 1 {
		t.Errorf("FreeMailSkipped() after replace = %d, want 1", got)
	}
	ix.Remove("1")
	if got := ix.FreeMailSkipped(); got != 0 {
		t.Errorf("FreeMailSkipped() after remove = %d, want 0", got)
	}
	// Without a free-mail list, nothing is skipped.
	plain := NewIndex(nil)
	plain.Upsert(crm.Company{ID: "1", Domains: []string{"gmail.com"}})
	if plain.FreeMailSkipped() != 0 || len(lookupIDs(t, plain, "x@gmail.com")) != 1 {
		t.Error("nil free-mail list skipped a domain")
	}
}

func TestIndexConcurrent(t *testing.T) {
	t.Parallel()
	ix := NewIndex(DefaultFreeMail())
	a := mustParse(t, "x@c7.test")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprint(i % 20)
				switch (i + w) % 3 {
				case 0:
					ix.Upsert(crm.Company{ID: id, Name: "C", Domains: []string{"c" + id + ".test", "shared.test"}})
				case 1:
					ix.Remove(id)
				default:
					ix.Lookup(a)
					ix.Len()
				}
			}
		})
	}
	wg.Wait()
	// Whatever survived, every indexed domain points at live companies.
	for i := range 20 {
		id := fmt.Sprint(i)
		for _, r := range ix.Lookup(mustParse(t, "x@c"+id+".test")) {
			if r.ID != id {
				t.Errorf("c%s.test matched company %s", id, r.ID)
			}
		}
	}
	if n := len(ix.Lookup(mustParse(t, "x@shared.test"))); n != ix.Len() {
		t.Errorf("shared.test has %d companies, index has %d", n, ix.Len())
	}
}

func TestCompareIDs(t *testing.T) {
	t.Parallel()
	ordered := []string{"1", "2", "10", "99", "100", "12345678901", "01", "a", "b"}
	for i := range ordered {
		for j := range ordered {
			got := compareIDs(ordered[i], ordered[j])
			if (i < j && got >= 0) || (i > j && got <= 0) || (i == j && got != 0) {
				t.Errorf("compareIDs(%q, %q) = %d", ordered[i], ordered[j], got)
			}
		}
	}
}

// released returns a channel closed once the record memory of company id is
// garbage collected.
func released(ix *Index, id string) <-chan struct{} {
	done := make(chan struct{})
	ix.mu.RLock()
	p := unsafe.StringData(ix.companies[ix.ids[id]].blob)
	ix.mu.RUnlock()
	runtime.AddCleanup(p, func(ch chan struct{}) { close(ch) }, done)
	return done
}

func waitReleased(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-ch:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Errorf("%s: old record still referenced by the index", what)
}

// TestIndexReleasesOldRecords checks that map keys, which share the
// records' memory, are re-pointed when a company is replaced or removed, so
// that the index does not keep stale records alive.
func TestIndexReleasesOldRecords(t *testing.T) {
	ix := NewIndex(nil)
	long := strings.Repeat("x", 64)
	ix.Upsert(crm.Company{ID: "1", Name: "A " + long, Domains: []string{"shared.test", "a.test"}})
	ix.Upsert(crm.Company{ID: "2", Name: "B " + long, Domains: []string{"shared.test", "b.test"}})
	ix.Upsert(crm.Company{ID: "3", Name: "C " + long, Domains: []string{"shared.test"}})

	// Company 3 inserted last, so its record holds the shared key.
	gone3 := released(ix, "3")
	ix.Remove("3")
	waitReleased(t, "removed company", gone3)

	gone2 := released(ix, "2")
	ix.Upsert(crm.Company{ID: "2", Name: "B renamed " + long, Domains: []string{"shared.test", "b.test"}})
	waitReleased(t, "replaced company", gone2)

	gone1 := released(ix, "1")
	ix.Remove("1")
	waitReleased(t, "removed company of a formerly shared domain", gone1)

	if diff := cmp.Diff([]string{"2@shared.test"}, lookupIDs(t, ix, "x@shared.test")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
