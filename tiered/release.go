package tiered

import (
	"context"
	"slices"
	"sync"
	"time"
)

// release gives up leases we will not fill, in one round trip, so waiters
// on other nodes stop waiting. It runs on its own short context, with ctx's
// values only: the load's context may be why we release (timeout, Close).
// Leases it could not release are kept and released once Redis answers.
func (c *Cache[V]) release(ctx context.Context, keys []string, tokens [][]byte) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.RedisTimeout)
	defer cancel()
	ctx, end := c.trace(ctx, OpL2, "release", len(keys))
	err := c.l2.ReleaseMany(ctx, keys, tokens)
	end(err)
	if err != nil {
		c.l2Failed(ctx, "release", 0, err)
		c.releaseLater(keys, tokens)
	}
}

// unreleased holds the leases whose release failed. A lease command that
// lands just as Redis becomes unreachable loses its reply; the node loads
// without filling L2, but its release fails too, and the marker
// would stay in L2 for LeaseTTL after Redis is back, making every node that
// reads the key wait LeaseWait for it. Releasing it later is safe: the
// release deletes the key only if it still holds our token.
type unreleased struct {
	mu       sync.Mutex
	leases   []heldLease // guards: mu
	retrying bool        // guards: mu; a retryReleases goroutine is running
}

// heldLease is one lease to release: our token on key, which Redis drops
// by itself after until.
type heldLease struct {
	key   string
	token []byte
	until time.Time
}

// maxUnreleased bounds the leases kept; one past it is left to expire. An
// outage strands few: once the breaker is open, only its probes send lease
// commands.
const maxUnreleased = 1024

// keepLocked adds ls to the leases kept, up to maxUnreleased.
func (u *unreleased) keepLocked(ls []heldLease) {
	u.leases = append(u.leases, ls[:min(len(ls), max(maxUnreleased-len(u.leases), 0))]...)
}

// take removes and returns the kept leases that Redis has not expired by
// now. With none left it marks the retry ended, under the same lock, so
// that the next releaseLater starts a new one.
func (u *unreleased) take(now time.Time) []heldLease {
	u.mu.Lock()
	defer u.mu.Unlock()
	ls := slices.DeleteFunc(u.leases, func(l heldLease) bool { return now.After(l.until) })
	u.leases = nil
	if len(ls) == 0 {
		u.retrying = false
	}
	return ls
}

// releaseLater keeps leases whose release failed and, unless one runs or
// the cache is closed, starts the goroutine that retries them, counted in
// c.loads so that Close waits for it.
func (c *Cache[V]) releaseLater(keys []string, tokens [][]byte) {
	until := time.Now().Add(c.opts.LeaseTTL) // the leases were taken earlier
	ls := make([]heldLease, len(keys))
	for i, k := range keys {
		ls[i] = heldLease{key: k, token: tokens[i], until: until}
	}
	u := &c.unreleased
	u.mu.Lock()
	u.keepLocked(ls)
	start := !u.retrying
	u.retrying = true
	u.mu.Unlock()
	if !start {
		return
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed { // retrying stays set: nothing starts after Close
		return
	}
	c.loads.Add(1)
	go c.retryReleases()
}

// retryReleases releases the kept leases once Redis answers, trying every
// BreakerMinOpen until none is left, or Close. The breaker paces what
// reaches Redis: while it is open an attempt sends nothing, and when it
// lets one through, that attempt is its probe. Its errors are counted by
// remote only, so an outage does not count one per attempt in L2Errors.
func (c *Cache[V]) retryReleases() {
	defer c.loads.Done()
	u := &c.unreleased
	for sleepCtx(c.closing, c.opts.BreakerMinOpen) {
		ls := u.take(time.Now())
		if len(ls) == 0 {
			return
		}
		keys, tokens := make([]string, len(ls)), make([][]byte, len(ls))
		for i, l := range ls {
			keys[i], tokens[i] = l.key, l.token
		}
		ctx, cancel := context.WithTimeout(c.closing, c.opts.RedisTimeout)
		err := c.l2.ReleaseMany(ctx, keys, tokens)
		cancel()
		if err != nil {
			u.mu.Lock()
			u.keepLocked(ls)
			u.mu.Unlock()
		}
	}
}
