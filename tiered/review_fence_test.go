package tiered

import (
	"context"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewReplacedCacheLateWrite: the write fence of a namespace lives in
// the bus's Shared map only while the namespace has a registration; the
// last Close drops it, and the next cache of the namespace on the same bus
// makes a new remote.Fence, whose key has a new random id. The old fence
// key is never raised again, so it still holds the token the first cache's
// failed write was sent with.
//
// Scenario, all in one process and on one bus: cache first writes k=v0
// (its fence is up); its Set(k, "old") is held in the network and times
// out; first is closed (say, a reconfiguration replaces it); cache second,
// same namespace, same bus, Set(k, "new") returns nil; then the held write
// lands. It finds the token it was sent with in the old fence key and
// runs: L2 holds "old", after a Set of "new" returned nil and after the
// "old" Set had returned its error. That is the late write the fence
// exists to refuse (promise 3, README: "after a failed write the cache
// stores a new token before it sends anything newer", "caches of one
// namespace on one bus share the fence").
//
// Fails before a fix: Get(k) = "old". A fix: derive the fence key from
// something that outlives the Fence value (the bus's node id and the
// namespace), so a new Fence raises over the same key before its first
// write, or keep the namespace's Fence in the bus after its last
// registration closes.
func TestReviewReplacedCacheLateWrite(t *testing.T) {
	s := redistest.Real(t)
	rdb, p := proxiedClient(t, s, 4)
	bus := sharedBus(t, s)
	mod := func(o *Options) { o.Redis, o.Bus, o.RedisTimeout = rdb, bus, 100*time.Millisecond }
	first := newNode[string](t, s, mod)
	other := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 }) // reads L2 every time
	ctx := context.Background()
	if err := first.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	p.HoldRequests()
	if err := first.Set(ctx, "k", "old"); err == nil {
		t.Fatal("Set through a holding proxy succeeded")
	}
	waitHeld(t, p)
	p.StopHolding()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := newNode[string](t, s, mod) // same namespace, same bus, same client
	if err := second.Set(ctx, "k", "new"); err != nil {
		t.Fatalf("second.Set: %v", err)
	}
	fences, _ := s.Client(t).Keys(ctx, "test:\x00fence:*").Result()
	before := s.CommandCalls(t, "evalsha", "eval")
	p.ReleaseRequests()
	s.WaitScripts(t, before+1) // the held write has run
	if v, err := other.Get(ctx, "k"); err != nil || v != "new" {
		t.Errorf("Get(k) after the held write of the closed cache landed = %q, %v; want %q, written by its replacement on the same bus after that write failed (fence keys in Redis: %d)",
			v, err, "new", len(fences))
	}
}
