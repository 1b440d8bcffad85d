package invalidation

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	pubsub "github.com/tiercache/tiercache/internal/publish"
	"github.com/tiercache/tiercache/internal/saturate"
)

// Liveness. Redis delivers to a subscriber in the order the PUBLISHes
// executed. A heartbeat sent at S and heard back therefore proves that the
// invalidation of every write completed before S was delivered, and applied,
// before it: the receive loop applies messages in order. So the L1 caches
// may serve while the latest own heartbeat heard was sent less than
// MaxStaleness ago. The receive loop sets the flag and extends the deadline
// as heartbeats arrive; the watchdog clears the flag when the deadline
// passes, and clears every L1 with it, since the bus may since have missed
// invalidations it can no longer apply in time.

// liveness is guarded by Bus.mu. Times are monotonic (Bus.mono).
type liveness struct {
	on       bool  // the bus is usable, as far as the state under mu goes; Bus.usable follows it, but the watchdog may clear that early (see watchdog)
	deadline int64 // the bus is unusable from this time on unless a newer heartbeat arrives; mirrored in Bus.deadline
	heard    int64 // send time of the newest own heartbeat heard; 0 if none yet
	since    int64 // when the current bypass began; meaningful while not usable
	bypass   int64 // total length of the finished bypasses
	sweep    int64 // when the watchdog next forgets idle peers
	// beats holds the monotonic send times of the heartbeats sent within the
	// last MaxStaleness, ascending by seq; older ones could prove nothing.
	beats []beat
	// subs holds, for the heartbeats sent within the last MaxStaleness,
	// how many subscribers the shared channel had (see RecentSubscribers).
	subs []subsSample
}

// subsSample is how many subscribers the shared channel had at a
// heartbeat sent at the monotonic time at.
type subsSample struct {
	at int64
	n  int
}

// noteSubscribers records that the shared channel had n subscribers at
// the heartbeat sent at now, and forgets samples older than window.
func (l *liveness) noteSubscribers(now int64, n int, window int64) {
	i := 0
	for i < len(l.subs) && l.subs[i].at <= now-window {
		i++
	}
	l.subs = append(slices.Delete(l.subs, 0, i), subsSample{at: now, n: n})
}

// beat is the monotonic send time of heartbeat seq.
type beat struct {
	seq  uint64
	sent int64
}

// maxBeatsOut bounds the heartbeats on their way at once: each that a
// Redis which does not answer holds also holds a connection of the
// client's pool.
const maxBeatsOut = 3

// heartbeatLoop publishes a heartbeat at once (so New can return quickly),
// then every HeartbeatInterval, until Close. Each goes out on a goroutine
// of its own: a client without ContextTimeoutEnabled holds a publish to a
// Redis that does not answer for its ReadTimeout, times MaxRetries+1
// (about 12s by default), and the heartbeats must not wait for that once
// Redis answers again. A tick that finds maxBeatsOut still on their way
// skips its heartbeat. Close waits for those out.
func (b *Bus) heartbeatLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.HeartbeatInterval)
	defer t.Stop()
	var out atomic.Int32 // heartbeats on their way
	for {
		if out.Add(1) <= maxBeatsOut {
			b.wg.Add(1) // from a goroutine wg counts: no race with Close's Wait
			go func() {
				defer b.wg.Done()
				defer out.Add(-1)
				b.beat()
				b.resendFailed()
			}()
		} else {
			out.Add(-1)
			b.n.heartbeatsSkipped.Add(1)
		}
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-b.beatNow:
		}
	}
}

func (b *Bus) beat() {
	// The number and the time are taken under the lock, so that beats,
	// which heardLocked searches by number, stays in order when two
	// heartbeats go out at once (see heartbeatLoop).
	b.mu.Lock()
	now := time.Now()
	// Heartbeats count on their own: a heartbeat that fails to publish must
	// not look like a lost invalidation to every peer.
	m := message{op: opHeartbeat, origin: b.nodeID, seq: b.beats.Add(1), sent: now.UnixNano()}
	sent := int64(now.Sub(b.start))
	i := 0
	for i < len(b.live.beats) && b.live.beats[i].sent <= sent-int64(b.opts.MaxStaleness) {
		i++
	}
	b.live.beats = append(slices.Delete(b.live.beats, 0, i), beat{seq: m.seq, sent: sent})
	b.mu.Unlock()
	// A publish slower than one interval is as good as lost; the next
	// heartbeat is due. go-redis honours this deadline only on clients with
	// ContextTimeoutEnabled; others wait up to their ReadTimeout.
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.HeartbeatInterval)
	defer cancel()
	// On our own channel, through the node that serves our subscription,
	// as every invalidation goes (the channel shares the shared channel's
	// hash slot): on Cluster that is what makes hearing this heartbeat
	// prove the earlier invalidations arrived.
	//
	// It goes as a script that Redis 7 runs only on a master that accepts
	// writes (publish.Writer): a node still talking to an old master that
	// a failover demoted, or to a master cut off from its replicas (with
	// min-replicas-to-write), is refused, and so cannot prove a path that
	// writers no longer use.
	subs, err := b.beatWriter.PublishCounting(ctx, b.opts.Redis, b.beatCh, appendMessage(nil, &m), b.opts.Channel)
	if err == nil && subs >= 0 {
		b.mu.Lock()
		b.live.noteSubscribers(sent, int(subs), int64(b.opts.MaxStaleness))
		b.mu.Unlock()
	}
	if err != nil {
		if b.ctx.Err() == nil {
			b.n.heartbeatErrors.Add(1)
			b.noteError(err)
			if redis.HasErrorPrefix(err, "READONLY") || redis.HasErrorPrefix(err, "NOREPLICAS") {
				b.log(event{kind: eventNotMaster, args: []any{"err", err}})
			}
		}
		return
	}
	b.n.heartbeatsSent.Add(1)
}

// resendFailed publishes the messages of failed writes once more (see
// WriteFailed). One that fails again is dropped: its peers then see a gap,
// as they would have anyway.
func (b *Bus) resendFailed() {
	b.mu.Lock()
	msgs := b.resend
	b.resend = nil
	b.mu.Unlock()
	for _, msg := range msgs {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.HeartbeatInterval)
		err := pubsub.Publish(ctx, b.opts.Redis, b.opts.Channel, msg)
		cancel()
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.n.heartbeatErrors.Add(1)
		}
	}
}

// heardLocked records that own heartbeat seq arrived at now.
func (b *Bus) heardLocked(seq uint64, now int64) event {
	i, ok := slices.BinarySearchFunc(b.live.beats, seq, func(x beat, seq uint64) int { return cmp.Compare(x.seq, seq) })
	if !ok {
		return event{} // sent too long ago to prove anything
	}
	bt := b.live.beats[i]
	b.live.heard = max(b.live.heard, bt.sent)
	deadline := saturate.Add(bt.sent, int64(b.opts.MaxStaleness-b.opts.margin()))
	if deadline <= now {
		return event{} // too late to prove anything
	}
	b.live.deadline = max(b.live.deadline, deadline)
	b.deadline.Store(b.live.deadline)
	if b.live.on {
		b.usable.Store(true) // in case the watchdog cleared it early, racing this heartbeat
		return event{}
	}
	b.live.on = true
	b.usable.Store(true)
	b.lastErr.Store(nil)
	d := now - b.live.since
	b.live.bypass += d
	select {
	case <-b.ready:
	default:
		close(b.ready)
	}
	b.wake() // the watchdog may be idle, with no deadline to watch
	return event{kind: eventBypassLeft, args: []any{"after", time.Duration(d)}}
}

// bypassLocked makes the bus unusable at now until a new heartbeat arrives.
// It reports whether the bus was usable.
func (b *Bus) bypassLocked(now int64) bool {
	b.live.deadline = 0
	b.deadline.Store(0)
	if !b.live.on {
		return false
	}
	b.live.on = false
	b.usable.Store(false)
	b.live.since = now
	b.ready = make(chan struct{}) // for WaitUsable; closed when usable again
	return true
}

// lost records a failed subscription read. The bus stops serving L1 and
// clears every handler at once, which also detaches their loads in flight:
// from now on it hears nothing, so a load that began before a write it
// cannot hear of must not be joined later. Resubscribing may take long
// (new connections can fail while the pool's old ones still work), so the
// clear cannot wait for it; the new subscription clears again.
func (b *Bus) lost(err error) {
	b.mu.Lock()
	if !b.closed {
		b.bypassLocked(b.mono())
		b.suspendAllLocked()
	}
	b.mu.Unlock()
	b.log(event{kind: eventLost, args: []any{"err", err}})
}

// reconnected handles a new subscription: everything published since the
// old one broke is lost, so every L1 is cleared, and the bus stays unusable
// until it hears a heartbeat over the new subscription.
func (b *Bus) reconnected() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.n.reconnects.Add(1)
	b.bypassLocked(b.mono())
	b.peers.reset()
	b.clearAllLocked(&b.n.clearsReconnect)
	b.mu.Unlock()
	// The new subscription is proven by the next heartbeat: send it now
	// rather than at the next tick.
	select {
	case b.beatNow <- struct{}{}:
	default:
	}
	b.log(event{kind: eventReconnect})
}

// watchdog wakes when the liveness deadline passes, a peer's gap expires or
// idle peers are due to be forgotten, and handles each.
func (b *Bus) watchdog() {
	defer b.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
		// L1 goes off at the deadline even when the lock is held, by a
		// receive loop stuck in a handler say: Usable is cleared before the
		// lock is taken, and the clearing of L1 follows once it is.
		if now := b.mono(); b.usable.Load() && now >= b.deadline.Load() {
			b.usable.Store(false)
		}
		b.mu.Lock()
		now := b.mono()
		evs, next := b.checkLocked(now)
		b.mu.Unlock()
		for _, ev := range evs {
			b.log(ev)
		}
		t.Reset(time.Duration(next - now))
	}
}

// checkLocked handles what is due at now and returns when to check next.
func (b *Bus) checkLocked(now int64) (evs []event, next int64) {
	if b.closed {
		return nil, now + int64(time.Hour)
	}
	if b.live.on && now < b.live.deadline {
		// The watchdog may have cleared Usable early, racing a heartbeat
		// that came in time: the proof holds.
		b.usable.Store(true)
	}
	if b.live.on && now >= b.live.deadline {
		b.bypassLocked(now)
		b.suspendAllLocked()
		age := time.Duration(now - b.live.heard)
		evs = append(evs, event{kind: eventBypassEntered, args: []any{"heartbeat_age", age}})
	}
	grace := int64(b.opts.GapGrace)
	if n := b.peers.expire(now, grace); n > 0 {
		b.n.sequenceGaps.Add(uint64(n))
		b.clearAllLocked(&b.n.clearsGap)
		evs = append(evs, event{kind: eventGap, args: []any{"messages", n}})
	}
	// Times here saturate: a MaxStaleness or GapGrace near the largest
	// duration means "a long time", not a time that has already passed
	// (which would forget every peer, give every gap up, and wake the
	// watchdog again at once).
	idle := 10 * min(int64(b.opts.MaxStaleness), math.MaxInt64/10)
	if now >= b.live.sweep {
		b.peers.sweep(now - idle)
		b.live.sweep = saturate.Add(now, idle)
	}
	next = b.live.sweep
	if b.live.on {
		next = min(next, b.live.deadline)
	}
	if at, ok := b.peers.oldestGap(); ok {
		next = min(next, saturate.Add(at, grace))
	}
	return evs, next
}
