package repocheck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The decisions of scripts/services.sh, tested with a PATH of stubs: the
// package manager, sudo, id and the PostgreSQL and Redis tools are small
// scripts that record their calls and keep state in files, so the script
// runs as on a fresh machine without touching this one.

// stubs, by name. They log "name args" to $STUB_LOG and keep state in
// $STUB_STATE.
var stubs = map[string]string{
	"id": `case "$1" in -u) echo "$STUB_UID" ;; -un) echo "$STUB_USER" ;; *) echo "uid=$STUB_UID($STUB_USER)" ;; esac`,
	"sudo": `if [ "$*" = "-n true" ]; then exit "$STUB_SUDO"; fi
[ "$STUB_SUDO" = 0 ] || { echo "sudo: a password is required" >&2; exit 1; }
export STUB_UID=0 STUB_USER=root
while [ $# -gt 0 ]; do case "$1" in -n) shift ;; -u) STUB_USER=$2 STUB_UID=999; shift 2 ;; *) break ;; esac; done
exec "$@"`,
	// apt-get install puts the package's stubs on PATH.
	"apt-get": `[ "$(id -u)" = 0 ] || { echo "E: permission denied" >&2; exit 100; }
if [ "$1" = install ]; then for p in "$@"; do [ -d "$STUB_PKGS/$p" ] && cp "$STUB_PKGS/$p"/* "$STUB_BIN/"; done; fi
exit 0`,
	"runuser": `shift 3; exec "$@"`,
}

// packages: what apt-get install brings.
var packages = map[string]map[string]string{
	"postgresql": {
		"pg_isready":    `[ -e "$STUB_STATE/pg-up" ] || exit 2`,
		"pg_lsclusters": `echo "16 main 5432 down postgres /var/lib/postgresql/16/main /var/log/postgresql/postgresql-16-main.log"`,
		"pg_ctlcluster": `[ "$(id -u)" = 0 ] || exit 1; case " $* " in *" start "*) touch "$STUB_STATE/pg-up" ;; esac`,
		"psql": `[ -e "$STUB_STATE/pg-up" ] || exit 2
case "$*" in
  *"-w -h 127.0.0.1"*) [ -e "$STUB_STATE/role" ] && echo t || exit 2 ;;
  *"SELECT 1 FROM pg_roles"*) [ -e "$STUB_STATE/role" ] && echo 1 || echo ;;
  *"CREATE ROLE"*|*"ALTER ROLE"*) touch "$STUB_STATE/role" ;;
esac`,
	},
	"prometheus": {"promtool": `echo "promtool $*"`},
	"redis-server": {
		"redis-server": `touch "$STUB_STATE/redis-up"`,
		"redis-cli":    `[ -e "$STUB_STATE/redis-up" ] && echo PONG || { echo "Could not connect" >&2; exit 1; }`,
	},
}

// machine is one fake machine.
type machine struct {
	t                      *testing.T
	bin, pkgs, state, home string
	log                    string
	uid, user, sudo        string
}

func newMachine(t *testing.T, uid, sudo string, installed []string, state ...string) *machine {
	t.Helper()
	dir := t.TempDir()
	m := &machine{t: t, bin: filepath.Join(dir, "bin"), pkgs: filepath.Join(dir, "pkgs"), state: filepath.Join(dir, "state"),
		home: filepath.Join(dir, "home"), log: filepath.Join(dir, "calls.log"), uid: uid, user: "dev", sudo: sudo}
	if uid == "0" {
		m.user = "root"
	}
	for _, d := range []string{m.bin, m.pkgs, m.state, m.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(dir, name, body string) {
		script := "#!/bin/bash\necho \"" + name + " $*\" >>\"$STUB_LOG\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range stubs {
		write(m.bin, name, body)
	}
	for pkg, files := range packages {
		os.MkdirAll(filepath.Join(m.pkgs, pkg), 0o755)
		for name, body := range files {
			write(filepath.Join(m.pkgs, pkg), name, body)
			for _, p := range installed {
				if p == pkg {
					write(m.bin, name, body)
				}
			}
		}
	}
	// The few real tools the script and the stubs use, nothing else.
	for _, tool := range []string{"bash", "env", "awk", "seq", "sleep", "od", "tr", "touch", "chmod", "cp", "cat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s is not on PATH", tool)
		}
		if err := os.Symlink(p, filepath.Join(m.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range state {
		os.WriteFile(filepath.Join(m.state, s), nil, 0o644)
	}
	return m
}

// run runs scripts/services.sh with args on the machine.
func (m *machine) run(args ...string) (code int, stdout, stderr, calls string) {
	m.t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "services.sh"))
	if err != nil {
		m.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(m.bin, "bash"), append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + m.bin, "HOME=" + m.home, "STUB_LOG=" + m.log, "STUB_STATE=" + m.state, "STUB_PKGS=" + m.pkgs,
		"STUB_BIN=" + m.bin, "STUB_UID=" + m.uid, "STUB_USER=" + m.user, "STUB_SUDO=" + m.sudo}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		m.t.Fatal(err)
	}
	b, _ := os.ReadFile(m.log)
	return code, out.String(), errb.String(), string(b)
}

func TestServicesScript(t *testing.T) {
	both := []string{"postgresql", "redis-server"}
	const noSudo, sudo = "1", "0"
	cases := []struct {
		name   string
		args   []string
		m      func(t *testing.T) *machine
		code   int
		out    string   // in stdout (exit 0) or stderr (exit 1)
		calls  []string // calls made, in this order
		never  []string // calls never made
		pgpass bool     // ~/.pgpass holds the new role's password
	}{
		{name: "already running: nothing to do",
			m:     func(t *testing.T) *machine { return newMachine(t, "1000", noSudo, both, "pg-up", "redis-up", "role") },
			out:   "are running",
			never: []string{"apt-get", "pg_ctlcluster", "redis-server", "CREATE ROLE", "sudo -n -u"}},
		{name: "for tests, running, promtool missing, root: installs prometheus for promtool",
			args:  []string{"test"},
			m:     func(t *testing.T) *machine { return newMachine(t, "0", noSudo, both, "pg-up", "redis-up", "role") },
			out:   "are running",
			calls: []string{"apt-get install -y -qq --no-install-recommends prometheus"},
			never: []string{"pg_ctlcluster", "redis-server", "CREATE ROLE"}},
		{name: "for tests, everything there: nothing to do",
			args: []string{"test"},
			m: func(t *testing.T) *machine {
				return newMachine(t, "1000", noSudo, append(both, "prometheus"), "pg-up", "redis-up", "role")
			},
			out:   "are running",
			never: []string{"apt-get", "sudo -n -u"}},
		{name: "for tests, missing, no sudo: the command names prometheus too",
			args:  []string{"test"},
			m:     func(t *testing.T) *machine { return newMachine(t, "1000", noSudo, nil) },
			code:  1,
			out:   "run 'sudo apt-get install -y --no-install-recommends postgresql redis-server prometheus'",
			never: []string{"apt-get"}},
		{name: "missing, root: installs, starts, creates the role",
			m:      func(t *testing.T) *machine { return newMachine(t, "0", noSudo, nil) },
			out:    "are running",
			calls:  []string{"apt-get install -y -qq --no-install-recommends postgresql redis-server", "pg_ctlcluster --skip-systemctl-redirect 16 main start", "redis-server --daemonize yes --bind 127.0.0.1 --port 6379", "runuser -u postgres -- psql", "CREATE ROLE \"root\" LOGIN CREATEDB CREATEROLE"},
			pgpass: true},
		{name: "missing, no sudo: says the command",
			m:     func(t *testing.T) *machine { return newMachine(t, "1000", noSudo, nil) },
			code:  1,
			out:   "run 'sudo apt-get install -y --no-install-recommends postgresql redis-server', then make services again",
			never: []string{"apt-get", "pg_ctlcluster", "redis-server"}},
		{name: "missing, passwordless sudo: installs through sudo",
			m:      func(t *testing.T) *machine { return newMachine(t, "1000", sudo, nil) },
			out:    "are running",
			calls:  []string{"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql redis-server", "sudo -n pg_ctlcluster", "sudo -n -u postgres psql", "CREATE ROLE \"dev\""},
			pgpass: true},
		{name: "installed but stopped, no sudo: Redis started, PostgreSQL needs root",
			m:     func(t *testing.T) *machine { return newMachine(t, "1000", noSudo, both, "role") },
			code:  1,
			out:   "run 'sudo pg_ctlcluster 16 main start'",
			never: []string{"apt-get", "pg_ctlcluster"}},
		{name: "running, no role, no sudo: says the command",
			m:     func(t *testing.T) *machine { return newMachine(t, "1000", noSudo, both, "pg-up", "redis-up") },
			code:  1,
			out:   "sudo -u postgres createuser --superuser dev",
			never: []string{"CREATE ROLE"}},
		{name: "running, the role exists but may not create databases: altered, not re-created",
			m: func(t *testing.T) *machine {
				m := newMachine(t, "0", noSudo, both, "pg-up", "redis-up")
				// The role exists (SELECT 1 answers 1) yet cannot log in until altered.
				os.WriteFile(filepath.Join(m.bin, "psql"), []byte("#!/bin/bash\necho \"psql $*\" >>\"$STUB_LOG\"\ncase \"$*\" in\n"+
					"  *\"-w -h 127.0.0.1\"*) [ -e \"$STUB_STATE/altered\" ] && echo t || echo f ;;\n"+
					"  *\"SELECT 1 FROM pg_roles\"*) echo 1 ;;\n"+
					"  *\"ALTER ROLE\"*) touch \"$STUB_STATE/altered\" ;;\nesac\n"), 0o755)
				return m
			},
			out:   "are running",
			calls: []string{"ALTER ROLE \"root\" LOGIN CREATEDB CREATEROLE"},
			never: []string{"CREATE ROLE", "apt-get"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := tc.m(t)
			code, stdout, stderr, calls := m.run(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s\ncalls:\n%s", code, tc.code, stdout, stderr, calls)
			}
			where := stdout
			if tc.code != 0 {
				where = stderr
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
					t.Errorf("stderr has %d lines, want one sentence:\n%s", n+1, stderr)
				}
			}
			if !strings.Contains(where, tc.out) {
				t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", tc.out, stdout, stderr)
			}
			rest := calls
			for _, c := range tc.calls {
				i := strings.Index(rest, c)
				if i < 0 {
					t.Errorf("no call %q (in order) among:\n%s", c, calls)
					break
				}
				rest = rest[i+len(c):]
			}
			for _, c := range tc.never {
				for _, line := range strings.Split(calls, "\n") {
					if strings.HasPrefix(line, c) || (strings.Contains(c, " ") && strings.Contains(line, c)) {
						t.Errorf("unexpected call %q", line)
					}
				}
			}
			b, err := os.ReadFile(filepath.Join(m.home, ".pgpass"))
			switch {
			case tc.pgpass && (err != nil || !strings.Contains(string(b), "127.0.0.1:5432:*:"+m.user+":")):
				t.Errorf("~/.pgpass = %q, %v; want the role's password", b, err)
			case tc.pgpass:
				if st, _ := os.Stat(filepath.Join(m.home, ".pgpass")); st.Mode().Perm() != 0o600 {
					t.Errorf("~/.pgpass has mode %v, want 0600", st.Mode().Perm())
				}
			case !tc.pgpass && err == nil:
				t.Errorf("~/.pgpass written: %q", b)
			}
		})
	}
}

func TestServicesScriptCanBeSkipped(t *testing.T) {
	m := newMachine(t, "1000", "1", nil)
	cmd := exec.Command(filepath.Join(m.bin, "bash"), filepath.Join("..", "..", "scripts", "services.sh"))
	cmd.Env = []string{"PATH=" + m.bin, "RAPPORT_SKIP_SERVICES=1", "STUB_LOG=" + m.log}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "skipped") {
		t.Fatalf("RAPPORT_SKIP_SERVICES=1: %v %s", err, out)
	}
}
