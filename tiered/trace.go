package tiered

import "context"

// Tracer is told about each piece of work a cache does beyond L1, so that
// it can be traced and timed: it is called when the work starts, returns
// the context the work runs with (a loader gets it, so spans it makes
// nest under the tracer's), and a function the cache calls once when the
// work ends, with its error (nil for success; a miss is a success). Set
// it in [Options.Tracer]; the module github.com/tiercache/tiercache/tierotel
// makes one for OpenTelemetry.
//
// An L1 hit never calls it. A Tracer is called from many goroutines at
// once and must be safe for that; it must not block, and it must not call
// the cache.
type Tracer func(ctx context.Context, w Work) (context.Context, func(err error))

// Work describes one piece of work a [Tracer] is told about. It carries how
// many keys the work is for, never the keys, which may be personal data.
type Work struct {
	// Op is one of the Work constants: OpLoad, OpLeaseWait, or OpL2 with
	// L2Op set.
	Op string
	// L2Op, for OpL2, is the kind of Redis round trip, as in
	// [Cache.L2Latency]: "get", "get_many", "lease", "fill", "release",
	// "write" or "refresh".
	L2Op string
	// Namespace is the cache's Options.Namespace.
	Namespace string
	// Keys is how many keys the work is for.
	Keys int
}

// The kinds of [Work].
const (
	// OpLoad is one call of a loader, for the keys neither tier had.
	OpLoad = "load"
	// OpLeaseWait is a wait for values another node holds the lease on
	// and is loading; it ends when they arrive, when the lease is freed,
	// or after LeaseWait, when this node loads them by itself.
	OpLeaseWait = "lease_wait"
	// OpL2 is one Redis round trip (a pipeline counts once).
	OpL2 = "l2"
)

// noEnd is the end function when no Tracer is set.
func noEnd(error) {}

// trace starts w with the Tracer, if one is set. Without one it costs a
// nil check.
func (c *Cache[V]) trace(ctx context.Context, op, l2Op string, keys int) (context.Context, func(error)) {
	if c.opts.Tracer == nil {
		return ctx, noEnd
	}
	return c.opts.Tracer(ctx, Work{Op: op, L2Op: l2Op, Namespace: c.opts.Namespace, Keys: keys})
}
