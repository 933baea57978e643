package matching

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
)

// syntheticCompany returns company i of a synthetic portal: every company
// has its own domain; one in ten also a URL-shaped additional domain and a
// co.uk one; one in a hundred shares a holding domain with ninety-nine
// others; one in fifty shares a domain with one other; one in a thousand
// holds gmail.com.
func syntheticCompany(i int) crm.Company {
	n := strconv.Itoa(i)
	c := crm.Company{
		ID:      strconv.Itoa(10_000_000_000 + i),
		Name:    "Company " + n,
		Domains: []string{"c" + n + ".example"},
	}
	if i%10 == 0 {
		c.Domains = append(c.Domains, "https://www.c"+n+"-group.example/; C"+n+".example.co.uk")
	}
	if i%100 == 1 {
		c.Domains = append(c.Domains, "holding"+strconv.Itoa(i/10_000)+".example")
	}
	if i%50 == 3 {
		c.Domains = append(c.Domains, "pair"+strconv.Itoa(i/100)+".example")
	}
	if i%1000 == 2 {
		c.Domains = append(c.Domains, "gmail.com")
	}
	return c
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// buildIndex upserts n synthetic companies, generating them in chunks so
// that only the index's own memory survives.
func buildIndex(b *testing.B, n int) (*Index, time.Duration) {
	const chunk = 10_000
	ix := NewIndex(DefaultFreeMail())
	batch := make([]crm.Company, 0, chunk)
	var spent time.Duration
	for start := 0; start < n; start += chunk {
		batch = batch[:0]
		for i := start; i < min(start+chunk, n); i++ {
			batch = append(batch, syntheticCompany(i))
		}
		t0 := time.Now()
		for _, c := range batch {
			ix.Upsert(c)
		}
		spent += time.Since(t0)
	}
	clear(batch)
	return ix, spent
}

func BenchmarkIndexBuild1M(b *testing.B) {
	const n = 1_000_000
	DefaultFreeMail()
	for b.Loop() {
		b.StopTimer()
		before := heapAlloc()
		ix, spent := buildIndex(b, n)
		after := heapAlloc()
		b.ReportMetric(float64(spent.Nanoseconds())/n, "ns/company")
		b.ReportMetric(float64(after-before)/n, "bytes/company")
		b.ReportMetric(float64(ix.Domains()), "domains")
		b.ReportMetric(float64(ix.FreeMailSkipped()), "freemail-skipped")
		runtime.KeepAlive(ix)
		b.StartTimer()
	}
}

// benchIndex is a 1,000,000-company index shared by the lookup benchmarks.
var benchIndex = sync.OnceValue(func() *Index {
	ix := NewIndex(DefaultFreeMail())
	for i := range 1_000_000 {
		ix.Upsert(syntheticCompany(i))
	}
	return ix
})

func BenchmarkLookup(b *testing.B) {
	ix := benchIndex()
	cases := []struct {
		name string
		addr func(i int) string
	}{
		// The company's own domain.
		{"exact", func(i int) string { return "jane@c" + strconv.Itoa(i*977) + ".example" }},
		// A subdomain, found two levels up.
		{"subdomain", func(i int) string { return "jane@mail.eu.c" + strconv.Itoa(i*977) + ".example" }},
		// A domain shared by a hundred companies.
		{"shared100", func(i int) string { return "jane@holding" + strconv.Itoa(i%100) + ".example" }},
		// No company.
		{"miss", func(i int) string { return "jane@nobody" + strconv.Itoa(i) + ".example" }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			as := make([]Address, 1024)
			for i := range as {
				as[i] = mustParse(b, tc.addr(i))
			}
			i := 0
			for b.Loop() {
				ix.Lookup(as[i&1023])
				i++
			}
		})
	}
}

func BenchmarkParseAddress(b *testing.B) {
	for _, in := range []string{"jane@acme.com", "Jane.Doe+crm@Mail.EU.Acme.co.uk", "x@bücher.example"} {
		b.Run(in, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseAddress(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClassifyAll10(b *testing.B) {
	c := &Classifier{
		Internal: []string{"northwind.test"},
		Blocked:  []string{"competitor.example"},
		FreeMail: DefaultFreeMail(),
		Index:    benchIndex(),
	}
	typical := []calendar.Attendee{
		{Email: "rep@northwind.test", Organizer: true, Self: true},
		{Email: "se@northwind.test"},
		{Email: "Manager@EU.Northwind.test"},
		{Email: "c_1888@resource.calendar.google.com", Resource: true},
		{Email: "someone@gmail.com"},
		{Email: "CFO@c12345.example"},
		{Email: "buyer+meeting@mail.c12345.example"},
		{Email: "it@pair7.example"},
		{Email: "legal@c98760.example.co.uk"},
		{Email: "guest@unknown-corp.example"},
	}
	// One attendee on a domain a hundred CRM companies share.
	shared := slices.Clone(typical)
	shared[7].Email = "it@holding7.example"
	for _, bc := range []struct {
		name string
		as   []calendar.Attendee
	}{{"typical", typical}, {"shared100", shared}} {
		b.Run(bc.name, func(b *testing.B) {
			if _, companies := c.ClassifyAll(bc.as); len(companies) < 3 {
				b.Fatalf("%d companies matched, want at least 3", len(companies))
			}
			for b.Loop() {
				c.ClassifyAll(bc.as)
			}
		})
	}
}
