package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// readFor reads key through GetOrLoad at a pace for d.
func readFor(t *testing.T, c *Cache[string], key string, loader Loader[string], d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := c.GetOrLoad(ctx, key, loader)
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetOrLoad(%s): %v", key, err)
		}
		time.Sleep(2 * time.Millisecond) // reading at a pace, as a service does
	}
}

// TestReviewRefreshShortChosenTTLNoStorm: a loader chooses a TTL shorter
// than RefreshAhead/2 for its value. The entry is "due" the moment it is
// filled, and BeginRefresh grants a refresh of a key that was just
// refreshed (its PTTL is always within the window), so every refresh
// starts the next one. Within a third of the value's TTL, the loader must
// not run more than once more.
func TestReviewRefreshShortChosenTTLNoStorm(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts) // TTL 2s, RefreshAhead 1.9s
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			ChooseTTL(ctx, key, 900*time.Millisecond)
			return "v", nil
		}
		warmGetOrLoad(t, c, "k", loader)
		base := calls.Load()
		readFor(t, c, "k", loader, 300*time.Millisecond)
		if n := calls.Load() - base; n > 1 {
			t.Errorf("loader called %d more times within 300ms of a 900ms value (refreshes %d): refresh storm",
				n, c.Stats().Refreshes)
		}
	})
}

// TestReviewRefreshNegativeNoStorm: NegativeTTL shorter than RefreshAhead
// (a sane configuration: TTL 10s, RefreshAhead 5s, NegativeTTL 1s). A
// cached "not found" must not make every read call the loader.
func TestReviewRefreshNegativeNoStorm(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) {
			o.TTL = 10 * time.Second
			o.LocalTTL = 10 * time.Second
			o.RefreshAhead = 5 * time.Second
			o.NegativeTTL = time.Second
		})
		var calls atomic.Int32
		loader := func(context.Context, string) (string, error) {
			calls.Add(1)
			return "", ErrNotFound
		}
		readFor(t, c, "missing", loader, 50*time.Millisecond) // loads and caches the not-found
		c.l1.Wait()
		base := calls.Load()
		readFor(t, c, "missing", loader, 300*time.Millisecond)
		if n := calls.Load() - base; n > 1 {
			t.Errorf("loader called %d more times within 300ms of a 1s negative entry (refreshes %d): refresh storm",
				n, c.Stats().Refreshes)
		}
	})
}

// TestReviewWithTTLHuge: WithTTL accepts any positive duration. The
// largest one ("forever") must either be refused as an *OptionError
// before anything is sent, or write a value that can be read back.
func TestReviewWithTTLHuge(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		err := c.Set(ctx, "k", "v", WithTTL(time.Duration(math.MaxInt64)))
		var oe *OptionError
		if errors.As(err, &oe) {
			return
		}
		if err != nil {
			t.Fatalf("Set WithTTL(MaxInt64) = %v; want nil or an *OptionError", err)
		}
		if v, err := c.Get(ctx, "k"); err != nil || v != "v" {
			t.Fatalf("Get after Set WithTTL(MaxInt64) = %q, %v; want v", v, err)
		}
	})
}

// TestReviewChooseTTLHuge: a loader that chooses the largest TTL gets its
// value cached in L2 (a second node reads it without calling the loader).
func TestReviewChooseTTLHuge(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 2, nil)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			ChooseTTL(ctx, key, time.Duration(math.MaxInt64))
			return "v", nil
		}
		if v := readFast(t, cs[0], "k", loader); v != "v" {
			t.Fatalf("read = %q", v)
		}
		if v := readFast(t, cs[1], "k", loader); v != "v" {
			t.Fatalf("read = %q", v)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("loader called %d times, want 1: the value with the chosen TTL was not cached in L2 (L2 holds %q, L2 errors %d)",
				n, l2Value(t, cs[0], "k"), cs[0].Stats().L2Errors)
		}
	})
}

type tenantKey struct{}

// TestReviewRefreshKeepsCallerValues: a load keeps the caller's context
// values (startLoad: "It keeps the caller's values but not its
// cancellation"), so loaders may read request-scoped data from ctx. The
// refresh-ahead of the same key runs the same loader; it must see the same
// values, or it caches a different answer than the load did.
func TestReviewRefreshKeepsCallerValues(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			n := calls.Add(1)
			tenant, _ := ctx.Value(tenantKey{}).(string)
			if n > 1 {
				ChooseTTL(ctx, key, time.Minute)
			}
			return fmt.Sprintf("tenant=%q", tenant), nil
		}
		ctx := context.WithValue(context.Background(), tenantKey{}, "t1")
		read := func() string {
			rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			v, err := c.GetOrLoad(rctx, "k", loader)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := read(); v != `tenant="t1"` {
			t.Fatalf("first read = %s", v)
		}
		warmGetOrLoad(t, c, "k", func(context.Context, string) (string, error) { return `tenant="t1"`, nil })
		age(s, 500*time.Millisecond)
		eventually(t, 4*time.Second, func() bool { read(); return calls.Load() >= 2 }, "a refresh ran")
		eventually(t, 2*time.Second, func() bool { return pttl(t, s, "k") > 30*time.Second }, "the refresh stored")
		if v := l2Value(t, c, "k"); v != `tenant="t1"` {
			t.Errorf("the refresh cached %s; the loader lost the caller's context values", v)
		}
	})
}

// TestReviewRefreshLosesToDeleteCluster: on Redis Cluster, a refresh whose
// loader returns the value read before a Delete must not install it in
// L2 nor in any L1 after the Delete returned.
func TestReviewRefreshLosesToDeleteCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	a := newCacheOn(t, cl.Client(t), refreshOpts)
	b := newCacheOn(t, cl.Client(t), refreshOpts)
	g := newGate(t)
	var calls atomic.Int32
	loader := func(ctx context.Context, key string) (string, error) {
		switch calls.Add(1) {
		case 1:
			return "first", nil
		case 2:
			close(g.started)
			<-g.release
			ChooseTTL(ctx, key, time.Minute)
			return "old", nil // read from the database before the delete
		}
		return "fresh", nil
	}
	readFast(t, a, "k", loader)
	warmGetOrLoad(t, a, "k", loader)
	eventually(t, 3*time.Second, func() bool {
		readFast(t, a, "k", loader)
		select {
		case <-g.started:
			return true
		default:
			return false
		}
	}, "a refresh started")
	if err := b.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	g.open()
	eventually(t, 3*time.Second, func() bool { return a.Stats().RefreshesRefused == 1 }, "the refresh refused")
	for range 50 {
		for i, c := range []*Cache[string]{a, b} {
			if v := readFast(t, c, "k", loader); v == "old" {
				t.Fatalf("node %d served the refresh's old value after the Delete", i)
			}
		}
	}
	if v := l2Value(t, a, "k"); v == "old" {
		t.Error("L2 holds the refresh's old value after the Delete")
	}
}

// TestReviewGetOrLoadManyRefresh: a value read through GetOrLoadMany
// comes due and is refreshed with the batch loader, called with that one
// key, without a reader waiting.
func TestReviewGetOrLoadManyRefresh(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		var calls atomic.Int32
		var refreshKeys atomic.Value
		load := func(ctx context.Context, keys []string) (map[string]string, error) {
			n := calls.Add(1)
			out := make(map[string]string, len(keys))
			for _, k := range keys {
				out[k] = fmt.Sprintf("%s@%d", k, n)
				if n > 1 {
					ChooseTTL(ctx, k, time.Minute)
				}
			}
			if n > 1 {
				refreshKeys.Store(fmt.Sprint(keys))
			}
			return out, nil
		}
		ctx := context.Background()
		if _, err := c.GetOrLoadMany(ctx, []string{"a"}, load); err != nil {
			t.Fatal(err)
		}
		c.l1.Wait()
		age(s, 500*time.Millisecond)
		eventually(t, 4*time.Second, func() bool {
			rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			m, err := c.GetOrLoadMany(rctx, []string{"a"}, load)
			if err != nil {
				t.Fatal(err)
			}
			return m["a"] == "a@2"
		}, "the refreshed value served")
		if k, _ := refreshKeys.Load().(string); k != "[a]" {
			t.Errorf("refresh called the batch loader with %s, want [a]", k)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("loader called %d times, want 2", n)
		}
	})
}

// TestReviewSWRNotAfterPeerClear: an expired entry is not served stale
// after another node's Clear reached this one.
func TestReviewSWRNotAfterPeerClear(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		mod := func(o *Options) {
			o.TTL = 300 * time.Millisecond
			o.LocalTTL = 300 * time.Millisecond
			o.StaleWhileRevalidate = 10 * time.Second
		}
		cs := nodes(t, s, 2, mod)
		var calls atomic.Int32
		loader := func(context.Context, string) (string, error) {
			return fmt.Sprintf("v%d", calls.Add(1)), nil
		}
		warmGetOrLoad(t, cs[1], "k", loader)
		eventually(t, 2*time.Second, func() bool { _, _, ok := cs[1].l1.Get("k"); return !ok }, "the entry expired")
		age(s, time.Second) // miniredis: let L2 expire it too, as real time does
		if _, _, ok := cs[1].l1.GetExpired("k", 10*time.Second); !ok {
			t.Fatal("the expired entry is not kept for SWR")
		}
		before := cs[1].Stats().Clears
		if err := cs[0].Clear(context.Background()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, func() bool { return cs[1].Stats().Clears > before }, "node 1 heard the clear")
		served := cs[1].Stats().RevalidateServed
		readFast(t, cs[1], "k", loader)
		if cs[1].Stats().RevalidateServed != served {
			t.Error("node 1 served its expired entry stale after a Clear")
		}
	})
}

// TestReviewSWRNotWhileBusUnusable: while the bus cannot prove its
// subscription, an expired entry is not served stale.
func TestReviewSWRNotWhileBusUnusable(t *testing.T) {
	s := redistest.Real(t)
	c := newNode[string](t, s, func(o *Options) {
		o.TTL = 300 * time.Millisecond
		o.LocalTTL = 300 * time.Millisecond
		o.StaleWhileRevalidate = 10 * time.Second
		o.RedisTimeout = 100 * time.Millisecond
	})
	loader := func(context.Context, string) (string, error) { return "loaded", nil }
	warmGetOrLoad(t, c, "k", loader)
	eventually(t, 2*time.Second, func() bool { _, _, ok := c.l1.Get("k"); return !ok }, "the entry expired")
	s.Pause(t)
	t.Cleanup(func() { s.Resume(t) })
	eventually(t, 5*time.Second, func() bool { return !c.bus.Usable() }, "bus unusable")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	served := c.Stats().RevalidateServed
	_, _ = c.GetOrLoad(ctx, "k", loader)
	if c.Stats().RevalidateServed != served {
		t.Error("served an expired entry stale while the bus was unusable")
	}
}

// TestReviewCloseDuringRefresh: Close while a refresh's loader is blocked
// returns, and leaves no goroutine once the loader returns (goleak in
// TestMain checks the rest).
func TestReviewCloseDuringRefresh(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		o := testOptions(s, t)
		refreshOpts(&o)
		o.LoadTimeout = 10 * time.Second
		c, err := New[string](o)
		if err != nil {
			t.Fatal(err)
		}
		waitUsable(t, c)
		g := newGate(t)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			if calls.Add(1) == 1 {
				return "v1", nil
			}
			close(g.started)
			select {
			case <-g.release:
			case <-ctx.Done():
			}
			return "v2", nil
		}
		readFast(t, c, "k", loader)
		warmGetOrLoad(t, c, "k", loader)
		age(s, 500*time.Millisecond)
		readUntilStarted(t, c, "k", loader, g)
		done := make(chan struct{})
		go func() { _ = c.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			g.open()
			t.Fatal("Close blocked on a running refresh")
		}
	})
}
