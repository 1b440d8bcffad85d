package local

import "sync/atomic"

// Stats is a snapshot of a [Cache]'s counters, taken by [Cache.Stats]. The
// counters are read one by one while the cache runs, so two of them may
// disagree by the calls in flight. Counts are totals since [New].
type Stats struct {
	// Hits is the number of Gets (and GetRefs) that returned ok.
	// GetStale and GetExpired are counted in neither Hits nor Misses.
	Hits uint64
	// Misses is the number of Gets that did not, for any reason: absent,
	// a different key under the same hash, invalidated, expired, or closed.
	Misses uint64
	// Sets is the number of fills handed to ristretto that it accepted
	// into its buffer. Ristretto may still reject or drop them (see
	// Rejections); an accepted set is not a stored entry.
	Sets uint64
	// DroppedSets is the number of fills ristretto refused at once because
	// its set buffer was full.
	DroppedSets uint64
	// Rejections is the number of accepted sets that ristretto's admission
	// policy turned away: cost above MaxCost, a colder key than the ones it
	// would evict, or a second set of a key that had just been added.
	Rejections uint64
	// StaleFills is the number of fills not handed to ristretto because
	// their stamp was no longer current (or was taken for another key).
	StaleFills uint64
	// StampRejections is the number of Gets that found the key's entry but
	// missed because an invalidation or a clear came after its stamp.
	StampRejections uint64
	// EpochCollisions estimates how many StampRejections another key caused
	// by sharing the epoch slot: those where the slot's latest invalidation
	// named a different key. It overcounts when the key itself and then a
	// neighbour were invalidated. If it is a large part of StampRejections,
	// raise Options.EpochSlots.
	EpochCollisions uint64
	// Expired is the number of Gets that found the key's entry, current but
	// past its TTL.
	Expired uint64
	// Evictions is the number of entries ristretto's policy removed to make
	// room. Entries removed by Invalidate, InvalidateAll or expiry are not
	// counted, nor is an eviction that coincides with InvalidateAll's
	// Clear.
	Evictions uint64
	// Invalidations is the number of keys passed to Invalidate.
	Invalidations uint64
	// Clears is the number of InvalidateAll calls.
	Clears uint64
	// DeletesSkipped is the number of ristretto Dels (after Invalidate, or
	// on reading an expired entry) that were not queued because the queue
	// was full. The entries stay hidden by their stamps or expiry and are
	// freed by eviction or by the next fill of the key.
	DeletesSkipped uint64

	// CostUsed is the cost of the entries ristretto holds, as its policy
	// accounts it: invalidated and expired entries not yet deleted count,
	// sets still in ristretto's buffer do not.
	CostUsed int64
	// MaxCost is Options.MaxCost after defaults.
	MaxCost int64
	// Entries is the number of fills accepted by ristretto that have not
	// yet left it: stored entries, including invalidated and expired ones
	// not yet deleted, plus sets still waiting in ristretto's buffer (which
	// it may yet reject). After [Cache.Wait] with no other calls running,
	// it is the number of stored entries.
	Entries int64
}

// counters are the cache's own atomics behind [Stats], except hits and
// misses, which the Get gate keeps. None is written on the hit path.
type counters struct {
	sets            atomic.Uint64
	droppedSets     atomic.Uint64
	rejections      atomic.Uint64
	staleFills      atomic.Uint64
	stampRejections atomic.Uint64
	epochCollisions atomic.Uint64
	expired         atomic.Uint64
	evictions       atomic.Uint64
	invalidations   atomic.Uint64
	clears          atomic.Uint64
	deletesSkipped  atomic.Uint64
	entries         atomic.Int64
}

// Stats returns a snapshot of the cache's counters. It takes ristretto's
// policy lock once, for CostUsed. Stats is safe for concurrent use, also
// after Close.
func (c *Cache[V]) Stats() Stats {
	exits, misses := c.gets.exits()
	n := &c.counters
	return Stats{
		Hits:            exits - misses,
		Misses:          misses,
		Sets:            n.sets.Load(),
		DroppedSets:     n.droppedSets.Load(),
		Rejections:      n.rejections.Load(),
		StaleFills:      n.staleFills.Load(),
		StampRejections: n.stampRejections.Load(),
		EpochCollisions: n.epochCollisions.Load(),
		Expired:         n.expired.Load(),
		Evictions:       n.evictions.Load(),
		Invalidations:   n.invalidations.Load(),
		Clears:          n.clears.Load(),
		DeletesSkipped:  n.deletesSkipped.Load(),
		CostUsed:        c.maxCost - c.rc.RemainingCost(),
		MaxCost:         c.maxCost,
		Entries:         max(n.entries.Load(), 0),
	}
}
