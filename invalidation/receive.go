package invalidation

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	pubsub "github.com/tiercache/tiercache/internal/publish"
)

// subscribe makes a subscription to the shared channel and to the bus's own
// heartbeat channel, on one connection, and reads both confirmations.
func (b *Bus) subscribe(ctx context.Context) (*redis.PubSub, error) {
	return b.subscribeWithin(ctx, b.opts.ConfirmTimeout)
}

// subscribeWithin is subscribe with a bound of its own on each
// confirmation.
func (b *Bus) subscribeWithin(ctx context.Context, confirm time.Duration) (*redis.PubSub, error) {
	// The shared channel goes first: go-redis's Cluster client picks the
	// node by the first channel; both share a hash slot anyway.
	//
	// The dial and its HELLO, which go-redis may do inside the first
	// Receive, get a deadline too: a connection made while Redis was
	// blackholed would otherwise wait out the client's ReadTimeout for a
	// reply that never comes, long after Redis is back, and hold Close that
	// long. (go-redis applies a context's deadline to socket reads only with
	// ContextTimeoutEnabled; without it, ReadTimeout bounds them.)
	sctx, cancel := context.WithTimeout(ctx, 2*confirm)
	defer cancel()
	ps := b.opts.Redis.Subscribe(sctx, b.opts.Channel, b.beatCh)
	confirmed := 0
	for confirmed < 2 {
		// Subscribe ignores errors; the first Receive reports them.
		msg, err := ps.ReceiveTimeout(sctx, confirm)
		if err != nil {
			_ = ps.Close()
			return nil, err
		}
		if s, ok := msg.(*redis.Subscription); ok && s.Kind == "subscribe" {
			confirmed++
		}
	}
	return ps, nil
}

// receiveLoop reads the subscription until Close. It reads with Receive
// rather than ChannelWithSubscriptions, whose goroutine drops a message after
// its buffer has been full for a minute and cannot be stopped apart from the
// PubSub. Each read waits at most MaxStaleness: our own heartbeats arrive
// far more often, so a silent connection is broken (a half-open TCP
// connection would otherwise block forever), and any error makes a new
// subscription here.
func (b *Bus) receiveLoop(ps *redis.PubSub) {
	defer b.wg.Done()
	if ps == nil { // New could not subscribe: Redis was unreachable
		if ps = b.resubscribe(); ps == nil {
			return
		}
	}
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, b.opts.MaxStaleness)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.lost(err)
			_ = ps.Close()
			if ps = b.resubscribe(); ps == nil {
				return
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Message:
			b.receive(m.Payload)
		case *redis.Subscription:
			// go-redis reconnects by itself on some failures and says so
			// only with new confirmations, one per channel; what was
			// published meanwhile is lost. New consumed the first ones.
			if m.Kind == "subscribe" && m.Channel == b.opts.Channel {
				b.reconnected()
			}
		}
	}
}

// resubscribe makes a new subscription, retrying with backoff until it
// succeeds or the bus closes (then it returns nil).
func (b *Bus) resubscribe() *redis.PubSub {
	const minBackoff = 10 * time.Millisecond
	backoff := minBackoff
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		// A healthy Redis confirms within a millisecond. An attempt caught
		// in an outage must not keep the bus deaf long after Redis is
		// back, so each waits at most one heartbeat interval.
		ps, err := b.subscribeWithin(b.ctx, min(b.opts.ConfirmTimeout, b.opts.HeartbeatInterval))
		if err == nil {
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				_ = ps.Close()
				return nil
			}
			b.ps = ps
			b.mu.Unlock()
			b.reconnected()
			return ps
		}
		if b.ctx.Err() != nil {
			return nil
		}
		b.n.subscribeErrors.Add(1)
		b.noteError(err)
		// On Cluster, the channel's master may have failed over; without
		// a reload the client keeps dialing the dead one.
		pubsub.Refresh(b.ctx, b.opts.Redis)
		// Jittered, so that every replica of a deployment does not dial
		// the returning Redis in the same instant.
		t.Reset(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-b.ctx.Done():
			return nil
		case <-t.C:
		}
		// Cap the wait at one heartbeat interval, so the bus heals within
		// about one interval of Redis coming back.
		backoff = min(2*backoff, max(b.opts.HeartbeatInterval, minBackoff))
	}
}

// maxKeptKeys bounds the capacity of the key slice a bus keeps between
// messages (16 bytes a key, so 16 KiB). Most messages carry one key (a Set)
// or a small batch, and decode into the kept slice with no allocation; a
// rare larger one allocates its own, which goes with it.
const maxKeptKeys = 1024

// receive decodes and applies one payload.
func (b *Bus) receive(payload string) {
	now := time.Now()
	m, err := decodeMessage(payload)
	switch {
	case errors.Is(err, errForeign):
		b.n.foreign.Add(1)
		return
	case err != nil:
		b.n.malformed.Add(1)
		return
	}
	b.mu.Lock()
	ev := b.applyLocked(&m, now)
	b.mu.Unlock()
	b.log(ev)
}

// applyLocked applies one decoded message received at now.
func (b *Bus) applyLocked(m *message, now time.Time) event {
	if b.closed {
		return event{}
	}
	mono := int64(now.Sub(b.start))
	if m.op == opAck {
		b.applyAckLocked(m)
		return event{}
	}
	if m.op == opFilled {
		b.n.filledHeard.Add(1)
		if rs := b.handlers[m.namespace]; len(rs) > 0 {
			keys := m.appendKeys(nil)
			for _, r := range rs {
				if f, ok := r.h.(Filler); ok {
					f.Filled(keys)
				}
			}
		}
		return event{}
	}
	if m.origin == b.nodeID {
		if m.confirm {
			b.acked(m.seq, b.nodeID) // the writer's own bus: its caches dropped the keys already
		}
		if m.op == opHeartbeat {
			b.n.heartbeatsHeard.Add(1)
			b.lag.Observe(time.Duration(now.UnixNano() - m.sent))
			// The time is read under the lock, so the bypass total that
			// Stats reports never goes down.
			return b.heardLocked(m.seq, b.mono())
		}
		// Our own invalidation, back. The writer dropped the keys from
		// every cache of the namespace here after its round trip, which
		// covers a write that landed before that; only one whose round
		// trip failed may land later, and then this message is the news.
		if b.failed.has(m.seq) {
			b.n.ownApplied.Add(1)
			b.applyToHandlersLocked(m)
			return event{}
		}
		b.n.ownSkipped.Add(1)
		return event{}
	}
	if m.op == opHeartbeat {
		// Heartbeats travel on each node's own channel; one here came from
		// a peer that still sends them on the shared one. It only shows
		// the peer is alive: heartbeats are numbered apart, see beat.
		b.lag.Observe(time.Duration(now.UnixNano() - m.sent))
		b.n.peerHeartbeats.Add(1)
		b.peers.touch(m.origin, mono)
		return event{}
	}
	b.lag.Observe(time.Duration(now.UnixNano() - m.sent))
	var ev event
	opened, overflow := b.peers.see(m.origin, m.seq, mono)
	if opened {
		b.wake()
	}
	if overflow {
		b.n.sequenceGaps.Add(1)
		b.clearAllLocked(&b.n.clearsGap)
		ev = event{kind: eventGap, args: []any{"peer", hex.EncodeToString([]byte(m.origin)), "seq", m.seq}}
	}
	b.n.received.Add(1)
	if m.op == OpDelete {
		b.n.receivedKeys.Add(uint64(m.nkeys))
	}
	b.applyToHandlersLocked(m)
	if m.confirm {
		b.queueAck(m.origin, m.seq)
	}
	return ev
}

// applyToHandlersLocked hands a decoded delete or clear to every handler of
// its namespace. The keys of a delete are decoded only here, once a handler
// wants them: a node with no cache of the namespace never spends memory on
// them, while its sequence numbers were tracked all the same.
func (b *Bus) applyToHandlersLocked(m *message) {
	switch m.op {
	case OpDelete:
		rs := b.handlers[m.namespace]
		if len(rs) == 0 {
			return
		}
		keys := m.appendKeys(b.keys[:0])
		for _, r := range rs {
			r.h.Invalidate(keys)
		}
		// The keys are substrings of the payload: clearing them lets the
		// payload go. The array is kept for the next message unless a
		// large one grew it, so that one message cannot pin up to
		// maxKeysPerMessage keys' worth of memory for the life of the bus.
		clear(keys)
		if cap(keys) > maxKeptKeys {
			keys = nil
		}
		b.keys = keys[:0]
	case OpClear:
		b.n.fullClears.Add(1)
		b.n.clearsNamespace.Add(1)
		for _, r := range b.handlers[m.namespace] {
			r.h.InvalidateAll()
		}
	}
}

// clearAllLocked calls InvalidateAll on every handler and counts it under
// reason: a namespace clear, a sequence gap or a reconnect, each of which
// means messages were published and missed, so writes did land.
func (b *Bus) clearAllLocked(reason *atomic.Uint64) {
	b.n.fullClears.Add(1)
	reason.Add(1)
	for _, rs := range b.handlers {
		for _, r := range rs {
			r.h.InvalidateAll()
		}
	}
}

// suspendAllLocked is the clear for lost liveness (the subscription failed,
// or the heartbeat is late), counted as stale: nothing says the entries
// changed, so a Suspender keeps them (SuspendAll); other handlers clear.
func (b *Bus) suspendAllLocked() {
	b.n.fullClears.Add(1)
	b.n.clearsStale.Add(1)
	for _, rs := range b.handlers {
		for _, r := range rs {
			if sp, ok := r.h.(Suspender); ok {
				sp.SuspendAll()
			} else {
				r.h.InvalidateAll()
			}
		}
	}
}

// wake asks the watchdog to plan its next wake-up again.
func (b *Bus) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}
