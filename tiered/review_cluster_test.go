package tiered

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// slotOwners maps every slot to the address of its master.
func slotOwners(t *testing.T, cc *redis.ClusterClient) func(slot int64) string {
	t.Helper()
	//lint:ignore SA1019 CLUSTER SHARDS needs Redis 7; these tests run on older servers too
	slots, err := cc.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return func(slot int64) string {
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) {
				return s.Nodes[0].Addr
			}
		}
		t.Fatalf("slot %d has no owner", slot)
		return ""
	}
}

// moveSlot moves slot, with its keys, from master from to master to, the
// way redis-cli --cluster reshard does: IMPORTING/MIGRATING, MIGRATE,
// then SETSLOT NODE on every master.
func moveSlot(t *testing.T, cl *redistest.Cluster, slot int64, from, to string) {
	t.Helper()
	ctx := context.Background()
	node := func(addr string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	src, dst := node(from), node(to)
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 1000).Result()
	must(err)
	host, port, _ := net.SplitHostPort(to)
	for _, k := range keys {
		must(src.Migrate(ctx, host, port, k, 0, 5*time.Second).Err())
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	for _, a := range cl.Addrs {
		if a != from && a != to {
			_ = node(a).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
		}
	}
}

// TestReviewMovedWriteStillAnnouncesItself: on Cluster the last script
// sent to each node carries the message, and which node that is comes from
// the client's cached slot map. When a slot has moved since, its script is
// redirected (MOVED) to a node that the map never assigned a carrying
// script. If that redirected script is held in the network past the
// timeout, the write fails; A's script announces the write at once (and
// the final publish is not even tried: its context expired with the
// pipeline's), a peer refills the old value from B, and when the held
// script lands on B nothing announces it. Once a late write lands, no node
// may serve the pre-write value beyond MaxStaleness (issue 8, hole 4).
func TestReviewMovedWriteStillAnnouncesItself(t *testing.T) {
	cl := redistest.NewCluster(t)
	ctx := context.Background()
	admin := cl.Client(t)
	owner := slotOwners(t, admin)
	chanSlot, err := admin.ClusterKeySlot(ctx, "tiercache:invalidation").Result()
	if err != nil {
		t.Fatal(err)
	}
	chanNode := owner(chanSlot)
	// A: where both keys live as the writer's map knows it; B: where k1's
	// slot moves. B does not serve the channel, so the final publish is
	// not held with k1's script.
	var a, b string
	for _, addr := range cl.Addrs {
		if addr != chanNode && b == "" {
			b = addr
		}
	}
	for _, addr := range cl.Addrs {
		if addr != b && a == "" {
			a = addr
		}
	}
	slotOf := func(k string) int64 {
		s, err := admin.ClusterKeySlot(ctx, "test:"+k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pick := func(prefix string, avoid int64) (string, int64) {
		for i := 0; ; i++ {
			k := fmt.Sprintf("%s%d", prefix, i)
			if s := slotOf(k); owner(s) == a && s != avoid {
				return k, s
			}
		}
	}
	// SetMany sorts its keys and groups them in that order, so k2's group
	// is the last one for A and carries the message; k1's does not.
	k1, s1 := pick("a", -1)
	k2, _ := pick("b", s1)

	pb, err := faultproxy.Start(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pb.Close() })
	wrdb := clusterClient(t, cl, func(o *redis.ClusterOptions) {
		o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == b {
				addr = pb.Addr()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}, nil)
	bus := newCacheOn(t, cl.Client(t), func(o *Options) { o.Namespace = "busowner" }).Bus()
	writer := newCacheOn(t, wrdb, func(o *Options) { o.Bus = bus })
	reader := newCacheOn(t, cl.Client(t), nil)

	if err := writer.SetMany(ctx, map[string]string{k1: "old", k2: "old"}); err != nil {
		t.Fatal(err)
	}
	// A write to a key on B loads the write script there, so the held
	// script does not fail with NOSCRIPT when it lands.
	for i := 0; ; i++ {
		k := fmt.Sprintf("c%d", i)
		if owner(slotOf(k)) == b {
			if err := writer.Set(ctx, k, "x"); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	warm(t, []*Cache[string]{reader}, k1, "old")
	moveSlot(t, cl, s1, a, b)

	const hold = 1500 * time.Millisecond
	pb.DelayRequests(hold)
	err = writer.SetMany(ctx, map[string]string{k1: "new", k2: "new"})
	pb.DelayRequests(0)
	if err == nil {
		t.Fatal("SetMany with k1's node held 1.5s succeeded; want a timeout")
	}
	// The final publish dropped k1 from the reader's L1; its next read
	// refills from B, which has not run the held script yet.
	heardSince(t, reader)
	if v, err := reader.Get(ctx, k1); err != nil || v != "old" {
		t.Fatalf("reader Get(%s) before the held script lands = %q, %v; want old", k1, v, err)
	}
	direct := redis.NewClient(&redis.Options{Addr: b})
	t.Cleanup(func() { _ = direct.Close() })
	eventually(t, 2*hold, func() bool {
		v, err := direct.Get(ctx, "test:"+k1).Result()
		return err == nil && strings.HasSuffix(v, `"new"`)
	}, "the held script lands on B")
	landed := time.Now()
	deadline := landed.Add(reader.opts.MaxStaleness)
	for time.Now().Before(deadline) {
		if v, err := reader.Get(ctx, k1); err == nil && v == "new" {
			return
		}
		time.Sleep(time.Millisecond) // poll interval with a deadline
	}
	v, _ := reader.Get(ctx, k1)
	t.Errorf("reader serves %s = %q from L1 %v after the late write landed; want new within MaxStaleness", k1, v, time.Since(landed).Round(time.Millisecond))
}
