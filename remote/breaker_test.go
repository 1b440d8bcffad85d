package remote

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// forever is the largest time.Duration, which users write for "no limit".
const forever = time.Duration(math.MaxInt64)

// gateHook refuses every command while fail is set, as a refused dial does,
// before anything is sent. Otherwise a command waits for release (or its
// context) and then goes to Redis; the first to wait closes entered.
type gateHook struct {
	fail    *atomic.Bool
	calls   *atomic.Int64 // commands that reached the hook
	entered chan struct{}
	once    *sync.Once
	release chan struct{}
}

func newGateHook(t *testing.T) gateHook {
	h := gateHook{fail: new(atomic.Bool), calls: new(atomic.Int64), entered: make(chan struct{}),
		once: new(sync.Once), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release) // a failed test leaves no command waiting
		}
	})
	return h
}

func (h gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.calls.Add(1)
		if h.fail.Load() {
			cmd.SetErr(errReviewRefused)
			return errReviewRefused
		}
		h.once.Do(func() { close(h.entered) })
		select {
		case <-h.release:
		case <-ctx.Done():
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}

func (h gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// openBreaker makes a Store over s whose client goes through h, with the
// options mod sets, and opens its breaker with one refused call.
func openBreaker(t *testing.T, s *redistest.Server, h gateHook, mod func(*Options)) *Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	rdb.AddHook(h)
	t.Cleanup(func() { _ = rdb.Close() })
	o := Options{Redis: rdb, Namespace: "brk", BreakerThreshold: 1}
	mod(&o)
	st, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.fail.Store(true)
	_, _, _ = st.Get(context.Background(), "k")
	if !st.Unavailable() {
		t.Fatalf("breaker closed after a refused call (threshold 1): %+v", st.Stats())
	}
	return st
}

// TestBreakerProbeWindowHugeTimeout: while a probe runs, every other call
// is refused for Timeout+BreakerMinOpen (after which a probe that never
// reported back is replaced). With Timeout at the largest duration that
// sum overflowed to a negative window, so every call while a probe hung
// became a probe too and went to the server the breaker was protecting.
func TestBreakerProbeWindowHugeTimeout(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // Options.Timeout
	}{
		{name: "largest duration", give: forever},
		{name: "200 years", give: 200 * 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redistest.Run(t, func(t *testing.T, s *redistest.Server) {
				h := newGateHook(t)
				st := openBreaker(t, s, h, func(o *Options) {
					o.Timeout = tt.give
					o.BreakerMinOpen = time.Millisecond
					o.BreakerMaxOpen = time.Millisecond
				})

				// Calls are refused until the 1ms window ends; the first
				// one let through is the probe, and it hangs in the hook.
				// Nothing marks the window's end, so the goroutine polls,
				// bounded by ctx.
				h.fail.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var probe sync.WaitGroup
				probe.Go(func() {
					for ctx.Err() == nil {
						if _, _, err := st.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
							return
						}
					}
				})
				select {
				case <-h.entered:
				case <-ctx.Done():
					t.Fatal("no probe was let through within 5s of a 1ms open window")
				}

				before := h.calls.Load()
				cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
				_, _, err := st.Get(cctx, "k")
				ccancel()
				if !errors.Is(err, ErrUnavailable) || h.calls.Load() != before {
					t.Errorf("Get while the probe hangs (Timeout %v) = %v and %d commands sent; want ErrUnavailable and none",
						tt.give, err, h.calls.Load()-before)
				}

				close(h.release) // the probe reaches Redis, which answers
				probe.Wait()
				if st.Unavailable() {
					t.Errorf("breaker still open after the probe succeeded: %+v", st.Stats())
				}
			})
		})
	}
}

// TestBreakerHugeOpenWindow: an open window as long as the largest
// duration refuses every call. Its end, time.Now().Add(w).UnixNano(),
// overflowed into the past, so the breaker let the next call through
// at once.
func TestBreakerHugeOpenWindow(t *testing.T) {
	s := redistest.Mini(t)
	h := newGateHook(t)
	st := openBreaker(t, s, h, func(o *Options) {
		o.BreakerMinOpen = forever
		o.BreakerMaxOpen = forever
	})
	before := h.calls.Load()
	if _, _, err := st.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) || h.calls.Load() != before {
		t.Errorf("Get in an open window of %v = %v and %d commands sent; want ErrUnavailable and none",
			forever, err, h.calls.Load()-before)
	}
}

// TestBreakerWindowDoublesToMax: each failed probe doubles the open
// window up to BreakerMaxOpen. Doubling a window past half the largest
// duration overflowed to a negative one, and the window fell back to
// BreakerMinOpen.
func TestBreakerWindowDoublesToMax(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // the window before the failed probe
		want time.Duration
	}{
		{name: "doubles", give: time.Second, want: 2 * time.Second},
		{name: "past half the largest duration", give: forever/2 + 1, want: forever},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := offlineStore(t, Options{BreakerMinOpen: time.Millisecond, BreakerMaxOpen: forever})
			st.brk.window.Store(int64(tt.give))
			st.brk.state.Store(breakerProbing)
			st.brk.record(outage)
			if got := time.Duration(st.brk.window.Load()); got != tt.want {
				t.Errorf("open window after a failed probe = %v, want %v", got, tt.want)
			}
		})
	}
}

// offlineStore returns a Store with options o whose client never dials:
// for tests that drive its breaker by hand.
func offlineStore(t *testing.T, o Options) *Store {
	t.Helper()
	o.Redis = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	o.Namespace = "brk"
	t.Cleanup(func() { _ = o.Redis.Close() })
	st, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return st
}

// TestBreakerOpenWindowMonotonic: the open window ends when the breaker's
// own clock, the monotonic time since start, has moved by BreakerMinOpen.
// Before, the window's end was a wall-clock reading (time.Now().UnixNano()),
// so a wall clock stepped back an hour (an NTP correction, a restored VM)
// kept the breaker open, and every call failing, an hour longer. A test
// cannot step the system clock; it moves the breaker's start back instead,
// which moves nothing but the monotonic time the breaker sees.
func TestBreakerOpenWindowMonotonic(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // monotonic time since the breaker opened
		want bool          // a probe is let through
	}{
		{name: "a second before the window ends", give: time.Hour - time.Second, want: false},
		{name: "when the window ends", give: time.Hour, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := offlineStore(t, Options{BreakerThreshold: 1, BreakerMinOpen: time.Hour, BreakerMaxOpen: time.Hour})
			// time.Since follows the wall clock from a start without a
			// monotonic reading; String shows one as "m=+...".
			if s := st.brk.start.String(); !strings.Contains(s, " m=") {
				t.Fatalf("breaker start %s has no monotonic clock reading", s)
			}
			st.brk.record(outage)
			st.brk.start = st.brk.start.Add(-tt.give)
			if _, got := st.brk.admit(); got != tt.want {
				t.Errorf("admit() %v after the breaker opened for %v: probe = %v, want %v", tt.give, time.Hour, got, tt.want)
			}
		})
	}
}
