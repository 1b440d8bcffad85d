package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestStaleSetAcrossNodes is the race of "Scaling Memcache at Facebook":
// A reads the old row, B deletes, A's fill of the old row must not land.
func TestStaleSetAcrossNodes(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 3, nil)
		a, b := cs[0], cs[1]
		ctx := context.Background()
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.GetOrLoad(ctx, "row", func(context.Context, string) (string, error) {
				close(started)
				<-release
				return "old", nil
			})
		}()
		<-started
		if err := b.Delete(ctx, "row"); err != nil {
			t.Fatal(err)
		}
		close(release)
		<-done
		raw, err := a.opts.Redis.Get(ctx, "test:row").Result()
		if strings.Contains(raw, "old") {
			t.Fatalf("L2 holds the stale row %q (err %v)", raw, err)
		}
		for i, c := range cs {
			c.l1.Wait()
			if v, _, ok := c.l1.Get("row"); ok {
				t.Errorf("node %d L1 holds %q after the delete", i, v)
			}
			got, err := c.GetOrLoad(ctx, "row", func(context.Context, string) (string, error) { return "new", nil })
			if err != nil || got != "new" {
				t.Errorf("node %d: GetOrLoad after delete = %q, %v; want new", i, got, err)
			}
		}
		if a.Stats().L2.FillsRefused != 1 {
			t.Errorf("a.FillsRefused = %d, want 1", a.Stats().L2.FillsRefused)
		}
	})
}

// TestStampede: 4 nodes x 50 goroutines miss one cold key whose loader takes
// 50 ms; the loader runs once cluster-wide.
// patientWaiters lets lease waiters wait far longer than the loads take,
// even on a loaded machine (the race detector, miniredis's Lua, every
// package's tests at once): a waiter that gives up after LeaseWait loads
// by itself, which these tests would count as a second load.
func patientWaiters(o *Options) { o.LeaseWait = 10 * time.Second }

func TestStampede(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 4, patientWaiters)
		var calls atomic.Int64
		loader := func(context.Context, string) (string, error) {
			calls.Add(1)
			time.Sleep(50 * time.Millisecond) // the simulated database query
			return "v", nil
		}
		var wg sync.WaitGroup
		for _, c := range cs {
			for range 50 {
				wg.Go(func() {
					if v, err := c.GetOrLoad(context.Background(), "cold", loader); err != nil || v != "v" {
						t.Errorf("GetOrLoad = %q, %v", v, err)
					}
				})
			}
		}
		wg.Wait()
		if got := calls.Load(); got != 1 {
			t.Errorf("loader calls = %d across 4 nodes x 50 goroutines, want 1", got)
		}
		var granted, waits, waitHits, fallbacks uint64
		for _, c := range cs {
			st := c.Stats()
			granted, waits, waitHits, fallbacks = granted+st.L2.LeasesGranted, waits+st.LeaseWaits, waitHits+st.LeaseWaitHits, fallbacks+st.LeaseFallbacks
		}
		if granted != 1 || fallbacks != 0 || waitHits != waits {
			t.Errorf("LeasesGranted=%d LeaseFallbacks=%d LeaseWaits=%d LeaseWaitHits=%d; want 1, 0 and every wait answered",
				granted, fallbacks, waits, waitHits)
		}
	})
}

func TestStampedeBatches(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 4, patientWaiters)
		var mu sync.Mutex
		loaded := map[string]int{}
		loader := func(_ context.Context, keys []string) (map[string]string, error) {
			time.Sleep(50 * time.Millisecond) // the simulated database query
			mu.Lock()
			defer mu.Unlock()
			out := map[string]string{}
			for _, k := range keys {
				loaded[k]++
				out[k] = "v" + k
			}
			return out, nil
		}
		var wg sync.WaitGroup
		for n, c := range cs {
			for g := range 10 {
				keys := []string{fmt.Sprint(g % 5), fmt.Sprint((g + n) % 7), fmt.Sprint(g + 1)}
				wg.Go(func() {
					m, err := c.GetOrLoadMany(context.Background(), keys, loader)
					if err != nil {
						t.Errorf("GetOrLoadMany: %v", err)
					}
					for _, k := range keys {
						if m[k] != "v"+k {
							t.Errorf("GetOrLoadMany[%s] = %q", k, m[k])
						}
					}
				})
			}
		}
		wg.Wait()
		for k, n := range loaded {
			if n != 1 {
				t.Errorf("key %s loaded %d times, want 1", k, n)
			}
		}
	})
}

// TestHungHolder: a holder whose loader hangs past LeaseWait costs each
// waiter about LeaseWait, and a later call recovers.
func TestHungHolder(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		const wait = 200 * time.Millisecond
		cs := nodes(t, s, 3, func(o *Options) { o.LeaseWait = wait; o.LeaseTTL = time.Second })
		a, b, c := cs[0], cs[1], cs[2]
		hang := make(chan struct{})
		started := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
				close(started)
				<-hang
				return "from-a", nil
			})
		}()
		<-started
		start := time.Now()
		v, err := b.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) { return "from-b", nil })
		if err != nil || v != "from-b" {
			t.Errorf("waiter b = %q, %v; want from-b (its own load)", v, err)
		}
		if el := time.Since(start); el < wait {
			t.Errorf("waiter b returned after %v, before LeaseWait %v: it did not wait for the holder", el, wait)
		}
		if b.Stats().LeaseFallbacks != 1 {
			t.Errorf("b.LeaseFallbacks = %d, want 1", b.Stats().LeaseFallbacks)
		}
		// b did not fill L2: the key still holds a's lease.
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("c.Get while a holds the lease: %v, want ErrNotFound", err)
		}
		close(hang)
		<-done
		if v, err := c.Get(context.Background(), "k"); err != nil || v != "from-a" {
			t.Errorf("c.Get after the holder finished = %q, %v; want from-a", v, err)
		}
	})
}

// TestFailedHolderReleases: a holder whose loader fails or panics releases
// its lease, and a waiter takes over without waiting out LeaseWait.
func TestFailedHolderReleases(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		t.Run(how, func(t *testing.T) {
			redistest.Run(t, func(t *testing.T, s *redistest.Server) {
				cs := nodes(t, s, 2, func(o *Options) { o.LeaseWait = 30 * time.Second })
				a, b := cs[0], cs[1]
				started, fail := make(chan struct{}), make(chan struct{})
				done := make(chan error, 1)
				go func() {
					_, err := a.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
						close(started)
						<-fail
						if how == "panic" {
							panic("holder crashed")
						}
						return "", errors.New("db error")
					})
					done <- err
				}()
				<-started
				got := make(chan string, 1)
				go func() {
					v, err := b.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) { return "from-b", nil })
					if err != nil {
						t.Errorf("b.GetOrLoad: %v", err)
					}
					got <- v
				}()
				eventually(t, 5*time.Second, func() bool { return b.Stats().LeaseWaits > 0 }, "b waits on a's lease")
				close(fail)
				if err := <-done; err == nil {
					t.Errorf("a.GetOrLoad = nil error, want the loader's failure")
				}
				if v := <-got; v != "from-b" {
					t.Errorf("b.GetOrLoad = %q, want from-b", v)
				}
				if st := b.Stats(); st.LeaseFallbacks != 0 || st.L2.LeasesGranted != 1 {
					t.Errorf("b: LeaseFallbacks=%d LeasesGranted=%d; want 0 and 1 (took over the released lease)", st.LeaseFallbacks, st.L2.LeasesGranted)
				}
			})
		})
	}
}

// TestStaleUnfilledLoadKeepsOutOfL1 covers the L1 half of promise 3 on the
// path that fills L1 without L2: B waits out A's lease, loads by itself,
// and an invalidation lands while B's loader runs. B may return what it
// loaded, but its L1 must not keep it.
func TestStaleUnfilledLoadKeepsOutOfL1(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 3, func(o *Options) { o.LeaseWait = 50 * time.Millisecond })
		a, b, c := cs[0], cs[1], cs[2]
		ctx := context.Background()
		holdA := make(chan struct{})
		aStarted, aDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(aDone)
			_, _ = a.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
				close(aStarted)
				<-holdA
				return "a", nil
			})
		}()
		<-aStarted
		bStarted, releaseB := make(chan struct{}), make(chan struct{})
		bDone := make(chan struct{})
		go func() {
			defer close(bDone)
			_, _ = b.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
				close(bStarted)
				<-releaseB
				return "old", nil
			})
		}()
		<-bStarted // B gave up on A's lease and loads by itself
		before := b.Stats().Invalidations
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return b.Stats().Invalidations > before }, "b heard the delete")
		close(releaseB)
		<-bDone
		b.l1.Wait()
		if v, _, ok := b.l1.Get("k"); ok {
			t.Errorf("b's L1 serves %q loaded before a delete it has heard", v)
		}
		close(holdA)
		<-aDone
	})
}
