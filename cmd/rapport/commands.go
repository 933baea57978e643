package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/rapportsync/rapport/migrations"
)

func runMigrate(ctx context.Context, e *env, c *Config, _ any, _ []string) error {
	logger := c.logger(e.stderr)
	n, err := migrations.Up(ctx, c.DatabaseURL, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "database is current (%d migrations applied)\n", n)
	return nil
}

// notLanded refuses a command whose feature is not built yet.
func notLanded(what string) error {
	return errors.New(what + " is not available in this build yet")
}

func runServe(ctx context.Context, e *env, c *Config, _ any, _ []string) error {
	return notLanded("the HTTP surface (webhooks, OAuth, admin API)")
}

func runWorker(ctx context.Context, e *env, c *Config, _ any, _ []string) error {
	return notLanded("the sync pipeline (workers and schedules)")
}

func runAll(ctx context.Context, e *env, c *Config, _ any, _ []string) error {
	return notLanded("the sync pipeline and HTTP surface")
}

func runRulesCheck(ctx context.Context, e *env, _ *Config, _ any, args []string) error {
	return notLanded("rule file checking")
}

func runRulesTest(ctx context.Context, e *env, _ *Config, _ any, args []string) error {
	return notLanded("rule file testing")
}

type demoOptions struct{ once bool }

func demoFlags(fs *flag.FlagSet) any {
	o := &demoOptions{}
	fs.BoolVar(&o.once, "once", false, "exit 0 after the initial sync and the scripted live changes")
	return o
}

func runDemo(ctx context.Context, e *env, _ *Config, _ any, _ []string) error {
	return notLanded("the demo")
}

func benchFlags(fs *flag.FlagSet) any { return nil }

func runBench(ctx context.Context, e *env, _ *Config, _ any, _ []string) error {
	return notLanded("the benchmark harness")
}
