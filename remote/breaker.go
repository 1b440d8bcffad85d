package remote

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/saturate"
)

// ErrUnavailable is returned by every [Store] method that would talk to
// Redis while the circuit breaker is open: Redis failed
// [Options.BreakerThreshold] round trips in a row, and the Store skips it
// until a probe succeeds. Nothing is sent.
var ErrUnavailable = errors.New("tiercache: redis unavailable (circuit breaker open)")

// Breaker states.
const (
	breakerClosed  int32 = iota // calls go to Redis
	breakerOpen                 // calls fail at once until the window ends
	breakerProbing              // one call is testing Redis; the others fail at once
)

// breaker is a circuit breaker around every round trip of a Store. After
// threshold consecutive outage errors it opens: calls return ErrUnavailable
// without touching the network, for an open window that starts at minOpen
// and doubles on each failed probe up to maxOpen. When the window ends,
// the next call starts a probe in the background and is refused like the
// others; the probe's success closes the breaker, its failure opens it
// again. Any success closes it: a slow call
// that started before the breaker opened and then worked proves Redis is
// there. It is lock-free; admit costs one atomic load while closed, and
// one monotonic clock read more while open.
type breaker struct {
	threshold        int32
	minOpen, maxOpen time.Duration
	// probeFor is how long a probe may take before another call may probe
	// instead: a probe that panicked or hangs never reports back.
	probeFor time.Duration
	disabled bool
	// start is the origin of the breaker's clock (see now). Tests move it
	// back to make time pass.
	start time.Time

	state  atomic.Int32
	fails  atomic.Int32 // consecutive outage errors while closed
	until  atomic.Int64 // now() at which the open window, or the probe's turn, ends
	window atomic.Int64 // length of the current open window

	opened   atomic.Uint64 // times the breaker opened from closed
	rejected atomic.Uint64 // calls refused while open
	onChange func(open bool)
}

// admit reports whether a call may go to Redis now, and, when it may not,
// whether the caller must start a probe: the open window has ended, and a
// probe in the background (Store.probe) tests Redis while the callers keep
// going elsewhere, so that no caller waits out a Redis that still does not
// answer.
func (b *breaker) admit() (ok, probe bool) {
	st := b.state.Load()
	if b.disabled || st == breakerClosed {
		return true, false
	}
	b.rejected.Add(1)
	now := b.now()
	if until := b.until.Load(); now >= until {
		// Saturated: a probeFor near the largest duration ("no limit")
		// must not wrap around to a turn that has already ended.
		next := saturate.Add(now, int64(b.probeFor))
		switch {
		case st == breakerOpen && b.state.CompareAndSwap(breakerOpen, breakerProbing):
			b.until.Store(next)
			return false, true
		case st == breakerProbing && b.until.CompareAndSwap(until, next):
			return false, true // the last probe never reported back; probe again
		}
	}
	return false, false
}

// outcome classifies a finished call for the breaker.
type outcome uint8

const (
	answered outcome = iota // Redis answered (a reply error included)
	outage                  // Redis did not answer: see isOutage
	neutral                 // the caller gave up first: proves nothing either way
)

// record notes the outcome of an admitted call.
func (b *breaker) record(o outcome) {
	if b.disabled {
		return
	}
	if o == neutral {
		// A probe that proved nothing: open again, as long as before.
		if b.state.Load() == breakerProbing {
			b.openFor(max(time.Duration(b.window.Load()), b.minOpen))
			b.state.Store(breakerOpen)
		}
		return
	}
	if o == answered {
		b.fails.Store(0)
		if b.state.Load() != breakerClosed {
			b.window.Store(0)
			b.state.Store(breakerClosed)
			if b.onChange != nil {
				b.onChange(false)
			}
		}
		return
	}
	switch b.state.Load() {
	case breakerClosed:
		if b.fails.Add(1) >= b.threshold && b.state.CompareAndSwap(breakerClosed, breakerOpen) {
			b.opened.Add(1)
			b.openFor(b.minOpen)
			if b.onChange != nil {
				b.onChange(true)
			}
		}
	case breakerProbing:
		w := time.Duration(b.window.Load())
		w = min(saturate.Add(w, w), b.maxOpen)
		b.openFor(max(w, b.minOpen))
		b.state.Store(breakerOpen)
	}
}

// openFor opens the breaker for w from now. The window's end saturates: a
// w near the largest duration must not wrap it into the past.
func (b *breaker) openFor(w time.Duration) {
	b.window.Store(int64(w))
	b.until.Store(saturate.Add(b.now(), int64(w)))
}

// now returns the breaker's clock, in nanoseconds since start. It reads
// the monotonic clock (time.Since of a time.Now), as every other timer of
// ours does, so that a step of the wall clock (an NTP correction, a
// restored VM) neither lengthens nor shortens an open window.
func (b *breaker) now() int64 { return int64(time.Since(b.start)) }

// isOpen reports whether calls are being refused now.
func (b *breaker) isOpen() bool { return !b.disabled && b.state.Load() != breakerClosed }

// errStoreTimeout is the cause of a round trip's context when the Store's
// own Timeout ended it, as opposed to the caller's deadline.
var errStoreTimeout = errors.New("remote: round trip timed out")

// classify tells what a call that ran on rctx (from begin) and returned
// err says about Redis. The caller's own cancellation or earlier deadline
// says nothing: only the Store's timeout counts as Redis not answering.
func classify(rctx context.Context, err error) outcome {
	if errors.Is(err, ErrFenced) || errors.Is(err, ErrNotReplicated) { // Redis answered
		return answered
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if context.Cause(rctx) == errStoreTimeout {
			return outage
		}
		return neutral
	}
	if isOutage(err) {
		return outage
	}
	return answered
}

// isOutage reports whether err, which is not a context error, says Redis
// cannot serve: a network error (a socket timeout included), a closed or exhausted pool, or a server that is loading, has no
// master or whose cluster is down. A reply error such as WRONGTYPE, a miss
// or NOSCRIPT means Redis answered, and does not count.
func isOutage(err error) bool {
	if err == nil || err == redis.Nil || isNoScript(err) {
		return false
	}
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// io.EOF, connection resets and the like arrive unwrapped. (Context
	// errors never get here: classify tells the Store's timeout from the
	// caller's first.)
	return true
}

// Unavailable reports whether the circuit breaker refuses calls now: Redis
// failed BreakerThreshold round trips in a row and has not answered a
// probe since.
func (s *Store) Unavailable() bool { return s.brk.isOpen() }
