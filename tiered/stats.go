package tiered

import (
	"sync/atomic"

	"github.com/tiercache/tiercache/internal/histogram"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// counters are the cache's own atomics; L1, L2 and the bus keep theirs.
// None is touched by an L1 hit.
type counters struct {
	l1Bypassed      atomic.Uint64
	l2Hits          atomic.Uint64
	l2Misses        atomic.Uint64
	loadNotFound    atomic.Uint64
	loadFound       atomic.Uint64
	leaseWaitHits   atomic.Uint64
	l2Errors        atomic.Uint64
	l2ErrorKeys     atomic.Uint64
	loadErrorKeys   atomic.Uint64
	loads           atomic.Uint64
	loadErrors      atomic.Uint64
	panics          atomic.Uint64
	dedupes         atomic.Uint64
	leaseWaits      atomic.Uint64
	leaseFallbacks  atomic.Uint64
	oversize        atomic.Uint64
	encodeErrors    atomic.Uint64
	writes          atomic.Uint64
	writeErrors     atomic.Uint64
	confirmed       atomic.Uint64
	leaseWakeups    atomic.Uint64
	confirmTimeouts atomic.Uint64
	invalidations   atomic.Uint64
	clears          atomic.Uint64
	staleServed     atomic.Uint64

	refreshes          atomic.Uint64
	refreshesElsewhere atomic.Uint64
	refreshesRefused   atomic.Uint64
	refreshFailures    atomic.Uint64
	revalidateServed   atomic.Uint64
	loadLatency        histogram.Histogram
}

// Stats is a point-in-time snapshot of a cache's counters. Counters only
// grow; each is read separately, so a snapshot taken under load is not one
// instant.
type Stats struct {
	// Namespace is the cache's Options.Namespace.
	Namespace string
	// L1 holds the in-process tier's counters: hits, misses, sets, dropped
	// sets, stamp rejections, evictions, cost.
	L1 local.Stats
	// L2 holds the Redis tier's counters: round trips, errors, bytes, decode
	// errors (entries read as misses because they would not decode), leases
	// granted, and fills refused because a write killed the lease during
	// the load.
	L2 remote.Stats
	// Bus holds the invalidation bus's counters (shared by every cache on
	// a shared bus).
	Bus invalidation.Stats

	// L1Bypassed counts reads that skipped L1 because the bus could not
	// prove its subscription alive. They are not counted in L1.Hits or
	// L1.Misses, also when StaleIfError answers them from L1 (those are
	// counted in StaleServed).
	L1Bypassed uint64
	// L2Hits and L2Misses count keys looked up in L2 after an L1 miss; a
	// cached "not found" is a hit.
	L2Hits, L2Misses uint64
	// L2Errors counts failed Redis round trips of reads, loads and
	// refreshes, each served by the loader or returned. L2ErrorKeys counts
	// the keys those reads looked up, so that L2Hits + L2Misses +
	// L2ErrorKeys is every key looked up in L2.
	L2Errors, L2ErrorKeys uint64
	// Loads counts loader calls (a batch call counts once); LoadErrors and
	// Panics count the failed ones. LoadFound and LoadNotFound count keys a
	// successful loader call returned with a value and without one, and
	// LoadErrorKeys the keys of the failed calls (an error, a panic, or
	// LoadTimeout), so that the three add up to every key loaded.
	Loads, LoadErrors, Panics, LoadFound, LoadNotFound, LoadErrorKeys uint64
	// Dedupes counts callers that joined a load already running here.
	Dedupes uint64
	// LeaseWaits counts keys found leased by another node (L2.LeasesGranted
	// counts the keys this node leased); of those, LeaseWaitHits
	// were answered by that node's load (a cross-node dedupe) and
	// LeaseFallbacks were loaded here, without filling L2, because the lease
	// outlived LeaseWait. The rest took over a released lease.
	LeaseWaits, LeaseWaitHits, LeaseFallbacks uint64
	// LeaseWakeups counts waits cut short by the news that the lease's
	// holder filled the key (the fill told every node that waited).
	LeaseWakeups uint64
	// Oversize counts loaded values too large to cache; EncodeErrors counts
	// loaded values the codec could not encode. Both are served uncached.
	Oversize, EncodeErrors uint64
	// Writes counts successful Set/SetMany/Delete round trips;
	// WriteErrors counts the failed ones.
	Writes, WriteErrors uint64
	// ConfirmedWrites counts confirmed writes that returned confirmed;
	// ConfirmTimeouts counts those of them that waited out the bound
	// (MaxStaleness) because a node that received the invalidation did not
	// acknowledge it: by then it serves no L1, but such a write took up
	// to MaxStaleness to return.
	ConfirmedWrites, ConfirmTimeouts uint64
	// Invalidations counts keys invalidated by other nodes' messages;
	// Clears counts full L1 clears ordered by the bus.
	Invalidations, Clears uint64
	// StaleServed counts L1 reads answered by StaleIfError: while Redis
	// was unreachable, with values of unproven freshness.
	StaleServed uint64
	// Refreshes counts background refreshes started on this node: by
	// RefreshAhead (an entry came due) and by StaleWhileRevalidate (an
	// expired entry was served). RefreshesElsewhere counts those that
	// found another node refreshing the key, or done with it already;
	// RefreshesRefused those whose loaded value was not stored because a
	// write of the key came first (a failed round trip is counted in
	// L2Errors instead); RefreshFailures those whose loader failed (the
	// current value is kept until it expires). A refresh that finds the
	// key gone from L2 drops it from L1, counted in L1.Invalidations.
	Refreshes, RefreshesElsewhere, RefreshesRefused, RefreshFailures uint64
	// RevalidateServed counts GetOrLoad calls answered with an expired
	// entry under StaleWhileRevalidate.
	RevalidateServed uint64
	// LoadLatency is the loader's latency distribution.
	LoadLatency Histogram

	// State is the cache's connection to Redis, one of [StateConnected],
	// [StateDegraded] and [StateHealing] (see "When Redis is down" in the
	// package doc).
	State State
}

// Histogram is a point-in-time copy of a latency distribution
// ([Stats].LoadLatency, [Cache.L2Latency]): Count observations that add up
// to Sum seconds, and per bucket upper bound in seconds the number of
// observations at or below it. [invalidation.Histogram] has the same
// fields and converts to it.
type Histogram = remote.Histogram

// State is where a cache stands with Redis.
type State string

const (
	// StateConnected: the breaker around L2 is closed and the bus has
	// proven its subscription; L1 serves and every promise holds.
	StateConnected State = "connected"
	// StateDegraded: the breaker is open. Calls skip Redis: reads go to
	// the loader, writes fail with ErrUnavailable, L1 is not served.
	StateDegraded State = "degraded"
	// StateHealing: Redis answers again (or was never unreachable for
	// L2), but the bus has not yet proven its subscription, so L1 is not
	// served; the bus resubscribes, clears L1 and waits for its heartbeat.
	StateHealing State = "healing"
)

// state works the cache's State out from the breaker and the bus.
func (c *Cache[V]) state(l2 remote.Stats, usable bool) State {
	switch {
	case l2.BreakerOpen:
		return StateDegraded
	case !usable:
		return StateHealing
	}
	return StateConnected
}

// Stats returns the cache's counters. It is cheap enough to call at every
// metrics scrape and safe for concurrent use, also after Close.
func (c *Cache[V]) Stats() Stats {
	l2, bus := c.l2.Stats(), c.bus.Stats()
	return Stats{
		State:           c.state(l2, bus.Usable),
		Namespace:       c.opts.Namespace,
		L1:              c.l1.Stats(),
		L2:              l2,
		Bus:             bus,
		L1Bypassed:      c.st.l1Bypassed.Load(),
		L2Hits:          c.st.l2Hits.Load(),
		L2Misses:        c.st.l2Misses.Load(),
		L2Errors:        c.st.l2Errors.Load(),
		L2ErrorKeys:     c.st.l2ErrorKeys.Load(),
		LoadErrorKeys:   c.st.loadErrorKeys.Load(),
		Loads:           c.st.loads.Load(),
		LoadErrors:      c.st.loadErrors.Load(),
		Panics:          c.st.panics.Load(),
		LoadNotFound:    c.st.loadNotFound.Load(),
		LoadFound:       c.st.loadFound.Load(),
		LeaseWaitHits:   c.st.leaseWaitHits.Load(),
		LeaseWakeups:    c.st.leaseWakeups.Load(),
		Dedupes:         c.st.dedupes.Load(),
		LeaseWaits:      c.st.leaseWaits.Load(),
		LeaseFallbacks:  c.st.leaseFallbacks.Load(),
		Oversize:        c.st.oversize.Load(),
		EncodeErrors:    c.st.encodeErrors.Load(),
		Writes:          c.st.writes.Load(),
		WriteErrors:     c.st.writeErrors.Load(),
		ConfirmedWrites: c.st.confirmed.Load(),
		ConfirmTimeouts: c.st.confirmTimeouts.Load(),
		Invalidations:   c.st.invalidations.Load(),
		Clears:          c.st.clears.Load(),
		StaleServed:     c.st.staleServed.Load(),

		Refreshes:          c.st.refreshes.Load(),
		RefreshesElsewhere: c.st.refreshesElsewhere.Load(),
		RefreshesRefused:   c.st.refreshesRefused.Load(),
		RefreshFailures:    c.st.refreshFailures.Load(),
		RevalidateServed:   c.st.revalidateServed.Load(),
		LoadLatency:        Histogram(c.st.loadLatency.Snapshot()),
	}
}
