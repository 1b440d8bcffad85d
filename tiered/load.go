package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Loader loads one key from the source of truth. It returns [ErrNotFound]
// when the key has no value; that answer is cached for
// [Options.NegativeTTL].
type Loader[V any] func(ctx context.Context, key string) (V, error)

// BatchLoader loads many keys in one call. It receives only the keys that
// neither tier has and nobody else is loading. A key missing from the
// returned map has no value, and that answer is cached like ErrNotFound.
type BatchLoader[V any] func(ctx context.Context, missing []string) (map[string]V, error)

// GetOrLoad returns the value of key from L1, L2 or, on a miss in both, from
// loader. Concurrent misses of one key share one load: in this process
// through a per-key flight, across processes through a lease in L2, so the
// loader runs once cluster-wide. The shared load runs detached from ctx,
// bounded by [Options.LoadTimeout] and Close; ctx bounds only this caller's
// wait. The loaded value fills L2 only if no Set or Delete of the key
// happened since the lease was taken, and L1 only if no invalidation
// arrived since the load started.
//
// Redis trouble degrades to calling loader (counted in [Stats]). A loader
// error is returned as is and not cached, except [ErrNotFound]. A loader
// panic is returned as a *[PanicError] to every waiter. A load that
// outlives LoadTimeout is abandoned: its waiters get an error wrapping
// context.DeadlineExceeded, even if the loader ignores its context.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, loader Loader[V]) (V, error) {
	if p, neg, due, ok := c.lookupL1(key); ok {
		if due {
			c.refreshDue(ctx, key, single(loader))
		}
		if neg {
			var zero V
			return zero, ErrNotFound
		}
		return *p, nil
	}
	if c.opts.StaleWhileRevalidate > 0 && c.bus.Usable() {
		if p, neg, ok := c.l1.GetExpired(key, c.opts.StaleWhileRevalidate); ok {
			c.st.revalidateServed.Add(1)
			c.revalidate(ctx, key, loader)
			if neg {
				var zero V
				return zero, ErrNotFound
			}
			return *p, nil
		}
	}
	return c.loadOne(ctx, key, loader)
}

// loadOne is GetOrLoad past L1: the key's flight, and through it L2 and
// the loader.
func (c *Cache[V]) loadOne(ctx context.Context, key string, loader Loader[V]) (V, error) {
	var zero V
	if c.isClosed.Load() {
		return zero, ErrClosed
	}
	if err := c.l2.CheckKey(key); err != nil {
		return zero, opError("get or load", nil, err)
	}
	keys := []string{key}
	fs, led, ledFs := c.flight.claim(keys, c.joinAge())
	if len(led) > 0 {
		c.lead(ctx, led, ledFs, single(loader))
	} else {
		c.st.dedupes.Add(1)
	}
	select {
	case <-fs[0].done:
		r := fs[0].res
		if r.err != nil {
			return zero, r.err
		}
		if r.neg {
			return zero, ErrNotFound
		}
		return r.val, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// joinAge is how old a flight may be for a new caller to join it: any age
// while the bus hears invalidations (they detach flights), and less than
// the staleness bound while it cannot.
func (c *Cache[V]) joinAge() time.Duration {
	if c.bus.Usable() {
		return 0
	}
	return c.bus.MaxStaleness()
}

// single adapts a Loader to the batch form the load machinery uses.
func single[V any](loader Loader[V]) BatchLoader[V] {
	return func(ctx context.Context, keys []string) (map[string]V, error) {
		v, err := loader(ctx, keys[0])
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return map[string]V{keys[0]: v}, nil
	}
}

// job is one shared load of the keys its caller leads.
type job[V any] struct {
	keys   []string
	fs     []*flight[V]
	stamps []local.Stamp
	load   BatchLoader[V]
	// first holds the lease replies of the first L2 round, which lead
	// takes in the caller's goroutine, for the keys left to resolve.
	first   []remote.Lease
	pending []int // indexes of the keys left to resolve, aligned with first
	// wake is rung when another node filled a key this job waits on (see
	// waiters), so that it looks again at once. Size 1: a pending ring
	// suffices.
	wake chan struct{}
}

// lead resolves the keys whose flights the caller leads. Their first step,
// the L2 read that also takes leases on misses, runs in the caller's
// goroutine: an L2 hit, the common case, then costs no goroutine hand-off.
// That step is one Redis round trip, bounded by RedisTimeout and detached
// from the caller's cancellation like the rest of the load, so the leading
// caller notices its own cancellation only after it. Keys that need a
// loader, or must wait for another node's, go on to a load goroutine.
//
// lead does not check L1 again first, unlike groupcache's load. There, the
// re-check keeps a flight that starts just after another one ended from
// loading twice; here the next step is L2, which already holds what that
// flight loaded, so a re-check would save one round trip in a rare race
// while counting every L1 miss twice.
func (c *Cache[V]) lead(callerCtx context.Context, keys []string, fs []*flight[V], load BatchLoader[V]) {
	j := &job[V]{keys: keys, fs: fs, load: load, stamps: make([]local.Stamp, len(keys))}
	// Stamps are taken before anything is read, so an invalidation that
	// lands while we read L2 or call the loader makes our fill unservable.
	for i, k := range keys {
		j.stamps[i] = c.l1.Stamp(k)
	}
	leases := c.leaseRound(context.WithoutCancel(callerCtx), keys)
	for i, l := range leases {
		if l.State == remote.LeaseHit {
			c.st.l2Hits.Add(1)
			if v, neg, derr := c.accept(keys[i], l.Item, j.stamps[i]); derr == nil {
				c.flight.finish(keys[i], fs[i], result[V]{val: v, neg: neg})
				continue
			}
			l = remote.Lease{} // undecodable: load without filling
		}
		j.pending = append(j.pending, i)
		j.first = append(j.first, l)
	}
	if len(j.pending) > 0 {
		c.startLoad(callerCtx, j)
	}
}

// leaseRound reads keys from L2 in one round trip, taking a lease on each
// missing one, and counts the outcome. A key whose command failed, or whose
// bytes do not decode, has the zero Lease.
func (c *Cache[V]) leaseRound(ctx context.Context, keys []string) []remote.Lease {
	var leases []remote.Lease
	var err error
	tctx, end := c.trace(ctx, OpL2, "lease", len(keys))
	if len(keys) == 1 { // a plain command, not a pipeline of one
		var l remote.Lease
		l, err = c.l2.GetOrLease(tctx, keys[0], c.opts.LeaseTTL)
		leases = []remote.Lease{l}
	} else {
		leases, err = c.l2.GetOrLeaseMany(tctx, keys, c.opts.LeaseTTL)
	}
	end(err)
	if leases == nil { // bad input, which Redis never saw: nothing leased
		leases = make([]remote.Lease, len(keys))
	}
	switch {
	case isDecodeError(err): // counted by remote; the key is loaded unfilled
	case err != nil:
		c.l2Failed(ctx, "lease", len(keys), err)
	default:
		c.fails.success(ctx, c.opts.Logger, c.opts.Namespace)
	}
	return leases
}

// startLoad runs the rest of j in a goroutine owned by the cache: counted
// in c.loads, bounded by LoadTimeout, cancelled by Close. It keeps the
// caller's values but not its cancellation, so the load does not die with
// its first caller.
func (c *Cache[V]) startLoad(callerCtx context.Context, j *job[V]) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		var keys []string
		var tokens [][]byte
		for n, i := range j.pending {
			if l := j.first[n]; l.State == remote.LeaseGranted {
				keys, tokens = append(keys, j.keys[i]), append(tokens, l.Token)
			}
		}
		c.release(callerCtx, keys, tokens)
		for _, i := range j.pending {
			c.flight.finish(j.keys[i], j.fs[i], result[V]{err: ErrClosed})
		}
		return
	}
	c.loads.Add(1)
	c.mu.RUnlock()
	go func() {
		defer c.loads.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(callerCtx), c.opts.LoadTimeout)
		stop := context.AfterFunc(c.closing, cancel)
		defer func() { stop(); cancel() }()
		defer c.finishRest(j) // a codec panic must not strand the waiters
		c.resolve(ctx, j, j.pending, time.Now().Add(c.opts.LeaseWait))
	}()
}

// finishRest finishes every flight of j that is still open, with the panic
// that unwound the job if there was one. Only the job's goroutine finishes
// its flights, so checking done first cannot race.
func (c *Cache[V]) finishRest(j *job[V]) {
	p := recover()
	if p == nil {
		return
	}
	c.st.panics.Add(1)
	err := &PanicError{Value: p, Stack: debug.Stack()}
	for i, f := range j.fs {
		select {
		case <-f.done:
		default:
			c.flight.finish(j.keys[i], f, result[V]{err: err})
		}
	}
}

// aborted is the error for waiters of a load cut short by Close or by
// LoadTimeout.
func (c *Cache[V]) aborted(ctx context.Context) error {
	if c.closing.Err() != nil {
		return ErrClosed
	}
	return fmt.Errorf("tiered load: timed out after %v (LoadTimeout): %w", c.opts.LoadTimeout, ctx.Err())
}

// maxPoll caps the interval between two polls of a key another node is
// loading: one cheap GET per waiting key and node every 10 ms at most, so a
// waiter sees the value at most 10 ms after it lands.
const maxPoll = 10 * time.Millisecond

// resolve asks L2 for the pending keys, taking leases on misses; it loads
// and fills the granted keys, and polls the keys another node holds until
// waitUntil, after which it loads them without filling L2.
func (c *Cache[V]) resolve(ctx context.Context, j *job[V], pending []int, waitUntil time.Time) {
	backoff := time.Millisecond
	endWait := noEnd // ends the lease-wait trace, once a wait began
	defer func() { endWait(nil) }()
	for round := 0; len(pending) > 0; round++ {
		leases := j.first // round 0 was taken by lead, which kept no hits
		if round > 0 {
			leases = c.leaseRound(ctx, pick(j.keys, pending))
		}
		var granted, held, garbled, unsure []int
		var tokens, unsureTokens [][]byte
		for n, i := range pending {
			switch l := leases[n]; l.State {
			case remote.LeaseHit:
				c.st.l2Hits.Add(1)
				v, neg, err := c.accept(j.keys[i], l.Item, j.stamps[i])
				if err != nil {
					garbled = append(garbled, i)
					continue
				}
				c.st.leaseWaitHits.Add(1) // only polls of held keys see hits here
				c.flight.finish(j.keys[i], j.fs[i], result[V]{val: v, neg: neg})
			case remote.LeaseGranted:
				c.st.l2Misses.Add(1)
				granted = append(granted, i)
				tokens = append(tokens, l.Token)
			case remote.LeaseHeld:
				held = append(held, i)
			default:
				if l.Token != nil {
					// The lease command failed (its reply timed out, or
					// the request is held in the network): it may have
					// stored our marker, or may store it later, after a
					// Set or Delete that our load, which reads the source
					// of truth now, would then undo by filling under it.
					// So load without filling L2, and release the marker
					// in case it is there.
					unsure = append(unsure, i)
					unsureTokens = append(unsureTokens, l.Token)
					continue
				}
				garbled = append(garbled, i)
			}
		}
		if len(garbled) > 0 {
			// The key holds bytes we cannot decode (so no lease can be
			// taken on it), or its command was never sent (the breaker is
			// open): load without filling, and leave L2 to its TTL or the
			// next Set.
			c.loadUnfilled(ctx, j, garbled)
		}
		if len(unsure) > 0 {
			// The marker, if the command stored it, is released in the
			// background, retried until Redis answers: the waiters must
			// not wait another round trip to a Redis that just failed to
			// answer. A lease command still held in the network may land
			// after the release; its marker then lives LeaseTTL, as a
			// crashed holder's would.
			c.releaseLater(pick(j.keys, unsure), unsureTokens)
			c.loadUnfilled(ctx, j, unsure)
		}
		if len(granted) > 0 {
			c.loadAndFill(ctx, j, granted, tokens)
		}
		if len(held) == 0 {
			return
		}
		if round == 0 {
			c.st.leaseWaits.Add(uint64(len(held)))
			// Traced from the first held key until resolve returns: the
			// polls, and the load that follows a freed lease or LeaseWait
			// running out, nest in the wait.
			ctx, endWait = c.trace(ctx, OpLeaseWait, "", len(held))
			// Ask the holders' fills to tell us: the wait then ends within
			// a delivery of the fill, and the polls below are the fallback
			// for a holder that dies or a message that is lost.
			j.wake = make(chan struct{}, 1)
			heldKeys := pick(j.keys, held)
			c.waiters.add(heldKeys, j.wake)
			defer c.waiters.remove(heldKeys, j.wake)
			if err := c.l2.Await(ctx, heldKeys, c.opts.LeaseTTL); err != nil {
				c.l2Failed(ctx, "lease", 0, err)
			}
		}
		wait := min(backoff, time.Until(waitUntil))
		if wait > 0 && !c.sleepOrWake(ctx, wait, j.wake) {
			err := c.aborted(ctx)
			for _, i := range held {
				c.flight.finish(j.keys[i], j.fs[i], result[V]{err: err})
			}
			return
		}
		if wait <= 0 {
			c.st.leaseFallbacks.Add(uint64(len(held)))
			c.loadUnfilled(ctx, j, held)
			return
		}
		backoff = min(2*backoff, maxPoll)
		pending = held
	}
}

// loadAndFill calls the loader for keys whose leases we hold and fills L2
// (only where our lease survived) and L1 (only where the stamp is current).
// Leases it will not fill are released in one round trip before the
// waiters are answered, so a caller that saw the error finds the key free.
func (c *Cache[V]) loadAndFill(ctx context.Context, j *job[V], idx []int, tokens [][]byte) {
	keys := pick(j.keys, idx)
	res := make([]result[V], len(idx))
	decided := 0 // res[:decided] hold the answers; the rest are not known yet
	var unfilled []string
	var unfilledTokens [][]byte
	defer func() {
		// Loader and codec panics are recovered where they happen; this
		// catches anything else, so no waiter gets a zero value with a nil
		// error and no lease waits out its TTL.
		if p := recover(); p != nil {
			c.st.panics.Add(1)
			perr := &PanicError{Value: p, Stack: debug.Stack()}
			for n := decided; n < len(res); n++ {
				res[n] = result[V]{err: perr}
			}
			// Releasing a lease that a fill already replaced does nothing.
			unfilled, unfilledTokens = keys, tokens
		}
		c.release(ctx, unfilled, unfilledTokens)
		for n, i := range idx {
			c.flight.finish(j.keys[i], j.fs[i], res[n])
		}
	}()
	vals, ttls, err := c.callLoader(ctx, j.load, keys)
	if err != nil {
		for n := range idx {
			res[n] = result[V]{err: err}
		}
		decided = len(res)
		unfilled, unfilledTokens = keys, tokens
		return
	}
	ops := make([]remote.FillOp, 0, len(idx))
	opIdx := make([]int, 0, len(idx)) // n of each op
	for n, k := range keys {
		v, found := vals[k]
		res[n] = result[V]{val: v, neg: !found}
		decided = n + 1
		var data []byte
		ttl, chosen := ttls[k]
		if !chosen {
			ttl = c.jitter(c.opts.TTL)
		}
		switch {
		case chosen && ttl <= 0: // the loader asked not to cache it
			unfilled, unfilledTokens = append(unfilled, k), append(unfilledTokens, tokens[n])
			continue
		case found:
			data, err = c.l2.Encode(k, v, ttl)
			if err != nil { // over MaxValueSize, or the codec failed: serve it, cache it nowhere
				c.countEncodeError(err)
				unfilled, unfilledTokens = append(unfilled, k), append(unfilledTokens, tokens[n])
				continue
			}
		case c.opts.DisableNegativeCache:
			unfilled, unfilledTokens = append(unfilled, k), append(unfilledTokens, tokens[n])
			continue
		default:
			if !chosen {
				ttl = c.opts.NegativeTTL
			}
			data = c.l2.EncodeNegative(ttl)
		}
		ops = append(ops, remote.FillOp{Key: k, Token: tokens[n], Data: data, TTL: ttl,
			Channel: c.bus.Channel(), Announce: c.bus.FilledMessage(c.opts.Namespace, k)})
		opIdx = append(opIdx, n)
	}
	if len(ops) == 0 {
		return
	}
	// The fill gets its own bound: a loader that returns just as the load's
	// context ends must still fill, or at least release, its leases.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.RedisTimeout)
	fctx, end := c.trace(fctx, OpL2, "fill", len(ops))
	installed, err := c.l2.FillMany(fctx, ops)
	end(err)
	cancel()
	if err != nil {
		c.l2Failed(ctx, "fill", 0, err)
	}
	for m, n := range opIdx {
		i, k := idx[n], keys[n]
		switch {
		case installed != nil && installed[m]:
			if res[n].neg {
				c.fillNegative(k, len(ops[m].Data), ops[m].TTL, remote.EnvelopeExpiry(ops[m].Data), j.stamps[i])
			} else {
				c.fill(k, res[n].val, len(ops[m].Data), ops[m].TTL, remote.EnvelopeExpiry(ops[m].Data), j.stamps[i])
			}
		case err == nil:
			// A Set or Delete killed our lease while we loaded: what we
			// loaded may be older than that write, so it goes nowhere
			// (remote counts it in FillsRefused).
		default:
			// The fill's fate is unknown; release in case it did not land.
			unfilled, unfilledTokens = append(unfilled, k), append(unfilledTokens, ops[m].Token)
		}
	}
}

// countEncodeError counts a loaded value that could not be stored.
func (c *Cache[V]) countEncodeError(err error) {
	var vse *ValueSizeError
	if errors.As(err, &vse) {
		c.st.oversize.Add(1)
		return
	}
	c.st.encodeErrors.Add(1)
}

// loadUnfilled calls the loader for keys without touching L2 (Redis failed,
// or another node's lease outlived LeaseWait) and fills L1 under the stamps.
func (c *Cache[V]) loadUnfilled(ctx context.Context, j *job[V], idx []int) {
	keys := pick(j.keys, idx)
	vals, ttls, err := c.callLoader(ctx, j.load, keys)
	for _, i := range idx {
		k := j.keys[i]
		if err != nil {
			c.flight.finish(k, j.fs[i], result[V]{err: err})
			continue
		}
		v, found := vals[k]
		ttl, chosen := ttls[k]
		switch {
		case chosen && ttl <= 0: // the loader asked not to cache it
		case found:
			if !chosen {
				ttl = c.opts.TTL
			}
			c.fill(k, v, c.costOf(v), ttl, 0, j.stamps[i])
		case !c.opts.DisableNegativeCache:
			if !chosen {
				ttl = c.opts.NegativeTTL
			}
			c.fillNegative(k, 1, ttl, 0, j.stamps[i])
		}
		c.flight.finish(k, j.fs[i], result[V]{val: v, neg: !found})
	}
}

// costOf estimates the L1 cost of a value that was never encoded for L2. A
// codec that fails or panics makes it 1.
func (c *Cache[V]) costOf(v V) (n int) {
	defer func() {
		if recover() != nil {
			c.st.encodeErrors.Add(1)
			n = 1
		}
	}()
	b, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return 1
	}
	return len(b)
}

// loaded is what one loader call produced.
type loaded[V any] struct {
	vals map[string]V
	err  error
}

// callLoader runs the user's loader and waits for it, or for ctx: a loader
// that ignores its context must not hold the waiters, or Close, past
// LoadTimeout. It runs in a goroutine of its own for that reason, which
// outlives the load only as long as such a loader keeps running. A panic
// becomes a *PanicError.
func (c *Cache[V]) callLoader(ctx context.Context, load BatchLoader[V], keys []string) (map[string]V, map[string]time.Duration, error) {
	if c.loadSlots != nil {
		select {
		case c.loadSlots <- struct{}{}:
		case <-ctx.Done():
			c.st.loadErrors.Add(1)
			c.st.loadErrorKeys.Add(uint64(len(keys)))
			return nil, nil, c.aborted(ctx)
		}
	}
	c.st.loads.Add(1)
	start := time.Now()
	choices := &ttlChoices{keys: keys}
	lctx, end := c.trace(ctx, OpLoad, "", len(keys))
	lctx = context.WithValue(lctx, ttlChoicesKey{}, choices)
	ch := make(chan loaded[V], 1) // the loader's goroutine never blocks on it
	go func() {
		var r loaded[V]
		returned := false
		if c.loadSlots != nil {
			// The slot is held while the loader runs, abandoned or not: it
			// bounds the calls the source of truth sees.
			defer func() { <-c.loadSlots }()
		}
		defer func() {
			if p := recover(); p != nil {
				c.st.panics.Add(1)
				r = loaded[V]{err: &PanicError{Value: p, Stack: debug.Stack()}}
			} else if !returned {
				r = loaded[V]{err: errGoexit}
			}
			ch <- r
		}()
		r.vals, r.err = load(lctx, keys)
		returned = true
	}()
	var r loaded[V]
	select {
	case r = <-ch:
	case <-ctx.Done():
		r = loaded[V]{err: c.aborted(ctx)}
	}
	c.st.loadLatency.Observe(time.Since(start))
	end(r.err)
	ttls := choices.take() // an abandoned loader's later choices are refused
	if r.err != nil {
		c.st.loadErrors.Add(1)
		c.st.loadErrorKeys.Add(uint64(len(keys)))
		return nil, nil, r.err
	}
	for _, k := range keys {
		if _, ok := r.vals[k]; ok {
			c.st.loadFound.Add(1)
		} else {
			c.st.loadNotFound.Add(1)
		}
	}
	return r.vals, ttls, nil
}

// errGoexit is what waiters get when a loader ends its goroutine with
// runtime.Goexit (t.FailNow in a test, say) instead of returning.
var errGoexit = errors.New("tiered load: loader called runtime.Goexit")

func pick(keys []string, idx []int) []string {
	out := make([]string, len(idx))
	for n, i := range idx {
		out[n] = keys[i]
	}
	return out
}

// sleepOrWake waits d, or until wake rings, unless ctx ends first; it
// reports whether ctx is still alive. It spaces the polls of a lease
// waiter, which a fill's news (wake) cuts short.
func (c *Cache[V]) sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		c.st.leaseWakeups.Add(1)
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepCtx waits d unless ctx ends first; it reports whether d elapsed.
// This is a poll interval, not synchronization.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
