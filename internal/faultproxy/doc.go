// Package faultproxy puts a TCP proxy between a test's client and a server on
// loopback so the test can break the network between them on purpose.
//
// [Start] listens on 127.0.0.1 and forwards every accepted connection to a
// target on loopback, such as a redis-server started by redistest. Faults are
// switched at any time and apply at once to open connections and to new ones:
//
//   - [Proxy.Refuse]: new connections are reset right after accept.
//   - [Proxy.Blackhole]: bytes in both directions are read and thrown away.
//   - [Proxy.DelayRequests], [Proxy.DelayReplies]: bytes are held for a while,
//     in order, before they are forwarded.
//   - [Proxy.ResetAll]: every open connection is reset on both sides.
//   - [Proxy.DropNextReply], [Proxy.ResetMidReply]: one-shot faults on the
//     next chunk the server sends, on whichever connection it arrives.
//
// [Proxy.Pass] goes back to plain forwarding.
//
// Each connection is four goroutines: for each direction, a reader that stamps
// every chunk with its arrival time, and a writer that forwards it when its
// delay is up. When either side closes, the writers deliver what they hold and
// then the proxy closes the other side; it does not forward half-closes.
package faultproxy
