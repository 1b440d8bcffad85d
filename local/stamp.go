package local

import (
	"hash/maphash"
	"sync/atomic"
)

// Stamp records a key's epochs at one moment. A fill takes it with
// [Cache.Stamp] before it reads L2 or calls the loader, and passes it to
// [Cache.Fill]; the entry is then served only while no invalidation of the
// key, and no [Cache.InvalidateAll], has happened since the stamp was taken.
// The zero Stamp is never current. A Stamp is a small value; copy it freely.
type Stamp struct {
	hash   uint64 // key hash; Fill refuses a stamp taken for another key
	slot   uint64 // the key's slot epoch
	global uint64 // the global epoch; it starts at 1, so a zero Stamp is stale
}

// epochs is the table of invalidation counters. The hit path reads one slot
// and the global counter; only invalidations write them.
type epochs struct {
	slots  []atomic.Uint64
	mask   uint64
	global atomic.Uint64
	// data is the global epoch as the last InvalidateAll left it, which
	// Suspend does not move: an entry stamped at or after it has seen no
	// clear that meant its data changed (see Cache.GetStale).
	data atomic.Uint64
	// last holds, per slot, the hash of the key most recently invalidated
	// there. Only misses read it, to estimate collisions, so it lives apart
	// from slots to keep the table the hit path reads dense.
	last []atomic.Uint64
}

// init sizes the table to n slots, a power of two.
func (e *epochs) init(n int) {
	e.slots = make([]atomic.Uint64, n)
	e.last = make([]atomic.Uint64, n)
	e.mask = uint64(n - 1)
	e.global.Store(1)
	e.data.Store(1)
}

// stamp returns the epochs of key hash h now.
func (e *epochs) stamp(h uint64) Stamp {
	return Stamp{hash: h, slot: e.slots[h&e.mask].Load(), global: e.global.Load()}
}

// current reports whether the epochs of st.hash still equal st.
func (e *epochs) current(st Stamp) bool {
	return e.slots[st.hash&e.mask].Load() == st.slot && e.global.Load() == st.global
}

// bump invalidates key hash h: every stamp of a key in its slot taken before
// is no longer current.
func (e *epochs) bump(h uint64) {
	i := h & e.mask
	e.last[i].Store(h)
	e.slots[i].Add(1)
}

// Stamp returns key's epochs now. Take it before reading the value that will
// be passed to [Cache.Fill] (from L2 or the loader): an invalidation that
// happens after the stamp, even one that races the read, then keeps the fill
// from being served. Stamp reads two atomics and never blocks; it is safe for
// concurrent use, also after Close.
func (c *Cache[V]) Stamp(key string) Stamp {
	return c.epochs.stamp(maphash.String(c.seed, key))
}

// Current reports whether no invalidation of st's key, or of a key sharing
// its epoch slot, and no [Cache.InvalidateAll] happened since st was taken.
// A fill that is no longer current has nothing to install. Current is safe
// for concurrent use.
func (c *Cache[V]) Current(st Stamp) bool {
	return c.epochs.current(st)
}
