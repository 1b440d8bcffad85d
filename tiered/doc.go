// Package tiered is a two-tier cache for services that run as many replicas
// on one Redis: a typed in-process L1 (ristretto) in front of Redis (L2),
// where every write is announced to every replica so none serves a replaced
// value for longer than a stated bound.
//
// # Reading
//
// [Cache.GetOrLoad] resolves a key in this order:
//
//  1. L1, if the invalidation bus has proven its subscription alive within
//     MaxStaleness. A hit is a hash lookup and an epoch compare: no
//     allocation, lock, clock read or network.
//  2. A per-key flight: a caller that finds a load of the key in progress in
//     this process waits for it instead of starting another.
//  3. The flight's leader records the key's L1 epoch, then sends one Redis
//     command (SET NX PX GET) that returns the value, or grants a lease (a
//     token stored in the key itself), or reports that another node holds
//     the lease.
//  4. With the lease, it calls the loader and fills L2 with a script that
//     writes only if the key still holds its token (a Set or Delete in the
//     meantime removed it), then fills L1 only if the key's epoch is
//     unchanged. Without it, it polls L2 for up to LeaseWait, then loads by
//     itself without filling L2.
//
// [Cache.GetOrLoadMany] does the same for many keys with one round trip per
// step, and calls its loader once with only the keys still missing.
//
// # Writing
//
// [Cache.Set], [Cache.SetMany] and [Cache.Delete] write L2 and publish the
// invalidation with the write (one fenced script on a single server; on Redis
// Cluster a script per hash slot that writes and publishes, then a publish
// through the channel's node, retried if it fails), then invalidate this
// node's L1 and that of every other cache of the namespace on the same bus
// (also when the round trip failed). They never put the new value in L1.
// Commit to the source of truth first, then call them.
//
// # Staleness
//
// After a write returns nil, no node serves the replaced value from L1
// later than MaxStaleness: each node's bus hears its own heartbeat, which
// proves every invalidation published before it has arrived; when the
// proof is older than MaxStaleness, or the subscription breaks, or a
// peer's message is lost, the node clears its L1, detaches its loads in
// flight, and reads L2 until the proof is fresh again. While it cannot
// hear invalidations, a caller joins a load in flight only if it began
// less than MaxStaleness ago.
//
// A write whose round trip failed may still land later (a timeout, a lost
// reply). Its message travels with it, so every node drops the keys when
// it lands, the writer's own included (see [invalidation.Bus.WriteFailed]).
//
// Reads that fill L1 go to the master: a Cluster client set to read
// replicas (ReadOnly, RouteByLatency, RouteRandomly) reads with GETEX,
// which go-redis routes to the master, because a lagging replica would
// hand a fill the value a write just replaced. A failover client with
// ReplicaOnly connects to replicas only and cannot be told apart from a
// master client: it is not supported (its writes and leases fail with
// READONLY, but its Gets would fill L1 from a lagging replica).
//
// # When Redis is down
//
// [New] fails only on bad configuration: with Redis unreachable it returns
// a cache that reads through the loader, and the bus subscribes in the
// background ([Cache.WaitReady] waits for it). A circuit breaker around
// every Redis call opens after [Options.BreakerThreshold] outage errors in
// a row; calls then skip Redis at once: reads go to the loader (one load
// per key per node, bounded by [Options.MaxConcurrentLoads]), writes and
// Get return [ErrUnavailable]. One call probes Redis after
// [Options.BreakerMinOpen], doubling up to [Options.BreakerMaxOpen], and
// the first success closes the breaker. [Stats].State is
// [StateConnected], [StateDegraded] (breaker open) or [StateHealing]
// (breaker closed, bus not yet proven). L1 is served only while the bus is
// proven, except that [Options.StaleIfError] lets it serve entries of
// bounded age while Redis is unreachable, which relaxes the staleness
// bound.
//
// # Observing
//
// [Cache.Stats] returns the counters; package metrics exports them to
// Prometheus, read at scrape time. [Options.Tracer] is told about each
// L2 round trip, loader call and lease wait (never about an L1 hit); the
// module github.com/tiercache/tiercache/tierotel turns those into
// OpenTelemetry spans and exports the counters as OpenTelemetry metrics.
// Log records go to [Options.Logger] with the context of the call that
// noticed what they report (the breaker's changes, noticed inside the
// remote store, carry none).
//
// # Errors
//
// Errors read "tiered <operation>[ <keys>]: <cause>", the operation being
// the method's name in lower case ("tiered get many (3 keys, first "a"):
// ..."), or "tiered load" for a shared load a caller waited on.
// [ErrNotFound], [ErrClosed], a loader's own error and the caller's
// context error are returned as they are. Match sentinels with errors.Is
// and typed errors (*[KeyError], *[ValueSizeError], *[OptionError],
// *[PanicError]) with errors.As.
//
// Values served from L1 are shared by every caller: treat them as
// immutable.
package tiered
