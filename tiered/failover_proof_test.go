package tiered

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestDemotedMasterIsNoProof: after a Sentinel failover, a node whose
// client still talks to the old master (now a replica of the new one)
// must not keep serving L1. Its heartbeats would still go out and come
// back through the old server, while writers use the new master and their
// invalidations reach it only through replication, later than the
// heartbeat: the proof would show a path to a Redis, not to the one
// writers use. The heartbeat is refused by a replica, so the node's bus
// turns unusable within MaxStaleness and stays so.
func TestDemotedMasterIsNoProof(t *testing.T) {
	sn := redistest.NewSentinelWithReplica(t)
	ctx := context.Background()
	// A client that has not followed the failover: it was pointed at the
	// master's address.
	stuck := redis.NewClient(&redis.Options{Addr: sn.Master.Addr})
	t.Cleanup(func() { _ = stuck.Close() })
	n := newCacheOn(t, stuck, nil)
	w := newCacheOn(t, sn.Client(t), nil)
	if err := w.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{n}, "k", "v1")
	sn.Failover(t)
	eventually(t, 5*time.Second, func() bool { return !n.bus.Usable() }, "the stuck node's L1 off")
	// Several heartbeat intervals later it is still off: nothing it hears
	// proves the path writers use.
	beats := n.Stats().Bus.HeartbeatsSent + n.Stats().Bus.HeartbeatErrors
	eventually(t, 5*time.Second, func() bool {
		st := n.Stats().Bus
		return st.HeartbeatsSent+st.HeartbeatErrors >= beats+5
	}, "five more heartbeats tried")
	if n.bus.Usable() {
		t.Errorf("the node talking to the demoted master proves liveness again: %+v", n.Stats().Bus)
	}
	if _, _, _, ok := n.lookupL1("k"); ok {
		t.Errorf("the node talking to the demoted master serves k from L1")
	}
}

// TestMasterCutOffFromReplicasIsNoProof: a master with min-replicas-to-write
// that loses its replicas (the minority side of a partition, whose
// replica the sentinels promote) refuses writes after min-replicas-max-lag;
// it must refuse the node's heartbeats too, so that a node that can reach
// only that master stops serving L1. (Without min-replicas-to-write such a
// master accepts everything, and no client can tell: see the README.)
func TestMasterCutOffFromReplicasIsNoProof(t *testing.T) {
	master := redistest.RealWith(t, "--repl-diskless-sync-delay", "0",
		"--min-replicas-to-write", "1", "--min-replicas-max-lag", "2")
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := redistest.RealWith(t, "--replicaof", host, port)
	n := newCacheOn(t, master.Client(t), nil)
	ctx := context.Background()
	if err := n.Set(ctx, "k", "v1"); err != nil {
		t.Fatalf("Set with the replica in sync: %v", err)
	}
	replica.Kill(t)
	eventually(t, 10*time.Second, func() bool { return !n.bus.Usable() }, "the node's L1 off once its master has no replica")
}

// TestClusterFailoverProofMovesToNewMaster: a manual Cluster failover of the
// channel's master, which keeps running as a replica. A node's
// subscription stays on the old server, where it still hears everything
// (Cluster relays every publish to every node), but its heartbeats must
// then be published on the new master, as writers' announcements are: a
// heartbeat published on the old server is heard before announcements
// relayed from the new one that were published earlier, and proves
// nothing about them. The old server refuses the heartbeat script, the
// client reloads its slot map, and the next heartbeats go through the new
// master.
func TestClusterFailoverProofMovesToNewMaster(t *testing.T) {
	cl := redistest.NewClusterWithReplicas(t)
	n := newCacheOn(t, cl.Client(t), nil)
	ctx := context.Background()
	master, err := cl.Client(t).MasterForKey(ctx, n.bus.Channel())
	if err != nil {
		t.Fatal(err)
	}
	old := master.Options().Addr
	cl.Failover(t, old)
	oldNode := cl.Node(t, old)
	// Within a few heartbeats the node publishes on the new master; from
	// then on the old server runs none of its heartbeats, while the node
	// keeps proving liveness.
	var published int
	eventually(t, 10*time.Second, func() bool {
		before := oldNode.CommandCalls(t, "publish")
		heard := n.Stats().Bus.HeartbeatsHeard
		eventually(t, 5*time.Second, func() bool { return n.Stats().Bus.HeartbeatsHeard >= heard+3 }, "three heartbeats heard")
		published = oldNode.CommandCalls(t, "publish") - before
		return published == 0
	}, "heartbeats published on the new master only")
	if !n.bus.Usable() {
		t.Errorf("the node does not prove liveness through the new master: %+v", n.Stats().Bus)
	}
}

// replicated starts a master with one replica in sync and returns both.
func replicated(t testing.TB) (master, replica *redistest.Server) {
	t.Helper()
	master = redistest.RealWith(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(master.Addr)
	replica = redistest.RealWith(t, "--replicaof", host, port)
	mc := master.Client(t)
	// Online is not enough: a replica acknowledges writes only once it has
	// loaded what the master sent it.
	eventually(t, 10*time.Second, func() bool {
		ctx := context.Background()
		info, _ := mc.Info(ctx, "replication").Result()
		if !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
			return false
		}
		if err := mc.Set(ctx, "replicated", "1", 0).Err(); err != nil {
			return false
		}
		n, err := mc.Wait(ctx, 1, 100*time.Millisecond).Result()
		return err == nil && n == 1
	}, "replica in sync and acknowledging")
	return master, replica
}

// TestWaitReplicas: with WaitReplicas a write returns nil once a replica has
// acknowledged it, and, once no replica can, returns ErrNotReplicated
// within RedisTimeout, with the value written and announced all the same.
func TestWaitReplicas(t *testing.T) {
	master, replica := replicated(t)
	c := newCacheOn(t, master.Client(t), func(o *Options) { o.WaitReplicas = 1 })
	other := newCacheOn(t, master.Client(t), nil)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v1"); err != nil {
		t.Fatalf("Set with a replica in sync: %v", err)
	}
	if v, err := replica.Client(t).Get(ctx, "test:k").Result(); err != nil || v == "" {
		t.Errorf("the replica does not hold k once Set returned: %q, %v", v, err)
	}
	warm(t, []*Cache[string]{other}, "k", "v1")
	replica.Kill(t)
	start := time.Now()
	err := c.Set(ctx, "k", "v2")
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Set with the replica gone = %v, want ErrNotReplicated", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("Set took %v to report the missing replica; want about RedisTimeout/2 (150ms)", d)
	}
	eventually(t, 2*time.Second, func() bool { v, _ := other.Get(ctx, "k"); return v == "v2" }, "the unreplicated write applied and announced")
	if c.Stats().L2.NotReplicated != 1 {
		t.Errorf("Stats().L2.NotReplicated = %d, want 1", c.Stats().L2.NotReplicated)
	}
}

// BenchmarkSetWaitReplicas is a Set on a master with one replica on
// loopback, with and without WaitReplicas 1: what waiting for the replica
// costs a write.
func BenchmarkSetWaitReplicas(b *testing.B) {
	master, _ := replicated(b)
	for _, wait := range []int{0, 1} {
		b.Run(fmt.Sprintf("wait=%d", wait), func(b *testing.B) {
			c := newCacheOn(b, master.Client(b), func(o *Options) { o.WaitReplicas = wait; o.Namespace = fmt.Sprint("w", wait) })
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := c.Set(ctx, strconv.Itoa(i%1024), "value"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
