package redistopo

import (
	"os"
	"path/filepath"
	"testing"
)

// readyLine is what redis-server logs once it accepts connections.
const readyLine = "Ready to accept connections"

// StartServer starts a plain redis-server and returns its address
// (127.0.0.1:port). It is killed when the test ends.
func StartServer(t testing.TB) string {
	t.Helper()
	requireRedis(t, 6, 0)
	p := start(t, procSpec{
		name:  "server",
		conf:  func(*proc) []string { return nil },
		ready: readyLine,
	})
	return p.addr
}

// StartUnixServer starts a redis-server that also listens on a Unix socket
// and returns the socket's path. It is killed when the test ends.
func StartUnixServer(t testing.TB) string {
	t.Helper()
	requireRedis(t, 6, 0)
	// Not t.TempDir(): a socket path must stay under about 100 bytes, and
	// test names make those long.
	dir, err := os.MkdirTemp("", "redistopo")
	if err != nil {
		t.Fatalf("redistopo: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	start(t, procSpec{
		name:  "unix-server",
		conf:  func(*proc) []string { return []string{"unixsocket " + sock, "unixsocketperm 700"} },
		ready: readyLine,
	})
	return sock
}
