package pipeline

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapportsync/rapport/pipeline/ledger"
)

// Metrics are the pipeline's Prometheus metrics. Provider-specific
// counts carry the provider as a label.
type Metrics struct {
	events        *prometheus.CounterVec
	written       prometheus.Counter
	crmOps        *prometheus.CounterVec
	calendarOps   *prometheus.CounterVec
	requests      *prometheus.CounterVec
	rateLimitWait *prometheus.CounterVec
	latency       prometheus.Histogram
	deadLetters   *prometheus.CounterVec
	reauthNeeded  *prometheus.CounterVec
	calendarsGone prometheus.Counter
	swept         prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and the benchmark).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_events_total",
			Help: "Calendar event copies seen, by decision (log or skip)."}, []string{"decision"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "rapport_meetings_written_total",
			Help: "Meetings created or updated in the CRM."}),
		crmOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_crm_operations_total",
			Help: "CRM operations by provider, operation and outcome class (one operation may be several batched requests)."}, []string{"provider", "operation", "outcome"}),
		calendarOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_calendar_operations_total",
			Help: "Calendar operations by provider, operation and outcome class."}, []string{"provider", "operation", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_provider_requests_total",
			Help: "HTTP requests to providers by provider, endpoint and status."}, []string{"provider", "endpoint", "status"}),
		rateLimitWait: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_rate_limit_wait_seconds_total",
			Help: "Time spent waiting for client-side rate limits, by provider."}, []string{"provider"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rapport_webhook_to_crm_seconds",
			Help:    "Time from a calendar change being noticed (webhook) to the CRM write that reflects it.",
			Buckets: []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300}}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_dead_letters_total",
			Help: "Tasks parked in the dead-letter table, by task type and class."}, []string{"task", "class"}),
		reauthNeeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rapport_reauth_needed_total",
			Help: "Connections marked needs_reauth, by provider."}, []string{"provider"}),
		calendarsGone: prometheus.NewCounter(prometheus.CounterOpts{Name: "rapport_calendars_gone_total",
			Help: "Calendars found gone at their provider (not synced until re-imported)."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "rapport_sweep_requeued_total",
			Help: "Pending work the sweep found waiting past its grace period and queued again (lost tasks, or slow ones)."}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.written, m.crmOps, m.calendarOps, m.requests,
			m.rateLimitWait, m.latency, m.deadLetters, m.reauthNeeded, m.calendarsGone, m.swept)
	}
	return m
}

// Request counts one HTTP request to a provider: the adapters' request
// hook. status 0 means no response.
func (m *Metrics) Request(provider, endpoint string, status int) {
	s := "error"
	if status != 0 {
		s = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(provider, endpoint, s).Inc()
}

// RateLimitWait adds time a provider's requests waited for its limit.
func (m *Metrics) RateLimitWait(provider string, d time.Duration) {
	m.rateLimitWait.WithLabelValues(provider).Add(d.Seconds())
}

// ReauthNeeded counts a connection marked needs_reauth.
func (m *Metrics) ReauthNeeded(provider string) { m.reauthNeeded.WithLabelValues(provider).Inc() }

func (c *core) countCRM(provider, op string, err error) {
	c.metrics.crmOps.WithLabelValues(provider, op, classLabel(err)).Inc()
}

// StateCollector exports gauges read from the ledger at scrape time, so
// they are right whichever process did the work: sync age per calendar,
// channels expiring within a day, connections needing re-authorisation,
// calendars gone and open dead letters.
type StateCollector struct {
	Ledger *ledger.Store
	Clock  func() time.Time
}

var (
	descLag      = prometheus.NewDesc("rapport_calendar_sync_age_seconds", "Seconds since each calendar's last finished sync.", []string{"calendar_id"}, nil)
	descExpiring = prometheus.NewDesc("rapport_channels_expiring_soon", "Push channels expiring within 24 hours.", nil, nil)
	descReauth   = prometheus.NewDesc("rapport_connections_needing_reauth", "Connections whose status is needs_reauth, by provider.", []string{"provider"}, nil)
	descGone     = prometheus.NewDesc("rapport_calendars_gone", "Calendars their provider says no longer exist.", nil, nil)
	descDead     = prometheus.NewDesc("rapport_dead_letters_open", "Dead letters not yet retried.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descExpiring
	ch <- descReauth
	ch <- descGone
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
	g, err := c.Ledger.Gauges(ctx, now(), renewWithin)
	if err != nil {
		return
	}
	for id, age := range g.SyncAge {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, age.Seconds(), id)
	}
	ch <- prometheus.MustNewConstMetric(descExpiring, prometheus.GaugeValue, float64(g.ChannelsExpiring))
	for prov, n := range g.NeedsReauth {
		ch <- prometheus.MustNewConstMetric(descReauth, prometheus.GaugeValue, float64(n), prov)
	}
	ch <- prometheus.MustNewConstMetric(descGone, prometheus.GaugeValue, float64(g.CalendarsGone))
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(g.OpenDeadLetters))
}
