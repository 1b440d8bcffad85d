// Package local is tiercache's in-process first tier (L1): a typed cache of
// decoded values over ristretto in which an invalidation, once it returns, is
// never undone.
//
// # Why epochs
//
// Ristretto applies a Set of a new key later, on its own goroutine, and a
// Del only removes what is there now. So a fill that read old data before an
// invalidation can land after the invalidation's Del and be served for a
// whole TTL. Deleting harder cannot fix that; remembering can.
//
// The cache keeps a table of epoch counters indexed by key hash and one
// global epoch. A fill takes a [Stamp] of the key's counters before it reads
// L2 or calls the loader, and the entry it installs carries that stamp.
// [Cache.Invalidate] bumps the key's counter and [Cache.InvalidateAll] bumps
// the global one, synchronously, with atomics only. [Cache.Get] serves an
// entry only while both stamps still equal the table, so neither a late
// ristretto Set nor a slow fill can bring back a value older than a finished
// invalidation. Deleting the entry from ristretto afterwards only frees
// memory; it runs on the cache's own goroutine, so an invalidation never
// blocks.
//
// Keys that share an epoch slot cost each other a miss when one of them is
// invalidated, never a wrong value. Entries are found by a 64-bit hash of
// the key and checked against a second, independently seeded 64-bit hash
// kept in the entry, so two keys are confused only if both hashes collide:
// about 2^-128 for a given pair, or 2^-69 that any pair among a billion
// keys does (ristretto treats its own string keys the same way). Checking
// the second hash rather than the stored key's bytes saves a hit one cache
// line when keys are many, and entries no longer hold on to their keys.
//
// # What ristretto does, and what follows
//
// The design rests on these behaviours of ristretto v2.4, read in its
// source and measured by this project on a 2-core machine (re-check one
// with a small test before building anything new on it):
//
//   - A Set of a new key is applied later: it is queued in a buffered
//     channel of 32,768 items that one ristretto goroutine drains. A full
//     queue drops the Set (it returns false), and true only means queued:
//     the admission policy may still refuse the item. A Get right after a
//     Set of a new key nearly always misses, and under insert load most
//     new-key Sets were dropped. Two Sets of one new key can keep the
//     older value. So a fill is never assumed to land, and tests call Wait
//     and never assert that an insert was admitted.
//   - A Set of a key already present replaces its value at once.
//   - Del removes the entry at once and queues a replay of itself on the
//     same channel. Without waiting for that replay, a value set before
//     the Del was seen again after Del returned (about once in 10^5
//     trials), and a Del can block for tens of milliseconds while writers
//     keep the channel full. So an invalidation never relies on Del: it
//     bumps the key's epoch first, and the Del that frees the memory runs
//     on the cache's own goroutine, from a bounded queue, never on the bus.
//   - A fill that read old data can have its Set applied after the Del of
//     an invalidation that already returned. Raw ristretto served such a
//     stale value in 44% of trials of that race (100% when the Set is
//     forced after the Del); a version check at Set time cannot help,
//     since after the Del there is no entry to compare with. Checking a
//     stamp at every Get served none, for 11 to 35 ns per Get
//     (TestNoStaleAfterInvalidate, TestLateSet).
//   - Clear is not atomic: fills running meanwhile can survive it. A clear
//     here is a global epoch bump.
//   - Close stops ristretto's goroutines, but it is unsafe while other
//     calls are inside the cache: it panicked in 10 to 23% of trials, and
//     a Wait running meanwhile never returned. Close is therefore gated
//     (see gate.go) so that it never runs during another call.
//   - Expiry is checked exactly at Get; the memory of an expired entry is
//     freed 0.2 to 6.5 s later. Keys are not stored, only two 64-bit
//     hashes of each, so nothing can list the keys of a namespace.
//   - Config.Metrics costs 3 to 51% on Get, so it stays off and this
//     package keeps its own counters.
//
// # Costs
//
// A hit hashes the key twice, does ristretto's lookup, four atomic loads and
// two atomic adds on a counter shard picked by the calling goroutine. It
// takes no lock, allocates nothing and reads no clock: expiry is checked
// against a coarse clock that the cache's goroutine advances every 10ms
// (see [Cache.Fill]).
package local
