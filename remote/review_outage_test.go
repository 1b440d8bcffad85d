package remote

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// reviewFaultHook fails, panics in, or passes every command, as mode says.
// It fails with the error a refused dial gives, before anything is sent.
type reviewFaultHook struct {
	mode  *atomic.Int32 // reviewPass, reviewFail or reviewPanic
	calls *atomic.Int64 // commands and pipelines that reached the hook
}

const (
	reviewPass int32 = iota
	reviewFail
	reviewPanic
)

var errReviewRefused = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

func (h reviewFaultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reviewFaultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.calls.Add(1)
		switch h.mode.Load() {
		case reviewFail:
			cmd.SetErr(errReviewRefused)
			return errReviewRefused
		case reviewPanic:
			panic("review: a panic inside the client (a tracing hook, say)")
		}
		return next(ctx, cmd)
	}
}

func (h reviewFaultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestReviewBreakerStuckProbingAfterPanic: a probe that panics between
// begin and end (here in a client hook; the panic is recovered by the
// caller, as tiered's flights recover) leaves the breaker in
// breakerProbing forever: admit only lets a call through from
// breakerOpen, so once Redis answers again every call still fails with
// ErrUnavailable and the Store never heals.
func TestReviewBreakerStuckProbingAfterPanic(t *testing.T) {
	s := redistest.Mini(t)
	var mode atomic.Int32
	var calls atomic.Int64
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	rdb.AddHook(reviewFaultHook{mode: &mode, calls: &calls})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := New(Options{Redis: rdb, Namespace: "rv", BreakerMinOpen: time.Millisecond, BreakerMaxOpen: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	mode.Store(reviewFail)
	for range 5 {
		_, _, _ = st.Get(ctx, "k")
	}
	if !st.Unavailable() {
		t.Fatalf("breaker closed after 5 refused calls: %+v", st.Stats())
	}

	// The next call let through is the probe; it panics.
	mode.Store(reviewPanic)
	before := calls.Load()
	deadline := time.Now().Add(5 * time.Second) // poll: the open window (1ms) must pass
	for calls.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no probe was let through within 5s")
		}
		func() {
			defer func() { _ = recover() }()
			_, _, _ = st.Get(ctx, "k")
		}()
	}

	// Redis answers again. Within many times BreakerMaxOpen (2ms) a call
	// must go through and close the breaker.
	mode.Store(reviewPass)
	deadline = time.Now().Add(2 * time.Second) // poll: probes wait at most 2ms each
	for {
		_, _, err = st.Get(ctx, "k")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get 2s after Redis came back (BreakerMaxOpen 2ms) = %v; breaker stuck (state %d, want closed)", err, st.brk.state.Load())
		}
	}
}

// TestReviewCanceledProbeClosesBreaker: with Redis blackholed and the
// breaker open, one caller whose context is already cancelled becomes the
// probe; go-redis fails it with context.Canceled, isOutage calls that "Redis
// answered", and record closes the breaker. Nothing reached Redis, yet every
// following call goes to the dead server again (and waits out Timeout).
func TestReviewCanceledProbeClosesBreaker(t *testing.T) {
	s := redistest.Real(t)
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := New(Options{Redis: rdb, Namespace: "rv", Timeout: 50 * time.Millisecond,
		BreakerMinOpen: time.Millisecond, BreakerMaxOpen: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := st.Get(ctx, "warm"); err != nil { // a pooled connection, so the blackhole holds it
		t.Fatal(err)
	}
	p.Blackhole(true)
	for i := 0; !st.Unavailable(); i++ {
		if i == 20 {
			t.Fatalf("breaker still closed after %d calls to a blackholed Redis: %+v", i, st.Stats())
		}
		_, _, _ = st.Get(ctx, "k")
	}

	// Poll until the 1ms open window has passed, so the next call is admitted.
	deadline := time.Now().Add(5 * time.Second)
	for st.brk.now() < st.brk.until.Load() {
		if time.Now().After(deadline) {
			t.Fatal("open window did not end")
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = st.Get(cancelled, "k")
	if !st.Unavailable() {
		t.Errorf("after a probe that failed with the caller's cancellation (%v), the breaker closed; Redis is still blackholed", err)
	}
}

// TestReviewCallerDeadlineOpensBreaker: callers whose own deadline has
// passed trip the breaker of a healthy Redis: begin uses a shorter caller
// deadline as is, go-redis returns context.DeadlineExceeded, and isOutage
// counts it. Five impatient callers then make every other caller of the
// Store fail with ErrUnavailable.
func TestReviewCallerDeadlineOpensBreaker(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st, err := New(Options{Redis: s.Client(t), Namespace: "rv"})
		if err != nil {
			t.Fatal(err)
		}
		expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		for range 5 {
			_, _, _ = st.Get(expired, "k")
		}
		if _, _, err := st.Get(context.Background(), "k"); err != nil {
			t.Errorf("Get on a healthy Redis after 5 callers' own deadlines expired = %v, want nil (breaker open: %v)", err, st.Unavailable())
		}
	})
}

// TestReviewClusterMessageOnlyWriteOpenBreaker: on Cluster, a Write with a
// message and no keys (tiered's Clear) never goes through the breaker:
// writeBySlot returns nil at once for no keys, and the publish after it is
// skipped while the breaker is open. So Write returns nil, nothing was
// sent, and the caller (Clear) reports success although no other node
// hears of the clear; every other write returns ErrUnavailable here.
func TestReviewClusterMessageOnlyWriteOpenBreaker(t *testing.T) {
	var mode atomic.Int32
	var calls atomic.Int64
	rdb := redistest.NewCluster(t).Client(t)
	rdb.AddHook(reviewFaultHook{mode: &mode, calls: &calls})
	st, err := New(Options{Redis: rdb, Namespace: "rv", BreakerMinOpen: time.Minute, BreakerMaxOpen: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mode.Store(reviewFail)
	for range 5 {
		_, _, _ = st.Get(ctx, "k")
	}
	if !st.Unavailable() {
		t.Fatalf("breaker closed after 5 refused calls: %+v", st.Stats())
	}
	if err := st.Write(ctx, nil, nil, "rv-channel", []byte("clear")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Write(message only) with the breaker open = %v, want ErrUnavailable (nothing was published)", err)
	}
}
