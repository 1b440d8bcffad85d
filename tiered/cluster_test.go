package tiered

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestCluster runs the main paths on a three-master Redis Cluster: batches
// span slots and masters, leases live in the keys, invalidations cross
// nodes.
func TestCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	mk := func() *Cache[string] { return newCacheOn(t, cl.Client(t), nil) }
	a, b := mk(), mk()
	ctx := context.Background()

	want := map[string]string{}
	var keys []string
	for i := range 50 {
		k := fmt.Sprint("k", i)
		want[k] = fmt.Sprint("v", i)
		keys = append(keys, k)
	}
	if err := a.SetMany(ctx, want); err != nil {
		t.Fatalf("SetMany across slots: %v", err)
	}
	got, err := b.GetMany(ctx, append(keys, "absent"))
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("GetMany across slots = %d values, %v; want %d", len(got), err, len(want))
	}

	warm(t, []*Cache[string]{a, b}, "k1", "v1")
	if err := a.Set(ctx, "k1", "v1b"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, func() bool { v, _ := b.Get(ctx, "k1"); return v == "v1b" }, "b sees the Set on a cluster")
	if err := b.Delete(ctx, keys...); err != nil {
		t.Fatalf("Delete across slots: %v", err)
	}
	if _, err := a.Get(ctx, "k7"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a.Get(k7) after Delete: %v, want ErrNotFound", err)
	}

	var loads atomic.Int64
	loader := func(_ context.Context, ks []string) (map[string]string, error) {
		loads.Add(int64(len(ks)))
		out := map[string]string{}
		for _, k := range ks {
			out[k] = "L" + k
		}
		return out, nil
	}
	m, err := a.GetOrLoadMany(ctx, keys, loader)
	if err != nil || len(m) != len(keys) {
		t.Fatalf("GetOrLoadMany on cluster = %d values, %v", len(m), err)
	}
	m, err = b.GetOrLoadMany(ctx, keys, loader)
	if err != nil || len(m) != len(keys) || loads.Load() != int64(len(keys)) {
		t.Errorf("second node: %d values, %v, %d loads; want every key from L2, %d loads in all", len(m), err, loads.Load(), len(keys))
	}
}

// TestSentinel runs writes, propagation and loads through Sentinel-backed
// clients, as a service on a Sentinel deployment would.
func TestSentinel(t *testing.T) {
	sn := redistest.NewSentinel(t)
	mk := func() *Cache[string] { return newCacheOn(t, sn.Client(t), nil) }
	a, b := mk(), mk()
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{a, b}, "k", "v1")
	if err := a.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "b sees the Set through Sentinel")
	var loads atomic.Int64
	for _, c := range []*Cache[string]{a, b} {
		v, err := c.GetOrLoad(ctx, "cold", func(context.Context, string) (string, error) { loads.Add(1); return "L", nil })
		if err != nil || v != "L" {
			t.Errorf("GetOrLoad(cold) = %q, %v", v, err)
		}
	}
	if loads.Load() != 1 {
		t.Errorf("loader ran %d times across two nodes, want 1", loads.Load())
	}
}

// TestSentinelFailover kills the master under two caches: the sentinel
// promotes the replica, both buses reconnect and clear their L1, and a
// write on the new master reaches the other node. Promise 5: the cache
// heals by itself.
func TestSentinelFailover(t *testing.T) {
	sn := redistest.NewSentinelWithReplica(t)
	mk := func() *Cache[string] { return newCacheOn(t, sn.Client(t), nil) }
	a, b := mk(), mk()
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{a, b}, "k", "v1")
	old := sn.Master.Addr
	sn.Master.Kill(t)
	eventually(t, 30*time.Second, func() bool { return sn.MasterAddr(t) != old }, "sentinel promoted the replica")
	for i, c := range []*Cache[string]{a, b} {
		eventually(t, 30*time.Second, func() bool { return c.Stats().Bus.Reconnects >= 1 && c.bus.Usable() },
			fmt.Sprintf("node %d reconnected to the new master", i))
	}
	eventually(t, 30*time.Second, func() bool { return a.Set(ctx, "k", "v2") == nil }, "a writes to the new master")
	eventually(t, 5*time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "b sees the write made after the failover")
	if b.Stats().Clears == 0 {
		t.Errorf("b never cleared its L1 across the failover")
	}
}
