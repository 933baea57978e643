package pipeline

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's Prometheus metrics.
type Metrics struct {
	events      *prometheus.CounterVec
	written     prometheus.Counter
	crmCalls    *prometheus.CounterVec
	googleCalls *prometheus.CounterVec
	// CRMRequests and GoogleRequests count HTTP requests by endpoint and
	// status; the provider clients report them through hooks.
	CRMRequests    *prometheus.CounterVec
	GoogleRequests *prometheus.CounterVec
	// RateLimitWait sums the time spent waiting on rate limits.
	RateLimitWait *prometheus.CounterVec
	latency       prometheus.Histogram
	deadLetters   *prometheus.CounterVec
	// ReauthNeeded counts connections marked needs_reauth.
	ReauthNeeded *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and the benchmark).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_events_total",
			Help: "Calendar event copies seen, by decision (log or skip)."}, []string{"decision"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "rapport_meetings_written_total",
			Help: "Meetings created or updated in the CRM."}),
		crmCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_crm_operations_total",
			Help: "CRM operations by operation and outcome class (one operation may be several batched requests)."}, []string{"operation", "outcome"}),
		googleCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_calendar_operations_total",
			Help: "Calendar operations by operation and outcome class."}, []string{"operation", "outcome"}),
		CRMRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_crm_requests_total",
			Help: "HubSpot HTTP requests by endpoint and status."}, []string{"endpoint", "status"}),
		GoogleRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_google_requests_total",
			Help: "Google Calendar HTTP requests by endpoint and status."}, []string{"endpoint", "status"}),
		RateLimitWait: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_rate_limit_wait_seconds_total",
			Help: "Time spent waiting for client-side rate limits, by provider."}, []string{"provider"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rapport_webhook_to_crm_seconds",
			Help:    "Time from a calendar change being noticed (webhook) to the CRM write that reflects it.",
			Buckets: []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300}}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_dead_letters_total",
			Help: "Tasks parked in the dead-letter table, by task type and class."}, []string{"task", "class"}),
		ReauthNeeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_reauth_needed_total",
			Help: "Connections marked needs_reauth, by provider."}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.written, m.crmCalls, m.googleCalls, m.CRMRequests, m.GoogleRequests,
			m.RateLimitWait, m.latency, m.deadLetters, m.ReauthNeeded)
	}
	return m
}

// StateCollector exports gauges read from the database at scrape time, so
// they are right whichever process did the work: sync lag per calendar,
// channels expiring within a day, connections needing re-authorisation and
// open dead letters.
type StateCollector struct {
	Pool  *pgxpool.Pool
	Clock func() time.Time
}

var (
	descLag      = prometheus.NewDesc("rapport_calendar_sync_age_seconds", "Seconds since each calendar's last finished sync.", []string{"calendar_id"}, nil)
	descExpiring = prometheus.NewDesc("rapport_channels_expiring_soon", "Watch channels expiring within 24 hours.", nil, nil)
	descReauth   = prometheus.NewDesc("rapport_connections_needing_reauth", "Connections whose status is needs_reauth, by provider.", []string{"provider"}, nil)
	descDead     = prometheus.NewDesc("rapport_dead_letters_open", "Dead letters not yet retried.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descExpiring
	ch <- descReauth
	ch <- descDead
}

// Collect implements prometheus.Collector.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now
	if c.Clock != nil {
		now = c.Clock
	}
	rows, err := c.Pool.Query(ctx, `SELECT id::text, last_synced_at FROM calendars WHERE last_synced_at IS NOT NULL`)
	if err == nil {
		for rows.Next() {
			var id string
			var at time.Time
			if rows.Scan(&id, &at) == nil {
				ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, now().Sub(at).Seconds(), id)
			}
		}
		rows.Close()
	}
	var n int
	if c.Pool.QueryRow(ctx, `SELECT count(*) FROM calendars WHERE channel_expires_at < $1`, now().Add(24*time.Hour)).Scan(&n) == nil {
		ch <- prometheus.MustNewConstMetric(descExpiring, prometheus.GaugeValue, float64(n))
	}
	rows, err = c.Pool.Query(ctx, `SELECT provider, count(*) FROM connections WHERE status = 'needs_reauth' GROUP BY provider`)
	if err == nil {
		for rows.Next() {
			var prov string
			if rows.Scan(&prov, &n) == nil {
				ch <- prometheus.MustNewConstMetric(descReauth, prometheus.GaugeValue, float64(n), prov)
			}
		}
		rows.Close()
	}
	if c.Pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE retried_at IS NULL`).Scan(&n) == nil {
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(n))
	}
}

// GoogleTransport counts Google Calendar requests by endpoint and status.
func (m *Metrics) GoogleTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		status := "error"
		if err == nil {
			status = strconv.Itoa(resp.StatusCode)
		}
		m.GoogleRequests.WithLabelValues(googleEndpoint(r), status).Inc()
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// googleEndpoint names a Calendar API request without its ids.
func googleEndpoint(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/channels/stop"):
		return "channels.stop"
	case strings.HasSuffix(p, "/events/watch"):
		return "events.watch"
	case strings.HasSuffix(p, "/events") && r.Method == http.MethodGet:
		return "events.list"
	case strings.Contains(p, "/events/") && r.Method == http.MethodPatch:
		return "events.patch"
	case strings.Contains(p, "/events/") && r.Method == http.MethodGet:
		return "events.get"
	}
	return "other"
}
