package tiered

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
)

// The tests in this file each check one part of promises 2 and 3 (bounded
// staleness, no invalidation undone) in a situation that once broke it.

// sharedMaxStaleness is the MaxStaleness of the buses sharedBus makes.
const sharedMaxStaleness = time.Second

// sharedBus makes a bus on its own client to s, closed at cleanup.
func sharedBus(t *testing.T, s *redistest.Server) *invalidation.Bus {
	t.Helper()
	b, err := invalidation.New(context.Background(), invalidation.Options{
		Redis: s.Client(t), HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: sharedMaxStaleness,
	})
	if err != nil {
		t.Fatalf("invalidation.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// l1Holds reports whether c's L1 serves want for key.
func l1Holds(c *Cache[string], key, want string) bool {
	c.l1.Wait()
	v, neg, ok := c.l1.Get(key)
	return ok && !neg && v == want
}

// TestWriteInvalidatesSiblingCaches: two caches of one namespace in one
// process, on one shared bus. A write or a Clear through either stops the
// other serving the old value at once: the bus does not hand a node its
// own messages, so nothing else would tell the sibling.
func TestWriteInvalidatesSiblingCaches(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		bus := sharedBus(t, s)
		mk := func() *Cache[string] {
			return newNode[string](t, s, func(o *Options) { o.Bus = bus })
		}
		a, b := mk(), mk()
		ctx := context.Background()
		if err := a.Set(ctx, "k", "old"); err != nil {
			t.Fatal(err)
		}
		warm(t, []*Cache[string]{a, b}, "k", "old")
		if err := a.Set(ctx, "k", "new"); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, "k"); err != nil || v != "new" {
			t.Errorf("sibling Get(k) right after Set = %q, %v; want %q", v, err, "new")
		}

		warm(t, []*Cache[string]{a, b}, "k", "new")
		if err := s.Client(t).Set(ctx, "test:k", mustEncode(t, a, "k", "behind the cache's back"), 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := a.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, "k"); err != nil || v != "behind the cache's back" {
			t.Errorf("sibling Get(k) right after Clear = %q, %v; want the L2 value", v, err)
		}
	})
}

func mustEncode(t *testing.T, c *Cache[string], key, v string) []byte {
	t.Helper()
	b, err := c.l2.Encode(key, v, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// panicCodec panics when it marshals the value "boom".
type panicCodec struct{}

func (panicCodec) ID() uint8 { return 200 }
func (panicCodec) Marshal(v any) ([]byte, error) {
	if s, ok := v.(string); ok && s == "boom" {
		panic("codec cannot marshal boom")
	}
	return json.Marshal(v)
}
func (panicCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestCodecPanicDuringFill: a codec that panics while a loaded value is
// encoded for L2 gives every waiter its value or a *PanicError, never a
// zero value with a nil error, and leaves no lease behind for other nodes
// to wait on, on the single-key and the batch path.
func TestCodecPanicDuringFill(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		mod := func(o *Options) { o.Codec = panicCodec{}; o.LeaseWait = 5 * time.Second }
		a, b := newNode[string](t, s, mod), newNode[string](t, s, mod)
		ctx := context.Background()
		loader := func(_ context.Context, keys []string) (map[string]string, error) {
			out := map[string]string{}
			for _, k := range keys {
				if strings.HasPrefix(k, "a") {
					out[k] = "boom"
				} else {
					out[k] = "fine-" + k
				}
			}
			return out, nil
		}
		got, err := a.GetOrLoadMany(ctx, []string{"a1", "b1"}, loader)
		var pe *PanicError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("GetOrLoadMany: %v, want nil or a *PanicError", err)
		}
		if err == nil && (got["a1"] != "boom" || got["b1"] != "fine-b1") {
			t.Errorf("GetOrLoadMany = %q with a nil error; want a1=boom, b1=fine-b1", got)
		}

		v, err := a.GetOrLoad(ctx, "a2", func(context.Context, string) (string, error) { return "boom", nil })
		if err == nil && v != "boom" || err != nil && !errors.As(err, &pe) {
			t.Errorf("GetOrLoad(a2) = %q, %v; want boom or a *PanicError", v, err)
		}

		// No lease is left in L2: another node loads at once instead of
		// waiting LeaseWait (5s) for it.
		for _, k := range []string{"a1", "a2"} {
			raw, err := s.Client(t).Get(ctx, "test:"+k).Bytes()
			if err == nil && len(raw) > 2 && raw[2] == 3 { // envelope kind 3: lease marker
				t.Errorf("key %s still holds a lease marker after the load", k)
			}
		}
		before := b.Stats().LeaseWaits
		if _, err := b.GetOrLoad(ctx, "a1", func(context.Context, string) (string, error) { return "other", nil }); err != nil {
			t.Fatalf("b.GetOrLoad(a1): %v", err)
		}
		if n := b.Stats().LeaseWaits - before; n != 0 {
			t.Errorf("b waited on %d leases of a1; want none left behind", n)
		}
	})
}

// proxied makes a cache whose Redis client reaches s through a fault proxy
// (one warmed connection) and whose bus has a direct client of its own, so
// that faults hit only the cache's L2 traffic. It returns the cache and the
// proxy.
func proxied(t *testing.T, s *redistest.Server, mod func(*Options)) (*Cache[string], *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ro := s.Options()
	ro.Addr = p.Addr()
	ro.PoolSize = 1
	// RedisTimeout bounds a call only where go-redis honours the context's
	// deadline on the socket.
	ro.ContextTimeoutEnabled = true
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	bus := sharedBus(t, s)
	c := newNode[string](t, s, func(o *Options) {
		o.Redis, o.Bus = rdb, bus
		if mod != nil {
			mod(o)
		}
	})
	return c, p
}

// TestLostLeaseReplyKeepsLease: the lease command runs but its reply is
// lost, and go-redis sends it again, which finds the node's own marker.
// The node must know its own token: it loads once, fills L2 and leaves no
// lease for others to wait on, on the single and the batch path. (Read as
// another node's lease, it waited LeaseWait, loaded without filling, and
// left its marker for LeaseTTL.)
func TestLostLeaseReplyKeepsLease(t *testing.T) {
	s := redistest.Real(t)
	c, p := proxied(t, s, func(o *Options) { o.LeaseWait = 5 * time.Second })
	ctx := context.Background()
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range keys {
			out[k] = "v-" + k
		}
		return out, nil
	}

	p.DropNextReply()
	v, err := c.GetOrLoad(ctx, "one", func(ctx context.Context, k string) (string, error) {
		m, err := load(ctx, []string{k})
		return m[k], err
	})
	if err != nil || v != "v-one" {
		t.Fatalf("GetOrLoad(one) = %q, %v", v, err)
	}
	p.DropNextReply()
	m, err := c.GetOrLoadMany(ctx, []string{"two", "three"}, load)
	if err != nil || len(m) != 2 {
		t.Fatalf("GetOrLoadMany = %v, %v", m, err)
	}
	if n := p.Accepted(); n < 3 {
		t.Fatalf("proxy accepted %d connections; the dropped replies should have forced 2 reconnects", n)
	}
	st := c.Stats()
	if st.LeaseWaits != 0 || st.LeaseFallbacks != 0 {
		t.Errorf("LeaseWaits = %d, LeaseFallbacks = %d; want 0: the leases were our own", st.LeaseWaits, st.LeaseFallbacks)
	}
	other := newNode[string](t, s, nil)
	for _, k := range []string{"one", "two", "three"} {
		got, err := other.Get(ctx, k)
		if err != nil || got != "v-"+k {
			t.Errorf("L2 Get(%s) on another node = %q, %v; want it filled with v-%s", k, got, err, k)
		}
	}
}

// TestLateWriteReachesWriter: a Set whose request is held up in the network
// past RedisTimeout returns an error, the writer refills its L1 from the
// old L2 value, and then the write lands. The message published with the
// write must then reach the writer's own L1 too, within MaxStaleness.
func TestLateWriteReachesWriter(t *testing.T) {
	s := redistest.Real(t)
	c, p := proxied(t, s, func(o *Options) { o.RedisTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	// Another node, whose L1 is kept empty: its Get reads L2.
	other := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 })
	if err := c.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{c}, "k", "old")

	const hold = 800 * time.Millisecond
	p.DelayRequests(hold)
	err := c.Set(ctx, "k", "new")
	p.DelayRequests(0) // the held write stays held; new requests pass
	if err == nil {
		t.Fatal("Set through a proxy that holds requests 800ms succeeded; want a timeout")
	}
	// The writer reads again before the write lands: L2 still has "old".
	eventually(t, 2*time.Second, func() bool {
		v, err := c.Get(ctx, "k")
		return err == nil && v == "old" && l1Holds(c, "k", "old")
	}, "writer refills L1 with the old value")
	eventually(t, 5*time.Second, func() bool {
		v, err := other.Get(ctx, "k")
		return err == nil && v == "new"
	}, "the held write lands")
	landed := time.Now()
	eventually(t, sharedMaxStaleness, func() bool {
		v, err := c.Get(ctx, "k")
		return err == nil && v == "new"
	}, "writer serves the landed write within MaxStaleness")
	if time.Since(landed) > sharedMaxStaleness {
		t.Errorf("writer served the old value %v after the write landed", time.Since(landed))
	}
}

// TestDeafBusDetachesFlights: the bus's subscription breaks and cannot be
// made again (new connections fail) while the cache's own Redis client
// still works. A load in flight from before a write the bus cannot hear of
// must not be joined by a caller that starts more than MaxStaleness after
// that write, whether the load began before the subscription broke or
// after.
func TestDeafBusDetachesFlights(t *testing.T) {
	for _, when := range []string{"before", "after"} {
		t.Run("load starts "+when+" the break", func(t *testing.T) {
			s := redistest.Real(t)
			bp, err := faultproxy.Start(s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = bp.Close() })
			bo := s.Options()
			bo.Addr = bp.Addr()
			busRdb := redis.NewClient(bo)
			t.Cleanup(func() { _ = busRdb.Close() })
			const maxStale = 400 * time.Millisecond
			bus, err := invalidation.New(context.Background(), invalidation.Options{
				Redis: busRdb, HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: maxStale,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = bus.Close() })
			a := newNode[string](t, s, func(o *Options) { o.Bus = bus; o.LoadTimeout = 20 * time.Second })
			writer := newNode[string](t, s, nil)
			ctx := context.Background()

			var truth atomic.Value
			truth.Store("old")
			release := make(chan struct{})
			started := make(chan struct{})
			var first atomic.Bool
			slow := func(ctx context.Context, key string) (string, error) {
				v := truth.Load().(string)
				if first.CompareAndSwap(false, true) {
					close(started)
					<-release // the first load is slow
				}
				return v, nil
			}
			defer close(release)
			brk := func() {
				bp.Refuse(true)
				bp.ResetAll()
				eventually(t, 2*time.Second, func() bool { return !bus.Usable() }, "bus unusable")
			}
			if when == "before" {
				go func() { _, _ = a.GetOrLoad(ctx, "k", slow) }()
				<-started
				brk()
			} else {
				brk()
				go func() { _, _ = a.GetOrLoad(ctx, "k", slow) }()
				<-started
			}
			truth.Store("new")
			if err := writer.Set(ctx, "k", "new"); err != nil {
				t.Fatal(err)
			}
			// The property is about elapsed time: wait past the bound.
			time.Sleep(maxStale + maxStale/2)
			got := make(chan string, 1)
			go func() { v, _ := a.GetOrLoad(ctx, "k", slow); got <- v }()
			select {
			case v := <-got:
				if v != "new" {
					t.Errorf("GetOrLoad 1.5×MaxStaleness after the write = %q, want new", v)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("GetOrLoad 1.5×MaxStaleness after the write joined the load that began before it")
			}
		})
	}
}

// TestTimedOutLeaseReplyReleases: the lease command runs but its reply
// arrives after RedisTimeout, so the node does not know it holds the
// lease. It must not fill under it (the command might as well have landed
// late, after a Delete: TestLateLeaseCannotResurrect), and must not leave
// its marker for LeaseTTL either (every other node would wait LeaseWait,
// then load again): it loads without filling L2 and releases the marker.
func TestTimedOutLeaseReplyReleases(t *testing.T) {
	s := redistest.Real(t)
	c, p := proxied(t, s, func(o *Options) {
		o.RedisTimeout = 200 * time.Millisecond
		o.LeaseTTL = 20 * time.Second
	})
	other := newNode[string](t, s, func(o *Options) { o.LeaseWait = 2 * time.Second })
	ctx := context.Background()

	p.DelayReplies(600 * time.Millisecond)
	v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
		return "loaded", nil
	})
	if err != nil || v != "loaded" {
		t.Fatalf("GetOrLoad with the lease reply held = %q, %v; want loaded", v, err)
	}
	if st := c.Stats(); st.L2Errors == 0 {
		t.Fatal("L2Errors = 0; the held lease reply should have timed out")
	}
	// Its release could not get through the slow network either; once the
	// network recovers the node releases it, long before LeaseTTL (20s).
	p.DelayReplies(0)
	direct := s.Client(t)
	eventually(t, 5*time.Second, func() bool { return direct.Exists(ctx, "test:k").Val() == 0 }, "the unsure marker released")
	var loads atomic.Int64
	got, err := other.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
		loads.Add(1)
		return "other", nil
	})
	if err != nil || got != "other" || loads.Load() != 1 {
		t.Errorf("other node GetOrLoad = %q, %v with %d loads; want its own load (nothing filled under an unsure lease)", got, err, loads.Load())
	}
	if st := other.Stats(); st.LeaseWaits != 0 {
		t.Errorf("other node waited on %d leases; want none left behind", st.LeaseWaits)
	}
}

// TestLateWriteCannotOverwriteNewerWrite: a Set whose request is held in
// the network past RedisTimeout returns an error; the node then writes a
// newer value, which returns nil. When the held request finally reaches
// Redis it must not replace the newer value (promise 3): the node raised
// its write fence before the newer write, so Redis refuses the late one.
func TestLateWriteCannotOverwriteNewerWrite(t *testing.T) {
	s := redistest.Real(t)
	c, p := proxied(t, s, func(o *Options) { o.RedisTimeout = 200 * time.Millisecond })
	other := newNode[string](t, s, func(o *Options) { o.LocalMaxCost = 1 }) // reads L2 every time
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	const hold = 800 * time.Millisecond
	p.DelayRequests(hold)
	err := c.Set(ctx, "k", "v1")
	p.DelayRequests(0) // the held request stays held; new ones pass
	if err == nil {
		t.Fatal("Set through a proxy that holds requests 800ms succeeded; want a timeout")
	}
	if err := c.Set(ctx, "k", "v2"); err != nil {
		t.Fatalf("Set(v2) after the failed write: %v", err)
	}
	// The proxy delivers the held bytes when the hold is up and then closes
	// that connection, which the client gave up on; nothing else signals
	// it, so poll with a deadline.
	open := p.Conns()
	eventually(t, hold+5*time.Second, func() bool { return p.Conns() < open }, "the held request delivered")
	if v, err := other.Get(ctx, "k"); err != nil || v != "v2" {
		t.Errorf("Get(k) after the late write of v1 reached Redis = %q, %v; want v2, written after it with a nil error", v, err)
	}
}
