package tiered

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewWaiterBoundedByLoadTimeout: GetOrLoad documents that the shared
// load is "bounded by LoadTimeout and Close". With a loader that ignores ctx
// (a blocking driver call, a mutex), the flight is never finished until the
// loader returns, so a caller with a background ctx waits forever.
func TestReviewWaiterBoundedByLoadTimeout(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, func(o *Options) { o.LoadTimeout = 100 * time.Millisecond })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before c.Close
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			close(started)
			<-release // ignores ctx
			return "v", nil
		})
		done <- err
	}()
	<-started
	select {
	case err := <-done:
		t.Logf("waiter returned %v", err)
	case <-time.After(3 * time.Second):
		t.Fatalf("GetOrLoad still blocked 3s after a LoadTimeout of 100ms: the waiter is not bounded by LoadTimeout")
	}
}

// TestReviewCloseWithStuckLoader: Close waits on c.loads with no bound, so
// a loader that ignores ctx makes Close hang (and with it every caller
// waiting on that flight).
func TestReviewCloseWithStuckLoader(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	release := make(chan struct{})
	var once bool
	rel := func() {
		if !once {
			once = true
			close(release)
		}
	}
	t.Cleanup(rel)
	started := make(chan struct{})
	go func() {
		_, _ = c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			close(started)
			<-release
			return "v", nil
		})
	}()
	<-started
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		rel()
		<-closed
		t.Fatalf("Close blocked >3s on a loader that ignores ctx")
	}
}

// TestReviewLeaseOrphanedAfterLoadTimeout: the L2 fill runs on the load's
// ctx. A loader that returns its value just as LoadTimeout expires (or as
// Close cancels) makes FillMany fail at once, and then nothing releases the
// lease: it sits in Redis for LeaseTTL, and every other node's miss waits
// LeaseWait and loads without filling until it expires.
func TestReviewLeaseOrphanedAfterLoadTimeout(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) {
			o.LoadTimeout = 100 * time.Millisecond
			o.LeaseTTL = time.Minute
		})
		v, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done() // a slow query that finishes right at the deadline
			return "v", nil
		})
		if err != nil || v != "v" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
		raw, err := s.Client(t).Get(context.Background(), "test:k").Result()
		if err == nil && strings.HasPrefix(raw, "\xc1\x01\x03") {
			ttl := s.Client(t).PTTL(context.Background(), "test:k").Val()
			t.Fatalf("after the load returned, test:k still holds our lease marker (PTTL %v): the lease was neither filled nor released", ttl)
		}
	})
}
