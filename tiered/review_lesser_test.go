package tiered

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// Regression tests for the lesser defects of the read and refresh paths
// (issue 19).

// refreshLock is the Redis key of key's refresh lock in namespace "test".
func refreshLock(key string) string { return "{test:" + key + "}\x00refresh" }

// refreshEnded polls until n refreshes have started on c and none of key
// is running, with a deadline: a background refresh signals nothing.
func refreshEnded(t *testing.T, c *Cache[string], key string, n uint64) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		c.refreshing.mu.Lock()
		_, busy := c.refreshing.keys[key]
		c.refreshing.mu.Unlock()
		return c.Stats().Refreshes >= n && !busy
	}, "the refresh ended")
}

// readUntilRefreshes reads key through GetOrLoad until n refreshes have
// started, with a deadline: an entry comes due at a random point of its
// window.
func readUntilRefreshes(t *testing.T, c *Cache[string], key string, loader Loader[string], n uint64) {
	t.Helper()
	eventually(t, 3*time.Second, func() bool {
		readFast(t, c, key, loader)
		return c.Stats().Refreshes >= n
	}, "a refresh started")
}

// loadRefreshScripts runs a refresh of another key through c, so that
// Redis has the refresh scripts and a late reply is the script's own, not
// a NOSCRIPT.
func loadRefreshScripts(t *testing.T, c *Cache[string]) {
	t.Helper()
	ctx := context.Background()
	if err := c.Set(ctx, "scripts", "v"); err != nil {
		t.Fatal(err)
	}
	it, ok, err := c.l2.Get(ctx, "scripts")
	if err != nil || !ok {
		t.Fatalf("L2 Get(scripts) = %v, %v", ok, err)
	}
	r, err := c.l2.BeginRefresh(ctx, "scripts", it.Expiry(), time.Second)
	if err != nil || r.State != remote.RefreshGranted {
		t.Fatalf("BeginRefresh(scripts) = %v, %v; want granted", r.State, err)
	}
	if _, err := c.l2.FinishRefresh(ctx, "scripts", r, nil, 0); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshFreesLockAfterLostReply: the first round trip of a refresh
// (BeginRefresh) runs in Redis and takes the key's refresh lock, but its
// reply never reaches the node in time. The node must free the lock it
// may hold, at once, rather than leave it for LoadTimeout + RedisTimeout
// (here 10.2s), during which no node can refresh the key.
func TestRefreshFreesLockAfterLostReply(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*faultproxy.Proxy)
	}{
		{"late reply", func(p *faultproxy.Proxy) { p.DelayReplies(time.Second) }},
		{"dropped reply", func(p *faultproxy.Proxy) { p.DropNextReply() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Real(t)
			// Two connections ready: the release goes on the one that
			// waited for no reply, with no handshake to be delayed.
			rdb, p := proxiedClient(t, s, 2)
			bus := sharedBus(t, s)
			c := newNode[string](t, s, func(o *Options) {
				refreshOpts(o)
				o.Redis, o.Bus = rdb, bus
				o.RedisTimeout = 200 * time.Millisecond
				o.LoadTimeout = 10 * time.Second
			})
			var calls atomic.Int32
			loader := func(context.Context, string) (string, error) {
				calls.Add(1)
				return "v", nil
			}
			warmGetOrLoad(t, c, "k", loader)
			loadRefreshScripts(t, c)
			errs := c.Stats().L2Errors
			tt.fault(p)
			readUntilRefreshes(t, c, "k", loader, 1)
			refreshEnded(t, c, "k", 1)
			p.Pass()
			if c.Stats().L2Errors == errs {
				t.Fatal("the refresh's round trip did not fail; the fault missed it")
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("loader called %d times, want 1: the refresh was granted", n)
			}
			direct := s.Client(t)
			ctx := context.Background()
			// The node sent its release before the refresh ended; Redis
			// runs it a moment later at most.
			deadline := time.Now().Add(2 * time.Second)
			for {
				n, err := direct.Exists(ctx, refreshLock("k")).Result()
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the refresh lock is still held 2s after the refresh failed (PTTL %v): every node's refresh of the key waits for it",
						direct.PTTL(ctx, refreshLock("k")).Val())
				}
				time.Sleep(time.Millisecond) // poll interval with a deadline
			}
		})
	}
}

// TestRefreshDueWhileKeyBusyKeepsClaim: an entry of key comes due while a
// refresh of key runs on the node (its loader blocked). The hits on that
// entry must not spend its claim, which would start nothing: after the
// running refresh ends, the entry is still due, and the next hit
// refreshes it.
func TestRefreshDueWhileKeyBusyKeepsClaim(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		g := newGate(t)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			switch calls.Add(1) {
			case 1:
				return "v1", nil
			case 2:
				close(g.started)
				<-g.release
				ChooseTTL(ctx, key, time.Minute)
				return "v2", nil
			}
			return "unexpected", nil
		}
		warmGetOrLoad(t, c, "k", loader)
		age(s, 500*time.Millisecond)
		readUntilStarted(t, c, "k", loader, g)
		// L1 loses the entry (evicted, or hidden by an invalidation of a
		// key sharing its epoch slot) and refills it from L2, which still
		// holds v1: a new entry, under a stamp the running refresh's fill
		// will not pass, that comes due on its own.
		c.l1.Invalidate("k")
		warmGetOrLoad(t, c, "k", loader)
		eventually(t, 3*time.Second, func() bool {
			_, _, due, ok := c.l1.GetRef("k")
			return ok && due
		}, "the refilled entry came due")
		if v := readFast(t, c, "k", loader); v != "v1" { // a hit on the due entry
			t.Fatalf("read of the due entry = %q, want v1", v)
		}
		g.open()
		refreshEnded(t, c, "k", 1)
		if n := c.Stats().Refreshes; n != 1 {
			t.Fatalf("Refreshes = %d, want 1: a second refresh started while the first ran", n)
		}
		if p, _, due, ok := c.l1.GetRef("k"); !ok || !due {
			t.Fatalf("after the running refresh ended, L1 entry ok = %v, due = %v (value %v); want still due: its claim was spent on a refresh that never ran",
				ok, due, p != nil && *p == "v1")
		}
		eventually(t, 3*time.Second, func() bool { return readFast(t, c, "k", loader) == "v2" }, "the entry refreshed to v2")
	})
}

// TestRefreshFailedFinishIsNotRefused: a refresh whose last round trip
// (FinishRefresh) fails is an L2 error, not a refresh a write refused.
func TestRefreshFailedFinishIsNotRefused(t *testing.T) {
	s := redistest.Real(t)
	c, p := proxied(t, s, func(o *Options) {
		refreshOpts(o)
		o.RedisTimeout = 200 * time.Millisecond
	})
	g := newGate(t)
	var calls atomic.Int32
	loader := func(ctx context.Context, key string) (string, error) {
		if calls.Add(1) == 1 {
			return "v1", nil
		}
		close(g.started)
		<-g.release
		return "v2", nil
	}
	warmGetOrLoad(t, c, "k", loader)
	readUntilStarted(t, c, "k", loader, g)
	errs := c.Stats().L2Errors
	p.Blackhole(true)
	g.open()
	refreshEnded(t, c, "k", 1)
	p.Blackhole(false)
	st := c.Stats()
	if st.L2Errors == errs {
		t.Fatal("the refresh's last round trip did not fail; the fault missed it")
	}
	if st.RefreshesRefused != 0 {
		t.Errorf("RefreshesRefused = %d after a refresh whose round trip failed (L2Errors %d); want 0: no write refused it",
			st.RefreshesRefused, st.L2Errors-errs)
	}
}

// TestRefreshGoneDropsL1: L2 loses a key with no write (evicted, flushed)
// while a node's L1 holds it. The node's refresh of it finds nothing to
// refresh; the node must then stop serving its copy, not serve it until
// its L1 TTL runs out.
func TestRefreshGoneDropsL1(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		var calls atomic.Int32
		loader := func(context.Context, string) (string, error) {
			if calls.Add(1) == 1 {
				return "v1", nil
			}
			return "v2", nil
		}
		warmGetOrLoad(t, c, "k", loader)
		ctx := context.Background()
		if err := s.Client(t).Del(ctx, "test:k").Err(); err != nil {
			t.Fatal(err)
		}
		readUntilRefreshes(t, c, "k", loader, 1)
		refreshEnded(t, c, "k", 1)
		if v, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(k) after its refresh found it gone from L2 = %q, %v; want ErrNotFound, not L1's copy", v, err)
		}
	})
}

// TestGetDuringCloseAfterLeavingBus: Close has unregistered the cache from
// a shared bus and waits for a load to release its lease. A peer's write
// now reaches the bus but no longer this cache's L1, so a Get must not
// answer from L1: it returns ErrClosed.
func TestGetDuringCloseAfterLeavingBus(t *testing.T) {
	s := redistest.Real(t)
	bus := sharedBus(t, s)
	rdb, p := proxiedClient(t, s, 2)
	c := newNode[string](t, s, func(o *Options) { o.Redis, o.Bus, o.RedisTimeout = rdb, bus, 3*time.Second })
	sibling := newNode[string](t, s, func(o *Options) { o.Bus = bus }) // tells when the bus heard a message
	peer := newNode[string](t, s, nil)
	ctx := context.Background()
	if err := peer.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{c}, "k", "old")

	g := newGate(t)
	loaded := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "slow", func(ctx context.Context, _ string) (string, error) {
			close(g.started)
			<-ctx.Done() // until Close cancels the load
			return "", ctx.Err()
		})
		loaded <- err
	}()
	g.waitStarted(t)
	p.HoldRequests() // the load's lease release, once Close cancels it, is held
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	waitHeld(t, p) // Close cancelled the load, so it has left the bus
	heard := sibling.Stats().Invalidations
	if err := peer.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool { return sibling.Stats().Invalidations > heard }, "the bus delivered the write's message")
	v, err := c.Get(ctx, "k")
	p.ReleaseRequests()
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Get(k) during Close, after the cache left the bus and a peer wrote k = %q, %v; want ErrClosed", v, err)
	}
	for _, ch := range []chan error{closed, loaded} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("Close or the cancelled load did not return")
		}
	}
}
