package remote

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Calls the client cannot cut short. go-redis applies a context's deadline
// to the socket only when the client was built with ContextTimeoutEnabled.
// Without it (the default), a call to a Redis that does not answer waits
// the client's ReadTimeout (3s by default) and is then retried up to
// MaxRetries times: about 12s in all, during which the caller, and the
// circuit breaker that should have opened after a few of them, wait too.
// So on such a client every round trip runs on a goroutine of its own,
// and the caller stops waiting when the round trip's context ends
// (Options.Timeout): the call is abandoned, counted as an outage, and left
// to end in the client, which it does by the client's own timeouts; its
// results are never read. Close waits for the abandoned calls.

// honoursDeadline reports whether rdb cuts a call short when its
// context's deadline passes, so that no call needs a goroutine of its own.
func honoursDeadline(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false // a wrapper: assume the worst
}

// do runs fn, one round trip that sends on rctx (from begin). On a client
// that honours rctx's deadline it just calls fn. On any other client fn
// runs on a goroutine of its own, and do returns when fn does or when rctx
// ends, whichever is first; in the second case fn is abandoned, and the
// caller must not read anything fn writes (commands, captured variables):
// fn goes on writing them until the client gives up.
func (s *Store) do(rctx context.Context, fn func() error) error {
	if !s.detach {
		return fn()
	}
	s.mu.RLock()
	if s.closed { // Close is waiting for calls: start no more
		s.mu.RUnlock()
		return fn()
	}
	s.calls.Add(1)
	s.mu.RUnlock()
	const (
		running int32 = iota
		finished
		givenUp
	)
	var state atomic.Int32
	done := make(chan error, 1) // fn's goroutine never blocks on it
	var panicked any            // written before done is sent
	go func() {
		defer s.calls.Done()
		var err error
		func() {
			// A panic in the client (a hook of the caller's, say) goes back
			// to the caller, as it would without this goroutine; one that
			// nobody waits for any more is dropped rather than crash the
			// process from a goroutine no one can recover.
			defer func() {
				if p := recover(); p != nil {
					panicked, err = p, errPanicked
				}
			}()
			err = fn()
		}()
		if !state.CompareAndSwap(running, finished) { // abandoned meanwhile
			s.stats.running.Add(-1)
		}
		done <- err
	}()
	wait := func(err error) error {
		if err == errPanicked {
			panic(panicked)
		}
		return err
	}
	select {
	case err := <-done:
		return wait(err)
	case <-rctx.Done():
		s.stats.running.Add(1) // before the goroutine can see givenUp and take it back
		if !state.CompareAndSwap(running, givenUp) {
			s.stats.running.Add(-1)
			return wait(<-done) // it finished just now: its results are ours
		}
		s.stats.abandoned.Add(1)
		return &abandonedError{err: rctx.Err()}
	}
}

// errPanicked tells do that fn panicked.
var errPanicked = errors.New("remote: the Redis call panicked")

// abandonedError is do's report of a call it stopped waiting for.
type abandonedError struct{ err error }

func (e *abandonedError) Error() string {
	return "call abandoned, still running in the Redis client (it lacks ContextTimeoutEnabled): " + e.err.Error()
}

// Unwrap returns the round trip's context error.
func (e *abandonedError) Unwrap() error { return e.err }

// isAbandoned reports whether err is do's report of an abandoned call:
// the commands it was sending must not be read.
func isAbandoned(err error) bool {
	var a *abandonedError
	return errors.As(err, &a)
}

// Close waits for the calls the Store abandoned (see do), and for a probe
// of the breaker in the background, to end in the client: at most the
// client's ReadTimeout, times MaxRetries+1, after the last one began. It
// sends nothing and does not close the client. Calls made after Close
// still work, but run in the caller's goroutine, however long the client
// takes. A Store on a client with ContextTimeoutEnabled abandons no call.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
}

// probeScript does nothing, but is a script that may write: a Redis that
// holds writes (CLIENT PAUSE WRITE, as during a failover) holds it too,
// and a replica refuses it, where either would answer a PING. allow-oom:
// a full Redis is not an outage.
var probeScript = redis.NewScript("#!lua flags=allow-oom\nreturn 1")

// probe asks Redis whether it takes the calls a Store sends, through
// probeScript where the server runs scripts with flags (Redis 7), and with
// a PING elsewhere.
func (s *Store) probe(ctx context.Context) error {
	if !s.plainRaise.Load() {
		err := probeScript.Run(ctx, s.rdb, nil).Err()
		if err == nil || !strings.Contains(err.Error(), "Error compiling script") {
			return err
		}
		s.plainRaise.Store(true) // Redis before 7.0, miniredis
	}
	return s.rdb.Ping(ctx).Err()
}

// startProbe tests Redis in the background for the breaker, whose open
// window has ended: one probe (see probe), bounded by Options.Timeout,
// whose outcome closes the breaker or opens it for another, longer,
// window. Callers do not wait for it.
func (s *Store) startProbe() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.brk.record(neutral) // no probe after Close; the next call tries again
		return
	}
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		start := time.Now()
		rctx, cancel := context.WithDeadlineCause(context.Background(), start.Add(s.opts.Timeout), errStoreTimeout)
		defer cancel()
		s.stats.roundTrips.Add(1)
		s.stats.probes.Add(1)
		defer func() {
			// A client that panics (a hook of the caller's) has no caller
			// here to take the panic: the probe proved nothing.
			if recover() != nil {
				s.brk.record(neutral)
			}
		}()
		err := s.do(rctx, func() error { return s.probe(rctx) })
		s.brk.record(classify(rctx, err))
	}()
}
