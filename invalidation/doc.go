// Package invalidation carries tiercache's invalidations between processes
// over one Redis pub/sub channel, and tells each process whether its L1
// caches may serve.
//
// A process makes one [Bus]. Each L1 cache registers a [Handler] for its
// namespace. A writer encodes its invalidation with [Bus.Message] and
// publishes the bytes on [Bus.Channel] together with its write; every bus,
// the writer's included, applies it to the handlers of that namespace, in
// the order Redis delivered it, from its receive loop. The writer also
// tells the other caches of the namespace on its own node at once, with
// [Registration.Local].
//
// Liveness (the staleness bound). Every bus publishes a heartbeat each
// HeartbeatInterval on a channel of its own, subscribed on the same
// connection as the shared one, and listens for it. Redis delivers the
// messages of one connection's channels in the order it executed the
// PUBLISHes, so hearing a heartbeat sent at time S proves every
// invalidation published before S has been applied. [Bus.Usable] is true
// only while the newest heartbeat heard was sent less than MaxStaleness
// ago; the L1 caches serve only while it is true. Only its sender hears a
// heartbeat, so N nodes cost N deliveries per interval, not N².
//
// Why no message goes missing unnoticed. Redis delivers every message on a
// live subscription. A subscription that breaks loses what is published
// until it is made again, and the liveness proof covers that: the bus stops
// serving L1 as soon as a read fails, or when its heartbeat is late, and it
// clears everything then and again on the new subscription. A message that
// is never published at all would escape that, so the writer makes the
// announcement part of the write (remote's Write: one atomic script on a
// single server; on Cluster, a script per hash slot that writes and
// publishes, followed by a publish through the channel's own node).
// Sequence numbers per sender are a last line: a gap that stays open for
// GapGrace clears every L1.
//
// The bus clears every L1 (Handler.InvalidateAll) whenever it may have
// missed a message:
//   - the subscription broke (at once) and was made again: what was
//     published in between is lost;
//   - its own heartbeat has not been heard in time: it cannot prove the
//     messages it has not seen yet are not stale;
//   - a peer's sequence numbers show a gap that stays open for GapGrace.
//
// The message format is binary and versioned; bytes that do not parse are
// counted and ignored, never trusted. A message carries at most 65,536
// keys, none empty, so that what anyone can publish on the channel costs a
// node little memory; [Bus.Message] turns a larger delete into a clear of
// the namespace. A bus decodes the keys of a delete only if it has a
// handler for the namespace, and keeps no large buffer between messages.
package invalidation
