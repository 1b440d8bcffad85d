package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// proxiedClient returns a client that reaches s through a fault proxy, with
// n connections handshaken and idle in its pool (so that a held request
// is sent on an existing connection rather than stuck in a new one's
// handshake), context deadlines on the socket and no retries.
func proxiedClient(t *testing.T, s *redistest.Server, n int) (*redis.Client, *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ro := s.Options()
	ro.Addr = p.Addr()
	ro.PoolSize = n
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	conns := make([]*redis.Conn, n)
	for i := range conns {
		conns[i] = rdb.Conn()
		if err := conns[i].Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		_ = c.Close() // back to the pool
	}
	return rdb, p
}

// waitHeld waits until p holds a request.
func waitHeld(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool { return p.Held() > 0 }, "a request held")
}

// TestSiblingCachesShareFence: two caches of one namespace in one process,
// on one bus. A Set through the first times out and is held in the
// network; a Set of the same key through the second returns nil; then the
// held write lands. The process knew the order, so the late write must not
// win (promise 3): siblings share one write fence.
func TestSiblingCachesShareFence(t *testing.T) {
	s := redistest.Real(t)
	rdb, p := proxiedClient(t, s, 4)
	bus := sharedBus(t, s)
	mod := func(o *Options) { o.Redis, o.Bus, o.RedisTimeout = rdb, bus, 100*time.Millisecond }
	first := newNode[string](t, s, mod)
	second := newNode[string](t, s, mod)
	other := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 }) // reads L2 every time
	ctx := context.Background()
	for _, c := range []*Cache[string]{first, second} { // both have written once: their fences are up
		if err := c.Set(ctx, "k", "v0"); err != nil {
			t.Fatal(err)
		}
	}
	p.HoldRequests()
	if err := first.Set(ctx, "k", "old"); err == nil {
		t.Fatal("Set through a holding proxy succeeded")
	}
	waitHeld(t, p)
	p.StopHolding()
	if err := second.Set(ctx, "k", "new"); err != nil {
		t.Fatalf("second.Set: %v", err)
	}
	before := s.CommandCalls(t, "evalsha", "eval")
	p.ReleaseRequests()
	s.WaitScripts(t, before+1) // the held write has run
	if v, err := other.Get(ctx, "k"); err != nil || v != "new" {
		t.Errorf("Get(k) after the held write of the first sibling landed = %q, %v; want %q, written by the second after it failed", v, err, "new")
	}
}

// TestEvictedFenceRefusesLateWrite: as TestSiblingCachesShareFence with one
// cache, but Redis evicts the fence key (maxmemory, allkeys-lru) before the
// held write lands. A missing fence is a lost fence: the late write is
// refused, and the newer value stays (or is evicted too), never replaced.
func TestEvictedFenceRefusesLateWrite(t *testing.T) {
	s := redistest.Real(t)
	rdb, p := proxiedClient(t, s, 4)
	c := newNode[string](t, s, func(o *Options) { o.Redis, o.RedisTimeout = rdb, 100*time.Millisecond })
	other := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	p.HoldRequests()
	if err := c.Set(ctx, "k", "old"); err == nil {
		t.Fatal("Set through a holding proxy succeeded")
	}
	waitHeld(t, p)
	p.StopHolding()
	if err := c.Set(ctx, "k", "new"); err != nil {
		t.Fatalf("Set(new): %v", err)
	}
	keys, err := s.Client(t).Keys(ctx, "test:\x00fence:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("fence keys = %q, %v; want one", keys, err)
	}
	s.Evict(t, keys[0])
	before := s.CommandCalls(t, "evalsha", "eval")
	p.ReleaseRequests()
	s.WaitScripts(t, before+1)
	if v, err := other.Get(ctx, "k"); err == nil && v != "new" || err != nil && err != ErrNotFound {
		t.Errorf("Get(k) after the held write landed on an evicted fence = %q, %v; want %q or ErrNotFound", v, err, "new")
	}
}

// TestLateLeaseCannotResurrect: a lease command held in the network times
// out, so the node cannot know whether, or when, it will land. If it lands
// after a Delete of the key, and the node's load read the source of truth
// before that Delete, a fill under that lease would put the replaced
// value back in L2, where every node would find it until its TTL (promise
// 3: no invalidation undone). So a node whose lease command failed loads
// without filling L2, and releases whatever marker it may have left.
func TestLateLeaseCannotResurrect(t *testing.T) {
	s := redistest.Real(t)
	rdb, p := proxiedClient(t, s, 4)
	a := newNode[string](t, s, func(o *Options) { o.Redis, o.RedisTimeout = rdb, 100*time.Millisecond })
	b := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 }) // reads L2 every time
	ctx := context.Background()
	truth := "v0"
	loading := make(chan struct{})
	proceed := make(chan struct{})
	p.HoldRequests()
	done := make(chan error, 1)
	go func() {
		v, err := a.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
			v := truth // read before the Delete below
			close(loading)
			<-proceed
			return v, nil
		})
		if err == nil && v != "v0" {
			err = fmt.Errorf("GetOrLoad = %q, want v0", v)
		}
		done <- err
	}()
	<-loading // the lease command timed out, still held; the loader has read v0
	p.StopHolding()
	truth = "v1"
	if err := b.Delete(ctx, "k"); err != nil { // the source of truth changed: drop k
		t.Fatal(err)
	}
	before := s.CommandCalls(t, "set")
	p.ReleaseRequests()
	eventually(t, 5*time.Second, func() bool { return s.CommandCalls(t, "set") > before }, "the held lease command ran")
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	v, err := b.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return truth, nil })
	if err != nil || v != "v1" {
		t.Errorf("b.GetOrLoad(k) after the Delete = %q, %v; want v1: the lease that landed after the Delete let a's fill put v0 back", v, err)
	}
}
