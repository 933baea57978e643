// Command rapport is Rapport's one binary: it migrates the database, serves
// webhooks and the admin API, runs the workers, checks and tests rule files,
// and runs the demo and the benchmark harness. It only wires: configuration
// in, components built, Run until a signal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/internal/sim"
)

func main() {
	// go-redis prints every failed dial of its pool on its own logger; a
	// Redis that is down would stream them. The failures reach us as errors
	// of the calls that hit them, which say what failed in context.
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one rapport command.
type command struct {
	name    string
	args    string // usage of positional arguments
	summary string
	// config: the command takes the configuration flags: those of the
	// variables in vars, or every one when vars is nil.
	config bool
	vars   []string
	// env lists the variables a command without config flags reads, for
	// its --help.
	env string
	// flags registers the command's own flags; may be nil.
	flags func(fs *flag.FlagSet) any
	run   func(ctx context.Context, e *env, c *app.Config, opts any, args []string) error
}

// usageError is bad usage: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Variables by command: --help shows a command the settings it reads.
var (
	logVars     = []string{"RAPPORT_LOG_FORMAT", "RAPPORT_LOG_LEVEL"}
	migrateVars = append([]string{"RAPPORT_DATABASE_URL"}, logVars...)
	keysVars    = append([]string{"RAPPORT_DATABASE_URL", "RAPPORT_ENCRYPTION_KEYS"}, logVars...)
)

// simEnv is what the demo and the benchmark read from the environment.
const simEnv = "RAPPORT_DATABASE_URL and RAPPORT_REDIS_URL name the servers (the command uses a database and a Redis index of its own on them, see the flags); the demo listens on RAPPORT_HTTP_ADDR (default: a free port)"

func commands() map[string]*command {
	cs := []*command{
		{name: "migrate", summary: "apply all migrations to RAPPORT_DATABASE_URL (creating the database if it is missing); safe to run twice", config: true, vars: migrateVars, run: runMigrate},
		{name: "serve", summary: "serve HTTP only: webhooks, OAuth, admin API, Asynq web UI, metrics", config: true, run: runServe},
		{name: "worker", summary: "run the Asynq workers and the periodic schedules", config: true, run: runWorker},
		{name: "run", summary: "serve and worker in one process (small deployments)", config: true, run: runAll},
		{name: "rules check", args: "DIR", summary: "load and compile every rule file of DIR; print file:line:col: message for each error", run: runRulesCheck},
		{name: "rules test", args: "DIR", summary: "run the test cases in DIR/*_test.yaml; print N passed, N failed", run: runRulesTest},
		{name: "rules plan", args: "DIR", summary: "compare the rule files of DIR with the rules in force over a workspace's window: meetings newly logged, no longer logged, unchanged; writes nothing", config: true, flags: rulesPlanFlags, run: runRulesPlan},
		{name: "rules show-default", summary: "print the built-in rules, a rule file to start your own from", run: runRulesShowDefault},
		{name: "keys rotate", summary: "re-encrypt every stored token with the first key of RAPPORT_ENCRYPTION_KEYS", config: true, vars: keysVars, run: runKeysRotate},
		{name: "demo", summary: "run everything against simulated Google Calendar and HubSpot with sample data", env: simEnv, flags: sim.DemoFlags, run: simCommand(sim.RunDemo)},
		{name: "bench", summary: "measure the pipeline against the simulated providers", env: simEnv, flags: sim.BenchFlags, run: simCommand(sim.RunBench)},
		{name: "version", summary: "print the version and the source revision this binary was built from", run: runVersion},
	}
	m := map[string]*command{}
	for _, c := range cs {
		m[c.name] = c
	}
	return m
}

// groups are the commands that take a subcommand.
var groups = map[string]string{
	"rules": "check, test and print rule files",
	"keys":  "manage the token encryption keys",
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, argv []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	cmds := commands()
	if len(argv) == 0 || argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help" {
		printUsage(stdout, cmds)
		if len(argv) == 0 {
			return 2
		}
		return 0
	}
	name := argv[0]
	rest := argv[1:]
	if _, ok := groups[name]; ok {
		if len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help") {
			printGroupUsage(stdout, name, cmds)
			return 0
		}
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "rapport %s: say which subcommand; see rapport %s --help\n\n", name, name)
			printGroupUsage(stderr, name, cmds)
			return 2
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	c, ok := cmds[name]
	if !ok {
		if group, _, sub := strings.Cut(name, " "); sub {
			fmt.Fprintf(stderr, "rapport: unknown command %q; run rapport %s --help for the list\n", name, group)
			return 2
		}
		fmt.Fprintf(stderr, "rapport: unknown command %q; run rapport --help for the list\n", name)
		return 2
	}
	err := c.exec(ctx, e, rest)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "rapport %s: %v\n", c.name, err)
		return 2
	default:
		if err != errReported {
			fmt.Fprintf(stderr, "rapport %s: %v\n", c.name, err)
		}
		return 1
	}
}

// errReported is a failure whose details the command already printed.
var errReported = errors.New("failed")

func (c *command) exec(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("rapport "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var load func(func(string) string) (*app.Config, error)
	if c.config {
		load = app.BindConfigFor(fs, c.vars)
	}
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp(e.stdout, fs)
			return err
		}
		return &usageError{err.Error()}
	}
	if want := len(strings.Fields(c.args)); len(pos) != want {
		if want == 0 {
			return &usageError{fmt.Sprintf("takes no arguments, got %q", strings.Join(pos, " "))}
		}
		return &usageError{fmt.Sprintf("want %s; see rapport %s --help", c.args, c.name)}
	}
	var cfg *app.Config
	if load != nil {
		var err error
		if cfg, err = load(e.getenv); err != nil {
			return fmt.Errorf("bad configuration: %w", err)
		}
	}
	return explain(c.run(ctx, e, cfg, opts, pos), cfg, e.getenv)
}

// parseInterleaved parses flags that may follow the positional arguments
// (rapport rules plan DIR --workspace WS) and returns the positional ones.
// After "--" everything is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	usage := "rapport " + c.name
	if hasFlags(fs) {
		usage += " [flags]"
	}
	if c.args != "" {
		usage += " " + c.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", usage, strings.ToUpper(c.summary[:1])+c.summary[1:])
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "RAPPORT_") {
			return // the env-named alias of a flag listed under its short name
		}
		dash := "--" + f.Name
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			dash += " (default " + f.DefValue + ")"
		}
		lines = append(lines, fmt.Sprintf("  %s\n      %s", dash, f.Usage))
	})
	if len(lines) > 0 {
		title := "Flags"
		if c.config {
			title = "Settings (each from its RAPPORT_* variable, or the flag, which wins)"
		}
		fmt.Fprintf(w, "\n%s:\n%s\n", title, strings.Join(lines, "\n"))
	}
	switch {
	case c.config:
		fmt.Fprintln(w, "\nA flag may also be given by its variable's name (--RAPPORT_DATABASE_URL=…). docs/configuration.md describes every setting.")
	case c.env != "":
		fmt.Fprintf(w, "\nEnvironment: %s.\n", c.env)
	default:
		fmt.Fprintln(w, "\nIt reads no RAPPORT_* setting.")
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printUsage(w io.Writer, cmds map[string]*command) {
	fmt.Fprintln(w, "Rapport logs customer meetings from employees' calendars on the CRM timelines of their companies.")
	fmt.Fprintln(w, "\nUsage: rapport COMMAND [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := cmds[n]
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(n+" "+c.args), c.summary)
	}
	fmt.Fprintln(w, "\nRun rapport COMMAND --help for the settings and flags a command takes. Configuration comes from RAPPORT_* variables (docs/configuration.md).")
}

// printGroupUsage lists the subcommands of a group (rules, keys).
func printGroupUsage(w io.Writer, group string, cmds map[string]*command) {
	fmt.Fprintf(w, "Usage: rapport %s SUBCOMMAND [flags] [args]\n\nrapport %s: %s.\n\nSubcommands:\n", group, group, groups[group])
	var names []string
	for n := range cmds {
		if strings.HasPrefix(n, group+" ") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		c := cmds[n]
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(strings.TrimPrefix(n, group+" ")+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "\nRun rapport %s SUBCOMMAND --help for its details.\n", group)
}

// simCommand runs a command of package sim (demo, bench), translating its
// errors into the binary's.
func simCommand(run func(context.Context, *sim.Env, any) error) func(context.Context, *env, *app.Config, any, []string) error {
	return func(ctx context.Context, e *env, _ *app.Config, opts any, _ []string) error {
		err := run(ctx, &sim.Env{Stdout: e.stdout, Stderr: e.stderr, Getenv: e.getenv}, opts)
		var ue *sim.UsageError
		switch {
		case errors.Is(err, sim.ErrReported):
			return errReported
		case errors.As(err, &ue):
			return &usageError{ue.Msg}
		}
		return err
	}
}
