package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
)

// TestReviewStaleIfErrorAfterSequenceGap: a sequence gap tells the bus
// that a peer's invalidation was lost while Redis was up and accepting
// writes. clearAllLocked then calls SuspendAll, not InvalidateAll, so the
// entry the lost message was about stays servable by GetStale; when Redis
// later goes down, StaleIfError serves the value that write replaced. The
// README's case for StaleIfError ("no write can succeed anywhere") does
// not hold for a write that landed before the outage, and the node knew
// it had missed it.
func TestReviewStaleIfErrorAfterSequenceGap(t *testing.T) {
	s := redistest.Real(t)
	c, p := outageNode(t, s, func(*faultproxy.Proxy) {}, func(o *Options) { o.StaleIfError = time.Minute })
	waitUsable(t, c)
	ctx := context.Background()
	rdb := s.Client(t)

	if err := c.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool {
		v, err := c.Get(ctx, "k")
		return err == nil && v == "v1" && l1Holds(c, "k", "v1")
	}, "L1 holds k")

	// Another node writes k; its message is the one c never hears. (Its
	// bus is on another channel, which is how this test loses it.)
	elsewhere, err := invalidation.New(ctx, invalidation.Options{Redis: rdb, Channel: "review-elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = elsewhere.Close() })
	w, err := New[string](Options{Redis: rdb, Namespace: "test", Bus: elsewhere, DisableJitter: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}

	// A peer on c's channel whose message 2 (about k) is lost: c hears 1
	// and 3, and gives up on 2 after GapGrace.
	peer, err := invalidation.New(ctx, invalidation.Options{Redis: rdb, Channel: c.Bus().Channel()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	m1 := peer.Message("test", invalidation.OpDelete, []string{"x"})
	_ = peer.Message("test", invalidation.OpDelete, []string{"k"}) // lost
	m3 := peer.Message("test", invalidation.OpDelete, []string{"y"})
	for _, m := range [][]byte{m1, m3} {
		if err := rdb.Publish(ctx, c.Bus().Channel(), m).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() bool { return c.Bus().Stats().FullClearsGap > 0 }, "gap clear")

	// Now Redis goes away for c.
	p.Blackhole(true)
	load := func(context.Context, string) (string, error) { return "db", nil }
	for i := 0; c.Stats().State != StateDegraded; i++ {
		if i == 50 {
			t.Fatal("breaker did not open")
		}
		_, _ = c.GetOrLoad(ctx, fmt.Sprint("miss", i), load)
	}
	eventually(t, 5*time.Second, func() bool { return !c.Bus().Usable() }, "bus unusable")
	if v, err := c.GetOrLoad(ctx, "k", load); err == nil && v == "v1" {
		t.Errorf("GetOrLoad(k) during the outage = %q (StaleIfError), the value a write that landed before the outage replaced; the bus had given up on its invalidation (sequence gap). Want %q from the loader", v, "db")
	}
}

// TestReviewWaitReadyIgnoresCloseOnSharedBus: WaitReady checks isClosed
// only on entry and then waits on the bus. With Options.Bus (a bus the
// cache does not own, so Close does not close it) and Redis down, a
// WaitReady in progress when the cache is closed keeps waiting until its
// own ctx ends, although the doc says it returns ErrClosed after Close.
func TestReviewWaitReadyIgnoresCloseOnSharedBus(t *testing.T) {
	s := redistest.Real(t)
	px, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	px.Refuse(true)
	rdb := redis.NewClient(&redis.Options{Addr: px.Addr(), DialTimeout: 100 * time.Millisecond,
		ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	bus, err := invalidation.New(context.Background(), invalidation.Options{Redis: rdb, Channel: "review-shared",
		ConfirmTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	c, err := New[string](Options{Redis: rdb, Namespace: "test", Bus: bus, RedisTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.WaitReady(ctx) }()
	// Poll the goroutine dump until WaitReady is parked in the bus, so
	// Close happens while it waits rather than before it starts.
	eventually(t, 2*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "invalidation.(*Bus).WaitUsable")
	}, "WaitReady waiting")
	start := time.Now()
	_ = c.Close()
	err = <-done // bounded by ctx's 3s
	if !errors.Is(err, ErrClosed) || time.Since(start) > time.Second {
		t.Errorf("WaitReady during Close returned %v after %v, want ErrClosed at once", err, time.Since(start).Round(time.Millisecond))
	}
}
