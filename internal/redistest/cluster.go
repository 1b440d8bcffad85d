package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters (and, optionally, a replica
// of each) on loopback ports, each a redis-server process this test
// started.
type Cluster struct {
	// Addrs are the nodes' host:port addresses.
	Addrs []string
	nodes []*Server
}

// NewCluster starts a three-master Redis Cluster (no replicas) and waits
// until every node reports cluster_state:ok. It needs redis-server and
// redis-cli; without them it skips, or fails when TIERCACHE_REQUIRE_REDIS=1.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	return newCluster(tb, freePort, 0, 5000)
}

// NewClusterWithReplicas starts three masters with one replica each, for
// failover tests ([Cluster.KillMaster]).
func NewClusterWithReplicas(tb testing.TB) *Cluster {
	tb.Helper()
	return newCluster(tb, freePort, 1, 1000)
}

// Node returns the node at addr; it fails the test if there is none.
func (c *Cluster) Node(tb testing.TB, addr string) *Server {
	tb.Helper()
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	tb.Fatalf("redistest: no cluster node at %s", addr)
	return nil
}

// newCluster starts the nodes on ports from pick, each with a bus port of
// its own.
func newCluster(tb testing.TB, pick portSource, replicas, nodeTimeoutMs int) *Cluster {
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("redis-cli not found on PATH and %s=1: %v", RequireEnv, err)
		}
		tb.Skipf("redis-cli not on PATH (set %s=1 to make this a failure)", RequireEnv)
	}
	c := &Cluster{}
	for range 3 * (1 + replicas) {
		s := startReal(tb, pick, true, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(nodeTimeoutMs), "--repl-diskless-sync-delay", "0")
		c.nodes = append(c.nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	// The nodes agree on the slot map through their gossip; nothing
	// announces it, so poll CLUSTER INFO with a deadline.
	deadline := time.Now().Add(startTimeout)
	for _, a := range c.Addrs {
		rc := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := rc.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				rc.Close()
				tb.Fatalf("cluster node %s not ok after %v: %v %s", a, startTimeout, err, info)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		rc.Close()
	}
	return c
}

// Client returns a cluster client closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        c.Addrs,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})
	tb.Cleanup(func() { _ = cc.Close() })
	// Load the slot map now, so the first command of a test is not slow.
	if err := cc.ForEachShard(context.Background(), func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		tb.Fatalf("cluster client: %v", err)
	}
	return cc
}

// KillMaster kills the master at addr, as a crash would, and has its
// replica take over its slots (CLUSTER FAILOVER TAKEOVER, which needs no
// vote), then waits until the new master reports cluster_state:ok. It
// returns the new master's address. The cluster must come from
// NewClusterWithReplicas.
func (c *Cluster) KillMaster(tb testing.TB, addr string) string {
	tb.Helper()
	ctx := context.Background()
	// Find the replica first, so that a cluster without one fails the test
	// before anything is killed.
	replica := c.replicaOf(tb, addr)
	c.Node(tb, addr).Kill(tb)
	r := redis.NewClient(&redis.Options{Addr: replica})
	defer r.Close()
	if err := r.Do(ctx, "CLUSTER", "FAILOVER", "TAKEOVER").Err(); err != nil {
		tb.Fatalf("CLUSTER FAILOVER TAKEOVER on %s: %v", replica, err)
	}
	// The takeover spreads through gossip; nothing announces its end.
	deadline := time.Now().Add(startTimeout)
	for {
		info, _ := r.ClusterInfo(ctx).Result()
		role, _ := r.Do(ctx, "ROLE").Slice()
		if strings.Contains(info, "cluster_state:ok") && len(role) > 0 && role[0] == "master" {
			return replica
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica %s not an ok master after %v: %s", replica, startTimeout, info)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// Failover has the replica of the master at addr take over while the master
// keeps running (CLUSTER FAILOVER, the manual failover an operator starts):
// the old master becomes a replica of the new one. It waits until both
// report their new roles and the new master reports cluster_state:ok, and
// returns the new master's address. The cluster must come from
// NewClusterWithReplicas.
func (c *Cluster) Failover(tb testing.TB, addr string) string {
	tb.Helper()
	ctx := context.Background()
	replica := c.replicaOf(tb, addr)
	r := redis.NewClient(&redis.Options{Addr: replica, MaxRetries: -1})
	defer r.Close()
	m := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer m.Close()
	role := func(c *redis.Client) string {
		v, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(v) == 0 {
			return fmt.Sprint(err)
		}
		return fmt.Sprint(v[0])
	}
	// A manual failover needs the replica in sync with its master, and
	// ends by itself (or not, after cluster-node-timeout); nothing announces
	// either, so it is started again until the roles switch, with a
	// deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		_ = r.Do(ctx, "CLUSTER", "FAILOVER").Err()
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
			info, _ := r.ClusterInfo(ctx).Result()
			if role(r) == "master" && role(m) == "slave" && strings.Contains(info, "cluster_state:ok") {
				return replica
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		if time.Now().After(deadline) {
			tb.Fatalf("CLUSTER FAILOVER of %s by %s not done after %v: roles %s and %s", addr, replica, startTimeout, role(m), role(r))
		}
	}
}

// replicaOf returns the address of a node that replicates the master at
// addr. It asks every node for its own ROLE, which the node knows for
// certain. What a node reports of the others (CLUSTER NODES) comes by
// gossip: right after the cluster is created, redis-cli's last step
// (CLUSTER REPLICATE) may not have reached every node, and a replica then
// looks like a master with no replicas. The link need not be up (a new
// replica waits out repl-diskless-sync-delay, 5s, before its first sync):
// TAKEOVER does not ask the master. Polling, with a deadline, covers a
// replica that has not yet taken in its CLUSTER REPLICATE.
func (c *Cluster) replicaOf(tb testing.TB, addr string) string {
	tb.Helper()
	host, port, _ := net.SplitHostPort(addr)
	deadline := time.Now().Add(startTimeout)
	for {
		var roles []string
		for _, a := range c.Addrs {
			if a == addr {
				continue
			}
			rc := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
			// A replica's ROLE: "slave", master host, master port, link
			// state, replication offset.
			role, err := rc.Do(context.Background(), "ROLE").Slice()
			rc.Close()
			if err == nil && len(role) >= 3 && role[0] == "slave" &&
				role[1] == host && fmt.Sprint(role[2]) == port {
				return a
			}
			roles = append(roles, fmt.Sprintf("%s: %v %v", a, role, err))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: no node replicates %s after %v; roles: %s",
				addr, startTimeout, strings.Join(roles, "; "))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
