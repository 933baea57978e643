package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsConditions compiles every condition docs/rules.md shows in an
// ```expr block (one per line, a comment after two spaces), so that the
// reference stays true to the language.
func TestDocsConditions(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "docs", "rules.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```expr\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d expr blocks in docs/rules.md, want the two of the reference", len(blocks))
	}
	const decl = "crm_properties: {companies: [lifecyclestage, hubspot_owner_id, annualrevenue], contacts: [jobtitle]}\n"
	n := 0
	for _, blk := range blocks {
		for line := range strings.SplitSeq(strings.TrimSpace(blk[1]), "\n") {
			cond, _, _ := strings.Cut(line, "  ")
			if cond = strings.TrimSpace(cond); cond == "" {
				continue
			}
			n++
			dir := writeDir(t, map[string]string{"a.yaml": ruleWhen(cond) + decl})
			s, err := Load(dir)
			if err != nil {
				t.Errorf("docs condition %s: %v", cond, err)
				continue
			}
			// It runs on an ordinary meeting without panicking.
			s.Decide(Input{Event: meeting(guest("cfo@acme.example")), Owner: "rep@northwind.test", Internal: internal, Index: testIndex(nil)})
		}
	}
	if n < 10 {
		t.Errorf("compiled %d conditions, want the reference's", n)
	}
}
