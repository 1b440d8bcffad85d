package tiered

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestWaiterBoundedByLoadTimeout: GetOrLoad documents that the shared
// load is "bounded by LoadTimeout and Close". With a loader that ignores ctx
// (a blocking driver call, a mutex), the flight is never finished until the
// loader returns, so a caller with a background ctx waits forever.
func TestWaiterBoundedByLoadTimeout(t *testing.T) {
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
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("waiter of a load past LoadTimeout got %v, want a DeadlineExceeded", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("GetOrLoad still blocked 3s after a LoadTimeout of 100ms: the waiter is not bounded by LoadTimeout")
	}
}

// TestCloseWithStuckLoader: Close waits on c.loads with no bound, so
// a loader that ignores ctx makes Close hang (and with it every caller
// waiting on that flight).
func TestCloseWithStuckLoader(t *testing.T) {
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

// TestLeaseOrphanedAfterLoadTimeout: the L2 fill runs on the load's
// ctx. A loader that returns its value just as LoadTimeout expires (or as
// Close cancels) makes FillMany fail at once, and then nothing releases the
// lease: it sits in Redis for LeaseTTL, and every other node's miss waits
// LeaseWait and loads without filling until it expires.
func TestLeaseOrphanedAfterLoadTimeout(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) {
			o.LoadTimeout = 100 * time.Millisecond
			o.LeaseTTL = time.Minute
		})
		v, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done() // a slow query that finishes right at the deadline
			return "v", nil
		})
		// The value and the deadline arrive together: either answer is
		// right, but the lease must not outlive the load.
		if (err != nil || v != "v") && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GetOrLoad = %q, %v; want v or a timeout", v, err)
		}
		raw, err := s.Client(t).Get(context.Background(), "test:k").Result()
		if err == nil && strings.HasPrefix(raw, "\xc1\x01\x03") {
			ttl := s.Client(t).PTTL(context.Background(), "test:k").Val()
			t.Fatalf("after the load returned, test:k still holds our lease marker (PTTL %v): the lease was neither filled nor released", ttl)
		}
	})
}

// TestBatchReleaseSerial: after a failed batch load, loadAndFill
// releases the leases one key at a time (one round trip each, each bounded
// separately) and only then finishes the flights. With Redis stalled, the
// waiters (and Close) are held for len(keys) x the Redis timeout instead of
// one bounded round trip.
func TestBatchReleaseSerial(t *testing.T) {
	s := redistest.Real(t)
	c := newNode[string](t, s, func(o *Options) { o.RedisTimeout = 100 * time.Millisecond })
	keys := []string{"a", "b", "c", "d", "e", "f"}
	started, fail := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoadMany(context.Background(), keys, func(context.Context, []string) (map[string]string, error) {
			close(started)
			<-fail
			return nil, errors.New("db error")
		})
		done <- err
	}()
	<-started
	s.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			s.Resume(t)
		}
	}()
	t0 := time.Now()
	close(fail)
	err := <-done
	el := time.Since(t0)
	s.Resume(t)
	resumed = true
	if err == nil {
		t.Fatalf("GetOrLoadMany = nil error, want the loader's")
	}
	t.Logf("waiters got the loader error after %v (RedisTimeout 100ms, %d keys)", el, len(keys))
	if el > 2*time.Second {
		t.Errorf("waiters held %v by %d sequential lease releases against a stalled Redis", el, len(keys))
	}
}

// TestHugeDurationOptions: every duration option at the largest duration
// ("no limit") leaves a cache that works: Redis refuses a PX past its
// clock ("invalid expire time"), so TTLs are cut to remote.MaxTTL, and
// sums of options saturate rather than wrap into the past.
func TestHugeDurationOptions(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		mod := func(o *Options) {
			o.TTL, o.LocalTTL, o.NegativeTTL = forever, forever, forever
			o.LoadTimeout, o.LeaseTTL, o.LeaseWait = forever, forever, forever
			o.MaxStaleness, o.RedisTimeout = forever, forever
			o.BreakerMinOpen, o.BreakerMaxOpen = forever, forever
			o.StaleIfError, o.RefreshAhead, o.StaleWhileRevalidate = forever, forever-1, forever
		}
		cs := nodes(t, s, 2, mod)
		ctx := context.Background()
		var calls atomic.Int32
		loader := func(_ context.Context, key string) (string, error) {
			calls.Add(1)
			if key == "missing" {
				return "", ErrNotFound
			}
			return "loaded", nil
		}
		if err := cs[0].Set(ctx, "a", "v"); err != nil {
			t.Fatalf("Set = %v", err)
		}
		if v, err := cs[1].Get(ctx, "a"); err != nil || v != "v" {
			t.Errorf("Get(a) on another node = %q, %v; want v", v, err)
		}
		for _, c := range cs { // the first loads under a lease and fills L2; the second reads it
			if v, err := c.GetOrLoad(ctx, "b", loader); err != nil || v != "loaded" {
				t.Errorf("GetOrLoad(b) = %q, %v; want loaded", v, err)
			}
			if _, err := c.GetOrLoad(ctx, "missing", loader); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetOrLoad(missing) = %v, want ErrNotFound", err)
			}
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("loader called %d times, want 2 (b and missing, once each)", n)
		}
		if d := pttl(t, s, "a"); d <= 0 {
			t.Errorf("PTTL(a) = %v, want a positive TTL", d)
		}
		if err := cs[0].Delete(ctx, "a"); err != nil {
			t.Errorf("Delete = %v", err)
		}
		for i, c := range cs {
			if st := c.Stats(); st.L2Errors != 0 {
				t.Errorf("node %d: L2Errors = %d, want 0", i, st.L2Errors)
			}
		}
	})
}
