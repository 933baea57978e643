package pipeline_test

import (
	"testing"
	"time"

	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/internal/testenv/redistopo"
)

// The pipeline on the Redis topologies RAPPORT_REDIS_URL selects, started
// by the tests on loopback ports (internal/testenv/redistopo): a backfill
// through a Sentinel failover, and a backfill on a three-master cluster.
// Nothing is lost or doubled; what a failover loses (replication is
// asynchronous) the sweep queues again.

func topologyClient(t *testing.T, url string) *harness {
	t.Helper()
	conf, err := redisconn.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	client := conf.Client()
	t.Cleanup(func() { client.Close() })
	return newHarness(t, harnessOptions{redis: client, tweak: durable(nil)})
}

// TestBackfillThroughSentinelFailover fails the master over in the middle
// of a backfill.
func TestBackfillThroughSentinelFailover(t *testing.T) {
	s := redistopo.StartSentinel(t)
	h := topologyClient(t, s.URL())
	f := seed(h)
	f.logged += h.seedMore(ae, 40)
	h.backfill()
	h.eventually("the first meetings in HubSpot", func() bool { return len(h.hub.Meetings()) > 0 })
	at := time.Now()
	old := s.MasterAddr(t)
	if now := s.Failover(t); now == old {
		t.Fatalf("the master is still %s after the failover", old)
	}
	took := h.recovered(f, at)
	t.Logf("Sentinel failover mid-backfill: settled %v after it", took.Round(10*time.Millisecond))
}

// TestBackfillOnCluster runs a backfill on a three-master Redis Cluster:
// Asynq's queues on their hash tags, the contact cache read across slots,
// the leases, limiters and transactions each on one key.
func TestBackfillOnCluster(t *testing.T) {
	c := redistopo.StartCluster(t)
	h := topologyClient(t, c.URL())
	f := seed(h)
	h.backfill()
	took := h.recovered(f, time.Now())
	t.Logf("backfill on a three-master cluster: settled in %v", took.Round(10*time.Millisecond))
}
