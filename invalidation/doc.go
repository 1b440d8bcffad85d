// Package invalidation carries tiercache's invalidations between processes
// over one Redis pub/sub channel, and tells each process whether its L1
// caches may serve.
//
// A process makes one [Bus]. Each L1 cache registers a [Handler] for its
// namespace. A writer encodes its invalidation with [Bus.Message] and
// publishes the bytes on [Bus.Channel] in the same round trip as its write;
// every other bus applies it to the handlers of that namespace, in the order
// Redis delivered it, from its receive loop.
//
// Liveness (the staleness bound). Every bus publishes a heartbeat each
// HeartbeatInterval and listens for its own. Redis delivers messages to a
// subscriber in the order it executed the PUBLISHes, so hearing a heartbeat
// sent at time S proves every invalidation published before S has been
// applied. [Bus.Usable] is true only while the newest heartbeat heard was sent
// less than MaxStaleness ago; the L1 caches serve only while it is true.
//
// The bus clears every L1 (Handler.InvalidateAll) whenever it may have missed
// a message:
//   - the subscription broke and was made again: what was published in
//     between is lost;
//   - its own heartbeat has not been heard in time: it cannot prove the
//     messages it has not seen yet are not stale;
//   - a peer's sequence numbers show a gap that stays open for GapGrace.
//
// The message format is binary and versioned; bytes that do not parse are
// counted and ignored, never trusted.
package invalidation
