package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// refreshOpts: values live 2 s in L2 and L1 and come due for a refresh
// 0.1 to 1.05 s after their fill (RefreshAhead 1.9 s).
func refreshOpts(o *Options) {
	o.TTL = 2 * time.Second
	o.LocalTTL = 2 * time.Second
	o.RefreshAhead = 1900 * time.Millisecond
	o.LeaseWait = 3 * time.Second
}

// age makes L2 see its keys as older: miniredis's TTLs move only when told.
func age(s *redistest.Server, d time.Duration) {
	if m := s.Mini(); m != nil {
		m.FastForward(d)
	}
}

// gate is a loader step the test opens: the loader signals started, then
// blocks until the test calls open (or the test ends, so that a failed
// test never leaves a loader blocked).
type gate struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{started: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitStarted waits for the loader to reach the gate, with a deadline.
func (g *gate) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the loader never reached the gate")
	}
}

// readUntilStarted reads key through GetOrLoad until the loader reaches
// g, with a deadline: a refresh comes due at a random point of its window.
func readUntilStarted(t *testing.T, c *Cache[string], key string, loader Loader[string], g *gate) {
	t.Helper()
	eventually(t, 3*time.Second, func() bool {
		readFast(t, c, key, loader)
		select {
		case <-g.started:
			return true
		default:
			return false
		}
	}, "a refresh started")
}

// readFast is GetOrLoad with a short deadline: a caller that had to wait
// for a blocked loader fails instead of hanging.
func readFast(t *testing.T, c *Cache[string], key string, loader Loader[string]) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	v, err := c.GetOrLoad(ctx, key, loader)
	if err != nil {
		t.Fatalf("GetOrLoad(%s) waited or failed: %v", key, err)
	}
	return v
}

// TestRefreshAheadNobodyWaits: a value read near its expiry is reloaded in
// the background while readers keep getting it. The refresh's loader is
// blocked, so a reader that waited for it would fail readFast.
func TestRefreshAheadNobodyWaits(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		g := newGate(t)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			if calls.Add(1) == 1 {
				return "v1", nil
			}
			close(g.started)
			<-g.release
			ChooseTTL(ctx, key, time.Minute)
			return "v2", nil
		}
		if v := readFast(t, c, "k", loader); v != "v1" {
			t.Fatalf("first read = %q", v)
		}
		warmGetOrLoad(t, c, "k", loader)
		age(s, 500*time.Millisecond)
		deadline := time.Now().Add(3 * time.Second)
	started:
		for {
			if v := readFast(t, c, "k", loader); v != "v1" {
				t.Fatalf("read before the refresh = %q, want v1", v)
			}
			select {
			case <-g.started:
				break started
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("no refresh started within 3s of the fill")
			}
			time.Sleep(time.Millisecond) // reading at a pace, as a service does
		}
		for range 10 { // the loader is blocked: readers still get v1 at once
			if v := readFast(t, c, "k", loader); v != "v1" {
				t.Fatalf("read during the refresh = %q, want v1", v)
			}
		}
		g.open()
		eventually(t, 3*time.Second, func() bool { return readFast(t, c, "k", loader) == "v2" }, "the refreshed value served")
		if d := pttl(t, s, "k"); d < 30*time.Second {
			t.Errorf("PTTL after the refresh = %v, want the refresh's minute", d)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("loader called %d times, want 2", n)
		}
		if st := c.Stats(); st.Refreshes != 1 || st.RefreshFailures != 0 {
			t.Errorf("Refreshes, RefreshFailures = %d, %d; want 1, 0", st.Refreshes, st.RefreshFailures)
		}
	})
}

// TestRefreshOnceAcrossNodes: 4 nodes x 20 goroutines read a key as it
// comes due; the loader runs once for the refresh, and every node ends up
// serving the refreshed value.
func TestRefreshOnceAcrossNodes(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 4, refreshOpts)
		var calls atomic.Int32
		g := newGate(t)
		loader := func(ctx context.Context, key string) (string, error) {
			n := calls.Add(1)
			if n > 1 {
				<-g.release // until every node has tried to refresh
				ChooseTTL(ctx, key, time.Minute)
			}
			return fmt.Sprintf("v%d", n), nil
		}
		if v := readFast(t, cs[0], "k", loader); v != "v1" {
			t.Fatalf("first read = %q", v)
		}
		for _, c := range cs {
			warmGetOrLoad(t, c, "k", loader)
		}
		age(s, 500*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var failures atomic.Int32
		for _, c := range cs {
			for range 20 {
				wg.Go(func() {
					for ctx.Err() == nil {
						v, err := c.GetOrLoad(ctx, "k", loader)
						if err != nil {
							failures.Add(1)
							return
						}
						if v == "v2" {
							return
						}
						if v != "v1" {
							failures.Add(1)
							return
						}
						time.Sleep(time.Millisecond)
					}
					failures.Add(1) // never saw the refreshed value
				})
			}
		}
		eventually(t, 4*time.Second, func() bool {
			for _, c := range cs {
				if c.Stats().Refreshes == 0 {
					return false
				}
			}
			return true
		}, "every node started a refresh")
		g.open()
		wg.Wait()
		if n := failures.Load(); n > 0 {
			t.Fatalf("%d readers failed or never saw v2", n)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("loader called %d times, want 2 (the first load and one refresh)", n)
		}
	})
}

// TestRefreshLosesToSet: a refresh loads "old" while a Set("new") lands;
// after the Set returned nobody serves "old", and L2 keeps "new".
func TestRefreshLosesToSet(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 2, refreshOpts)
		a, b := cs[0], cs[1]
		g := newGate(t)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			if calls.Add(1) == 1 {
				return "first", nil
			}
			close(g.started)
			<-g.release
			return "old", nil // read from the database before the write
		}
		readFast(t, a, "k", loader)
		warmGetOrLoad(t, a, "k", loader)
		warmGetOrLoad(t, b, "k", loader)
		age(s, 500*time.Millisecond)
		readUntilStarted(t, a, "k", loader, g)
		if err := b.Set(context.Background(), "k", "new", WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		g.open()
		eventually(t, 3*time.Second, func() bool { return a.Stats().RefreshesRefused == 1 }, "the refresh refused")
		for i, c := range cs {
			eventually(t, 2*time.Second, func() bool { return readFast(t, c, "k", loader) == "new" }, fmt.Sprintf("node %d serves new", i))
		}
		for range 50 {
			for i, c := range cs {
				if v := readFast(t, c, "k", loader); v != "new" {
					t.Fatalf("node %d served %q after the Set and the refused refresh", i, v)
				}
			}
		}
		if v := l2Value(t, a, "k"); v != "new" {
			t.Errorf("L2 holds %q, want new", v)
		}
	})
}

// l2Value reads key from L2, decoded, or "" if absent.
func l2Value(t *testing.T, c *Cache[string], key string) string {
	t.Helper()
	it, ok, err := c.l2.Get(context.Background(), key)
	if err != nil || !ok {
		return ""
	}
	var v string
	if err := c.l2.Decode(it, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRefreshFailureKeepsValue: a refresh whose loader fails is counted
// and the current value stays until it expires.
func TestRefreshFailureKeepsValue(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		var calls atomic.Int32
		loader := func(context.Context, string) (string, error) {
			if calls.Add(1) == 1 {
				return "v1", nil
			}
			return "", errors.New("database down")
		}
		readFast(t, c, "k", loader)
		warmGetOrLoad(t, c, "k", loader)
		age(s, 500*time.Millisecond)
		eventually(t, 3*time.Second, func() bool {
			if v := readFast(t, c, "k", loader); v != "v1" {
				t.Fatalf("read = %q, want v1", v)
			}
			return c.Stats().RefreshFailures == 1
		}, "a failed refresh counted")
		if v := readFast(t, c, "k", loader); v != "v1" {
			t.Errorf("after a failed refresh: %q, want v1 until it expires", v)
		}
	})
}

// TestStaleWhileRevalidate: after its expiry a value is served for the
// window while one load runs, never past the window, and never once a
// write invalidated it.
func TestStaleWhileRevalidate(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		const window = time.Second
		mod := func(o *Options) {
			o.TTL = 300 * time.Millisecond
			o.LocalTTL = 300 * time.Millisecond
			o.StaleWhileRevalidate = window
		}
		c := newNode[string](t, s, mod)
		g := newGate(t)
		var calls atomic.Int32
		loader := func(context.Context, string) (string, error) {
			if calls.Add(1) == 1 {
				return "v1", nil
			}
			if calls.Load() == 2 {
				close(g.started)
			}
			<-g.release
			return "v2", nil
		}
		readFast(t, c, "k", loader)
		warmGetOrLoad(t, c, "k", loader)
		filled := time.Now() // the entry expires by filled + 300ms
		eventually(t, 2*time.Second, func() bool { _, _, ok := c.l1.Get("k"); return !ok }, "the entry expired")
		// L1 may expire a clock tick before L2 does; take the L2 copy away
		// (as its TTL would) so that the revalidation has to call the loader.
		if err := s.Client(t).Del(context.Background(), "test:k").Err(); err != nil {
			t.Fatal(err)
		}
		if v := readFast(t, c, "k", loader); v != "v1" {
			t.Fatalf("read after expiry = %q, want the stale v1", v)
		}
		g.waitStarted(t) // the revalidation's load runs, blocked
		var lastStale time.Time
		eventually(t, 4*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			v, err := c.GetOrLoad(ctx, "k", loader)
			if err == nil && v == "v1" {
				lastStale = time.Now()
				return false
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("read = %q, %v; want v1 or a wait for the load", v, err)
			}
			return true // no longer served stale: the caller waits for the load
		}, "stale serving ends")
		if limit := filled.Add(300*time.Millisecond + window + 50*time.Millisecond); lastStale.After(limit) {
			t.Errorf("served stale %v after the window closed", lastStale.Sub(limit))
		}
		if n := c.Stats().RevalidateServed; n == 0 {
			t.Error("RevalidateServed = 0")
		}
		g.open()
		eventually(t, 3*time.Second, func() bool { return readFast(t, c, "k", loader) == "v2" }, "the revalidated value")
	})
}

// TestStaleWhileRevalidateNeverAfterWrite: an expired value that a write
// invalidated is not served stale, on the writer nor on another node.
func TestStaleWhileRevalidateNeverAfterWrite(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		mod := func(o *Options) {
			o.TTL = 300 * time.Millisecond
			o.LocalTTL = 300 * time.Millisecond
			o.StaleWhileRevalidate = 10 * time.Second
		}
		cs := nodes(t, s, 2, mod)
		loader := func(context.Context, string) (string, error) { return "loaded", nil }
		if err := cs[0].Set(context.Background(), "k", "v1"); err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			warmGetOrLoad(t, c, "k", loader)
		}
		for _, c := range cs {
			eventually(t, 2*time.Second, func() bool { _, _, ok := c.l1.Get("k"); return !ok }, "the entry expired")
		}
		if err := cs[0].Delete(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
		if v := readFast(t, cs[0], "k", loader); v == "v1" {
			t.Error("the writer served its deleted value as stale")
		}
		eventually(t, 2*time.Second, func() bool { return readFast(t, cs[1], "k", loader) != "v1" }, "node 1 stops serving v1")
		for range 20 {
			if v := readFast(t, cs[1], "k", loader); v == "v1" {
				t.Fatal("node 1 served the deleted value as stale again")
			}
		}
	})
}

// TestGetLeavesRefreshToGetOrLoad: a Get of a due entry has no loader, so
// it must not spend the entry's one refresh claim; the next GetOrLoad of
// the key refreshes it. (Before, Get claimed it, and the entry expired
// unrefreshed.)
func TestGetLeavesRefreshToGetOrLoad(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, refreshOpts)
		var calls atomic.Int32
		loader := func(ctx context.Context, key string) (string, error) {
			if calls.Add(1) > 1 {
				ChooseTTL(ctx, key, time.Minute)
			}
			return fmt.Sprintf("v%d", calls.Load()), nil
		}
		readFast(t, c, "k", loader)
		warmGetOrLoad(t, c, "k", loader)
		age(s, 500*time.Millisecond)
		eventually(t, 3*time.Second, func() bool { _, _, due, _ := c.l1.GetRef("k"); return due }, "the entry due")
		for range 10 {
			if v, err := c.Get(context.Background(), "k"); err != nil || v != "v1" {
				t.Fatalf("Get = %q, %v; want v1", v, err)
			}
		}
		if n := c.Stats().Refreshes; n != 0 {
			t.Fatalf("Gets started %d refreshes; a Get has no loader to refresh with", n)
		}
		readFast(t, c, "k", loader)
		eventually(t, 3*time.Second, func() bool { return readFast(t, c, "k", loader) == "v2" }, "GetOrLoad refreshed the entry")
	})
}

// TestRefreshAheadHugeTimeouts: a refresh holds its lock in L2 for
// LoadTimeout+RedisTimeout. With either at the largest duration ("no
// limit"), or both at 200 years, that sum overflowed to a negative TTL,
// remote refused it, and refresh-ahead silently never ran: values
// expired and were loaded again by a waiting reader.
func TestRefreshAheadHugeTimeouts(t *testing.T) {
	const forever, years200 = time.Duration(math.MaxInt64), 200 * 365 * 24 * time.Hour
	tests := []struct {
		name string
		give func(*Options)
	}{
		{name: "LoadTimeout largest", give: func(o *Options) { o.LoadTimeout = forever }},
		{name: "RedisTimeout largest", give: func(o *Options) { o.RedisTimeout = forever }},
		{name: "both 200 years", give: func(o *Options) { o.LoadTimeout, o.RedisTimeout = years200, years200 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redistest.Run(t, func(t *testing.T, s *redistest.Server) {
				c := newNode[string](t, s, func(o *Options) { refreshOpts(o); tt.give(o) })
				var calls atomic.Int32
				loader := func(ctx context.Context, key string) (string, error) {
					if calls.Add(1) == 1 {
						return "v1", nil
					}
					ChooseTTL(ctx, key, time.Minute)
					return "v2", nil
				}
				if v := readFast(t, c, "k", loader); v != "v1" {
					t.Fatalf("first read = %q, want v1", v)
				}
				warmGetOrLoad(t, c, "k", loader)
				age(s, 500*time.Millisecond)
				eventually(t, 3*time.Second, func() bool {
					readFast(t, c, "k", loader)
					return c.Stats().Refreshes > 0
				}, "a refresh started")
				// It runs in the background, and ends in the loader or in an
				// L2 error; either comes long before the value expires.
				eventually(t, 3*time.Second, func() bool { return calls.Load() == 2 || c.Stats().L2Errors > 0 }, "the refresh ran")
				if st := c.Stats(); calls.Load() != 2 || st.L2Errors != 0 {
					t.Fatalf("refresh ended with loader calls %d, L2Errors %d; want 2, 0", calls.Load(), st.L2Errors)
				}
				eventually(t, 3*time.Second, func() bool { return readFast(t, c, "k", loader) == "v2" }, "the refreshed value served")
				if st := c.Stats(); st.Refreshes != 1 || st.RefreshFailures != 0 {
					t.Errorf("Refreshes, RefreshFailures = %d, %d; want 1, 0", st.Refreshes, st.RefreshFailures)
				}
			})
		})
	}
}
