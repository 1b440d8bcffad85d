package remote

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/histogram"
)

// Stats counts a [Store]'s traffic since [New]. Every field only grows.
type Stats struct {
	RoundTrips   uint64 // requests sent to Redis, a pipeline or MULTI/EXEC counting once
	Errors       uint64 // round trips that failed (timeouts included); a miss is not an error
	Timeouts     uint64 // round trips that failed by deadline or network timeout
	DecodeErrors uint64 // stored bytes that did not decode: garbage, unknown header, wrong codec, corrupt payload
	BytesRead    uint64 // bytes of envelopes read
	BytesWritten uint64 // bytes of envelopes and messages written

	LeasesGranted uint64 // GetOrLease calls that got the lease
	LeasesHeld    uint64 // GetOrLease calls that found another caller's lease
	FillsRefused  uint64 // Fill calls that found the lease gone (written, deleted or expired)

	FenceRaises   uint64 // new write-fence tokens stored (a first write, a failed or refused one, or every half hour)
	FenceRefusals uint64 // writes Redis refused because their fence token was no longer current (sent again after a raise)
	NotReplicated uint64 // writes applied but acknowledged by fewer than Options.WaitReplicas replicas in time

	// Abandoned counts round trips the Store stopped waiting for at
	// Options.Timeout while the client, which lacks ContextTimeoutEnabled,
	// went on with them; AbandonedRunning is how many of them are still
	// running in the client now (Close waits for them).
	Abandoned        uint64
	AbandonedRunning int64

	BreakerOpen     bool   // the circuit breaker refuses calls now (open, or one probe in flight)
	BreakerOpens    uint64 // times it opened after consecutive outage errors
	BreakerRejected uint64 // calls refused with ErrUnavailable, never sent
	BreakerProbes   uint64 // PINGs sent in the background when an open window ended
}

// op names one kind of Store call for the latency histograms.
type op uint8

const (
	opGet op = iota
	opGetMany
	opWrite
	opLease
	opFill
	opRelease
	opRefresh
	numOps
)

// opNames are the keys of [Store.Latency].
var opNames = [numOps]string{"get", "get_many", "write", "lease", "fill", "release", "refresh"}

// counters are the atomics behind Stats.
type counters struct {
	roundTrips, errors, timeouts, decodeErrors atomic.Uint64
	bytesRead, bytesWritten                    atomic.Uint64
	leasesGranted, leasesHeld, fillsRefused    atomic.Uint64
	fenceRaises, fenceRefusals, notReplicated  atomic.Uint64
	abandoned, probes                          atomic.Uint64
	running                                    atomic.Int64
	latency                                    [numOps]histogram.Histogram
}

// Stats returns the counters. It is safe to call concurrently with anything.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		RoundTrips:    c.roundTrips.Load(),
		Errors:        c.errors.Load(),
		Timeouts:      c.timeouts.Load(),
		DecodeErrors:  c.decodeErrors.Load(),
		BytesRead:     c.bytesRead.Load(),
		BytesWritten:  c.bytesWritten.Load(),
		LeasesGranted: c.leasesGranted.Load(),
		LeasesHeld:    c.leasesHeld.Load(),
		FillsRefused:  c.fillsRefused.Load(),
		FenceRaises:   c.fenceRaises.Load(),
		FenceRefusals: c.fenceRefusals.Load(),
		NotReplicated: c.notReplicated.Load(),

		Abandoned:        c.abandoned.Load(),
		AbandonedRunning: c.running.Load(),

		BreakerOpen:     s.brk.isOpen(),
		BreakerOpens:    s.brk.opened.Load(),
		BreakerRejected: s.brk.rejected.Load(),
		BreakerProbes:   c.probes.Load(),
	}
}

// Latency returns a snapshot of the round-trip latency histogram of each
// kind of call, keyed "get", "get_many", "write", "lease", "fill",
// "release" and "refresh" (BeginRefresh and FinishRefresh). GetOrLease and GetOrLeaseMany record under "lease", Fill and
// FillMany under "fill". A call that needed a second round trip (a script
// reloaded after NOSCRIPT) records two observations.
func (s *Store) Latency() map[string]Histogram {
	m := make(map[string]Histogram, numOps)
	for i := range s.stats.latency {
		m[opNames[i]] = Histogram(s.stats.latency[i].Snapshot())
	}
	return m
}

// Histogram is a point-in-time copy of a latency distribution, in the shape
// Prometheus's const histograms take: Count observations that add up to Sum
// seconds, and for each bucket's upper bound in seconds (fixed, from 50µs
// to 30s, roughly doubling) the number of observations at or below it.
// Observations over the last bound are in Count only. A Histogram is a
// plain value: it does not change after it is returned. The histogram of
// package invalidation has the same fields, so either converts to the other.
type Histogram struct {
	Count   uint64
	Sum     float64            // seconds
	Buckets map[float64]uint64 // upper bound in seconds -> cumulative count
}

// begin starts one round trip: it bounds ctx by Options.Timeout and reads
// the clock for the latency histogram. A ctx that already ends sooner is
// used as is, which saves the timer.
//
// While the circuit breaker is open it returns a context that is already
// cancelled and ok false: the caller must not send, and reports
// ErrUnavailable (commands already queued on a pipeline fail at once
// with the cancelled context, and the caller overwrites their errors).
func (s *Store) begin(ctx context.Context) (rctx context.Context, cancel context.CancelFunc, start time.Time, ok bool) {
	start = time.Now()
	if ok, probe := s.brk.admit(); !ok {
		if probe {
			s.startProbe()
		}
		rctx, cancel = context.WithCancel(ctx)
		cancel()
		return rctx, cancel, start, false
	}
	// With a cause, so that end can tell this deadline from the caller's
	// (a caller's earlier deadline is inherited, and no timer is made).
	rctx, cancel = context.WithDeadlineCause(ctx, start.Add(s.opts.Timeout), errStoreTimeout)
	return rctx, cancel, start, true
}

// end finishes one round trip begun at start on rctx, counting it and,
// unless err is nil, a miss or NOSCRIPT, an error, and tells the breaker.
// It returns the time it read.
func (s *Store) end(rctx context.Context, o op, start time.Time, err error) time.Time {
	now := time.Now()
	s.brk.record(classify(rctx, err))
	c := &s.stats
	c.roundTrips.Add(1)
	c.latency[o].Observe(now.Sub(start))
	if err != nil && err != redis.Nil && !isNoScript(err) && !errors.Is(err, ErrFenced) {
		c.errors.Add(1)
		if isTimeout(err) {
			c.timeouts.Add(1)
		}
	}
	return now
}

// isTimeout reports whether err is a deadline or a network timeout.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNoScript reports whether err says the server has no script with the
// digest we sent: a restart or SCRIPT FLUSH empties its script cache.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
