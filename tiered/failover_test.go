package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestClusterFailover kills the master that serves the invalidation
// channel: its replica takes over, both buses move their subscription and
// clear their L1, and a write reaches the other node again.
func TestClusterFailover(t *testing.T) {
	cl := redistest.NewClusterWithReplicas(t)
	mk := func() *Cache[string] { return newCacheOn(t, cl.Client(t), nil) }
	a, b := mk(), mk()
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{a, b}, "k", "v1")
	master, err := cl.Client(t).MasterForKey(ctx, a.bus.Channel())
	if err != nil {
		t.Fatal(err)
	}
	cl.KillMaster(t, master.Options().Addr)
	for i, c := range []*Cache[string]{a, b} {
		eventually(t, 60*time.Second, func() bool { return c.Stats().Bus.Reconnects >= 1 && c.bus.Usable() },
			fmt.Sprintf("node %d resubscribed on the new master", i))
	}
	eventually(t, 30*time.Second, func() bool { return a.Set(ctx, "k", "v2") == nil }, "a writes after the failover")
	eventually(t, 5*time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "b sees the write made after the failover")
}
