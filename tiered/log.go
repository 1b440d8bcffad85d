package tiered

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/remote"
)

// logEvery is the least time between two "Redis failing" log records: logs
// report state changes, never individual requests.
const logEvery = 10 * time.Second

// failureLog turns a stream of L2 errors into at most one record per
// logEvery, saying how many errors happened since the previous record, and
// one record when Redis answers again.
type failureLog struct {
	last    atomic.Int64  // unix nanos of the last record; 0 = healthy
	pending atomic.Uint64 // errors since the last record
}

// failure logs with ctx, the context of the call that failed, so that a
// handler can add its trace id.
func (f *failureLog) failure(ctx context.Context, l *slog.Logger, namespace, op string, err error) {
	if n, ok := f.due(); ok {
		if ce := remote.AsConfigError(err); ce != nil {
			// Not an outage: nothing heals it but a change of
			// configuration, and the operator must read what to change.
			l.LogAttrs(ctx, slog.LevelError, "tiercache: Redis refused a call for a reason no retry fixes",
				slog.String("namespace", namespace), slog.String("op", op),
				slog.Uint64("errors", n), slog.String("fix", ce.Hint), slog.String("last_error", err.Error()))
			return
		}
		l.LogAttrs(ctx, slog.LevelWarn, "tiercache: redis calls failing; reads fall back to the loader",
			slog.String("namespace", namespace), slog.String("op", op),
			slog.Uint64("errors", n), slog.String("last_error", err.Error()))
	}
}

// due counts one failure and reports whether it is time for a record, and
// if so how many failures it stands for (this one included).
func (f *failureLog) due() (uint64, bool) {
	f.pending.Add(1)
	now := time.Now().UnixNano()
	last := f.last.Load()
	if last != 0 && now-last < int64(logEvery) || !f.last.CompareAndSwap(last, now) {
		return 0, false
	}
	return f.pending.Swap(0), true
}

// success notes a working L2 call; the first one after failures is logged.
func (f *failureLog) success(ctx context.Context, l *slog.Logger, namespace string) {
	if f.last.Load() == 0 {
		return
	}
	if f.last.Swap(0) != 0 {
		l.LogAttrs(ctx, slog.LevelInfo, "tiercache: redis calls succeed again",
			slog.String("namespace", namespace), slog.Uint64("errors_since_last_report", f.pending.Swap(0)))
	}
}

// breakerLog logs the circuit breaker's state changes, at most one record
// per breakerLogEvery, so a Redis that flaps at every probe cannot flood
// the log; a record says how many changes it stands for.
type breakerLog struct {
	last       atomic.Int64  // unix nanos of the last record
	suppressed atomic.Uint64 // changes not logged since
}

// breakerLogEvery is the least time between two breaker records.
const breakerLogEvery = time.Second

// change runs from remote's OnBreakerChange callback, which has no context
// of the call that moved the breaker: its records carry none.
func (b *breakerLog) change(l *slog.Logger, namespace string, open bool) {
	now := time.Now().UnixNano()
	last := b.last.Load()
	if now-last < int64(breakerLogEvery) || !b.last.CompareAndSwap(last, now) {
		b.suppressed.Add(1)
		return
	}
	attrs := []slog.Attr{slog.String("namespace", namespace)}
	if n := b.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Uint64("changes_not_logged", n))
	}
	if open {
		l.LogAttrs(context.Background(), slog.LevelWarn,
			"tiercache: redis unreachable; circuit breaker open: reads go to the loader, writes fail with ErrUnavailable", attrs...)
		return
	}
	l.LogAttrs(context.Background(), slog.LevelInfo, "tiercache: redis answers again; circuit breaker closed", attrs...)
}
