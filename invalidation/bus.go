package invalidation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/histogram"
	pubsub "github.com/tiercache/tiercache/internal/publish"
	"github.com/tiercache/tiercache/internal/rediserr"
)

// ErrClosed is returned by [Bus.Register] after [Bus.Close].
var ErrClosed = errors.New("invalidation: bus closed")

// Handler receives the invalidations for one namespace; tiercache's L1 caches
// implement it. The bus calls it synchronously from its receive loop and its
// watchdog, one call at a time per bus, so a method must not block, must not
// call back into the bus (Register, Registration.Close), and must not
// retain keys after it returns.
type Handler interface {
	// Invalidate drops keys.
	Invalidate(keys []string)
	// InvalidateAll drops everything: the namespace was cleared, or the bus
	// may have missed messages (a reconnect, a lost message, lost liveness)
	// and the handler is not a [Suspender].
	InvalidateAll()
}

// Suspender is a Handler that tells the reasons for a full clear apart.
// The bus calls SuspendAll instead of InvalidateAll when it clears because
// it lost its proof of liveness (its subscription failed, or its heartbeat
// is late): the entries are no longer proven fresh, but nothing says they
// changed, which a cache that may serve stale data during an outage
// (tiered's StaleIfError) needs to know. A namespace clear, a sequence gap
// and a reconnect (messages were missed, so writes did land) are
// InvalidateAll.
type Suspender interface {
	Handler
	SuspendAll()
}

// Filler is a Handler that wants to know when another node has filled keys
// of its namespace in L2 that some node was waiting for (tiered's lease
// waiters): it can look again at once instead of at its next poll. The
// bus calls Filled like the Handler methods.
type Filler interface {
	Handler
	Filled(keys []string)
}

// Bus is one process's end of the invalidation channel: one subscription
// that fans every message out to the handlers registered for its namespace,
// a heartbeat that proves the subscription alive, and the liveness flag L1
// caches consult before serving. Create it with [New] and stop it with
// [Bus.Close]. It is safe for concurrent use by multiple goroutines.
type Bus struct {
	opts   Options
	nodeID string    // nodeIDLen random bytes: the origin of our messages
	start  time.Time // origin of the monotonic times below (see mono)
	// beats is this bus's own heartbeat channel (see beatChannel): only this
	// bus subscribes to it, so a heartbeat costs one delivery, not one per
	// node.
	beatCh string

	usable atomic.Bool // read by Usable; set under mu, cleared under mu or early by the watchdog
	// deadline mirrors live.deadline, for the watchdog to read without mu.
	deadline atomic.Int64
	seq      atomic.Uint64 // last invalidation sequence number handed out
	beats    atomic.Uint64 // last heartbeat number

	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	kick    chan struct{} // size 1: asks the watchdog to plan again; a pending kick suffices
	beatNow chan struct{} // size 1: asks for a heartbeat now (a new subscription needs its proof); a pending one suffices
	ready   chan struct{} // closed when the bus turns usable; replaced, under mu, when it turns unusable
	wg      sync.WaitGroup

	mu       sync.Mutex // guards the fields below; held while handlers run, so they run one at a time
	closed   bool
	ps       *redis.PubSub // the current subscription, closed by Close
	handlers map[string][]*Registration
	shared   map[string]any // per namespace, see Registration.Shared; kept for the life of the bus
	live     liveness
	peers    peerTable
	failed   failedWrites
	resend   [][]byte // messages of failed writes to publish again; see WriteFailed
	keys     []string // reused by applyToHandlersLocked for the keys of each delete; at most maxKeptKeys of capacity between messages

	beatWriter pubsub.Writer         // publishes heartbeats only through a writable master
	lastErr    atomic.Pointer[error] // the last subscribe or heartbeat error since the bus was last usable

	ackMu   sync.Mutex          // guards waiters and ackOut; taken under mu, never the other way
	waiters map[uint64]*Acks    // our confirmed messages awaiting acks, by sequence number
	ackOut  map[string][]uint64 // acks to send, by writer node id
	ackKick chan struct{}       // size 1: wakes the ack loop; a pending kick suffices

	n    counters
	lag  histogram.Histogram
	logs [numEvents]limiter
}

// New starts a bus: it subscribes to o.Channel and starts the receive
// loop, the heartbeat and the watchdog. It returns an error only if o is
// invalid: when Redis cannot be reached (the subscription is not confirmed
// within o.ConfirmTimeout), it returns the bus anyway, unusable, and the
// receive loop keeps trying to subscribe, with capped and jittered
// backoff, until it succeeds or the bus is closed. So a process can start
// while Redis is down. After a confirmed subscription New waits up to
// o.ConfirmTimeout (or until ctx is done) to hear its own first heartbeat,
// and returns the bus even if it has not: [Bus.Usable] turns true when it
// does. To wait for that, call [Bus.WaitUsable]. The caller closes the bus.
func New(ctx context.Context, o Options) (*Bus, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	id := make([]byte, nodeIDLen)
	_, _ = rand.Read(id) // never fails; see its doc
	b := &Bus{
		opts:     o,
		nodeID:   string(id),
		beatCh:   beatChannel(o.Channel, id),
		start:    time.Now(),
		kick:     make(chan struct{}, 1),
		beatNow:  make(chan struct{}, 1),
		ready:    make(chan struct{}),
		handlers: make(map[string][]*Registration),
		shared:   make(map[string]any),
		waiters:  make(map[uint64]*Acks),
		ackOut:   make(map[string][]uint64),
		ackKick:  make(chan struct{}, 1),
	}
	sctx, cancel := context.WithTimeout(ctx, o.ConfirmTimeout)
	ps, err := b.subscribe(sctx)
	cancel()
	if err != nil {
		b.n.subscribeErrors.Add(1)
		b.noteError(err)
		b.log(event{kind: eventLost, args: []any{"err", fmt.Errorf("invalidation subscribe %q: %w", o.Channel, err)}})
	}
	b.ps = ps // nil if not subscribed: the receive loop subscribes first
	b.ctx, b.cancel = context.WithCancel(context.Background())
	ready := b.ready // the loops replace b.ready under mu once they run
	b.wg.Add(4)
	go b.receiveLoop(ps)
	go b.heartbeatLoop()
	go b.watchdog()
	go b.ackLoop()
	if ps == nil {
		return b, nil
	}

	t := time.NewTimer(o.ConfirmTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
	case <-ctx.Done():
	}
	return b, nil
}

// WaitUsable returns nil once the bus is usable ([Bus.Usable]), at once if
// it is now, or ctx's error if ctx ends first, or [ErrClosed] if the bus
// is closed. A service that must not start without Redis calls it with a
// deadline after New. When ctx ends, the error also wraps the last error
// Redis gave the subscription or a heartbeat ([Bus.LastError]), so that a
// missing permission or a wrong password says so.
func (b *Bus) WaitUsable(ctx context.Context) error {
	for {
		b.mu.Lock()
		closed, ready := b.closed, b.ready
		b.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if b.usable.Load() {
			return nil
		}
		select {
		case <-ready:
			// Turned usable; check again, it may have flipped back.
		case <-b.ctx.Done():
			return ErrClosed
		case <-ctx.Done():
			if last := b.LastError(); last != nil {
				return fmt.Errorf("%w (last Redis error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		}
	}
}

// LastError returns the last error Redis gave the bus's subscription or a
// heartbeat since the bus was last usable, or nil.
func (b *Bus) LastError() error {
	if p := b.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// noteError records err, from the subscription or a heartbeat, for
// LastError, and logs it at Error level, with what to change, when no
// retry can fix it (a missing permission, a wrong password).
func (b *Bus) noteError(err error) {
	b.lastErr.Store(&err)
	if hint, ok := rediserr.Config(err); ok {
		b.log(event{kind: eventConfig, args: []any{"err", err, "fix", hint}})
	}
}

// Registration is one handler registered on a [Bus]. It is safe for
// concurrent use by multiple goroutines.
type Registration struct {
	b      *Bus
	ns     string
	h      Handler
	closed bool // guarded by b.mu
}

// Register adds h to the handlers of namespace. Several handlers may share a
// namespace; each gets every message for it, the ones this bus's own node
// published included (see [Bus.Message]), and each is told of its
// siblings' writes at once through [Registration.Local]. It returns
// [ErrClosed] after [Bus.Close], and an error for an empty namespace or a
// nil h.
func (b *Bus) Register(namespace string, h Handler) (*Registration, error) {
	if namespace == "" {
		return nil, errors.New("invalidation: Register: empty namespace")
	}
	if h == nil {
		return nil, errors.New("invalidation: Register: nil handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	r := &Registration{b: b, ns: namespace, h: h}
	b.handlers[namespace] = append(b.handlers[namespace], r)
	return r, nil
}

// Local applies an invalidation made on this node (op [OpDelete] with keys,
// or [OpClear]) to every other handler registered for r's namespace on
// this bus, synchronously: a cache that wrote calls it after its round
// trip, so that a sibling cache of the namespace in the same process stops
// serving the old value at once rather than when the message comes back.
// It does nothing after r or the bus is closed. Like handlers, it must not
// be called from a handler.
func (r *Registration) Local(op Op, keys []string) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed || b.closed {
		return
	}
	for _, x := range b.handlers[r.ns] {
		if x == r {
			continue
		}
		switch op {
		case OpDelete:
			x.h.Invalidate(keys)
		case OpClear:
			x.h.InvalidateAll()
		}
	}
}

// Shared returns the value that every registration of r's namespace on this
// bus shares, calling newValue to make it on the first call for the
// namespace. The value lives as long as the bus, also after the
// namespace's last registration closed: tiered keeps the write fence of a
// namespace here, so that sibling caches order their writes as one, and a
// cache made after the others closed must still fence off their late
// writes. newValue runs under the bus's lock and must not call into the
// bus.
func (r *Registration) Shared(newValue func() any) any {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.shared[r.ns]
	if !ok {
		v = newValue()
		b.shared[r.ns] = v
	}
	return v
}

// Close unregisters the handler. After it returns the handler is never
// called again; it waits for a call in progress. It is idempotent, and must
// not be called from the handler itself.
func (r *Registration) Close() {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	rs := b.handlers[r.ns]
	for i, x := range rs {
		if x == r {
			// Copy rather than delete in place: a shared backing array is
			// never written after it is published.
			rs = append(rs[:i:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(b.handlers, r.ns)
	} else {
		b.handlers[r.ns] = rs
	}
}

// Usable reports whether L1 caches on this bus may serve: the subscription is
// confirmed and the bus heard its own heartbeat recently enough that every
// write completed more than MaxStaleness ago has been delivered. It is one
// atomic load, for the L1 hit path.
func (b *Bus) Usable() bool { return b.usable.Load() }

// Message encodes an invalidation of keys in namespace from this node, with
// its next sequence number, for the caller to publish on [Bus.Channel]. op is
// [OpDelete] or [OpClear] (which ignores keys). Publish every message handed
// out: peers take a sequence number that never arrives for a lost message and
// clear their L1 after GapGrace.
//
// A delete of more than 65,536 keys, or with an empty key, is encoded as a
// clear of the namespace: receivers reject such a message (it would cost
// every node memory in proportion to its keys, and no cache holds an empty
// key), and a clear covers every key.
//
// The bus skips the message when it comes back: the writer drops the keys
// from its own caches after the round trip. If the round trip failed, tell
// the bus with [Bus.WriteFailed].
func (b *Bus) Message(namespace string, op Op, keys []string) []byte {
	m := b.newMessage(namespace, op, keys)
	return appendMessage(nil, &m)
}

// newMessage makes the invalidation Message encodes.
func (b *Bus) newMessage(namespace string, op Op, keys []string) message {
	if op == OpClear || len(keys) > maxKeysPerMessage || slices.Contains(keys, "") {
		op, keys = OpClear, nil
	}
	b.n.messages.Add(1)
	b.n.messageKeys.Add(uint64(len(keys)))
	return message{
		op:        op,
		origin:    b.nodeID,
		seq:       b.seq.Add(1),
		sent:      time.Now().UnixNano(),
		namespace: namespace,
		keys:      keys,
	}
}

// FilledMessage encodes the news that this node filled key of namespace in
// L2, for the caller to publish on [Bus.Channel] when (and only when) some
// node waits on the key's lease: every bus hands it to the [Filler]s of the
// namespace. It carries no sequence number.
func (b *Bus) FilledMessage(namespace, key string) []byte {
	m := message{op: opFilled, origin: b.nodeID, sent: time.Now().UnixNano(), namespace: namespace, keys: []string{key}}
	return appendMessage(nil, &m)
}

// WriteFailed tells the bus that the round trip of the write msg
// announces failed, so the write may still land later (a timeout, a lost
// reply, a request held up in the network). When msg comes back the bus
// then applies it to every handler of its namespace on this node, the
// writer's own included: the writer dropped the keys after its round trip,
// but may have refilled them from the old L2 value before the write
// landed, and the message, which travels with the write (remote's Write),
// is the only news of it. msg must come from [Bus.Message] on this bus;
// anything else is ignored. The bus remembers the last maxFailedWrites
// such messages.
//
// The bus also publishes msg again itself, with its next heartbeat: the
// write may never have reached Redis, and peers would then take its
// sequence number for a lost message and clear their whole L1 after
// GapGrace. A copy costs them one more invalidation of the keys.
func (b *Bus) WriteFailed(msg []byte) {
	m, err := decodeMessage(string(msg))
	if err != nil || m.origin != b.nodeID || m.op == opHeartbeat {
		return
	}
	b.mu.Lock()
	b.failed.add(m.seq)
	if len(b.resend) < maxFailedWrites {
		b.resend = append(b.resend, msg)
	}
	b.mu.Unlock()
}

// MaxStaleness returns Options.MaxStaleness, with its default applied.
func (b *Bus) MaxStaleness() time.Duration { return b.opts.MaxStaleness }

// Channel returns the pub/sub channel the bus listens on.
func (b *Bus) Channel() string { return b.opts.Channel }

// beatChannel names the heartbeat channel of node id on channel. Only that
// node subscribes to it, so heartbeats cost O(nodes) deliveries in all
// rather than O(nodes²). It is subscribed on the same connection as
// channel, so Redis delivers both in the order it executed the PUBLISHes,
// which is what lets a heartbeat prove the invalidations before it arrived.
// The name starts with channel, so an ACL that grants a user channel's
// prefix ("&tiercache:invalidation*") grants it too, and it carries
// channel's hash tag, or channel itself as its tag, so that Redis Cluster
// and Ring map it to channel's slot and shard: go-redis subscribes on the
// node of whichever channel it lists first, and a heartbeat is published
// through the node its channel maps to.
func beatChannel(channel string, id []byte) string {
	name := channel + ":hb:" + hex.EncodeToString(id)
	if hasHashTag(channel) {
		return name
	}
	return name + "{" + channel + "}"
}

// hasHashTag reports whether key has a Redis Cluster hash tag: a "{" with a
// later "}" and something between them.
func hasHashTag(key string) bool {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(key[open+1:], '}')
	return end > 0
}

// NodeID returns this bus's random node id in hex.
func (b *Bus) NodeID() string { return hex.EncodeToString([]byte(b.nodeID)) }

// DeliveryLag returns the distribution of sender send time to receipt for
// peers' messages (which includes clock skew between nodes) and own
// heartbeats.
func (b *Bus) DeliveryLag() Histogram { return Histogram(b.lag.Snapshot()) }

// Close stops the bus: it marks it unusable, closes the subscription (which
// unsubscribes), stops the receive loop, the heartbeat and the watchdog, and
// waits for them to return, including a handler call in progress. Handlers
// are not called after it returns. It does not close Options.Redis or the
// registrations. It is idempotent and returns nil.
//
// A heartbeat publish in flight to an unresponsive Redis is waited for too:
// go-redis applies a context's deadline to socket reads only when the client
// sets ContextTimeoutEnabled, so without it the client's ReadTimeout bounds
// that wait.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.usable.Store(false)
	ps := b.ps
	b.mu.Unlock()
	// Cancel first: it aborts a dial in progress inside the PubSub, which
	// holds the lock PubSub.Close takes.
	b.cancel()
	if ps != nil {
		_ = ps.Close() // it fails only if the receive loop closed it already
	}
	b.wg.Wait()
	return nil
}

// mono returns monotonic nanoseconds since the bus started. Liveness uses it
// rather than wall time, which a clock step would move.
func (b *Bus) mono() int64 { return int64(time.Since(b.start)) }
