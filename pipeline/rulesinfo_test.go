package pipeline_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// TestRulesInfo: /metrics carries the version of the rules in force, and
// follows a reload.
func TestRulesInfo(t *testing.T) {
	holder := rules.NewHolder(rules.Default())
	reg := prometheus.NewRegistry()
	reg.MustRegister(&pipeline.RulesCollector{Rules: holder.Get})
	versions := func() []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			if mf.GetName() != "rapport_rules_info" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetGauge().GetValue() != 1 || len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "version" {
					t.Errorf("series %v, want version=… 1", m)
				}
				out = append(out, m.GetLabel()[0].GetValue())
			}
		}
		return out
	}
	if got := versions(); len(got) != 1 || got[0] != rules.Default().Version() {
		t.Errorf("rapport_rules_info versions %v, want [%s]", got, rules.Default().Version())
	}
	next := ruleSet(t, map[string]string{"r.yaml": "version: 1\nrules:\n  - name: all\n    when: true\n    action: log\n"})
	holder.Store(next)
	if got := versions(); len(got) != 1 || got[0] != next.Version() {
		t.Errorf("after a reload: versions %v, want [%s]", got, next.Version())
	}
}
