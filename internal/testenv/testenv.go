// Package testenv gives tests the real services CI has: a fresh PostgreSQL
// database per test binary, migrated, from TEST_DATABASE_URL (default: the
// local server), dropped afterwards; and a Redis database index per test
// binary. Test binaries call Main from TestMain so that what they created is
// released when they finish.
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
