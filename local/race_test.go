package local

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNoStaleAfterInvalidate races fills that read an old version against
// invalidations: the race the package doc gives at 44% stale reads on raw
// ristretto. A writer publishes version i, invalidates, and only then raises
// the floor to i. Fillers stamp, read the version and fill it. Readers load
// the floor first: a hit below it would be a value read before an
// invalidation that had already completed. The writer waits, after each
// invalidation, until fillers and readers have made progress, so that every
// invalidation meets fills in flight.
func TestNoStaleAfterInvalidate(t *testing.T) {
	const (
		invalidations = 3000
		fillers       = 3
		readers       = 2
	)
	keys := []string{"k0", "k1", "k2"}
	c := newTestCache[uint64](t, Options{})

	var (
		version  atomic.Uint64 // the "database"
		floor    atomic.Uint64 // versions below it were invalidated
		fills    atomic.Uint64
		gets     atomic.Uint64
		hits     atomic.Uint64
		stale    atomic.Uint64
		firstBad atomic.Uint64 // floor<<32 | value of the first stale hit
		done     = make(chan struct{})
		workers  sync.WaitGroup
	)
	for i := range fillers {
		workers.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				key := keys[n%len(keys)]
				st := c.Stamp(key)
				v := version.Load()
				if (n+i)%4 == 0 {
					runtime.Gosched() // widen the window between read and fill
				}
				c.Fill(key, v, 1, time.Hour, st)
				fills.Add(1)
			}
		})
	}
	for range readers {
		workers.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				f := floor.Load()
				v, _, ok := c.Get(keys[n%len(keys)])
				if ok {
					hits.Add(1)
				}
				if ok && v < f {
					stale.Add(1)
					firstBad.CompareAndSwap(0, f<<32|v)
				}
				gets.Add(1)
				runtime.Gosched() // readers are cheap; leave the CPUs to fillers
			}
		})
	}

	for i := uint64(1); i <= invalidations; i++ {
		f0, g0 := fills.Load(), gets.Load()
		version.Store(i)
		if i%100 == 0 {
			c.InvalidateAll()
		} else {
			c.Invalidate(keys...)
		}
		floor.Store(i)
		for fills.Load() < f0+fillers || gets.Load() < g0+2*readers {
			runtime.Gosched()
		}
	}
	close(done)
	workers.Wait()

	if n := stale.Load(); n != 0 {
		bad := firstBad.Load()
		t.Errorf("%d Gets returned a value older than a completed invalidation (first: %d below floor %d)",
			n, bad&(1<<32-1), bad>>32)
	}
	s := c.Stats()
	t.Logf("gets %d, hits %d, stamp rejections %d, stale fills %d, sets %d, dropped %d",
		gets.Load(), hits.Load(), s.StampRejections, s.StaleFills, s.Sets, s.DroppedSets)
}

// TestCloseConcurrent closes caches while other goroutines call every
// method. Ristretto's own Close panics or hangs in that situation; ours
// must do neither, and goleak (TestMain) checks that nothing is left. Each
// worker makes a fixed number of calls, and Close starts once every worker
// is under way, so most rounds overlap Close with calls on both sides of it.
func TestCloseConcurrent(t *testing.T) {
	const (
		rounds  = 250
		workers = 4
		calls   = 400
	)
	for range rounds {
		c, err := New[int](Options{MaxCost: 1 << 10, EpochSlots: 16})
		if err != nil {
			t.Fatal(err)
		}
		var started, running sync.WaitGroup
		started.Add(workers)
		for w := range workers {
			running.Go(func() {
				keys := []string{"a", "b", "c", "d"}
				for n := range calls {
					if n == calls/8 {
						started.Done()
					}
					key := keys[(n+w)%len(keys)]
					switch (n + w) % 6 {
					case 0, 1:
						c.Get(key)
					case 2:
						c.Fill(key, n, 1, time.Hour, c.Stamp(key))
					case 3:
						c.Invalidate(key)
					case 4:
						c.FillNegative(key, 1, time.Hour, c.Stamp(key))
					case 5:
						if n%60 == 5 {
							c.InvalidateAll()
							c.Wait()
						}
					}
				}
			})
		}
		started.Wait()
		var closers sync.WaitGroup
		for range 2 {
			closers.Go(c.Close) // Close is idempotent, also concurrently
		}
		closers.Wait()
		running.Wait()
		if _, _, ok := c.Get("a"); ok {
			t.Fatalf("Get hit after Close")
		}
	}
}
