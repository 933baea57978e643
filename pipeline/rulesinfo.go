package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapportsync/rapport/rules"
)

var descRulesInfo = prometheus.NewDesc("rapport_rules_info",
	"The rule set in force, by version (a content hash of the rule files, with the git commit when the directory is a checkout, or +builtin); always 1.",
	[]string{"version"}, nil)

// RulesCollector exports the version of the rule set in force as an info
// series, rapport_rules_info{version="…"} 1, read at scrape time: a
// reload shows at the next scrape, and a fleet whose processes disagree
// shows two series.
type RulesCollector struct {
	// Rules returns the set in force (rules.Holder.Get); nil exports
	// nothing.
	Rules func() *rules.Set
}

// Describe implements prometheus.Collector.
func (c *RulesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descRulesInfo }

// Collect implements prometheus.Collector.
func (c *RulesCollector) Collect(ch chan<- prometheus.Metric) {
	if c.Rules == nil {
		return
	}
	if s := c.Rules(); s != nil {
		ch <- prometheus.MustNewConstMetric(descRulesInfo, prometheus.GaugeValue, 1, s.Version())
	}
}
