package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/migrations"
	"github.com/rapportsync/rapport/rules"
)

func runMigrate(ctx context.Context, e *env, c *app.Config, _ any, _ []string) error {
	logger := c.Logger(e.stderr)
	n, err := migrations.Up(ctx, c.DatabaseURL, logger)
	if err != nil {
		return err
	}
	switch n {
	case 0:
		fmt.Fprintln(e.stdout, "database is current: no migration to apply")
	case 1:
		fmt.Fprintln(e.stdout, "database is current: applied 1 migration")
	default:
		fmt.Fprintf(e.stdout, "database is current: applied %d migrations\n", n)
	}
	return nil
}

func runServe(ctx context.Context, e *env, c *app.Config, _ any, _ []string) error {
	return runService(ctx, e, c, app.RoleServe)
}

func runWorker(ctx context.Context, e *env, c *app.Config, _ any, _ []string) error {
	return runService(ctx, e, c, app.RoleWorker)
}

func runAll(ctx context.Context, e *env, c *app.Config, _ any, _ []string) error {
	return runService(ctx, e, c, app.RoleRun)
}

// runService runs the HTTP server, the workers or both until SIGINT or
// SIGTERM; SIGHUP reloads the rules. The HTTP port is bound before any
// worker starts: a process that cannot serve (the port is taken) exits
// without having taken a task.
func runService(ctx context.Context, e *env, c *app.Config, role app.Role) error {
	serve, work := role != app.RoleWorker, role != app.RoleServe
	logger := c.Logger(e.stderr)
	// Listen first: a port in use is told at once, before connecting to
	// anything.
	var ln net.Listener
	if serve {
		var err error
		if ln, err = net.Listen("tcp", c.HTTPAddr); err != nil {
			return fmt.Errorf("listen on %s: %w", c.HTTPAddr, err)
		}
		defer ln.Close()
	}
	a, err := app.New(ctx, c, logger, app.Options{Role: role})
	if err != nil {
		return err
	}
	defer a.Close()
	a.WatchRules(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := a.ReloadRules(ctx); err != nil {
					logger.Error("SIGHUP: rules reload refused; the old rules stay", slog.Any("error", err))
				}
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	if serve {
		g.Go(func() error { return a.ServeListener(gctx, ln) })
	}
	if work {
		g.Go(func() error { return a.Work(gctx) })
	}
	return g.Wait()
}

func runRulesCheck(ctx context.Context, e *env, _ *app.Config, _ any, args []string) error {
	errs := rules.Check(args[0])
	for _, err := range errs {
		fmt.Fprintln(e.stderr, err)
	}
	if len(errs) > 0 {
		return errReported
	}
	s, err := rules.Load(args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %d rules ok (version %s)\n", args[0], len(s.Rules()), s.Version())
	return nil
}

func runRulesShowDefault(_ context.Context, e *env, _ *app.Config, _ any, _ []string) error {
	_, err := e.stdout.Write(rules.DefaultYAML())
	return err
}

func runRulesTest(ctx context.Context, e *env, _ *app.Config, _ any, args []string) error {
	s, err := rules.Load(args[0])
	if err != nil {
		return printRuleErrors(e, err)
	}
	report, err := rules.RunTests(args[0], s)
	if err != nil {
		return printRuleErrors(e, err)
	}
	fmt.Fprintln(e.stdout, report.String())
	if report.Failed > 0 {
		return errReported
	}
	return nil
}

// printRuleErrors prints each positioned error of a rules ErrorList on its
// own line.
func printRuleErrors(e *env, err error) error {
	var list rules.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	for _, le := range list {
		fmt.Fprintln(e.stderr, le)
	}
	return errReported
}
