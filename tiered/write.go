package tiered

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
)

// Set writes v to L2 for [Options.TTL] and announces the change to every
// node, in one Redis round trip, then drops key from this node's L1 (also
// when the round trip failed). It does not put v in L1: the next read fills
// it from L2, so two racing Sets cannot leave the older value here. Set
// overwrites any lease on the key, so a load that began before it cannot
// fill L2 with an older value afterwards.
//
// Commit to the source of truth first, then call Set. Once Set returns nil,
// no node serves the old value from L1 later than the staleness bound.
//
// The write runs to completion (bounded by [Options.RedisTimeout]) even if
// ctx is cancelled once it is sent, because a write whose outcome is unknown
// would leave other nodes guessing. Set returns a *[KeyError] or
// *[ValueSizeError] for bad input before writing anything, [ErrClosed] after
// Close, [ErrUnavailable] (wrapped) at once while the circuit breaker is
// open, [ErrFenced] (wrapped) when an earlier write of this cache failed
// while this one was on its way (nothing written; retry), and a wrapped
// Redis error otherwise. [WithTTL] writes v for a TTL of the caller's
// choosing; an option that is not valid returns an *[OptionError].
func (c *Cache[V]) Set(ctx context.Context, key string, v V, opts ...WriteOption) error {
	return c.setMany(ctx, "set", map[string]V{key: v}, opts)
}

// SetMany is Set for many keys: one round trip and one invalidation message
// for all of them. Every value is encoded before anything is written, so a
// bad key or an oversized value writes nothing. On a standalone or Sentinel
// Redis the writes and the message are one fenced script, atomic; on
// Cluster they share one pipeline of per-slot scripts, not atomic across
// slots. Options apply to every value. Other nodes learn of more than
// 65,536 keys as a clear of the namespace (see [invalidation.Bus.Message]),
// so a bulk load that large empties their L1 of it.
func (c *Cache[V]) SetMany(ctx context.Context, values map[string]V, opts ...WriteOption) error {
	return c.setMany(ctx, "set many", values, opts)
}

func (c *Cache[V]) setMany(ctx context.Context, op string, values map[string]V, opts []WriteOption) error {
	var w writeConfig
	for _, o := range opts {
		o(&w)
	}
	if err := w.check(); err != nil {
		return opError(op, nil, err)
	}
	if err := c.writable(ctx); err != nil {
		return err
	}
	if len(values) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(values))
	sets := make([]remote.SetOp, 0, len(keys))
	for _, k := range keys {
		if err := c.l2.CheckKey(k); err != nil {
			return opError(op, nil, err)
		}
		ttl := c.jitter(c.opts.TTL)
		if w.set {
			ttl = w.ttl
		}
		data, err := c.l2.Encode(k, values[k], ttl)
		if err != nil {
			return opError(op, []string{k}, err)
		}
		sets = append(sets, remote.SetOp{Key: k, Data: data, TTL: ttl})
	}
	return c.write(ctx, op, keys, sets, nil, w.confirm || c.opts.ConfirmWrites)
}

// Delete removes keys from L2 and every node's L1, in one round trip with
// one invalidation message, then drops them from this node's L1 (also when
// the round trip failed). Deleting kills any lease on the keys. Missing keys
// are not an error. More than 65,536 keys empty other nodes' L1 of the
// namespace, as for [Cache.SetMany]. Errors are as for [Cache.Set].
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if err := c.writable(ctx); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := c.l2.CheckKey(k); err != nil {
			return opError("delete", nil, err)
		}
	}
	return c.write(ctx, "delete", keys, nil, keys, c.opts.ConfirmWrites)
}

// Clear drops the whole namespace from the L1 of every node, this one
// included. It does not delete L2 keys: finding them needs a SCAN of every
// Redis node, which no hot service should run; remove L2 data with Delete or
// let TTL expire it. Nodes refill L1 from L2 afterwards.
func (c *Cache[V]) Clear(ctx context.Context) error {
	if err := c.writable(ctx); err != nil {
		return err
	}
	msg, acks := c.message(invalidation.OpClear, nil, c.opts.ConfirmWrites)
	tctx, end := c.trace(context.WithoutCancel(ctx), OpL2, "write", 0)
	receivers, err := c.l2.WriteCounted(tctx, nil, nil, c.bus.Channel(), msg)
	end(err)
	replied := time.Now()
	if err != nil {
		c.bus.WriteFailed(msg)
	}
	c.l1.InvalidateAll()
	c.flight.forgetAll()
	c.reg.Local(invalidation.OpClear, nil)
	if err == nil && acks != nil {
		err = c.confirm(ctx, acks, receivers, replied)
	}
	return opError("clear", nil, err)
}

// message encodes the invalidation of a write, confirmed or not; a
// confirmed one comes with the Acks to wait on, which the caller closes.
func (c *Cache[V]) message(op invalidation.Op, keys []string, confirm bool) ([]byte, *invalidation.Acks) {
	if !confirm {
		return c.bus.Message(c.opts.Namespace, op, keys), nil
	}
	return c.bus.ConfirmedMessage(c.opts.Namespace, op, keys)
}

// confirm waits, after a confirmed write whose reply came at replied and
// whose invalidation receivers buses received, until every one of them
// acknowledged it or MaxStaleness has passed since the reply: a bus that
// has not applied the invalidation by then has heard no heartbeat sent
// after it, and serves no L1. It closes acks. It returns an error only if
// ctx ends first: the write was made, and announced, but is not confirmed.
func (c *Cache[V]) confirm(ctx context.Context, acks *invalidation.Acks, receivers int, replied time.Time) error {
	defer acks.Close()
	// PUBLISH counted the buses subscribed when it ran; one whose
	// subscription broke just before (a restart) is not among them, yet
	// may serve L1 until it notices. The heartbeats' recent counts cover it.
	want := max(receivers, c.bus.RecentSubscribers())
	got, complete := acks.Wait(ctx, want, replied.Add(c.bus.MaxStaleness()))
	switch {
	case complete:
		c.st.confirmed.Add(1)
	case ctx.Err() != nil:
		return fmt.Errorf("written, not yet confirmed (%d of %d nodes acknowledged): %w", got, want, ctx.Err())
	default:
		c.st.confirmed.Add(1)
		c.st.confirmTimeouts.Add(1)
	}
	return nil
}

// write sends sets and dels with their invalidation message in one round
// trip, then invalidates this node's L1, and that of every other cache of
// the namespace on this node's bus, whatever the outcome: after a failed or
// timed-out round trip the write may still have happened, or happen later.
// In that last case the message, which travels with the write, comes back
// once the write lands and drops the keys here again (see
// [invalidation.Bus.WriteFailed]).
func (c *Cache[V]) write(ctx context.Context, op string, keys []string, sets []remote.SetOp, dels []string, confirm bool) error {
	msg, acks := c.message(invalidation.OpDelete, keys, confirm)
	tctx, end := c.trace(context.WithoutCancel(ctx), OpL2, "write", len(keys))
	receivers, err := c.l2.WriteCounted(tctx, sets, dels, c.bus.Channel(), msg)
	end(err)
	replied := time.Now()
	if err != nil {
		// Before our own invalidation below: an echo heard in between was
		// of a write that landed before it, which that invalidation covers.
		c.bus.WriteFailed(msg)
	}
	c.invalidateLocal(keys)
	c.reg.Local(invalidation.OpDelete, keys)
	if err != nil {
		if acks != nil {
			acks.Close()
		}
		c.st.writeErrors.Add(1)
		c.fails.failure(ctx, c.opts.Logger, c.opts.Namespace, op, err)
		return opError(op, keys, err)
	}
	c.st.writes.Add(1)
	c.fails.success(ctx, c.opts.Logger, c.opts.Namespace)
	if acks != nil {
		return opError(op, keys, c.confirm(ctx, acks, receivers, replied))
	}
	return nil
}

// writable refuses writes after Close or with a context already done (a
// write that never starts must not consume a sequence number).
func (c *Cache[V]) writable(ctx context.Context) error {
	if c.isClosed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}
