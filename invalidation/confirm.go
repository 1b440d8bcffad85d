package invalidation

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	pubsub "github.com/tiercache/tiercache/internal/publish"
)

// Confirmed writes. An invalidation sent with ConfirmedMessage carries
// flagConfirm; every bus that applies it, after its handlers have dropped
// the keys, acknowledges it to the writer on the writer's heartbeat
// channel, which only the writer's bus subscribes to. The writer learns
// how many buses received the message from the PUBLISH that sent it (a
// single server counts every subscriber), and waits until that many have
// acknowledged, or until its bound runs out: a bus that received the
// message but has not applied it hears no heartbeat sent after the
// message either (its subscription delivers in order), so its proof of
// liveness, and with it its L1, runs out MaxStaleness after the message
// at the latest. The writer's own bus acknowledges without a round trip.
//
// Acknowledgements are batched: the ack loop sends, per writer, one
// message with every sequence number applied since its last send, so a
// burst of confirmed writes costs each bus one message per writer, and
// nothing waits for a timer when writes are rare.

// maxAcksPerMessage bounds the sequence numbers in one ack message, under
// maxKeysPerMessage.
const maxAcksPerMessage = 4096

// Acks collects the acknowledgements of one confirmed message. It is safe
// for concurrent use. Call Close when done with it.
type Acks struct {
	b   *Bus
	seq uint64

	// guarded by b.ackMu
	from map[string]struct{} // buses that acknowledged, by node id
	bell chan struct{}       // size 1: rung at each new acknowledgement
}

// ConfirmedMessage is [Bus.Message] for a confirmed write: every bus that
// applies the message acknowledges it. Wait for them with the returned
// [Acks], which is ready before the message is sent, so that no
// acknowledgement is missed. Every bus of the deployment must run a
// version that knows confirmed messages: an older one takes them for
// malformed.
func (b *Bus) ConfirmedMessage(namespace string, op Op, keys []string) ([]byte, *Acks) {
	m := b.newMessage(namespace, op, keys)
	m.confirm = true
	a := &Acks{b: b, seq: m.seq, from: make(map[string]struct{}), bell: make(chan struct{}, 1)}
	b.ackMu.Lock()
	b.waiters[m.seq] = a
	b.ackMu.Unlock()
	return appendMessage(nil, &m), a
}

// Wait returns once want buses, the writer's own included, have
// acknowledged the message, or at until, or when ctx ends, whichever is
// first, and reports how many had. want is what the PUBLISH that sent the
// message returned: the buses subscribed when it ran.
func (a *Acks) Wait(ctx context.Context, want int, until time.Time) (got int, complete bool) {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	for {
		a.b.ackMu.Lock()
		got = len(a.from)
		a.b.ackMu.Unlock()
		if got >= want {
			return got, true
		}
		select {
		case <-a.bell:
		case <-t.C:
			return got, false
		case <-ctx.Done():
			return got, false
		}
	}
}

// RecentSubscribers returns the most subscribers the shared channel had at
// any heartbeat of this bus sent within the last MaxStaleness (the
// heartbeat counts them, on Redis 7), or 0 when it cannot tell. A
// confirmed write waits for at least that many acknowledgements: a bus
// whose subscription was lost (a Redis restart, a failover) is no longer
// counted by PUBLISH, but may serve L1 until it notices, at most until its
// proof runs out, MaxStaleness after its last heartbeat.
func (b *Bus) RecentSubscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.mono()
	n := 0
	for _, s := range b.live.subs {
		if s.at > now-int64(b.opts.MaxStaleness) {
			n = max(n, s.n)
		}
	}
	return n
}

// Close forgets the message: later acknowledgements of it are dropped.
func (a *Acks) Close() {
	a.b.ackMu.Lock()
	delete(a.b.waiters, a.seq)
	a.b.ackMu.Unlock()
}

// acked records that bus from acknowledged our confirmed message seq.
func (b *Bus) acked(seq uint64, from string) {
	b.ackMu.Lock()
	defer b.ackMu.Unlock()
	a := b.waiters[seq]
	if a == nil {
		return
	}
	if _, dup := a.from[from]; dup {
		return // a message sent again (WriteFailed) is applied, and acknowledged, again
	}
	a.from[from] = struct{}{}
	select {
	case a.bell <- struct{}{}:
	default:
	}
}

// queueAck schedules an acknowledgement of message seq of writer origin,
// which this bus has just applied.
func (b *Bus) queueAck(origin string, seq uint64) {
	b.ackMu.Lock()
	b.ackOut[origin] = append(b.ackOut[origin], seq)
	b.ackMu.Unlock()
	select {
	case b.ackKick <- struct{}{}:
	default:
	}
}

// ackLoop sends the queued acknowledgements, one message per writer with
// every sequence number queued for it, until Close.
func (b *Bus) ackLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.ackKick:
		}
		b.ackMu.Lock()
		out := b.ackOut
		b.ackOut = make(map[string][]uint64)
		b.ackMu.Unlock()
		var wg sync.WaitGroup
		for origin, seqs := range out {
			wg.Go(func() { b.sendAcks(origin, seqs) })
		}
		wg.Wait()
	}
}

// sendAcks publishes the acknowledgements of seqs to writer origin, on its
// heartbeat channel, in messages of at most maxAcksPerMessage.
func (b *Bus) sendAcks(origin string, seqs []uint64) {
	ch := beatChannel(b.opts.Channel, []byte(origin))
	for len(seqs) > 0 {
		n := min(len(seqs), maxAcksPerMessage)
		keys := make([]string, n)
		for i, s := range seqs[:n] {
			keys[i] = string(binary.BigEndian.AppendUint64(nil, s))
		}
		seqs = seqs[n:]
		m := message{op: opAck, origin: b.nodeID, sent: time.Now().UnixNano(), keys: keys}
		// Bounded like a heartbeat; a client that does not honour the
		// deadline holds this send, and the next acks wait for it.
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.HeartbeatInterval)
		err := pubsub.Publish(ctx, b.opts.Redis, ch, appendMessage(nil, &m))
		cancel()
		if err != nil {
			if b.ctx.Err() == nil {
				b.n.ackErrors.Add(1)
			}
			return // the writer waits out its bound instead
		}
		b.n.acksSent.Add(uint64(n))
	}
}

// applyAckLocked handles an ack message heard on our heartbeat channel.
func (b *Bus) applyAckLocked(m *message) {
	for _, k := range m.appendKeys(nil) {
		if len(k) == 8 {
			b.acked(binary.BigEndian.Uint64([]byte(k)), m.origin)
		}
	}
	b.n.acksHeard.Add(1)
}
