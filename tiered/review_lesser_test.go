package tiered

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Regression tests for the lesser defects of the read and refresh paths
// (issue 19).

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
