// Package testenv gives tests the real services CI has, without touching
// anyone's data: a fresh PostgreSQL database per test binary, migrated,
// named rapport_test_*, on the server of TEST_DATABASE_URL (default: the
// local one), dropped afterwards; and Redis, from a private redis-server
// this binary starts when redis-server is on PATH, else from a dedicated
// range of database indexes on the shared server, each marked as the
// tests' and refused when it holds anything else (see redis.go). Test
// binaries call Main from TestMain so that what they created is released
// when they finish.
package testenv

import (
	"os"
	"sync"
	"testing"
)

var releases struct {
	sync.Mutex
	fns []func()
}

func registerRelease(fn func()) {
	releases.Lock()
	releases.fns = append(releases.fns, fn)
	releases.Unlock()
}

// Main runs the tests of a package and then drops the databases and releases
// the Redis index they used. Use it as TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	releases.Lock()
	for i := len(releases.fns) - 1; i >= 0; i-- {
		releases.fns[i]()
	}
	releases.Unlock()
	os.Exit(code)
}
