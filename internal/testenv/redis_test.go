package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

// scratchRedis starts a redis-server of the test's own, so that it may
// fill databases with "foreign" keys.
func scratchRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("RAPPORT_TEST_ALLOW_SKIP") == "1" {
			t.Skip("redis-server is not on PATH")
		}
		t.Fatal("redis-server is not on PATH: install Redis (make services does), or set RAPPORT_TEST_ALLOW_SKIP=1")
	}
	addr, err := startPrivateRedis()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func client(addr string, db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DB: db})
}

func TestPrivateServerWhenRedisServerIsOnPath(t *testing.T) {
	if os.Getenv("TEST_REDIS_ADDR") != "" {
		t.Skip("TEST_REDIS_ADDR names the server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH: the shared server is used")
	}
	if a := RedisAddr(); a == "127.0.0.1:6379" {
		t.Fatalf("RedisAddr() = %s: the shared server, although redis-server is on PATH", a)
	}
	db := RedisDB(t)
	if db < FirstTestDB || db > LastTestDB {
		t.Errorf("RedisDB() = %d, outside %d-%d", db, FirstTestDB, LastTestDB)
	}
}

func TestClaimRefusesADatabaseWithForeignKeys(t *testing.T) {
	addr := scratchRedis(t)
	ctx := context.Background()
	c := client(addr, 3)
	defer c.Close()
	if err := c.Set(ctx, "someones:data", "precious", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := claim(ctx, c, "a"); ok || !errors.Is(err, errForeign) {
		t.Fatalf("claim of a database holding someone's key = %v, %v; want errForeign", ok, err)
	}
	if v, err := c.Get(ctx, "someones:data").Result(); err != nil || v != "precious" {
		t.Fatalf("the foreign key is %q, %v after the refused claim", v, err)
	}
	if n, _ := c.DBSize(ctx).Result(); n != 1 {
		t.Errorf("the refused claim left %d keys, want only the foreign one", n)
	}
}

func TestClaimTakesAnEmptyDatabaseOnceAndKeepsItsMarker(t *testing.T) {
	addr := scratchRedis(t)
	ctx := context.Background()
	c := client(addr, 4)
	defer c.Close()
	if ok, err := claim(ctx, c, "a"); !ok || err != nil {
		t.Fatalf("claim of an empty database = %v, %v", ok, err)
	}
	if ok, err := claim(ctx, c, "b"); ok || err != nil {
		t.Fatalf("second claim while leased = %v, %v; want false, nil", ok, err)
	}
	// The tests' own keys do not make the database foreign: after the
	// lease ends, another binary takes it and empties it.
	c.Set(ctx, "left:by:a", "x", 0)
	c.Del(ctx, leaseKey)
	if ok, err := claim(ctx, c, "b"); !ok || err != nil {
		t.Fatalf("claim of a marked database after the lease = %v, %v", ok, err)
	}
	if n, _ := c.Exists(ctx, "left:by:a").Result(); n != 0 {
		t.Error("the claim did not empty the tests' old keys")
	}
	if n, _ := c.Exists(ctx, markerKey).Result(); n != 1 {
		t.Error("the marker is gone after the claim emptied the database")
	}
}

func TestReserveUsesOnlyTheTestRange(t *testing.T) {
	addr := scratchRedis(t)
	ctx := context.Background()
	for db := 0; db < 16; db++ {
		if db == LastTestDB {
			continue
		}
		c := client(addr, db)
		if err := c.Set(ctx, "users:key", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	db, err := reserveRedisDB(addr)
	if err != nil || db != LastTestDB {
		t.Fatalf("reserve = %d, %v; want %d, the one empty database of the range", db, err, LastTestDB)
	}
	// With every database of the range someone else's, it refuses and
	// says what to do.
	c := client(addr, LastTestDB)
	c.Del(ctx, leaseKey)
	c.Set(ctx, "users:key", "v", 0)
	c.Del(ctx, markerKey)
	c.Close()
	if _, err := reserveRedisDB(addr); err == nil || !strings.Contains(err.Error(), "TEST_REDIS_ADDR") {
		t.Fatalf("reserve with every test database foreign = %v, want a refusal naming TEST_REDIS_ADDR", err)
	}
	for _, db := range []int{0, 1, 14, 15} {
		c := client(addr, db)
		if n, _ := c.DBSize(ctx).Result(); n != 1 {
			t.Errorf("database %d holds %d keys, want its one key untouched", db, n)
		}
		c.Close()
	}
}
