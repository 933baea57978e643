package repocheck

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/httpapi"
)

// exposed is what /metrics can show: metric name → its label names. It is
// built as internal/app builds the registry /metrics serves: the Go and
// process collectors, the pipeline's metrics, the ledger's gauges, the
// rules' version and the HTTP surface's metrics. A histogram's or summary's series names
// (_bucket, _sum, _count) are included.
func exposed(t *testing.T) map[string][]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := &recorder{Registerer: reg}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipeline.NewMetrics(rec)
	rec.MustRegister(&pipeline.StateCollector{}, &pipeline.RulesCollector{})
	h, err := httpapi.New(httpapi.Config{Service: noService{}, PublicURL: "http://127.0.0.1:8080", Registerer: rec, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	h.(*httpapi.Server).Close()

	out := map[string][]string{}
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read descriptor %s", d)
			}
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
				}
			}
			out[m[1]] = labels
			switch c.(type) {
			case *prometheus.HistogramVec, prometheus.Histogram:
				out[m[1]+"_bucket"] = append(append([]string{}, labels...), "le")
				out[m[1]+"_sum"] = labels
				out[m[1]+"_count"] = labels
			}
		}
	}
	// What the Go and process collectors gather says each metric's type.
	// (The ledger's gauges are read from PostgreSQL: described, not
	// gathered here.)
	rt := prometheus.NewRegistry()
	rt.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := rt.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
			out[mf.GetName()+"_sum"] = nil
			out[mf.GetName()+"_count"] = nil
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				out[mf.GetName()+"_bucket"] = []string{"le"}
			}
		}
		if _, ok := out[mf.GetName()]; !ok {
			out[mf.GetName()] = nil
		}
	}
	if _, ok := out["rapport_provider_requests_total"]; !ok {
		t.Fatal("the registry lacks rapport_provider_requests_total: the metrics were not registered")
	}
	return out
}

// recorder is a Registerer that remembers what was registered.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// noService is an httpapi.Service that is never called: the metrics are
// registered by httpapi.New alone.
type noService struct{ httpapi.Service }

func (noService) Ready(context.Context) error { return nil }

// promQL keywords and aggregation modifiers: identifiers that are not
// metric names.
var promqlWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

var (
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	rangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	matcherRE  = regexp.MustCompile(`\{([^}]*)\}`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	numberRE   = regexp.MustCompile(`\b\d+(\.\d+)?(e[+-]?\d+)?\b`)
)

// queryNames returns the metric names and the label names a PromQL
// expression uses. It is a small lexer, enough for the expressions of
// deploy/: strings, ranges and numbers are dropped, grouping and matcher
// label names collected, and an identifier not followed by "(" is a metric.
func queryNames(expr string) (metrics, labels []string) {
	e := expr
	for _, m := range matcherRE.FindAllStringSubmatch(stringRE.ReplaceAllString(e, `""`), -1) {
		for _, part := range strings.Split(m[1], ",") {
			if name := identRE.FindString(strings.TrimSpace(part)); name != "" {
				labels = append(labels, name)
			}
		}
	}
	e = stringRE.ReplaceAllString(e, " ")
	e = matcherRE.ReplaceAllString(e, " ")
	e = rangeRE.ReplaceAllString(e, " ")
	for _, m := range groupingRE.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	e = groupingRE.ReplaceAllString(e, " ")
	e = numberRE.ReplaceAllString(e, " ")
	for _, loc := range identRE.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promqlWords[strings.ToLower(name)] || strings.HasPrefix(rest, "(") {
			continue
		}
		metrics = append(metrics, name)
	}
	return metrics, labels
}

// targetLabels are added by Prometheus to every series it scrapes.
var targetLabels = map[string]bool{"job": true, "instance": true, "__name__": true}

// checkQuery reports a query's names that /metrics does not expose, and
// labels that none of its metrics carries.
func checkQuery(t testing.TB, where, expr string, names map[string][]string) {
	t.Helper()
	metrics, labels := queryNames(expr)
	if len(metrics) == 0 {
		t.Errorf("%s: no metric found in %q", where, expr)
	}
	have := map[string]bool{}
	for _, m := range metrics {
		ls, ok := names[m]
		if !ok {
			t.Errorf("%s: %q names metric %s, which /metrics does not expose%s", where, expr, m, suggest(m, names))
			continue
		}
		for _, l := range ls {
			have[l] = true
		}
	}
	for _, l := range labels {
		if !have[l] && !targetLabels[l] {
			t.Errorf("%s: %q uses label %s, which none of its metrics has", where, expr, l)
		}
	}
}

// suggest names the exposed metrics sharing the longest prefix with m.
func suggest(m string, names map[string][]string) string {
	var best []string
	bestLen := 0
	for n := range names {
		k := 0
		for k < len(n) && k < len(m) && n[k] == m[k] {
			k++
		}
		switch {
		case k > bestLen:
			best, bestLen = []string{n}, k
		case k == bestLen:
			best = append(best, n)
		}
	}
	if bestLen < len("rapport_x") || len(best) > 5 {
		return ""
	}
	sort.Strings(best)
	return " (did you mean " + strings.Join(best, " or ") + "?)"
}

func TestQueryNames(t *testing.T) {
	m, l := queryNames(`histogram_quantile(0.99, sum by (le, route) (rate(rapport_http_request_duration_seconds_bucket{status=~"5..", route!="x"}[5m:1m]))) > 10 and on(job) up`)
	if strings.Join(m, ",") != "rapport_http_request_duration_seconds_bucket,up" {
		t.Errorf("metrics = %v", m)
	}
	if strings.Join(l, ",") != "status,route,le,route,job" {
		t.Errorf("labels = %v", l)
	}
}

// TestCheckQueryCatchesMistakes: the check fails on a metric /metrics does
// not have (an old name) and on a label the metric lacks.
func TestCheckQueryCatchesMistakes(t *testing.T) {
	names := map[string][]string{"rapport_provider_requests_total": {"provider", "endpoint", "status"}}
	for expr, want := range map[string]string{
		`sum(rate(rapport_crm_requests_total[5m]))`:                              "does not expose",
		`sum by (calendar_id) (rate(rapport_provider_requests_total[5m]))`:       "label calendar_id",
		`sum by (provider) (rate(rapport_provider_requests_total{job="x"}[5m]))`: "",
	} {
		rec := &errRecorder{TB: t}
		checkQuery(rec, "test", expr, names)
		if got := strings.Join(rec.errs, "\n"); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("checkQuery(%q) reported %q, want %q", expr, got, want)
		}
	}
}

type errRecorder struct {
	testing.TB
	errs []string
}

func (r *errRecorder) Helper() {}
func (r *errRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
