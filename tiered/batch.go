package tiered

import (
	"context"

	"github.com/tiercache/tiercache/local"
)

// GetMany returns the values of keys found in either tier, keyed by key;
// missing keys (and cached "not found" answers) are absent. Keys L1 lacks
// are read from L2 in one round trip (one per slot group on Cluster).
// Duplicate keys are read once. A bad key returns a *[KeyError] before
// anything is read; a Redis error is returned wrapped, with nothing else.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string) (map[string]V, error) {
	out := make(map[string]V, len(keys))
	missing, err := c.fromL1(ctx, keys, out, nil)
	if err != nil {
		return out, opError("get many", nil, err)
	}
	if len(missing) == 0 {
		return out, nil
	}
	stamps := make([]local.Stamp, len(missing))
	for i, k := range missing {
		stamps[i] = c.l1.Stamp(k)
	}
	tctx, end := c.trace(ctx, OpL2, "get_many", len(missing))
	items, ok, err := c.l2.GetMany(tctx, missing)
	end(err)
	if err != nil {
		c.l2Failed(ctx, "get_many", len(missing), err)
		return nil, opError("get many", missing, err)
	}
	c.fails.success(ctx, c.opts.Logger, c.opts.Namespace)
	for i, k := range missing {
		if !ok[i] {
			c.st.l2Misses.Add(1)
			continue
		}
		c.st.l2Hits.Add(1)
		if v, neg, err := c.accept(k, items[i], stamps[i]); err == nil && !neg {
			out[k] = v
		}
	}
	return out, nil
}

// GetOrLoadMany is [Cache.GetOrLoad] for many keys. Keys that neither tier
// has are loaded by one call of loader with only the keys still missing:
// keys another call (in this process or, through L2 leases, on another
// node) is already loading are waited for instead. loader may be called
// again for keys whose lease holder elsewhere did not finish within
// [Options.LeaseWait].
//
// The result holds the keys that have values. On a loader error it holds
// what was obtained, and the first error is returned with it.
func (c *Cache[V]) GetOrLoadMany(ctx context.Context, keys []string, loader BatchLoader[V]) (map[string]V, error) {
	out := make(map[string]V, len(keys))
	missing, err := c.fromL1(ctx, keys, out, loader)
	if err != nil {
		return out, opError("get or load many", nil, err)
	}
	if len(missing) == 0 {
		return out, nil
	}
	fs, led, ledFs := c.flight.claim(missing, c.joinAge())
	if len(led) > 0 {
		c.lead(ctx, led, ledFs, loader)
	}
	c.st.dedupes.Add(uint64(len(missing) - len(led)))
	var first error
	for i, f := range fs {
		select {
		case <-f.done:
		case <-ctx.Done():
			return out, ctx.Err()
		}
		switch r := f.res; {
		case r.err != nil:
			if first == nil {
				first = r.err
			}
		case !r.neg:
			out[missing[i]] = r.val
		}
	}
	return out, first
}

// fromL1 checks keys, copies L1 hits into out and returns the distinct keys
// L1 could not answer. Cached "not found" answers are neither in out nor
// missing. Hits due for a refresh start one, with load (nil: none).
func (c *Cache[V]) fromL1(ctx context.Context, keys []string, out map[string]V, load BatchLoader[V]) ([]string, error) {
	if c.isClosed.Load() {
		return nil, ErrClosed
	}
	var missing []string
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if err := c.l2.CheckKey(k); err != nil {
			return nil, err
		}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		p, neg, due, ok := c.lookupL1(k)
		if due && load != nil { // GetMany leaves it to a reader with a loader
			c.refreshDue(ctx, k, load)
		}
		switch {
		case !ok:
			missing = append(missing, k)
		case !neg:
			out[k] = *p
		}
	}
	return missing, nil
}
