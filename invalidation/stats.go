package invalidation

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a [Bus]'s counters, taken by [Bus.Stats]. Counters
// count from New and never decrease.
type Stats struct {
	Messages    uint64 // invalidations encoded by Message for the caller to publish
	MessageKeys uint64 // keys in them

	HeartbeatsSent  uint64 // heartbeats published
	HeartbeatErrors uint64 // heartbeats that failed to publish
	// HeartbeatsSkipped counts ticks at which the previous heartbeat was
	// still on its way (a client stuck on a Redis that does not answer).
	HeartbeatsSkipped uint64

	AcksSent        uint64 // confirmed messages of peers acknowledged
	AcksHeard       uint64 // ack messages received for our confirmed messages
	AckErrors       uint64 // ack messages that failed to publish
	FilledHeard     uint64 // news of keys filled in L2 while a node waited on their lease
	HeartbeatsHeard uint64 // own heartbeats received back

	Received       uint64 // peers' invalidations (delete or clear) applied
	ReceivedKeys   uint64 // keys in peers' delete messages
	PeerHeartbeats uint64 // peers' heartbeats heard on the shared channel (only from older versions, which sent them there)
	OwnSkipped     uint64 // own invalidations received back and skipped: their writes' round trips succeeded
	OwnApplied     uint64 // own invalidations of failed writes (Bus.WriteFailed) received back and applied
	Malformed      uint64 // payloads that claim our format but do not parse (an empty key and too many keys included), ignored
	Foreign        uint64 // payloads of another format or version, ignored

	SequenceGaps    uint64 // peers' missing messages given up on (each cleared every L1)
	Reconnects      uint64 // new subscriptions after the first
	SubscribeErrors uint64 // failed attempts to subscribe again

	// FullClears counts InvalidateAll rounds, by reason: after a reconnect,
	// after a sequence gap, after liveness was lost (the watchdog's deadline
	// passed, or the subscription broke), and a namespace clear received
	// (which reaches that namespace's handlers only).
	FullClears          uint64
	FullClearsReconnect uint64
	FullClearsGap       uint64
	FullClearsStale     uint64
	FullClearsNamespace uint64

	// BypassNanos is the total time the bus has been unusable, the time
	// before the first heartbeat included.
	BypassNanos int64
	// HeartbeatAge is how long ago the newest own heartbeat heard was sent;
	// before the first, how long ago the bus started.
	HeartbeatAge time.Duration
	// Usable is what [Bus.Usable] reported when the snapshot was taken.
	Usable bool

	Peers         int // peer nodes tracked for sequence gaps
	Registrations int // handlers registered
}

// counters are the Bus's atomic counters, read by Stats without the lock.
type counters struct {
	messages, messageKeys                               atomic.Uint64
	heartbeatsSent, heartbeatErrors, heartbeatsHeard    atomic.Uint64
	heartbeatsSkipped                                   atomic.Uint64
	acksSent, acksHeard, ackErrors                      atomic.Uint64
	filledHeard                                         atomic.Uint64
	received, receivedKeys, peerHeartbeats, ownSkipped  atomic.Uint64
	ownApplied                                          atomic.Uint64
	malformed, foreign                                  atomic.Uint64
	sequenceGaps, reconnects, subscribeErrors           atomic.Uint64
	fullClears, clearsReconnect, clearsGap, clearsStale atomic.Uint64
	clearsNamespace                                     atomic.Uint64
}

// Stats returns a snapshot of the bus's counters. It is safe to call at any
// time, after Close included.
func (b *Bus) Stats() Stats {
	n := &b.n
	s := Stats{
		Messages:            n.messages.Load(),
		MessageKeys:         n.messageKeys.Load(),
		HeartbeatsSent:      n.heartbeatsSent.Load(),
		HeartbeatErrors:     n.heartbeatErrors.Load(),
		HeartbeatsSkipped:   n.heartbeatsSkipped.Load(),
		AcksSent:            n.acksSent.Load(),
		AcksHeard:           n.acksHeard.Load(),
		AckErrors:           n.ackErrors.Load(),
		FilledHeard:         n.filledHeard.Load(),
		HeartbeatsHeard:     n.heartbeatsHeard.Load(),
		Received:            n.received.Load(),
		ReceivedKeys:        n.receivedKeys.Load(),
		PeerHeartbeats:      n.peerHeartbeats.Load(),
		OwnSkipped:          n.ownSkipped.Load(),
		OwnApplied:          n.ownApplied.Load(),
		Malformed:           n.malformed.Load(),
		Foreign:             n.foreign.Load(),
		SequenceGaps:        n.sequenceGaps.Load(),
		Reconnects:          n.reconnects.Load(),
		SubscribeErrors:     n.subscribeErrors.Load(),
		FullClears:          n.fullClears.Load(),
		FullClearsReconnect: n.clearsReconnect.Load(),
		FullClearsGap:       n.clearsGap.Load(),
		FullClearsStale:     n.clearsStale.Load(),
		FullClearsNamespace: n.clearsNamespace.Load(),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.mono()
	s.Usable = b.usable.Load()
	s.BypassNanos = b.live.bypass
	if !s.Usable {
		s.BypassNanos += now - b.live.since
	}
	s.HeartbeatAge = time.Duration(now - b.live.heard)
	s.Peers = len(b.peers.m)
	for _, rs := range b.handlers {
		s.Registrations += len(rs)
	}
	return s
}

// Logging. Only state changes are logged, each kind at most once per
// logInterval, so a flapping connection cannot flood the log. The Logger is
// user code, so it is never called with the mutex held.

const logInterval = time.Second

type eventKind int

const (
	eventNone eventKind = iota
	eventBypassEntered
	eventBypassLeft
	eventLost
	eventReconnect
	eventGap
	eventNotMaster
	eventConfig
	numEvents
)

var eventText = [numEvents]struct {
	level slog.Level
	msg   string
}{
	eventBypassEntered: {slog.LevelWarn, "invalidation: own heartbeat not heard in time; L1 bypassed and cleared"},
	eventBypassLeft:    {slog.LevelInfo, "invalidation: own heartbeat heard; L1 usable again"},
	eventLost:          {slog.LevelWarn, "invalidation: subscription lost; L1 bypassed"},
	eventReconnect:     {slog.LevelWarn, "invalidation: subscribed again; L1 cleared"},
	eventGap:           {slog.LevelWarn, "invalidation: messages from a peer lost; L1 cleared"},
	eventConfig:        {slog.LevelError, "invalidation: Redis refused the bus for a reason no retry fixes; L1 stays off until it is fixed"},
	eventNotMaster:     {slog.LevelError, "invalidation: heartbeat refused: the server this node reaches is a replica, or a master cut off from its replicas, not the master writers use; L1 stays off until it is"},
}

// event is a state change to log once the mutex is released.
type event struct {
	kind eventKind
	args []any
}

// limiter lets one event of its kind through per logInterval and counts the
// ones it holds back.
type limiter struct {
	last       atomic.Int64 // mono time of the last event logged, plus one
	suppressed atomic.Uint64
}

func (b *Bus) log(ev event) {
	if ev.kind == eventNone {
		return
	}
	l := &b.logs[ev.kind]
	now := b.mono() + 1
	last := l.last.Load()
	if last != 0 && now-last < int64(logInterval) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	args := append(ev.args, "node", b.NodeID())
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	t := eventText[ev.kind]
	b.opts.Logger.Log(context.Background(), t.level, t.msg, args...)
}

// Histogram is a point-in-time copy of a latency distribution, in the shape
// Prometheus's const histograms take: Count observations that add up to Sum
// seconds, and for each bucket's upper bound in seconds (fixed, from 50µs
// to 30s, roughly doubling) the number of observations at or below it.
// Observations over the last bound are in Count only. A Histogram is a
// plain value: it does not change after it is returned. The histogram of
// package remote has the same fields, so either converts to the other.
type Histogram struct {
	Count   uint64
	Sum     float64            // seconds
	Buckets map[float64]uint64 // upper bound in seconds -> cumulative count
}
