package metrics_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// constLoader returns a loader that loads v for every key.
func constLoader(v string) tiered.Loader[string] {
	return func(context.Context, string) (string, error) {
		return v, nil
	}
}

// l1Serves reads key until L1 answers it. Ristretto admits a fill on its
// own goroutine and counts the entry's cost only then, so without this wait
// the cost of one step's fill can land in the next step's scrape.
func l1Serves(t *testing.T, c *tiered.Cache[string], key string) {
	t.Helper()
	eventually(t, "L1 serves "+key, func() bool {
		before := c.Stats().L1.Hits
		_, _ = c.Get(context.Background(), key)
		return c.Stats().L1.Hits > before
	})
}

// TestCacheCollector drives one cache through known operations and checks
// the change of every series after each.
func TestCacheCollector(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		c := newCache(t, s, func(o *tiered.Options) { o.MaxValueSize = 64 })
		reg := register(t, metrics.NewCacheCollector(c, metrics.Options{}))
		st := stepper{t, c, reg}

		if got := scrape(t, reg)[l1MaxCost]; got != 64<<20 {
			t.Errorf("%s = %v, want %v", l1MaxCost, got, 64<<20)
		}

		st.step("GetOrLoad miss", func() {
			if v, err := c.GetOrLoad(ctx, "a", constLoader("A")); err != nil || v != "A" {
				t.Fatalf(`GetOrLoad(a) = %q, %v; want "A", nil`, v, err)
			}
		}, map[string]want{
			l1Miss:        exactly(1),
			l2Miss:        exactly(1),
			leaseGrants:   exactly(1),
			loads:         exactly(1),
			loaderHit:     exactly(1),
			loadCount:     exactly(1),
			l1Sets:        exactly(1),
			l2RoundTrips:  atLeast(2), // lease, fill (a script load may add one)
			l2Written:     atLeast(1),
			l1Entries:     anyChange,
			l1Cost:        anyChange,
			l2Op("lease"): atLeast(1),
			l2Op("fill"):  atLeast(1),
		})

		l1Serves(t, c, "a")
		if got := scrape(t, reg); got[l1Entries] < 1 || got[l1Cost] < 1 {
			t.Errorf("after an L1 fill: %s = %v, %s = %v; want both >= 1", l1Entries, got[l1Entries], l1Cost, got[l1Cost])
		}

		st.step("L1 hit", func() {
			if v, err := c.Get(ctx, "a"); err != nil || v != "A" {
				t.Fatalf(`Get(a) = %q, %v; want "A", nil`, v, err)
			}
		}, map[string]want{l1Hit: exactly(1)})

		st.step("Set", func() {
			if err := c.Set(ctx, "b", "B"); err != nil {
				t.Fatal(err)
			}
		}, map[string]want{
			writes:        exactly(1),
			l1Invalid:     exactly(1),
			l2RoundTrips:  atLeast(2), // a cache's first write raises its fence first (a script load may add one)
			l2Written:     atLeast(1),
			l2Op("write"): exactly(1),
		})

		st.step("Set again", func() {
			if err := c.Set(ctx, "b", "B"); err != nil {
				t.Fatal(err)
			}
		}, map[string]want{
			writes:        exactly(1),
			l1Invalid:     exactly(1),
			l2RoundTrips:  exactly(1),
			l2Written:     atLeast(1),
			l2Op("write"): exactly(1),
		})

		st.step("Get after Set: L2 hit", func() {
			if v, err := c.Get(ctx, "b"); err != nil || v != "B" {
				t.Fatalf(`Get(b) = %q, %v; want "B", nil`, v, err)
			}
		}, map[string]want{
			l1Miss:       exactly(1),
			l2Hit:        exactly(1),
			l1Sets:       exactly(1),
			l2RoundTrips: exactly(1),
			l2Read:       atLeast(1),
			l1Entries:    anyChange,
			l1Cost:       anyChange,
			l2Op("get"):  exactly(1),
		})
		l1Serves(t, c, "b")

		st.step("Get of a missing key: L2 miss", func() {
			if _, err := c.Get(ctx, "none"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get(none) = %v, want ErrNotFound", err)
			}
		}, map[string]want{
			l1Miss:       exactly(1),
			l2Miss:       exactly(1),
			l2RoundTrips: exactly(1),
			l2Op("get"):  exactly(1),
		})

		raw := s.Client(t)
		if err := raw.Set(ctx, "m:g", "garbage", 0).Err(); err != nil {
			t.Fatal(err)
		}
		st.step("Get of garbage bytes: decode error", func() {
			if _, err := c.Get(ctx, "g"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get(g) = %v, want ErrNotFound", err)
			}
		}, map[string]want{
			l1Miss:       exactly(1),
			l2Miss:       exactly(1),
			l2Decode:     exactly(1),
			l2RoundTrips: exactly(1),
			l2Read:       exactly(float64(len("garbage"))),
			l2Op("get"):  exactly(1),
		})

		st.step("loader error", func() {
			boom := errors.New("boom")
			_, err := c.GetOrLoad(ctx, "e", func(context.Context, string) (string, error) { return "", boom })
			if !errors.Is(err, boom) {
				t.Fatalf("GetOrLoad(e) = %v, want boom", err)
			}
		}, map[string]want{
			l1Miss:          atLeast(1),
			l2Miss:          exactly(1),
			leaseGrants:     exactly(1),
			loads:           exactly(1),
			loaderError:     exactly(1),
			loadErrors:      exactly(1),
			loadCount:       exactly(1),
			l2RoundTrips:    atLeast(2), // lease, release
			l2Written:       atLeast(1),
			l2Op("lease"):   atLeast(1),
			l2Op("release"): atLeast(1),
		})

		// Every tier="loader" series counts keys: a failed call for
		// three keys is three errors, and one failed call.
		st.step("batch loader error", func() {
			boom := errors.New("boom")
			_, err := c.GetOrLoadMany(ctx, []string{"e1", "e2", "e3"}, func(context.Context, []string) (map[string]string, error) { return nil, boom })
			if !errors.Is(err, boom) {
				t.Fatalf("GetOrLoadMany(e1..e3) = %v, want boom", err)
			}
		}, map[string]want{
			l1Miss:          exactly(3),
			l2Miss:          exactly(3),
			leaseGrants:     exactly(3),
			loads:           exactly(1),
			loaderError:     exactly(3),
			loadErrors:      exactly(1),
			loadCount:       exactly(1),
			l2RoundTrips:    atLeast(2), // lease, release
			l2Written:       atLeast(1),
			l2Op("lease"):   atLeast(1),
			l2Op("release"): atLeast(1),
		})

		st.step("loader not found", func() {
			_, err := c.GetOrLoad(ctx, "nf", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound })
			if !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("GetOrLoad(nf) = %v, want ErrNotFound", err)
			}
		}, map[string]want{
			l1Miss:        atLeast(1),
			l2Miss:        exactly(1),
			leaseGrants:   exactly(1),
			loads:         exactly(1),
			loaderMiss:    exactly(1),
			loadCount:     exactly(1),
			l1Sets:        exactly(1), // the negative entry
			l2RoundTrips:  atLeast(2),
			l2Written:     atLeast(1),
			l1Entries:     anyChange,
			l1Cost:        anyChange,
			l2Op("lease"): atLeast(1),
			l2Op("fill"):  atLeast(1),
		})
		l1Serves(t, c, "nf")

		st.step("loader panic", func() {
			_, err := c.GetOrLoad(ctx, "p", func(context.Context, string) (string, error) { panic("oops") })
			var pe *tiered.PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("GetOrLoad(p) = %v, want a *PanicError", err)
			}
		}, map[string]want{
			l1Miss:          atLeast(1),
			l2Miss:          exactly(1),
			leaseGrants:     exactly(1),
			loads:           exactly(1),
			panics:          exactly(1),
			loaderError:     exactly(1),
			loadErrors:      exactly(1),
			loadCount:       exactly(1),
			l2RoundTrips:    atLeast(2),
			l2Written:       atLeast(1),
			l2Op("lease"):   atLeast(1),
			l2Op("release"): atLeast(1),
		})

		st.step("value over MaxValueSize", func() {
			long := strings.Repeat("x", 100)
			if v, err := c.GetOrLoad(ctx, "big", constLoader(long)); err != nil || v != long {
				t.Fatalf("GetOrLoad(big) = %q, %v; want the long value", v, err)
			}
		}, map[string]want{
			l1Miss:          atLeast(1),
			l2Miss:          exactly(1),
			leaseGrants:     exactly(1),
			loads:           exactly(1),
			loaderHit:       exactly(1),
			loadCount:       exactly(1),
			oversize:        exactly(1),
			l2RoundTrips:    atLeast(2),
			l2Written:       atLeast(1),
			l2Op("lease"):   atLeast(1),
			l2Op("release"): atLeast(1),
		})

		st.step("concurrent GetOrLoad: one load, one dedupe", func() {
			started, release := make(chan struct{}), make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			defer unblock() // also if the wait below fails the test
			loader := func(context.Context, string) (string, error) {
				close(started)
				<-release
				return "D", nil
			}
			var wg sync.WaitGroup
			get := func() {
				defer wg.Done()
				if v, err := c.GetOrLoad(ctx, "d", loader); err != nil || v != "D" {
					t.Errorf(`GetOrLoad(d) = %q, %v; want "D", nil`, v, err)
				}
			}
			wg.Add(2)
			go get()
			<-started
			go get()
			eventually(t, "the second caller joins", func() bool { return c.Stats().Dedupes > 0 })
			unblock()
			wg.Wait()
		}, map[string]want{
			l1Miss:        atLeast(2),
			l2Miss:        exactly(1),
			leaseGrants:   exactly(1),
			loads:         exactly(1),
			loaderHit:     exactly(1),
			dedupes:       exactly(1),
			loadCount:     exactly(1),
			l1Sets:        exactly(1),
			l2RoundTrips:  atLeast(2),
			l2Written:     atLeast(1),
			l1Entries:     anyChange,
			l1Cost:        anyChange,
			l2Op("lease"): atLeast(1),
			l2Op("fill"):  atLeast(1),
		})
		l1Serves(t, c, "d")

		st.step("Delete", func() {
			if err := c.Delete(ctx, "a", "b"); err != nil {
				t.Fatal(err)
			}
		}, map[string]want{
			writes:        exactly(1),
			l1Invalid:     exactly(2),
			l2RoundTrips:  exactly(1),
			l2Written:     atLeast(1), // the invalidation message
			l2Op("write"): exactly(1),
			l1Entries:     anyChange,
			l1Cost:        anyChange,
		})

		st.step("L1 read of an invalidated entry", func() {
			// "a" was in L1 before the Delete; its entry may still sit
			// there, hidden by its stamp, or be deleted already.
			if _, err := c.Get(ctx, "a"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get(a) = %v, want ErrNotFound", err)
			}
		}, map[string]want{
			l1Miss:       exactly(1),
			l1Stamp:      atLeast(0),
			l1Collisions: atLeast(0),
			l2Miss:       exactly(1),
			l2RoundTrips: exactly(1),
			l2Op("get"):  exactly(1),
			l1Entries:    anyChange,
			l1Cost:       anyChange,
		})
	})
}

// TestCacheCollectorLeases runs two nodes: one holds a lease while the
// other waits, falls back, and then kills the lease with a write.
func TestCacheCollectorLeases(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		a := newCache(t, s, func(o *tiered.Options) { o.LeaseWait = 20 * time.Millisecond })
		b := newCache(t, s, nil)
		regA, regB := register(t, metrics.NewCacheCollector(a, metrics.Options{})), register(t, metrics.NewCacheCollector(b, metrics.Options{}))
		beforeB := scrape(t, regB)

		started, release := make(chan struct{}), make(chan struct{})
		unblock := sync.OnceFunc(func() { close(release) })
		t.Cleanup(unblock) // a failed step must not leave b's load, and Close, hanging
		done := make(chan error, 1)
		go func() {
			_, err := b.GetOrLoad(ctx, "x", func(context.Context, string) (string, error) {
				close(started)
				<-release
				return "old", nil
			})
			done <- err
		}()
		<-started

		stepper{t, a, regA}.step("lease held elsewhere: wait, then fall back", func() {
			if v, err := a.GetOrLoad(ctx, "x", constLoader("mine")); err != nil || v != "mine" {
				t.Fatalf(`a.GetOrLoad(x) = %q, %v; want "mine", nil`, v, err)
			}
		}, map[string]want{
			l1Miss:         atLeast(1),
			leaseWaits:     atLeast(1),
			leaseFallbacks: exactly(1),
			loads:          exactly(1),
			loaderHit:      exactly(1),
			loadCount:      exactly(1),
			l1Sets:         exactly(1),
			l2RoundTrips:   atLeast(1),
			l2Read:         anyChange, // the other node's lease marker, polled
			l2Written:      anyChange,
			l1Entries:      anyChange,
			l1Cost:         anyChange,
			l2Op("lease"):  atLeast(1),
		})

		if err := a.Set(ctx, "x", "new"); err != nil { // kills b's lease
			t.Fatal(err)
		}
		unblock()
		if err := <-done; err != nil {
			t.Fatalf("b.GetOrLoad(x) = %v", err)
		}
		eventually(t, "b hears a's Set", func() bool { return b.Stats().Invalidations > 0 })
		expectDelta(t, "b: fill refused after a write killed the lease", beforeB, scrape(t, regB), expectL2Latency(b, map[string]want{
			l1Miss:        atLeast(1),
			l2Miss:        exactly(1),
			leaseGrants:   exactly(1),
			loads:         exactly(1),
			loaderHit:     exactly(1),
			loadCount:     exactly(1),
			fillsRefused:  exactly(1),
			peerInvalid:   exactly(1),
			l1Invalid:     exactly(1),
			l2RoundTrips:  atLeast(2),
			l2Written:     atLeast(1),
			l2Op("lease"): atLeast(1),
			l2Op("fill"):  atLeast(1),
		}))
	})
}

// TestCacheCollectorRedisErrors makes Redis answer errors (miniredis only:
// a real server cannot be told to).
func TestCacheCollectorRedisErrors(t *testing.T) {
	s := redistest.Mini(t)
	ctx := context.Background()
	c := newCache(t, s, nil)
	reg := register(t, metrics.NewCacheCollector(c, metrics.Options{}))
	st := stepper{t, c, reg}

	s.Mini().SetError("ERR injected")
	defer s.Mini().SetError("")
	st.step("failed Set", func() {
		if err := c.Set(ctx, "k", "v"); err == nil {
			t.Fatal("Set with Redis failing = nil, want an error")
		}
	}, map[string]want{
		writeErrors:   exactly(1),
		l1Invalid:     exactly(1),
		l2RoundTrips:  exactly(1),
		l2RTErrors:    exactly(1),
		l2Op("write"): exactly(1),
	})
	st.step("failed Get", func() {
		if _, err := c.Get(ctx, "k"); err == nil || errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("Get with Redis failing = %v, want a Redis error", err)
		}
	}, map[string]want{
		l1Miss:       exactly(1),
		l2Error:      exactly(1),
		l2RoundTrips: exactly(1),
		l2RTErrors:   exactly(1),
		l2Op("get"):  exactly(1),
	})
}

// TestL1Evictions fills a tiny L1 until ristretto evicts or rejects.
func TestL1Evictions(t *testing.T) {
	s := redistest.Mini(t)
	ctx := context.Background()
	c := newCache(t, s, func(o *tiered.Options) { o.LocalMaxCost = 200 })
	reg := register(t, metrics.NewCacheCollector(c, metrics.Options{}))
	for i := 0; ; i++ {
		k := string(rune('a' + i%26))
		if err := c.Set(ctx, k, "value of some length"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats().L1; st.Evictions > 0 {
			break
		}
		if i > 10000 {
			t.Fatal("no eviction after 10000 fills")
		}
	}
	// Counters only grow, and ristretto counts some of them
	// asynchronously: a scrape after Stats shows at least as much.
	want := c.Stats().L1
	got := scrape(t, reg)
	for id, w := range map[string]uint64{l1Evictions: want.Evictions, l1Rejected: want.Rejections, l1StaleFills: want.StaleFills, l1Sets: want.Sets} {
		if got[id] < float64(w) {
			t.Errorf("%s = %v, want at least %d (Stats)", id, got[id], w)
		}
	}
	if got[l1Cost] > 200 || got[l1MaxCost] != 200 {
		t.Errorf("%s = %v, %s = %v; want at most 200 and 200", l1Cost, got[l1Cost], l1MaxCost, got[l1MaxCost])
	}
}
