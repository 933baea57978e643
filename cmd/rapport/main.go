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

// quietRedis is go-redis's logger, silenced.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

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
	// config: the command takes the configuration flags.
	config bool
	// flags registers the command's own flags; may be nil.
	flags func(fs *flag.FlagSet) any
	run   func(ctx context.Context, e *env, c *app.Config, opts any, args []string) error
}

// usageError is bad usage: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func commands() map[string]*command {
	cs := []*command{
		{name: "migrate", summary: "apply all migrations to RAPPORT_DATABASE_URL (creating the database if it is missing); safe to run twice", config: true, run: runMigrate},
		{name: "serve", summary: "serve HTTP only: webhooks, OAuth, admin API, Asynq web UI, metrics", config: true, run: runServe},
		{name: "worker", summary: "run the Asynq workers and the periodic schedules", config: true, run: runWorker},
		{name: "run", summary: "serve and worker in one process (small deployments)", config: true, run: runAll},
		{name: "rules check", args: "DIR", summary: "load and compile every rule file of DIR; print file:line:col: message for each error", run: runRulesCheck},
		{name: "rules test", args: "DIR", summary: "run the test cases in DIR/*_test.yaml; print N passed, N failed", run: runRulesTest},
		{name: "keys rotate", summary: "re-encrypt every stored token with the first key of RAPPORT_ENCRYPTION_KEYS", config: true, run: runKeysRotate},
		{name: "demo", summary: "run everything against simulated Google Calendar and HubSpot with sample data", flags: sim.DemoFlags, run: simCommand(sim.RunDemo)},
		{name: "bench", summary: "measure the pipeline against the simulated providers", flags: sim.BenchFlags, run: simCommand(sim.RunBench)},
	}
	m := map[string]*command{}
	for _, c := range cs {
		m[c.name] = c
	}
	return m
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
	if name == "rules" || name == "keys" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "rapport %s: say which, e.g. rapport rules check ./rules or rapport keys rotate\n", name)
			return 2
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	c, ok := cmds[name]
	if !ok {
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
		load = app.BindConfig(fs)
	}
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp(e.stdout, fs)
			return err
		}
		return &usageError{err.Error()}
	}
	pos := fs.Args()
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
	return c.run(ctx, e, cfg, opts, pos)
}

func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: rapport %s [flags] %s\n\n%s.\n", c.name, c.args, strings.ToUpper(c.summary[:1])+c.summary[1:])
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
		fmt.Fprintf(w, "\nFlags:\n%s\n", strings.Join(lines, "\n"))
	}
	if c.config {
		fmt.Fprintln(w, "\nEvery flag may also be given by its variable's name (--RAPPORT_DATABASE_URL=…); flags override the environment.")
	}
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
		fmt.Fprintf(w, "  %-17s %s\n", strings.TrimSpace(n+" "+c.args), c.summary)
	}
	fmt.Fprintln(w, "\nRun rapport COMMAND --help for a command's flags. Configuration comes from RAPPORT_* variables (see README.md).")
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
