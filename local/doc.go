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
// # Costs
//
// A hit hashes the key twice, does ristretto's lookup, four atomic loads and
// two atomic adds on a counter shard picked by the calling goroutine. It
// takes no lock, allocates nothing and reads no clock: expiry is checked
// against a coarse clock that the cache's goroutine advances every 10ms
// (see [Cache.Fill]).
package local
