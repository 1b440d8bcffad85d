package local

import "time"

const (
	// tick is the resolution of the coarse clock that Fill stamps expiry
	// with and Get checks it against: an entry lives its ttl give or take
	// one tick.
	tick = 10 * time.Millisecond

	// delQueue is the capacity of the janitor's Del queue. One bus message
	// can carry a whole batch of keys, and the janitor's Del can block for
	// tens of milliseconds while ristretto's set buffer is full (see
	// the package doc); 4096 Dels (64 KiB) absorb such bursts. Past that, Dels
	// are skipped: they only free memory.
	delQueue = 4096
)

// del asks the janitor to delete key hash from ristretto. A del with done
// set deletes nothing: the janitor closes done, so that a test can wait for
// the Dels queued before it.
type del struct {
	hash uint64
	done chan struct{}
}

// startBackground starts the goroutines the cache owns: the coarse clock
// (unless runClock is false, for tests that set now by hand) and the
// janitor. Close stops both and waits for them.
func (c *Cache[V]) startBackground(runClock bool) {
	c.now.Store(int64(time.Since(c.base)))
	if runClock {
		c.wg.Add(1)
		go c.runClock()
	}
	c.wg.Add(1)
	go c.runJanitor()
}

// runClock advances now every tick, so that Get need not read the clock.
// It has its own goroutine because the janitor can block in ristretto's Del.
func (c *Cache[V]) runClock() {
	defer c.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.now.Store(int64(time.Since(c.base)))
		case <-c.stop:
			return
		}
	}
}

// runJanitor runs ristretto's Del and Clear off the callers' goroutines.
// It is the only caller of both, and Close waits for it before it closes
// ristretto, so neither needs the gate.
func (c *Cache[V]) runJanitor() {
	defer c.wg.Done()
	for {
		select {
		case <-c.clearReq:
			c.clearing.Store(true)
			c.rc.Clear()
			c.clearing.Store(false)
		case d := <-c.dels:
			if d.done != nil {
				close(d.done)
				continue
			}
			// A fill made after the invalidation or expiry may already
			// have replaced the entry; keep it. (It can still land between
			// this Get and the Del, which costs a miss, never a stale hit.)
			if e, ok := c.rc.Get(d.hash); ok && c.servable(e, d.hash) {
				continue
			}
			c.rc.Del(d.hash)
		case <-c.stop:
			return
		}
	}
}

// queueDel hands the Del of key hash h to the janitor, or counts it as
// skipped if the queue is full. It never blocks.
func (c *Cache[V]) queueDel(h uint64) {
	select {
	case c.dels <- del{hash: h}:
	default:
		c.counters.deletesSkipped.Add(1)
	}
}
