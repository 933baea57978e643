package testenv

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// FlushDB empties this binary's Redis database as an operator's FLUSHDB
// would — every key gone at once — in a transaction that writes testenv's
// claim on the database back with it, so no other test binary takes the
// database meanwhile. Tests of losing Redis use it.
func FlushDB(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	rc, ok := c.(*redis.Client)
	if !ok {
		t.Fatalf("testenv: FlushDB takes a client of the test database, not a %T", c)
	}
	if err := emptyTestDB(context.Background(), rc, owner); err != nil {
		t.Fatalf("testenv: FLUSHDB: %v", err)
	}
}
