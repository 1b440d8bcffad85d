package tiered

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tiercache/tiercache/internal/saturate"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Refresh-ahead and stale-while-revalidate.
//
// With Options.RefreshAhead, each L1 fill of a value that expires in L2
// gets a refresh time, drawn at random from the last RefreshAhead to the
// last RefreshAhead/2 of its L2 lifetime (or halfway through what it has
// left, if that is less). The entry also keeps the L2 envelope's expiry,
// which tells its value apart from any later one: every write stamps its
// own. The first hit past the refresh time (on this node, for this entry)
// starts a refresh in the background and is served the current value, as
// is every reader after it:
//
//   - With a loader (GetOrLoad), the refresh asks L2 in one round trip
//     (remote.BeginRefresh) whether it still holds that value. If not (a
//     refresh or a write replaced it), the new value fills L1. If so, one
//     caller across the cluster gets the key's refresh lock, calls the
//     loader, and stores the result only if no write touched the key
//     meanwhile (every write deletes the lock), then fills its own L1
//     under the stamp taken before it began, so an invalidation in between
//     keeps it out of L1.
//   - When another node holds the lock, the refresh reads L2 until the
//     new value lands (bounded by LeaseWait) and fills L1 with it.
//
// Get and GetMany have no loader: they leave a due entry to the next
// GetOrLoad or GetOrLoadMany of the key, rather than spend its claim.
//
// Other nodes learn of a refreshed value the same way, when their own
// entries come due, not by an invalidation: a refresh replaces a value
// with what the source of truth holds, not with a write's news, so their
// copies are no staler than they were, and it spares every node an L1
// miss per refresh. Its cost is one round trip per node per key per TTL.
//
// With Options.StaleWhileRevalidate, GetOrLoad serves an L1 entry up to
// that long past its expiry while one load of the key runs in the
// background, the ordinary load with its flight and lease. Only expiry is
// forgiven: an entry invalidated by a write, or hidden by a clear or by a
// bus that cannot prove its subscription, is never served this way.

// refreshWindow returns how long after an L1 fill a value that L2 keeps
// for l2TTL more, with envelope expiry expiry, comes due for a refresh, or
// -1 for never (refresh off, no expiry, or not in L2). A value that has
// less than RefreshAhead left when filled (a short TTL a loader chose, a
// negative entry) comes due no sooner than halfway through what it has
// left, so that refreshing it never turns into reloading it at every read.
func (c *Cache[V]) refreshWindow(l2TTL time.Duration, expiry uint64) time.Duration {
	ahead := c.opts.RefreshAhead
	if ahead <= 0 || l2TTL <= 0 || expiry == 0 {
		return -1
	}
	before := ahead/2 + time.Duration(rand.Int64N(int64(ahead/2)+1))
	return l2TTL - min(before, l2TTL/2)
}

// refreshes tracks the keys this node is refreshing, so that one key has
// at most one refresh running here, whatever entries of it come due.
type refreshes struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (r *refreshes) start(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, busy := r.keys[key]; busy {
		return false
	}
	if r.keys == nil {
		r.keys = make(map[string]struct{})
	}
	r.keys[key] = struct{}{}
	return true
}

func (r *refreshes) done(key string) {
	r.mu.Lock()
	delete(r.keys, key)
	r.mu.Unlock()
}

// refreshDue is called by a hit that found key's entry due. Unless a
// refresh or revalidation of key runs on this node already, it claims the
// entry's refresh and starts it in the background; the caller never
// waits. The refresh keeps the values of the caller's ctx (a loader may
// read a tenant or a trace from it), not its cancellation.
func (c *Cache[V]) refreshDue(callerCtx context.Context, key string, load BatchLoader[V]) {
	// The key's slot comes before the entry's claim: a claim spent while
	// another refresh of the key runs here would start nothing, and the
	// entry, claimed once and for all, would never be refreshed. Taking
	// the slot first leaves the claim to a hit after that refresh ends.
	// It costs each hit of a due entry the slot's lock until one claims
	// it, which is the first hit unless a refresh of the key runs here.
	if !c.refreshing.start(key) {
		return
	}
	expiry, ok := c.l1.ClaimRefresh(key)
	if !ok {
		c.refreshing.done(key)
		return
	}
	c.runBackground(key, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(callerCtx), c.opts.LoadTimeout)
		stop := context.AfterFunc(c.closing, cancel)
		defer func() { stop(); cancel() }()
		defer func() {
			if p := recover(); p != nil { // a codec panic; loader panics are errors already
				c.st.panics.Add(1)
				c.refreshFailed(ctx, key, &PanicError{Value: p})
			}
		}()
		c.refresh(ctx, key, expiry, load)
	})
}

// inBackground runs fn, a refresh or revalidation of key, on a goroutine
// the cache owns (Close waits for it), unless one is running for key on
// this node already or the cache is closed. It counts it in Refreshes.
func (c *Cache[V]) inBackground(key string, fn func()) {
	if c.refreshing.start(key) {
		c.runBackground(key, fn)
	}
}

// runBackground is inBackground for a caller that has taken key's slot in
// c.refreshing; the slot is freed when fn returns, or at once if the
// cache is closed.
func (c *Cache[V]) runBackground(key string, fn func()) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		c.refreshing.done(key)
		return
	}
	c.loads.Add(1)
	c.mu.RUnlock()
	c.st.refreshes.Add(1)
	go func() {
		defer c.loads.Done()
		defer c.refreshing.done(key)
		fn()
	}()
}

// refresh runs one refresh of key, whose L1 value has the L2 envelope
// expiry expiry; see the comment at the top of the file.
func (c *Cache[V]) refresh(ctx context.Context, key string, expiry uint64, load BatchLoader[V]) {
	st := c.l1.Stamp(key)
	tctx, end := c.trace(ctx, OpL2, "refresh", 1)
	// The lock outlives the load and the round trip that frees it. The sum
	// saturates: either near the largest duration ("no limit") must not
	// wrap it to a negative TTL, which would fail every refresh.
	lockTTL := saturate.Add(c.opts.LoadTimeout, c.opts.RedisTimeout)
	r, err := c.l2.BeginRefresh(tctx, key, expiry, lockTTL)
	end(err)
	if err != nil {
		c.l2Failed(ctx, "refresh", 0, err)
		if !errors.Is(err, remote.ErrUnavailable) { // else nothing was sent
			// The script may have run and taken the lock though its reply
			// was lost (a timeout, or Close cancelling ctx). Left alone, it
			// holds off every node's refresh of the key for LoadTimeout +
			// RedisTimeout.
			c.abandonRefresh(ctx, key, r)
		}
		return
	}
	switch r.State {
	case remote.RefreshUnsupported: // not on this client: the value runs out its TTL
		return
	case remote.RefreshGone:
		// L2 no longer holds the value: it was evicted or flushed, or
		// deleted by a write whose message has not arrived yet, and a
		// load may be on its way. Serving it on until its L1 TTL would
		// serve what L2 lost, so drop it now, as a peer's invalidation
		// would. Nothing brings it back: the epoch bump hides the entry
		// (from GetExpired and GetStale too) and refuses every fill
		// stamped before it, a read of L2 that raced this one among
		// them; a fill stamped after it reads L2 after the value was
		// gone, so it installs what replaced it. The key's flight is
		// kept: a load running is what refills the key.
		c.l1.Invalidate(key)
		return
	case remote.RefreshDone:
		c.st.refreshesElsewhere.Add(1)
		_, _, _ = c.accept(key, r.Item, st)
		return
	case remote.RefreshHeld:
		c.st.refreshesElsewhere.Add(1)
		c.awaitRefreshed(ctx, key, expiry, st)
		return
	}
	vals, ttls, err := c.callLoader(ctx, load, []string{key})
	if err != nil {
		c.refreshFailed(ctx, key, err)
		c.finishRefresh(ctx, key, r, nil, 0)
		return
	}
	v, found := vals[key]
	ttl, chosen := ttls[key]
	if !chosen {
		ttl = c.jitter(c.opts.TTL)
		if !found {
			ttl = c.opts.NegativeTTL
		}
	}
	var data []byte
	switch {
	case chosen && ttl <= 0, !found && c.opts.DisableNegativeCache:
		// Not to be cached: the current value runs out its TTL.
	case found:
		data, err = c.l2.Encode(key, v, ttl)
		if err != nil {
			c.countEncodeError(err)
			data = nil
		}
	default:
		data = c.l2.EncodeNegative(ttl)
	}
	if data == nil {
		c.finishRefresh(ctx, key, r, nil, 0)
		return
	}
	stored, ok := c.finishRefresh(ctx, key, r, data, ttl)
	if !ok {
		return // counted in L2Errors; whether it stored is unknown
	}
	if !stored {
		c.st.refreshesRefused.Add(1) // a write came first; its value stands
		return
	}
	if found {
		c.fill(key, v, len(data), ttl, remote.EnvelopeExpiry(data), st)
	} else {
		c.fillNegative(key, len(data), ttl, remote.EnvelopeExpiry(data), st)
	}
}

// finishRefresh ends a granted refresh, storing data unless it is nil,
// and reports whether it was stored, and ok == false if the round trip
// failed (counted), when that is unknown. The round trip gets its own
// bound, so that a loader that used up the load's time still frees the
// lock.
func (c *Cache[V]) finishRefresh(ctx context.Context, key string, r remote.Refresh, data []byte, ttl time.Duration) (stored, ok bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.RedisTimeout)
	defer cancel()
	ctx, end := c.trace(ctx, OpL2, "refresh", 1)
	stored, err := c.l2.FinishRefresh(ctx, key, r, data, ttl)
	end(err)
	if err != nil {
		c.l2Failed(ctx, "refresh", 0, err)
		return false, false
	}
	return stored, true
}

// abandonRefresh frees the refresh lock that r, from a BeginRefresh that
// failed, may hold. Like finishRefresh it has its own bound and keeps
// only ctx's values: ctx may be what ended the refresh (LoadTimeout,
// Close).
func (c *Cache[V]) abandonRefresh(ctx context.Context, key string, r remote.Refresh) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.RedisTimeout)
	defer cancel()
	ctx, end := c.trace(ctx, OpL2, "refresh", 1)
	err := c.l2.AbandonRefresh(ctx, key, r)
	end(err)
	if err != nil {
		c.l2Failed(ctx, "refresh", 0, err)
	}
}

// awaitRefreshed reads key from L2, while another node refreshes it, until
// it holds another value than the one with envelope expiry expiry, for at
// most LeaseWait, and fills L1 with that value under st.
func (c *Cache[V]) awaitRefreshed(ctx context.Context, key string, expiry uint64, st local.Stamp) {
	deadline := time.Now().Add(c.opts.LeaseWait)
	backoff := time.Millisecond
	for {
		tctx, end := c.trace(ctx, OpL2, "get", 1)
		it, ok, err := c.l2.Get(tctx, key)
		end(err)
		if err != nil && !isDecodeError(err) {
			c.l2Failed(ctx, "refresh", 0, err)
			return
		}
		if !ok {
			c.l1.Invalidate(key) // gone from L2: as for RefreshGone in refresh
			return
		}
		if it.Expiry() != expiry {
			_, _, _ = c.accept(key, it, st)
			return
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 || !sleepCtx(ctx, wait) {
			return
		}
		backoff = min(2*backoff, maxPoll)
	}
}

// refreshFailed counts a refresh whose loader failed and logs it, at most
// once per logEvery. The current value stays until its normal expiry.
func (c *Cache[V]) refreshFailed(ctx context.Context, key string, err error) {
	c.st.refreshFailures.Add(1)
	if n, ok := c.refreshLog.due(); ok {
		c.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "tiercache: refresh-ahead failed; values are served until they expire",
			slog.String("namespace", c.opts.Namespace), slog.String("key", logKey(key)),
			slog.Uint64("failures", n), slog.String("last_error", err.Error()))
	}
}

// revalidate starts, in the background, the ordinary load of key whose
// expired L1 entry a caller was just served (StaleWhileRevalidate). It
// joins or leads the key's flight, so one load runs per node and, through
// the lease, one across the cluster.
func (c *Cache[V]) revalidate(callerCtx context.Context, key string, loader Loader[V]) {
	c.inBackground(key, func() {
		// The caller's values, not its cancellation: the load it waits
		// on is bounded by LoadTimeout and Close.
		ctx := context.WithoutCancel(callerCtx)
		if _, err := c.loadOne(ctx, key, loader); err != nil && err != ErrNotFound && err != ErrClosed {
			c.refreshFailed(ctx, key, err)
		}
	})
}

// logKey shortens a key for a log record.
func logKey(key string) string {
	if len(key) > 64 {
		return key[:64] + "..."
	}
	return key
}
