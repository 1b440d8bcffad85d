package local

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tiercache/tiercache/internal/saturate"
)

// Cache is a typed, in-process cache of decoded values whose invalidations
// are never undone (see the package comment). Create it with [New] and
// release it with [Cache.Close]. It is safe for concurrent use by multiple
// goroutines.
type Cache[V any] struct {
	// Read by every Get; written only by New, Invalidate, InvalidateAll
	// and Close. The fields a hit reads come first, to share a cache line.
	seed   maphash.Seed
	seed2  maphash.Seed // for the conflict hash; see entry.conflict
	rc     *ristretto.Cache[uint64, *entry[V]]
	closed atomic.Bool
	epochs epochs
	_      [64]byte

	// now is the coarse clock, in nanoseconds since base (monotonic). The
	// clock goroutine writes it every tick, so it has a line of its own.
	now  atomic.Int64
	base time.Time
	_    [64]byte

	gets gate // Get's calls into ristretto, and hit/miss counts
	ops  gate // every other call into ristretto (Fill, Wait, GetStale, ...), uncounted

	counters counters
	// clearing is true while the janitor runs ristretto's Clear or Close,
	// whose evictions are not counted as Evictions.
	clearing    atomic.Bool
	maxCost     int64
	keepExpired int64 // Options.KeepExpired in nanoseconds

	dels      chan del      // Dels for the janitor; see delQueue
	clearReq  chan struct{} // size 1: pending clears coalesce into one
	stop      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// entry is what the cache stores in ristretto. Only its refresh time
// changes after Fill creates it.
type entry[V any] struct {
	// conflict is a second, independent 64-bit hash of the key (seed2),
	// compared on Get beside ristretto's key hash: two keys are taken for
	// one only if both 64-bit hashes collide, about 2^-128 per pair of
	// keys, ristretto's own approach. It replaces comparing the key's
	// bytes, which cost a hit one more cache line (the string's data)
	// when keys are many.
	conflict uint64
	value    V
	expires  int64  // coarse-clock time after which Get misses
	slot     uint64 // slot epoch of the stamp the entry was filled under
	global   uint64 // global epoch of that stamp
	// refreshAt is the coarse-clock time from which a hit reports the
	// entry due for a refresh (math.MaxInt64: never); the one
	// ClaimRefresh that wins the entry sets it to never, the only change
	// an entry sees after Fill.
	refreshAt atomic.Int64
	tag       uint64 // the caller's, returned by ClaimRefresh
	// filled is the coarse-clock time of the fill in ticks, read only by
	// GetStale: 32 bits (497 days of ticks) keep the entry, with a pointer
	// V, in one 64-byte line.
	filled   uint32
	negative bool
}

// New returns a Cache configured by o, with its ristretto instance, its
// clock goroutine and its janitor goroutine running. It returns an error
// naming the field if o is invalid. The caller closes the Cache.
func New[V any](o Options) (*Cache[V], error) {
	return newCache[V](o, true)
}

// newCache is New; tests pass runClock = false to drive now by hand.
func newCache[V any](o Options, runClock bool) (*Cache[V], error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	c := &Cache[V]{
		seed:        maphash.MakeSeed(),
		seed2:       maphash.MakeSeed(),
		base:        time.Now(),
		maxCost:     o.MaxCost,
		keepExpired: int64(o.KeepExpired),
		dels:        make(chan del, delQueue),
		clearReq:    make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	c.epochs.init(o.EpochSlots)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry[V]]{
		NumCounters: o.NumCounters,
		MaxCost:     o.MaxCost,
		BufferItems: 64, // ristretto's advice
		// The key already is a good 64-bit hash: spare ristretto a second
		// hash and the conversion. Entries carry their key, so a missing
		// conflict hash only means Get compares keys itself.
		KeyToHash: func(h uint64) (uint64, uint64) { return h, 0 },
		// Costs are the caller's units (encoded bytes), not memory.
		IgnoreInternalCost: true,
		OnEvict:            c.onEvict,
		OnReject:           c.onReject,
		OnExit:             c.onExit,
	})
	if err != nil {
		return nil, fmt.Errorf("local: new ristretto cache: %w", err)
	}
	c.rc = rc
	c.startBackground(runClock)
	return c, nil
}

// Get returns key's value and whether it is a negative entry (a cached "not
// found"), or ok == false if the cache holds no servable entry for key:
// none, invalidated since its fill's stamp, expired, or the cache is closed.
//
// A hit takes no lock, allocates nothing and reads no clock; see the package
// comment. Get is safe for concurrent use.
func (c *Cache[V]) Get(key string) (v V, negative bool, ok bool) {
	p, negative, _, ok := c.GetRef(key)
	if !ok {
		return v, false, false
	}
	return *p, negative, true
}

// GetRef is [Cache.Get] returning a pointer to the cached value instead of
// a copy (a pointer to the zero V for a negative entry). The value is
// shared by every reader and never changes while cached: read through the
// pointer, never write through it. It exists for callers that pass a
// struct V on through several calls and would otherwise copy it at each
// one: tiered's Get copies it once, into its result.
//
// due reports that the entry has reached the refresh time its fill gave
// it ([Cache.FillWith]) and nobody has claimed its refresh yet; a caller
// that will refresh it calls [Cache.ClaimRefresh]. It costs a hit one
// comparison.
func (c *Cache[V]) GetRef(key string) (v *V, negative, due, ok bool) {
	h := maphash.String(c.seed, key)
	g := c.gets.shard()
	g.enter.Add(1)
	if c.closed.Load() {
		g.exit.Add(1)
		g.misses.Add(1)
		return nil, false, false, false
	}
	e, found := c.rc.Get(h)
	g.exit.Add(1)
	now := c.now.Load()
	if found && e.conflict == maphash.String(c.seed2, key) && c.servableAt(e, h, now) {
		return &e.value, e.negative, e.refreshAt.Load() <= now, true
	}
	c.miss(g, h, key, e, found)
	return nil, false, false, false
}

// ClaimRefresh reports whether the caller is the first to claim the
// refresh of key's current entry, which must be due (see [Cache.GetRef]),
// and returns the tag its fill gave it ([Cache.FillWith]). Exactly one
// call per entry wins; a later fill of the key makes a new entry, with a
// refresh time of its own. It is safe for concurrent use.
func (c *Cache[V]) ClaimRefresh(key string) (tag uint64, ok bool) {
	h := maphash.String(c.seed, key)
	g := c.ops.shard()
	g.enter.Add(1)
	defer g.exit.Add(1)
	if c.closed.Load() {
		return 0, false
	}
	e, found := c.rc.Get(h)
	if !found || e.conflict != maphash.String(c.seed2, key) || !c.servable(e, h) {
		return 0, false
	}
	at := e.refreshAt.Load()
	if at > c.now.Load() || !e.refreshAt.CompareAndSwap(at, math.MaxInt64) {
		return 0, false
	}
	return e.tag, true
}

// GetExpired returns key's entry after its expiry, for at most grace past
// it, when nothing else makes it unservable: no invalidation of the key,
// no InvalidateAll and no Suspend since its fill. It is for serving a
// value whose TTL ran out while a refresh runs (tiered's
// StaleWhileRevalidate): such a value was not replaced by a write, only
// aged. Expired entries are kept for grace only if [Options.KeepExpired]
// is at least grace. Like [Cache.GetRef] it returns a pointer the caller
// must not write through. It is safe for concurrent use.
func (c *Cache[V]) GetExpired(key string, grace time.Duration) (v *V, negative, ok bool) {
	h := maphash.String(c.seed, key)
	g := c.ops.shard()
	g.enter.Add(1)
	if c.closed.Load() {
		g.exit.Add(1)
		return nil, false, false
	}
	e, found := c.rc.Get(h)
	g.exit.Add(1)
	now := c.now.Load()
	if !found || e.conflict != maphash.String(c.seed2, key) ||
		e.slot != c.epochs.slots[h&c.epochs.mask].Load() || e.global != c.epochs.global.Load() ||
		e.expires > now || now-e.expires > int64(grace) {
		return nil, false, false
	}
	return &e.value, e.negative, true
}

// servable reports whether e, stored under key hash h, may be served: no
// invalidation or clear since its stamp, and not expired. The caller
// compares the conflict hash.
func (c *Cache[V]) servable(e *entry[V], h uint64) bool {
	return c.servableAt(e, h, c.now.Load())
}

// servableAt is servable with the coarse clock read by the caller.
func (c *Cache[V]) servableAt(e *entry[V], h uint64, now int64) bool {
	return e.slot == c.epochs.slots[h&c.epochs.mask].Load() &&
		e.global == c.epochs.global.Load() &&
		e.expires > now
}

// miss counts a Get that missed, by cause, and queues the Del of an expired
// entry. It is kept out of Get so that the hit path stays small.
//
//go:noinline
func (c *Cache[V]) miss(g *gateShard, h uint64, key string, e *entry[V], found bool) {
	g.misses.Add(1)
	if !found || e.conflict != maphash.String(c.seed2, key) {
		return
	}
	global := c.epochs.global.Load()
	i := h & c.epochs.mask
	switch {
	case e.global != global:
		c.counters.stampRejections.Add(1)
	case e.slot != c.epochs.slots[i].Load():
		c.counters.stampRejections.Add(1)
		if c.epochs.last[i].Load() != h {
			c.counters.epochCollisions.Add(1)
		}
	case e.expires <= c.now.Load():
		c.counters.expired.Add(1)
		if c.now.Load()-e.expires > c.keepExpired {
			c.queueDel(h)
		}
	}
}

// Fill installs v as key's value for ttl, charging cost (the encoded size;
// values below 1 count as 1), unless st, taken by [Cache.Stamp] for key
// before v was read, is no longer current. A ttl <= 0 installs nothing.
//
// Fill reports whether the set was handed to ristretto. Ristretto applies it
// later and may still drop or reject it, so a true result does not mean a
// later Get hits. The stamp decides what Get serves, not this check: a fill
// that passes it but lands after an invalidation is never served.
//
// The entry expires ttl after Fill as seen by a clock that ticks every
// 10ms, both for stamping the expiry and for checking it, so the entry
// lives ttl give or take one tick (plus scheduling delay). An expired entry
// is freed by the janitor once a Get finds it, by eviction, or when the next
// fill of the key replaces it. After Close, Fill does nothing and returns
// false. Fill is safe for concurrent use.
func (c *Cache[V]) Fill(key string, v V, cost int64, ttl time.Duration, st Stamp) bool {
	return c.fill(key, v, false, cost, ttl, -1, 0, st)
}

// FillWith is [Cache.Fill] (or [Cache.FillNegative], with negative) that
// also gives the entry a refresh time, from refreshAfter after the fill on
// (see [Cache.GetRef]; refreshAfter < 0: never), and a tag of the
// caller's, which [Cache.ClaimRefresh] hands back.
func (c *Cache[V]) FillWith(key string, v V, negative bool, cost int64, ttl, refreshAfter time.Duration, tag uint64, st Stamp) bool {
	return c.fill(key, v, negative, cost, ttl, refreshAfter, tag, st)
}

// FillNegative installs a negative entry for key: a cached answer that key
// has no value, which Get reports with negative == true. It is otherwise
// [Cache.Fill].
func (c *Cache[V]) FillNegative(key string, cost int64, ttl time.Duration, st Stamp) bool {
	var zero V
	return c.fill(key, zero, true, cost, ttl, -1, 0, st)
}

func (c *Cache[V]) fill(key string, v V, negative bool, cost int64, ttl, refreshAfter time.Duration, tag uint64, st Stamp) bool {
	if ttl <= 0 {
		return false
	}
	h := maphash.String(c.seed, key)
	if st.hash != h || !c.epochs.current(st) {
		c.counters.staleFills.Add(1)
		return false
	}
	now := c.now.Load() // the coarse clock: time.Now costs ~60 ns here
	e := &entry[V]{
		conflict: maphash.String(c.seed2, key),
		value:    v,
		negative: negative,
		filled:   uint32(min(now/int64(tick), math.MaxUint32)),
		expires:  saturate.Add(now, int64(ttl)),
		slot:     st.slot,
		global:   st.global,
	}
	e.tag = tag
	e.refreshAt.Store(math.MaxInt64)
	if refreshAfter >= 0 {
		e.refreshAt.Store(saturate.Add(now, int64(refreshAfter)))
	}
	g := c.ops.shard()
	g.enter.Add(1)
	if c.closed.Load() {
		g.exit.Add(1)
		return false
	}
	// Count the entry before ristretto can see it, so that onExit never
	// takes Entries below zero.
	c.counters.entries.Add(1)
	ok := c.rc.Set(h, e, max(cost, 1))
	g.exit.Add(1)
	if ok {
		c.counters.sets.Add(1)
	} else {
		c.counters.entries.Add(-1)
		c.counters.droppedSets.Add(1)
	}
	return ok
}

// Invalidate makes every key's current entry, and every fill stamped before
// this call, unservable. It bumps each key's epoch synchronously, with
// atomics only, so a Get that starts after Invalidate returns misses. It then
// queues the ristretto Del that frees the memory on the cache's janitor
// goroutine; if the queue is full the Del is skipped and counted in
// [Stats.DeletesSkipped], and eviction or the key's next fill frees the
// entry instead. The janitor keeps an entry that is servable by the time it
// runs, so a fill that follows the invalidation usually survives; when the
// two race closely the Del can remove the new fill, which costs a miss.
//
// Invalidate never blocks, so the invalidation bus may call it from its
// receive loop. Keys sharing an epoch slot with an invalidated key miss too
// (see [Stats.EpochCollisions]). After Close it does nothing. It is safe for
// concurrent use.
func (c *Cache[V]) Invalidate(keys ...string) {
	if c.closed.Load() {
		return
	}
	for _, key := range keys {
		h := maphash.String(c.seed, key)
		c.epochs.bump(h)
		c.queueDel(h)
	}
	c.counters.invalidations.Add(uint64(len(keys)))
}

// InvalidateAll makes every entry, and every fill stamped before this call,
// unservable at once by bumping the global epoch. It then asks the janitor
// goroutine to run ristretto's Clear to free the memory; requests made while
// one is pending coalesce. That Clear may also remove fills made just after
// InvalidateAll, which costs them a miss. InvalidateAll never blocks. After
// Close it does nothing. It is safe for concurrent use.
func (c *Cache[V]) InvalidateAll() {
	if c.closed.Load() {
		return
	}
	g := c.epochs.global.Add(1)
	// Raise data to g, never lower it: a concurrent clear may have stored
	// a later epoch already.
	for d := c.epochs.data.Load(); d < g && !c.epochs.data.CompareAndSwap(d, g); d = c.epochs.data.Load() {
	}
	c.counters.clears.Add(1)
	select {
	case c.clearReq <- struct{}{}:
	default: // a clear is already pending; it runs after this bump
	}
}

// Suspend makes every entry, and every fill stamped before this call,
// unservable by Get, as InvalidateAll does, but keeps the entries, which
// GetStale may still return: the caller suspends when it can no longer
// prove the entries fresh (its invalidations may be lost), not because
// they changed. Entries leave by eviction, expiry or a later
// InvalidateAll. Suspend never blocks. After Close it does nothing. It is
// safe for concurrent use.
func (c *Cache[V]) Suspend() {
	if c.closed.Load() {
		return
	}
	c.epochs.global.Add(1)
	c.counters.clears.Add(1)
}

// GetStale returns key's entry, as Get does, but also when only Suspend
// (not InvalidateAll, not an invalidation of the key) has happened since
// its fill, and also after its expiry, provided it was filled at most
// maxAge ago (measured from the start of the clock tick of its fill, so it
// may refuse an entry up to one tick early, never serve one late). It is
// for serving data of unproven freshness on purpose
// (tiered's StaleIfError), never for the normal read path. It reads the
// coarse clock. It is not counted in [Stats].Hits or Misses: those count
// the normal read path, which the caller skipped to come here, and it
// counts its stale answers itself. Like [Cache.GetRef] it returns a
// pointer to the cached value, which the caller must not write through. It
// is safe for concurrent use.
func (c *Cache[V]) GetStale(key string, maxAge time.Duration) (v *V, negative bool, ok bool) {
	h := maphash.String(c.seed, key)
	// The ops gate, not the gets gate: every exit from the gets gate that
	// is not counted a miss is counted a hit.
	g := c.ops.shard()
	g.enter.Add(1)
	if c.closed.Load() {
		g.exit.Add(1)
		return nil, false, false
	}
	e, found := c.rc.Get(h)
	g.exit.Add(1)
	if !found || e.conflict != maphash.String(c.seed2, key) || e.slot != c.epochs.slots[h&c.epochs.mask].Load() ||
		e.global < c.epochs.data.Load() || c.now.Load()-int64(e.filled)*int64(tick) > int64(maxAge) {
		return nil, false, false
	}
	return &e.value, e.negative, true
}

// Wait blocks until ristretto has applied the sets this goroutine handed it
// before (ristretto's Wait), so that a test can expect a Fill to be visible.
// It does not wait for the janitor's Dels and Clears. After Close it returns
// at once. It is safe for concurrent use.
func (c *Cache[V]) Wait() {
	g := c.ops.shard()
	g.enter.Add(1)
	if !c.closed.Load() {
		c.rc.Wait()
	}
	g.exit.Add(1)
}

// Close releases the cache. It marks the cache closed, so that from then on
// Get misses and Fill, Invalidate, InvalidateAll and Wait do nothing; waits
// for the calls already inside ristretto to leave it; stops the clock and
// janitor goroutines and waits for them, dropping queued Dels and Clears;
// and finally closes ristretto, which stops its goroutines and frees every
// entry. Stamp, Current and Stats keep working.
//
// Close is idempotent and safe for concurrent use: every call returns after
// the first one has finished.
func (c *Cache[V]) Close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.gets.drain()
		c.ops.drain()
		close(c.stop)
		c.wg.Wait()
		c.clearing.Store(true) // ristretto's Close clears
		c.rc.Close()
	})
}

// onEvict counts the entries ristretto's policy evicts. Ristretto also calls
// it for every entry its Clear removes; those are not evictions.
func (c *Cache[V]) onEvict(it *ristretto.Item[*entry[V]]) {
	if it.Value != nil && !c.clearing.Load() {
		c.counters.evictions.Add(1)
	}
}

// onReject counts the sets ristretto's admission policy turns away.
func (c *Cache[V]) onReject(*ristretto.Item[*entry[V]]) {
	c.counters.rejections.Add(1)
}

// onExit is called once for every entry that leaves ristretto or is
// rejected by it, and with nil for a Del of an absent key. Each entry Fill
// counted in Entries, that is each one ristretto accepted, leaves exactly
// once.
func (c *Cache[V]) onExit(e *entry[V]) {
	if e != nil {
		c.counters.entries.Add(-1)
	}
}
