package layering

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/rapportsync/rapport"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
}

// packages lists the module's packages with their non-test imports.
func packages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var ps []pkg
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 10 {
		t.Fatalf("go list found %d packages", len(ps))
	}
	return ps
}

func under(path string, roots ...string) bool {
	for _, r := range roots {
		r = module + "/" + r
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

// TestLayering fails when a forbidden import appears.
func TestLayering(t *testing.T) {
	fakes := []string{"calendar/calendartest", "crm/crmtest"}
	adapters := []string{"calendar/google", "calendar/microsoft", "calendar/calendly", "crm/hubspot"}
	for _, p := range packages(t) {
		for _, imp := range p.Imports {
			var why string
			switch {
			case under(imp, "cmd"):
				why = "nothing imports the binary"
			case under(p.ImportPath, "calendar", "crm", "matching", "rules") &&
				(under(imp, "pipeline") || strings.HasPrefix(imp, "github.com/hibiken/asynq") || strings.HasPrefix(imp, "github.com/jackc/pgx")):
				why = "domain packages and adapters know nothing of the pipeline, the queue or the database"
			case under(p.ImportPath, "calendar", "crm", "matching", "rules") && !under(p.ImportPath, fakes...) && imp == "net/http/httptest":
				why = "only the fakes run HTTP servers"
			case under(p.ImportPath, "pipeline") && (under(imp, adapters...) || under(imp, fakes...)):
				why = "the core reaches providers through interfaces, never an adapter or a fake"
			case under(p.ImportPath, "pipeline") && under(imp, "internal/app", "internal/sim"):
				why = "the core does not import its wiring"
			}
			if why != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
}

// TestCoreNamesNoProvider fails when a Go string or SQL in the core (the
// pipeline and its subpackages, tests aside) names a provider: the core
// finds providers by the names their adapters register.
func TestCoreNamesNoProvider(t *testing.T) {
	names := regexp.MustCompile(`(?i)google|microsoft|graph\.|calendly|hubspot`)
	for _, p := range packages(t) {
		if !under(p.ImportPath, "pipeline") {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.ImportSpec:
					return false
				case *ast.BasicLit:
					if n.Kind != token.STRING {
						return true
					}
					s, _ := strconv.Unquote(n.Value)
					if names.MatchString(s) {
						t.Errorf("%s: the string %q names a provider", fset.Position(n.Pos()), s)
					}
				}
				return true
			})
		}
	}
}
