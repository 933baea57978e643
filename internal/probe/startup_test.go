package probe

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/internal/testenv"
)

// run runs the binary with the probe configuration changed by over until
// it exits, and returns its exit status and standard error. A process that
// starts serving or working instead is stopped: the caller sees the lines
// saying so.
func run(t *testing.T, over map[string]string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = environ(t, over)
	r, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		if strings.Contains(line, `"msg":"serving HTTP"`) || strings.Contains(line, `"msg":"workers started"`) {
			cmd.Process.Signal(os.Interrupt) // it started: the test fails on this line
		}
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

// TestRedisDownOneSentence: `rapport run` with Redis down exits 1 with one
// clear sentence, not a stream of the Redis client's retries.
func TestRedisDownOneSentence(t *testing.T) {
	code, stderr := run(t, map[string]string{"RAPPORT_REDIS_URL": "redis://127.0.0.1:1/0"}, "run")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "Redis") || !strings.Contains(lines[0], "RAPPORT_REDIS_URL") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line about Redis naming RAPPORT_REDIS_URL", code, stderr)
	}
}

// TestWorkersStartAfterPortBound: when `rapport run` cannot bind its HTTP
// port, it exits without having started a worker: no Asynq server ever
// registered in Redis, no "workers started" line.
func TestWorkersStartAfterPortBound(t *testing.T) {
	rdb := testenv.Redis(t) // empty
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, stderr := run(t, map[string]string{"RAPPORT_HTTP_ADDR": ln.Addr().String()}, "run")
	if code != 1 || !strings.Contains(stderr, "RAPPORT_HTTP_ADDR") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 naming RAPPORT_HTTP_ADDR", code, stderr)
	}
	if strings.Contains(stderr, "workers started") {
		t.Errorf("workers started although the port was taken:\n%s", stderr)
	}
	servers, err := asynq.NewInspectorFromRedisClient(rdb).Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 0 {
		t.Errorf("%d Asynq servers left in Redis by a process that could not serve", len(servers))
	}
}

// TestAdminTokenWithWhitespace: a token read with its newline is refused
// at start-up in one sentence, before anything starts.
func TestAdminTokenWithWhitespace(t *testing.T) {
	code, stderr := run(t, map[string]string{"RAPPORT_ADMIN_TOKEN": adminToken + "\n"}, "run")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(stderr, "RAPPORT_ADMIN_TOKEN") || strings.Contains(stderr, adminToken) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line naming RAPPORT_ADMIN_TOKEN without its value", code, stderr)
	}
}
