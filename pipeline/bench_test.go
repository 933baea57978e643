package pipeline_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar/calendartest"
	"github.com/rapportsync/rapport/crm"
)

// BenchmarkInitialSync measures the pipeline's own throughput against
// zero-latency fakes: 4 calendars of customer meetings, synced, decided,
// written to HubSpot in batches and linked back. `rapport bench` measures
// the same at scale.
func BenchmarkInitialSync(b *testing.B) {
	const calendars, perCal, companies = 4, 1500, 500
	for range b.N {
		// The fake Google has no per-user limit: measure the pipeline, not it.
		h := newHarness(b, harnessOptions{googlePerMinute: 1 << 30})
		for i := range companies {
			h.hub.AddCompany(crm.Company{Name: fmt.Sprintf("Co %d", i), Domains: []string{fmt.Sprintf("co%d.example", i)}})
		}
		base := time.Now().UTC().Truncate(time.Hour).Add(-40 * 24 * time.Hour)
		for c := range calendars {
			cal := fmt.Sprintf("emp%d@northwind.test", c)
			h.addCalendar(cal)
			for i := range perCal {
				s := base.Add(time.Duration(i) * 37 * time.Minute)
				if _, err := h.google.Insert(cal, calendartest.EventSpec{Summary: "Meeting", Start: s, End: s.Add(30 * time.Minute),
					Attendees: []calendartest.Attendee{att(cal), att(fmt.Sprintf("buyer%d@co%d.example", i%7, (i*31+c)%companies))}}); err != nil {
					b.Fatal(err)
				}
			}
		}
		h.startWorker()
		h.connectHubSpot()
		start := time.Now()
		for c := range calendars {
			cal := fmt.Sprintf("emp%d@northwind.test", c)
			h.connectGoogle(cal, "tok-"+cal)
		}
		h.eventually("all decided", func() bool {
			var n int
			h.pool.QueryRow(h.ctx, `SELECT count(*) FROM meeting_copies c JOIN calendars k ON k.id = c.calendar_id WHERE k.workspace_id = $1`, h.ws).Scan(&n)
			return n == calendars*perCal
		})
		decided := time.Since(start)
		h.eventually("all written", func() bool { return len(h.hub.Meetings()) == calendars*perCal })
		written := time.Since(start)
		h.settle()
		d := time.Since(start)
		b.ReportMetric(float64(calendars*perCal)/decided.Seconds(), "decided/s")
		b.ReportMetric(float64(calendars*perCal)/written.Seconds(), "written/s")
		n := calendars * perCal
		b.ReportMetric(float64(n)/d.Seconds(), "events/s")
		b.ReportMetric(float64(h.hub.TotalCalls())/float64(len(h.hub.Meetings())), "hubspot-calls/meeting")
		h.stopWorker()
	}
}
