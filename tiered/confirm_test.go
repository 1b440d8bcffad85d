package tiered

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestConfirmedWriteIsNeverContradicted: after a confirmed Set returns, a
// read on any node gets the new value at once, every time (promise 8). The
// same test with unconfirmed writes counts how often a node still served
// the old value right after Set returned, which asynchronous invalidation
// allows within the bound.
func TestConfirmedWriteIsNeverContradicted(t *testing.T) {
	s := redistest.Real(t)
	nodes := make([]*Cache[string], 4)
	for i := range nodes {
		nodes[i] = newNode[string](t, s, nil)
	}
	ctx := context.Background()
	const trials = 200
	stale := map[bool]int{}
	for _, confirmed := range []bool{false, true} {
		for i := range trials {
			key := fmt.Sprint("k", i%8)
			old := fmt.Sprint("v", i)
			if err := nodes[0].Set(ctx, key, old); err != nil {
				t.Fatal(err)
			}
			// Every node holds the old value in L1.
			for _, n := range nodes[1:] {
				eventually(t, 2*time.Second, func() bool {
					v, err := n.Get(ctx, key)
					return err == nil && v == old && l1Holds(n, key, old)
				}, "the old value in every L1")
			}
			var opts []WriteOption
			if confirmed {
				opts = append(opts, Confirm())
			}
			if err := nodes[0].Set(ctx, key, old+"'", opts...); err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes[1:] {
				if v, err := n.Get(ctx, key); err != nil || v != old+"'" {
					stale[confirmed]++
				}
			}
		}
	}
	t.Logf("reads right after Set returned that got the old value: unconfirmed %d of %d, confirmed %d of %d",
		stale[false], trials*3, stale[true], trials*3)
	if stale[true] != 0 {
		t.Errorf("%d reads after a confirmed Set returned got the old value", stale[true])
	}
	if st := nodes[0].Stats(); st.ConfirmedWrites != trials || st.ConfirmTimeouts != 0 {
		t.Errorf("ConfirmedWrites %d, ConfirmTimeouts %d; want %d and 0", st.ConfirmedWrites, st.ConfirmTimeouts, trials)
	}
}

// TestConfirmedDeleteAndClear: Delete and Clear are confirmed too, with
// Options.ConfirmWrites.
func TestConfirmedDeleteAndClear(t *testing.T) {
	s := redistest.Real(t)
	a := newNode[string](t, s, func(o *Options) { o.ConfirmWrites = true })
	b := newNode[string](t, s, nil)
	ctx := context.Background()
	for i := range 50 {
		if err := a.Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		warm(t, []*Cache[string]{b}, "k", "v")
		if i%2 == 0 {
			err := a.Delete(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
		} else if err := a.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, ok := b.lookupL1("k"); ok {
			t.Fatalf("round %d: b serves k from L1 after a confirmed delete or clear returned", i)
		}
	}
	if st := a.Stats(); st.ConfirmedWrites != 100 {
		t.Errorf("ConfirmedWrites = %d, want 100", st.ConfirmedWrites)
	}
}

// blockingHandler blocks the bus's receive loop in its first call after it
// is armed, until released: a node whose bus goroutine is frozen.
type blockingHandler struct {
	armed   atomic.Bool
	blocked chan struct{} // closed when it blocks
	release chan struct{}
}

func (h *blockingHandler) Invalidate([]string) { h.block() }
func (h *blockingHandler) InvalidateAll()      { h.block() }
func (h *blockingHandler) block() {
	if h.armed.CompareAndSwap(true, false) {
		close(h.blocked)
		<-h.release
	}
}

// TestConfirmedWriteWithFrozenNode: one node's bus goroutine is frozen
// (stuck in a handler, with the bus's lock held) when a confirmed write's
// invalidation reaches it, so it never acknowledges. The write returns
// after about MaxStaleness, and by then the frozen node no longer serves
// L1: its watchdog turns it off at its heartbeat's deadline without the
// lock the frozen goroutine holds.
func TestConfirmedWriteWithFrozenNode(t *testing.T) {
	s := redistest.Real(t)
	bus := sharedBus(t, s)
	h := &blockingHandler{blocked: make(chan struct{}), release: make(chan struct{})}
	reg, err := bus.Register("test", h) // first, so it runs before the cache's own handler
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			close(h.release)
		}
		reg.Close()
	})
	frozen := newNode[string](t, s, func(o *Options) { o.Bus = bus })
	w := newNode[string](t, s, nil)
	other := newNode[string](t, s, nil)
	ctx := context.Background()
	if err := w.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Cache[string]{frozen, other} {
		eventually(t, 2*time.Second, func() bool { v, _ := n.Get(ctx, "k"); return v == "v1" && l1Holds(n, "k", "v1") }, "v1 in L1")
	}
	h.armed.Store(true)
	start := time.Now()
	if err := w.Set(ctx, "k", "v2", Confirm()); err != nil {
		t.Fatalf("confirmed Set: %v", err)
	}
	took := time.Since(start)
	<-h.blocked // the frozen node did receive it
	if _, _, _, ok := frozen.lookupL1("k"); ok {
		t.Errorf("the frozen node serves k from L1 after the confirmed write returned")
	}
	if v, err := frozen.Get(ctx, "k"); err != nil || v != "v2" {
		t.Errorf("frozen node Get(k) = %q, %v; want v2 from L2", v, err)
	}
	if v, err := other.Get(ctx, "k"); err != nil || v != "v2" {
		t.Errorf("other node Get(k) = %q, %v; want v2", v, err)
	}
	t.Logf("confirmed write with a frozen node took %v (MaxStaleness %v)", took.Round(time.Millisecond), sharedMaxStaleness)
	if took < sharedMaxStaleness/2 || took > sharedMaxStaleness+time.Second {
		t.Errorf("confirmed write with a frozen node took %v; want about MaxStaleness (%v)", took, sharedMaxStaleness)
	}
	if st := w.Stats(); st.ConfirmTimeouts != 1 {
		t.Errorf("ConfirmTimeouts = %d, want 1", st.ConfirmTimeouts)
	}
	close(h.release)
	released = true
}
