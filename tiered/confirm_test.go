package tiered

import (
	"context"
	"fmt"
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
