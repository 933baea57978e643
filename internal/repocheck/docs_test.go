package repocheck

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/rapportsync/rapport/internal/app"
)

// variables is the set of configuration variables Rapport reads.
func variables() map[string]bool {
	out := map[string]bool{}
	for _, v := range app.Variables() {
		out[v.Name] = true
	}
	return out
}

// docFiles are the Markdown files a reader of the repository follows.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "CONTRIBUTING.md", "CHANGELOG.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, rel)
	}
	sort.Strings(files)
	return files
}

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	fenceRE      = regexp.MustCompile("(?ms)^```.*?^```")
	inlineCodeRE = regexp.MustCompile("`[^`\n]*`")
	linkRE       = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE    = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
)

// prose is a Markdown text without its code: links in code are not links.
func prose(md string) string {
	return inlineCodeRE.ReplaceAllString(fenceRE.ReplaceAllString(md, ""), "``")
}

// anchors are the fragment ids a Markdown file's headings get on the usual
// repository hosts: lower case, punctuation dropped, spaces to hyphens,
// repeats numbered.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(md, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		id := b.String()
		for n, base := 1, id; out[id]; n++ {
			id = base + "-" + string(rune('0'+n))
		}
		out[id] = true
	}
	return out
}

// TestDocsLinksResolve: every relative link in the README and docs/ names
// a file or directory of the repository, and every #fragment a heading of
// its page. No link leaves the repository.
func TestDocsLinksResolve(t *testing.T) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range docFiles(t) {
		md := read(t, file)
		for _, m := range linkRE.FindAllStringSubmatch(prose(md), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				abs, _ := filepath.Abs(filepath.Join(root, dest))
				if abs != absRoot && !strings.HasPrefix(abs, absRoot+string(filepath.Separator)) {
					t.Errorf("%s: link %s leaves the repository", file, target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
					t.Errorf("%s: link %s: %s does not exist", file, target, dest)
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s: link %s: a fragment of a file that is not Markdown", file, target)
				continue
			}
			if !anchors(read(t, dest))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", file, target, dest, frag)
			}
		}
	}
	if n < 20 {
		t.Errorf("found %d relative links, fewer than the docs have", n)
	}
}

func TestAnchors(t *testing.T) {
	got := anchors("# Rapport\n## Why was this meeting (not) logged?\n## free_mail and blocked_domains\n```\n# not a heading\n```\n## `POST /admin/workspaces`\n## Rapport\n")
	for _, want := range []string{"rapport", "why-was-this-meeting-not-logged", "free_mail-and-blocked_domains", "post-adminworkspaces", "rapport-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a code block made an anchor")
	}
}

// TestConfigurationDocNamesEveryVariable: docs/configuration.md has a row
// for each variable Rapport reads, with its default.
func TestConfigurationDocNamesEveryVariable(t *testing.T) {
	doc := read(t, filepath.Join("docs", "configuration.md"))
	lines := strings.Split(doc, "\n")
	for _, v := range app.Variables() {
		row := ""
		for _, l := range lines {
			if strings.HasPrefix(l, "| `"+v.Name+"` |") {
				row = l
				break
			}
		}
		switch {
		case row == "":
			t.Errorf("docs/configuration.md has no row for %s (%s)", v.Name, v.Help)
		case v.Default != "" && !strings.Contains(row, "`"+v.Default+"`"):
			t.Errorf("docs/configuration.md: %s's row does not give its default `%s`:\n%s", v.Name, v.Default, row)
		case v.Default == "" && !strings.Contains(row, "| none |") && !strings.Contains(row, "| built-in"):
			t.Errorf("docs/configuration.md: %s has no default; its row says otherwise:\n%s", v.Name, row)
		}
	}
}

// TestDocsNameRealVariables: every RAPPORT_* the docs and deploy/ mention
// is one Rapport (or its tests) reads.
func TestDocsNameRealVariables(t *testing.T) {
	known := variables()
	for _, v := range []string{"RAPPORT_TEST_ALLOW_SKIP", "RAPPORT_SKIP_SERVICES"} {
		known[v] = true
	}
	re := regexp.MustCompile(`RAPPORT_[A-Z][A-Z_]*[A-Z]`)
	for _, file := range docFiles(t) {
		for _, v := range re.FindAllString(read(t, file), -1) {
			if !known[v] {
				t.Errorf("%s names %s, which nothing reads", file, v)
			}
		}
	}
}

// TestAdminAPIDocNamesEveryRoute: docs/admin-api.md documents each route
// the HTTP server registers.
func TestAdminAPIDocNamesEveryRoute(t *testing.T) {
	src := read(t, filepath.Join("pipeline", "httpapi", "server.go"))
	start := strings.Index(src, "func (s *Server) routes()")
	if start < 0 {
		t.Fatal("no routes() in pipeline/httpapi/server.go")
	}
	end := strings.Index(src[start:], "\n}\n")
	body := src[start : start+end]
	doc := read(t, filepath.Join("docs", "admin-api.md"))
	routes := regexp.MustCompile(`Handle(?:Func)?\("((?:GET|POST|PUT|PATCH|DELETE) [^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(routes) < 15 {
		t.Fatalf("found %d routes in routes(), expected the whole API", len(routes))
	}
	for _, r := range routes {
		route := strings.Replace(r[1], "/{$}", "/", 1)
		if !strings.Contains(doc, "`"+route+"`") {
			t.Errorf("docs/admin-api.md does not document %s", route)
		}
	}
	if strings.Contains(body, "queuesRoot") && !strings.Contains(doc, "`/admin/queues/`") {
		t.Error("docs/admin-api.md does not document the queue UI at /admin/queues/")
	}
}

// Identifiers shaped like metric names that are not metrics.
var notMetrics = map[string]bool{"rapport_demo": true, "rapport_bench": true, "rapport_meeting_key": true, "rapport_test_": true}

// TestDocsNameRealMetrics: every rapport_* metric the docs name is one
// /metrics exposes. (CHANGELOG.md names retired ones on purpose.)
func TestDocsNameRealMetrics(t *testing.T) {
	names := exposed(t)
	re := regexp.MustCompile(`rapport_[a-z0-9_]+`)
	for _, file := range docFiles(t) {
		if file == "CHANGELOG.md" {
			continue
		}
		for _, m := range re.FindAllString(read(t, file), -1) {
			if notMetrics[m] {
				continue
			}
			if _, ok := names[m]; !ok {
				t.Errorf("%s names metric %s, which /metrics does not expose%s", file, m, suggest(m, names))
			}
		}
	}
}
