// Package remote is the L2 tier of tiercache: it stores envelopes (a small
// binary header, then a codec's bytes, compressed above a threshold) in Redis
// through a [redis.UniversalClient], so standalone, Sentinel and Cluster
// deployments all work.
//
// A [Store] reads one key or many in one round trip ([Store.Get],
// [Store.GetMany]), writes and deletes keys while publishing an invalidation
// message in the same round trip ([Store.Write]), and hands out leases that
// stop a slow loader from installing a value older than a later write
// ([Store.GetOrLease], [Store.Fill], [Store.Release]).
//
// A lease is taken with one SET key marker NX PX ttl GET, which returns the
// stored value or stores the marker (Redis 7.0 and later; older servers get
// an equivalent Lua script). Fill and Release compare the token in a Lua
// script. All of them touch one key, so Cluster routes them by slot.
//
// Inside this package a miss is a boolean, never an error: redis.Nil does not
// leave it, and bytes that do not decode are a miss plus a *[DecodeError] and
// a counter in [Stats].
//
// # Keys
//
// The Redis key of key in namespace ns is "ns:key". The namespace may not
// contain ':', so no namespace's keys can be mistaken for another's, nor '{'
// or '}', so a Redis Cluster hash tag in the key ("user:{42}:cart") picks the
// slot.
//
// # Envelope
//
// Every stored value starts with a 13-byte header:
//
//	offset size field
//	0      1    magic 0xC1 (never the first byte of JSON, msgpack or UTF-8 text)
//	1      1    format version, 1
//	2      1    kind: 1 value, 2 negative ("not found"), 3 lease marker
//	3      1    codec id: 1 JSON, 2 msgpack, 128..255 user codecs; 0 for negative and lease
//	4      1    flags: bit 0 set when the payload is S2-compressed; other bits are zero
//	5      8    expiry, Unix milliseconds, big-endian; 0 means none
//
// The payload follows: the codec's bytes for a value, nothing for a negative
// entry, and the 16-byte random token for a lease marker.
//
// The expiry sits in the header so that a plain GET or MGET returns the
// remaining TTL in the same round trip. It is written with the writer's clock
// and compared with the reader's, so clock skew between nodes lengthens or
// shortens [Item.TTL] by the skew. Redis expires the key itself by its own
// clock; the header only caps how long a reader keeps the value in its L1,
// which the L1 bounds further by its own TTL. A value whose header expiry has
// passed by the reader's clock is a miss.
package remote
