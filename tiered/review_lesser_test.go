package tiered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Regression tests for the lesser defects of the read and refresh paths
// (issue 19).

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
