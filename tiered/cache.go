package tiered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Cache is a two-tier cache of values of type V: an in-process L1 in front
// of Redis (L2), kept coherent across nodes by an [invalidation.Bus].
//
// Values returned by a Cache may come from L1, where every caller shares one
// copy: treat them as immutable. Mutating a returned map, slice or pointed-to
// struct changes what other callers see.
//
// A Cache is safe for concurrent use by multiple goroutines. Close it when
// done; it never closes Options.Redis or a shared Options.Bus.
type Cache[V any] struct {
	opts   Options
	l1     *local.Cache[V]
	l2     *remote.Store
	bus    *invalidation.Bus
	ownBus bool
	reg    *invalidation.Registration
	flight flights[V]

	refreshing refreshes  // keys being refreshed ahead or revalidated here
	waiters    waiters    // loads waiting on another node's lease, by key
	unreleased unreleased // leases to release once Redis answers
	refreshLog failureLog // failed refreshes, logged at most once per logEvery

	closing context.Context // cancelled by Close; bounds every load
	cancel  context.CancelFunc

	mu     sync.RWMutex // guards closed against loads.Add
	closed bool
	loads  sync.WaitGroup // loads in progress

	isClosed  atomic.Bool   // mirrors closed for lock-free checks
	loadSlots chan struct{} // nil, or one token per loader call running (MaxConcurrentLoads)
	st        counters
	fails     failureLog
}

// New makes a Cache. It checks o (errors name the field), starts its own
// invalidation bus when o.Bus is nil, and registers on the bus. It returns
// an error, never panics, on bad configuration, and only then: with Redis
// unreachable it returns a working cache that reads through the loader,
// with L1 off until the bus proves its subscription (it keeps trying in
// the background). Call [Cache.WaitReady] to wait for that.
func New[V any](o Options) (*Cache[V], error) {
	o = o.withDefaults()
	if errs := o.validate(); len(errs) > 0 {
		for i, e := range errs {
			errs[i] = opError("new", nil, e)
		}
		return nil, errors.Join(errs...)
	}
	l1, err := local.New[V](local.Options{MaxCost: o.LocalMaxCost, KeepExpired: o.StaleWhileRevalidate})
	if err != nil {
		return nil, opError("new", nil, err)
	}
	warnRetriedWrites(o)
	c := &Cache[V]{opts: o, l1: l1, bus: o.Bus}
	if o.MaxConcurrentLoads > 0 {
		c.loadSlots = make(chan struct{}, o.MaxConcurrentLoads) // a counting semaphore
	}
	if c.bus == nil {
		c.bus, err = invalidation.New(context.Background(), invalidation.Options{
			Redis:             o.Redis,
			HeartbeatInterval: o.HeartbeatInterval,
			MaxStaleness:      o.MaxStaleness,
			Logger:            o.Logger,
		})
		if err != nil {
			l1.Close()
			return nil, opError("new", nil, err)
		}
		c.ownBus = true
	}
	// The handler touches only l1, the flights and the counters, which are
	// ready: a message may arrive before New returns.
	c.reg, err = c.bus.Register(o.Namespace, busHandler[V]{c})
	if err != nil {
		c.closeEarly()
		return nil, opError("new", nil, err)
	}
	// Caches of one namespace on one bus share a write fence, so that a
	// write of one of them that timed out cannot land after a newer write
	// of another (the process knows their order).
	fence := c.reg.Shared(func() any { return new(remote.Fence) }).(*remote.Fence)
	blog := new(breakerLog)
	c.l2, err = remote.New(remote.Options{
		Redis:              o.Redis,
		Namespace:          o.Namespace,
		Codec:              o.Codec,
		Timeout:            o.RedisTimeout,
		MaxKeySize:         o.MaxKeySize,
		MaxValueSize:       o.MaxValueSize,
		CompressThreshold:  o.CompressThreshold,
		DisableCompression: o.DisableCompression,
		BreakerThreshold:   o.BreakerThreshold,
		BreakerMinOpen:     o.BreakerMinOpen,
		BreakerMaxOpen:     o.BreakerMaxOpen,
		DisableBreaker:     o.DisableBreaker,
		Fence:              fence,
		WaitReplicas:       o.WaitReplicas,
		OnBreakerChange:    func(open bool) { blog.change(o.Logger, o.Namespace, open) },
	})
	if err != nil {
		c.closeEarly()
		return nil, opError("new", nil, err)
	}
	c.closing, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// closeEarly undoes what New did before it failed.
func (c *Cache[V]) closeEarly() {
	if c.reg != nil {
		c.reg.Close()
	}
	if c.ownBus {
		_ = c.bus.Close()
	}
	c.l1.Close()
}

// Close stops the cache. It closes L1, so that no read is answered from
// it once the cache no longer hears invalidations; unregisters from the
// bus (and closes the bus if the cache made it); and cancels every load
// and refresh in progress and waits for them to end (each releases its
// leases or refresh lock, one Redis round trip at most). Callers waiting
// on a cancelled load get [ErrClosed]. A loader that
// ignores its context is not waited for: its goroutine ends when it
// returns, and its result is dropped. Close does not touch L2 data, and does not
// close Options.Redis or a shared Options.Bus. It is idempotent; afterwards
// every method returns [ErrClosed].
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.isClosed.Store(true)
	c.mu.Unlock()

	// L1 closes before the handler goes: once the bus stops applying
	// invalidations here, an L1 entry may be stale and must not be
	// served. l1.Close returns once every lookup that found L1 open has
	// read its entry, all of them while invalidations still applied; from
	// then on L1 misses (so Get returns ErrClosed) and ignores fills, so
	// the loads still running cannot refill it. This costs the hit path
	// nothing: it checks that L1 is open already.
	c.l1.Close()
	c.reg.Close()
	var err error
	if c.ownBus {
		err = c.bus.Close()
	}
	c.cancel()
	c.loads.Wait()
	c.l2.Close() // calls abandoned in a client without ContextTimeoutEnabled
	return err
}

// WaitReady returns nil once the cache's bus has proven its subscription,
// so that L1 serves and every promise holds: at once if it has, or ctx's
// error if ctx ends first. [New] returns without waiting (a replica can
// start while Redis is down, reading through the loader); a service that
// must not start without Redis calls WaitReady with a deadline after New.
// It returns [ErrClosed] after Close. When ctx ends first because Redis
// refuses the bus for a reason no retry fixes (the account may not
// subscribe, a wrong password), the error says so and carries a
// *[ConfigError] (errors.As) that tells what to grant or change.
func (c *Cache[V]) WaitReady(ctx context.Context) error {
	if c.isClosed.Load() {
		return ErrClosed
	}
	// Close ends the wait too, also when the bus is shared and stays open.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.closing, cancel)
	defer stop()
	err := c.bus.WaitUsable(ctx)
	if errors.Is(err, invalidation.ErrClosed) || err != nil && c.isClosed.Load() {
		return ErrClosed
	}
	if ce := remote.AsConfigError(c.bus.LastError()); err != nil && ce != nil {
		return opError("wait ready", nil, fmt.Errorf("%w; Redis refused the invalidation bus: %w", ctx.Err(), ce))
	}
	return err
}

// Get returns the value of key from L1, or else from L2. A key that neither
// tier has (or that holds a cached "not found") returns [ErrNotFound]. An L2
// entry that cannot be decoded is a miss, counted in [Stats]. Redis errors
// are returned wrapped. Get never calls a loader, and concurrent Gets of one
// key that miss L1 each read L2; [Cache.GetOrLoad] coalesces them.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	// Get has no loader to refresh with, so it leaves an entry that is
	// due to the next GetOrLoad of the key, rather than spend its claim.
	if p, neg, _, ok := c.lookupL1(key); ok {
		if neg {
			var zero V
			return zero, ErrNotFound
		}
		return *p, nil
	}
	return c.getL2(ctx, key)
}

// lookupL1 is the hot path: an atomic load for bus liveness and the L1
// lookup, which allocates nothing and takes no lock. It returns a pointer
// to the cached value, which callers copy once (a struct V copied through
// every call on the way out cost a hit as much as the lookup; issue 10).
func (c *Cache[V]) lookupL1(key string) (p *V, neg, due, ok bool) {
	if !c.bus.Usable() {
		p, neg, ok = c.bypassL1(key)
		return p, neg, false, ok
	}
	return c.l1.GetRef(key)
}

// bypassL1 answers an L1 lookup while the bus cannot prove liveness: a
// miss, or with StaleIfError and Redis unreachable, an entry filled at most
// StaleIfError ago. It is kept out of lookupL1 so the hit path stays small.
//
//go:noinline
func (c *Cache[V]) bypassL1(key string) (p *V, neg, ok bool) {
	c.st.l1Bypassed.Add(1)
	if c.opts.StaleIfError <= 0 || !c.l2.Unavailable() {
		return nil, false, false
	}
	p, neg, ok = c.l1.GetStale(key, c.opts.StaleIfError)
	if ok {
		c.st.staleServed.Add(1)
	}
	return p, neg, ok
}

func (c *Cache[V]) getL2(ctx context.Context, key string) (V, error) {
	var zero V
	if c.isClosed.Load() {
		return zero, ErrClosed
	}
	if err := c.l2.CheckKey(key); err != nil {
		return zero, opError("get", nil, err)
	}
	st := c.l1.Stamp(key)
	tctx, end := c.trace(ctx, OpL2, "get", 1)
	it, ok, err := c.l2.Get(tctx, key)
	end(err)
	if err != nil && !isDecodeError(err) {
		c.l2Failed(ctx, "get", 1, err)
		return zero, opError("get", []string{key}, err)
	}
	c.fails.success(ctx, c.opts.Logger, c.opts.Namespace)
	if !ok { // a decode error is counted by remote
		c.st.l2Misses.Add(1)
		return zero, ErrNotFound
	}
	c.st.l2Hits.Add(1)
	v, neg, err := c.accept(key, it, st)
	if err != nil || neg {
		return zero, ErrNotFound
	}
	return v, nil
}

// accept decodes an L2 item and installs it in L1 under st. neg reports a
// cached "not found"; err an item that would not decode (counted), which
// callers treat as a miss.
func (c *Cache[V]) accept(key string, it remote.Item, st local.Stamp) (v V, neg bool, err error) {
	if it.Kind == remote.KindNegative {
		c.fillNegative(key, it.Size, it.TTL, it.Expiry(), st)
		return v, true, nil
	}
	if err := c.l2.Decode(it, &v); err != nil { // counted by remote
		return v, false, err
	}
	c.fill(key, v, it.Size, it.TTL, it.Expiry(), st)
	return v, false, nil
}

// fill installs v in L1 under st, for the L1 TTL capped by l2TTL (what L2
// has left). expiry is the L2 envelope's (0: v is not in L2), which a
// refresh-ahead of the entry checks L2 still holds. Nothing is installed
// while the bus cannot prove liveness: L1 is not served then and is
// cleared when liveness returns.
func (c *Cache[V]) fill(key string, v V, size int, l2TTL time.Duration, expiry uint64, st local.Stamp) {
	if !c.bus.Usable() {
		return
	}
	c.l1.FillWith(key, v, false, int64(max(size, 1)), c.localTTL(l2TTL), c.refreshWindow(l2TTL, expiry), expiry, st)
}

// localTTL is the jittered LocalTTL, capped by what L2 has left (0: no
// expiry in L2, so no cap).
func (c *Cache[V]) localTTL(l2TTL time.Duration) time.Duration {
	ttl := c.jitter(c.opts.LocalTTL)
	if l2TTL > 0 {
		ttl = min(ttl, l2TTL)
	}
	return ttl
}

func (c *Cache[V]) fillNegative(key string, size int, l2TTL time.Duration, expiry uint64, st local.Stamp) {
	if !c.bus.Usable() {
		return
	}
	var zero V
	c.l1.FillWith(key, zero, true, int64(max(size, 1)), c.localTTL(l2TTL), c.refreshWindow(l2TTL, expiry), expiry, st)
}

// jitter shortens d by a random fraction of up to 10%, so that keys filled
// together do not expire together.
func (c *Cache[V]) jitter(d time.Duration) time.Duration {
	if c.opts.DisableJitter || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*jitterFraction*float64(d))
}

// invalidateLocal drops keys from this node's L1 and detaches their
// flights. Writers call it after their L2 round trip, failed or not.
func (c *Cache[V]) invalidateLocal(keys []string) {
	c.l1.Invalidate(keys...)
	c.flight.forget(keys)
}

// l2Failed counts a failed Redis round trip of a read, load or refresh,
// for readKeys keys looked up (0 for a fill or release), and logs,
// rate-limited.
func (c *Cache[V]) l2Failed(ctx context.Context, op string, readKeys int, err error) {
	c.st.l2Errors.Add(1)
	c.st.l2ErrorKeys.Add(uint64(readKeys))
	c.fails.failure(ctx, c.opts.Logger, c.opts.Namespace, op, err)
}

func isDecodeError(err error) bool {
	var de *remote.DecodeError
	return errors.As(err, &de)
}

// busHandler applies invalidations from other nodes. The bus calls it from
// its receive loop: it only bumps epochs and detaches flights, never blocks.
type busHandler[V any] struct{ c *Cache[V] }

func (h busHandler[V]) Invalidate(keys []string) {
	h.c.st.invalidations.Add(uint64(len(keys)))
	h.c.invalidateLocal(keys)
}

func (h busHandler[V]) InvalidateAll() {
	h.c.st.clears.Add(1)
	h.c.l1.InvalidateAll()
	h.c.flight.forgetAll()
}

// SuspendAll is the bus clearing because it may have missed messages. With
// StaleIfError the entries are kept for bypassL1; without, they are freed.
func (h busHandler[V]) SuspendAll() {
	if h.c.opts.StaleIfError <= 0 {
		h.InvalidateAll()
		return
	}
	h.c.st.clears.Add(1)
	h.c.l1.Suspend()
	h.c.flight.forgetAll()
}

// Filled wakes the loads here that wait on another node's lease of keys:
// that node filled them in L2.
func (h busHandler[V]) Filled(keys []string) { h.c.waiters.wake(keys) }

var (
	_ invalidation.Suspender = busHandler[int]{}
	_ invalidation.Filler    = busHandler[int]{}
)

// Bus returns the invalidation bus the cache is registered on: Options.Bus,
// or the one the cache made. Use it for metrics; do not close it.
func (c *Cache[V]) Bus() *invalidation.Bus { return c.bus }

// L2Latency returns the Redis round-trip latency per operation ("get",
// "get_many", "write", "lease", "fill", "release", "refresh").
func (c *Cache[V]) L2Latency() map[string]Histogram { return c.l2.Latency() }

// Namespace returns Options.Namespace.
func (c *Cache[V]) Namespace() string { return c.opts.Namespace }

// warnRetriedWrites logs, once per cache, that the client resends a
// command whose reply timed out before RedisTimeout: a write's first
// attempt can then land after a newer write with the same fence token,
// which the fence cannot tell apart. (A client that lacks
// ContextTimeoutEnabled needs no warning: remote stops waiting for it at
// RedisTimeout.)
func warnRetriedWrites(o Options) {
	var read time.Duration
	var retries int
	switch c := o.Redis.(type) {
	case *redis.Client:
		read, retries = c.Options().ReadTimeout, c.Options().MaxRetries
	case *redis.ClusterClient:
		read, retries = c.Options().ReadTimeout, c.Options().MaxRetries
	default:
		return
	}
	if read > 0 && read < o.RedisTimeout && retries > 0 { // go-redis stores MaxRetries -1 as 0
		o.Logger.LogAttrs(context.Background(), slog.LevelWarn,
			"tiercache: the Redis client's ReadTimeout is shorter than RedisTimeout and it retries: a write whose reply timed out is sent again, and its first attempt can land after a newer write; set ReadTimeout >= RedisTimeout or MaxRetries -1",
			slog.String("namespace", o.Namespace), slog.Duration("redis_timeout", o.RedisTimeout), slog.Duration("read_timeout", read))
	}
}
