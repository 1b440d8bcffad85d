package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// nodes makes n caches on s, each with its own Redis client and bus, as n
// processes would have.
func nodes(t *testing.T, s *redistest.Server, n int, mod func(*Options)) []*Cache[string] {
	t.Helper()
	cs := make([]*Cache[string], n)
	for i := range cs {
		cs[i] = newNode[string](t, s, mod)
	}
	return cs
}

// warm reads key on every node until its L1 holds want, so that a later
// stale read would come from L1.
func warm(t *testing.T, cs []*Cache[string], key, want string) {
	t.Helper()
	for i, c := range cs {
		eventually(t, 5*time.Second, func() bool {
			if v, err := c.Get(context.Background(), key); err != nil || v != want {
				t.Fatalf("node %d: Get(%s) = %q, %v; want %q", i, key, v, err, want)
			}
			c.l1.Wait()
			v, neg, ok := c.l1.Get(key)
			return ok && !neg && v == want
		}, fmt.Sprintf("node %d L1 holds %s", i, key))
	}
}

func TestWritePropagates(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 4, nil)
		ctx := context.Background()
		if err := cs[0].Set(ctx, "k", "v1"); err != nil {
			t.Fatal(err)
		}
		warm(t, cs, "k", "v1")
		if err := cs[0].Set(ctx, "k", "v2"); err != nil {
			t.Fatal(err)
		}
		for i, c := range cs[1:] {
			eventually(t, c.opts.MaxStaleness, func() bool {
				v, err := c.Get(ctx, "k")
				return err == nil && v == "v2"
			}, fmt.Sprintf("node %d sees v2", i+1))
		}
		warm(t, cs, "k", "v2")
		if err := cs[1].Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		for i, c := range cs {
			eventually(t, c.opts.MaxStaleness, func() bool {
				_, err := c.Get(ctx, "k")
				return errors.Is(err, ErrNotFound)
			}, fmt.Sprintf("node %d sees the delete", i))
		}
		for i, c := range cs[2:] {
			if c.Stats().Invalidations < 2 {
				t.Errorf("node %d: Invalidations = %d, want >= 2", i+2, c.Stats().Invalidations)
			}
		}
	})
}

func TestClearEverywhere(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 3, nil)
		ctx := context.Background()
		if err := cs[0].Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		warm(t, cs, "k", "v")
		if err := cs[0].Clear(ctx); err != nil {
			t.Fatal(err)
		}
		for i, c := range cs {
			eventually(t, 5*time.Second, func() bool {
				_, _, ok := c.l1.Get("k")
				return !ok
			}, fmt.Sprintf("node %d L1 cleared", i))
			// L2 keeps the value: Clear is an L1 operation.
			if v, err := c.Get(ctx, "k"); err != nil || v != "v" {
				t.Errorf("node %d: Get after Clear = %q, %v; want v from L2", i, v, err)
			}
		}
	})
}

// TestSharedBus puts two caches of different namespaces on one bus.
func TestSharedBus(t *testing.T) {
	s := redistest.Mini(t)
	a := newNode[string](t, s, nil)
	b := newNode[string](t, s, func(o *Options) { o.Bus = a.bus; o.Namespace = "other" })
	b2 := newNode[string](t, s, func(o *Options) { o.Namespace = "other" })
	ctx := context.Background()
	if err := b.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{b, b2}, "k", "v1")
	if err := b2.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "shared-bus cache sees v2")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing b must not close the bus it was given.
	if !a.bus.Usable() {
		eventually(t, 2*time.Second, a.bus.Usable, "shared bus still usable after b.Close")
	}
	if _, err := a.Get(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a.Get after b.Close: %v, want ErrNotFound", err)
	}
}

func TestPubSubKillNoStaleAfterReconnect(t *testing.T) {
	s := redistest.Real(t)
	cs := nodes(t, s, 2, nil)
	a, b := cs[0], cs[1]
	ctx := context.Background()
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	warm(t, cs, "k", "old")
	s.KillPubSubClients(t)
	// The delete is published while b's subscription is down or just
	// back; either way b must not serve "old" once it has reconnected.
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return b.Stats().Bus.Reconnects >= 1 && b.bus.Usable() }, "b reconnected and proven")
	if v, err := b.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b.Get after reconnect = %q, %v; want ErrNotFound", v, err)
	}
	if b.Stats().Clears == 0 {
		t.Errorf("b.Stats().Clears = 0 after a reconnect, want > 0")
	}
}

func TestRedisRestartClearsL1(t *testing.T) {
	s := redistest.Real(t)
	cs := nodes(t, s, 3, nil)
	ctx := context.Background()
	if err := cs[0].Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	warm(t, cs, "k", "v")
	s.Restart(t) // comes back empty
	for i, c := range cs {
		eventually(t, 10*time.Second, func() bool { return c.Stats().Bus.Reconnects >= 1 && c.bus.Usable() }, fmt.Sprintf("node %d reconnected", i))
		if v, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("node %d: Get after restart = %q, %v; want ErrNotFound (L1 cleared, L2 empty)", i, v, err)
		}
	}
}

func TestPauseBypassesL1(t *testing.T) {
	s := redistest.Real(t)
	cs := nodes(t, s, 1, func(o *Options) {
		o.MaxStaleness = 300 * time.Millisecond
		o.HeartbeatInterval = 50 * time.Millisecond
		o.RedisTimeout = 100 * time.Millisecond
	})
	c := cs[0]
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	warm(t, cs, "k", "v")
	s.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			s.Resume(t)
		}
	}()
	eventually(t, 5*time.Second, func() bool { return !c.bus.Usable() }, "bus unusable during pause")
	// L1 still holds k, but it must not be served: the read goes to the
	// frozen Redis and fails.
	if v, err := c.Get(ctx, "k"); err == nil {
		t.Errorf("Get during pause = %q from L1; want an L2 error (L1 bypassed)", v)
	}
	if c.Stats().L1Bypassed == 0 {
		t.Errorf("L1Bypassed = 0 during pause")
	}
	s.Resume(t)
	resumed = true
	eventually(t, 10*time.Second, c.bus.Usable, "bus usable after resume")
	if v, err := c.Get(ctx, "k"); err != nil || v != "v" {
		t.Errorf("Get after resume = %q, %v; want v", v, err)
	}
}

// TestWriteFlood checks that a burst of writes reaches another node in full
// and blocks nobody.
func TestWriteFlood(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 2, nil)
		a, b := cs[0], cs[1]
		ctx := context.Background()
		const writers, perWriter = 8, 250
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					if err := a.Set(ctx, fmt.Sprintf("k%d-%d", w, i), "v"); err != nil {
						t.Errorf("Set: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		eventually(t, 10*time.Second, func() bool { return b.Stats().Invalidations == writers*perWriter },
			fmt.Sprintf("b received %d invalidations", writers*perWriter))
		if got := b.Stats().Bus.Malformed; got != 0 {
			t.Errorf("Malformed = %d, want 0", got)
		}
	})
}

// TestStalenessUnderLoad keeps readers hammering every node while one node
// writes increasing versions; once a write returns, no read that starts
// after MaxStaleness may return an older version.
func TestStalenessUnderLoad(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 3, func(o *Options) {
			o.MaxStaleness = 250 * time.Millisecond
			o.HeartbeatInterval = 25 * time.Millisecond
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := cs[0].Set(ctx, "k", "0"); err != nil {
			t.Fatal(err)
		}
		type write struct {
			version int
			at      time.Time
		}
		var last atomic.Pointer[write]
		last.Store(&write{0, time.Now()})
		var violations atomic.Int64
		var wg sync.WaitGroup
		for _, c := range cs[1:] {
			for range 2 {
				wg.Go(func() {
					for ctx.Err() == nil {
						w := last.Load()
						start := time.Now()
						v, err := c.Get(ctx, "k")
						if err != nil {
							continue
						}
						var got int
						fmt.Sscan(v, &got)
						if got < w.version && start.Sub(w.at) > c.opts.MaxStaleness {
							violations.Add(1)
						}
						time.Sleep(20 * time.Microsecond) // pacing: leave the writer some CPU

					}
				})
			}
		}
		for i := 1; i <= 150; i++ {
			if err := cs[0].Set(ctx, "k", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			last.Store(&write{i, time.Now()})
			time.Sleep(2 * time.Millisecond) // pacing the writer, not synchronization
		}
		cancel()
		wg.Wait()
		if n := violations.Load(); n != 0 {
			t.Errorf("%d reads returned a version replaced more than MaxStaleness earlier", n)
		}
	})
}
