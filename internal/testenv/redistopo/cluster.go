package redistopo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a Redis Cluster of three masters without replicas, every slot
// assigned.
type Cluster struct {
	nodes []*proc
}

// StartCluster starts three cluster-enabled redis-servers, assigns each a
// third of the slots, joins them (CLUSTER ADDSLOTSRANGE and CLUSTER MEET,
// no redis-cli) and returns once every node reports cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	requireRedis(t, 7, 0) // cluster-port and ADDSLOTSRANGE
	c := &Cluster{}
	for i := range 3 {
		c.nodes = append(c.nodes, start(t, procSpec{
			name:    fmt.Sprintf("node-%d", i+1),
			cluster: true,
			conf: func(p *proc) []string {
				return []string{
					"cluster-enabled yes",
					"cluster-config-file nodes.conf",
					"cluster-port " + strconv.Itoa(p.bus),
					"cluster-node-timeout 5000",
				}
			},
			ready: readyLine,
		}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var clients []*redis.Client
	for _, n := range c.nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.addr})
		defer cl.Close()
		clients = append(clients, cl)
	}
	for i, cl := range clients {
		lo, hi := i*clusterSlots/3, (i+1)*clusterSlots/3-1
		// Distinct epochs up front spare the nodes resolving a collision.
		if err := cl.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistopo: %s: CLUSTER SET-CONFIG-EPOCH: %v", c.nodes[i].name, err)
		}
		if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("redistopo: %s: CLUSTER ADDSLOTSRANGE %d %d: %v", c.nodes[i].name, lo, hi, err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port, n.bus).Err(); err != nil {
			t.Fatalf("redistopo: CLUSTER MEET %s: %v", n.addr, err)
		}
	}
	// The nodes gossip until each knows every slot's owner; nothing is
	// logged when that happens, so poll CLUSTER INFO.
	for i, cl := range clients {
		poll(t, c.nodes[i].name+" reports cluster_state:ok", startTimeout, func(ctx context.Context) (bool, string) {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3"), info
		})
	}
	return c
}

// Addrs are the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.addr)
	}
	return a
}

// URL is the redis-cluster:// URL of the cluster.
func (c *Cluster) URL() string {
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}
