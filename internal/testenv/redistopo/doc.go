// Package redistopo starts real Redis topologies for tests: a plain server,
// a Sentinel-managed master with a replica, and a three-master Redis
// Cluster, each as redis-server processes on free loopback ports with their
// files in t.TempDir(), killed when the test ends (and, on Linux, when the
// test binary dies). Tests of any package may use it; production code must
// not import it.
//
// redis-server (7.0 or newer for Cluster) must be on PATH. Without it a test
// fails with the command that installs it, or is skipped when
// RAPPORT_TEST_ALLOW_SKIP=1: CI must really run these tests.
//
// The helpers wait for events, not for time: a process is ready when its log
// says so, a failover is done when Sentinel publishes +switch-master. Polls
// (of SENTINEL get-master-addr-by-name, CLUSTER INFO) run only as a safety
// net or where Redis offers no event, always under a deadline.
package redistopo
