package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportsync/rapport/internal/app"
	"github.com/rapportsync/rapport/pipeline/credentials"
)

// runKeysRotate re-encrypts every stored token with the first key of
// RAPPORT_ENCRYPTION_KEYS, so an old key can then be removed.
func runKeysRotate(ctx context.Context, e *env, c *app.Config, _ any, _ []string) error {
	if err := c.RequireService(); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	v, err := credentials.New(credentials.Config{Pool: pool, Keys: c.Keys, Logger: c.Logger(e.stderr)})
	if err != nil {
		return err
	}
	n, err := v.Rotate(ctx)
	if err != nil {
		return fmt.Errorf("rotate keys: %w", err)
	}
	fmt.Fprintf(e.stdout, "%d connections re-encrypted with key %q\n", n, c.Keys[0].ID)
	return nil
}
