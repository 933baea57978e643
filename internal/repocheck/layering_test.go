package repocheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/rapportsync/rapport"

// imports lists each package of the module with its imports (tests
// excluded), module paths shortened to "./…".
func imports(t *testing.T) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(strings.ReplaceAll(line, module, "."))
		pkgs[f[0]] = f[1:]
	}
	return pkgs
}

func under(pkg string, prefixes ...string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// TestLayering checks the dependency rules of CONTRIBUTING.md.
func TestLayering(t *testing.T) {
	pkgs := imports(t)
	if len(pkgs) < 15 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	adapters := []string{"./calendar/google", "./calendar/microsoft", "./calendar/calendly", "./crm/hubspot"}
	machinery := []string{"github.com/hibiken/asynq", "github.com/jackc/pgx/v5", "./pipeline", "./internal/app", "./internal/sim"}
	for pkg, imps := range pkgs {
		for _, imp := range imps {
			switch {
			case under(pkg, "./calendar", "./crm", "./matching", "./rules", "./internal/provider") && under(imp, machinery...):
				t.Errorf("%s imports %s: the domain and its adapters know no queue, database or pipeline", pkg, imp)
			case under(pkg, "./pipeline") && under(imp, adapters...):
				t.Errorf("%s imports %s: the core names no provider (find it through pipeline.Registry)", pkg, imp)
			case under(imp, adapters...) && !under(pkg, "./internal/app", "./internal/sim") && !under(pkg, adapters...) && !strings.HasPrefix(imp, pkg+"/"):
				t.Errorf("%s imports the adapter %s: only internal/app and internal/sim wire adapters", pkg, imp)
			case pkg == "./pipeline/plan" && (under(imp, "github.com/jackc/pgx/v5", "github.com/hibiken/asynq", "github.com/redis/go-redis/v9", "net/http", "database/sql") || under(imp, "./pipeline/ledger")):
				t.Errorf("pipeline/plan imports %s: decisions do no I/O", imp)
			}
		}
	}
}

// TestOnlyTheLedgerWritesSQL: no Go file outside pipeline/ledger and
// migrations sends a query of its own text.
func TestOnlyTheLedgerWritesSQL(t *testing.T) {
	query := regexp.MustCompile("\\.(Exec|Query|QueryRow|Prepare)\\(ctx, *[`\"]")
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || rel == "pipeline/ledger" || rel == "migrations" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		n++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := query.FindIndex(b); loc != nil {
			line := 1 + strings.Count(string(b[:loc[0]]), "\n")
			t.Errorf("%s:%d sends SQL of its own: queries belong in pipeline/ledger", rel, line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Errorf("looked at %d Go files", n)
	}
}
