package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/rules"
)

type rulesPlanOptions struct {
	workspace, format string
}

func rulesPlanFlags(fs *flag.FlagSet) any {
	o := &rulesPlanOptions{}
	fs.StringVar(&o.workspace, "workspace", "", "the workspace id whose window is planned (required)")
	fs.StringVar(&o.format, "format", "text", "text, markdown (for a pull-request comment) or json")
	return o
}

// runRulesPlan compares the rule files of DIR with the rules in force
// (RAPPORT_RULES_DIR, or the built-in rules) over the workspace's window:
// every calendar is listed in full and each event decided with both sets;
// nothing is written.
func runRulesPlan(ctx context.Context, e *env, c *app.Config, opts any, args []string) error {
	o := opts.(*rulesPlanOptions)
	if strings.TrimSpace(o.workspace) == "" {
		return &usageError{"--workspace is required: the id of the workspace to plan"}
	}
	switch o.format {
	case "text", "markdown", "json":
	default:
		return &usageError{fmt.Sprintf("--format %q: want text, markdown or json", o.format)}
	}
	candidate, err := rules.Load(args[0])
	if err != nil {
		return printRuleErrors(e, err)
	}
	a, err := app.New(ctx, c, c.Logger(e.stderr), app.Options{Role: app.RoleServe})
	if err != nil {
		return err
	}
	defer a.Close()
	plan, err := a.Pipeline.PlanRules(ctx, o.workspace, candidate)
	if err != nil {
		return fmt.Errorf("plan workspace %s: %w", o.workspace, err)
	}
	switch o.format {
	case "markdown":
		fmt.Fprint(e.stdout, plan.Markdown())
	case "json":
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	default:
		fmt.Fprint(e.stdout, plan.Text())
	}
	return nil
}
