package remote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/publish"
)

// SetOp is one key to write with [Store.Write]: Data comes from
// [Store.Encode] or [Store.EncodeNegative], and TTL is the Redis expiry
// (0: none), normally the ttl given to Encode.
type SetOp struct {
	Key  string
	Data []byte
	TTL  time.Duration
}

// writeScript writes the keys of one hash slot and then publishes the
// invalidation, in one atomic step on the node that owns the slot. KEYS are
// the n keys; ARGV[1] is the channel and ARGV[2] the message (empty:
// publish nothing); then, for each key, its data (empty: delete the key)
// and its TTL in milliseconds (0: none). Any KEYS after the n are refresh
// locks to delete (see refresh.go), in the same slot. A user who may not
// publish the message is refused with NOPERM before anything is written
// (redis.acl_check_cmd, Redis 7): Redis does not undo a script's writes
// when a later command of it fails, and a write that cannot be announced
// must not happen. Redis Cluster relays a PUBLISH made on any
// node to the subscribers on every node, so a write that executes is
// announced whenever it executes, even if the client never learns of it.
var writeScript = redis.NewScript(`
if ARGV[2] ~= '' and redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[1], ARGV[2]) then
  return redis.error_reply('NOPERM tiercache: this user may not publish to the invalidation channel; nothing was written')
end
local n = (#ARGV - 2) / 2
for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 1, n do
  local k, d, ms = KEYS[i], ARGV[2*i+1], ARGV[2*i+2]
  if d == '' then
    redis.call('DEL', k)
  elseif ms == '0' then
    redis.call('SET', k, d)
  else
    redis.call('SET', k, d, 'PX', ms)
  end
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return #KEYS`)

// publishAttempts bounds how often a failed publish after the writes is
// tried, within the write's RedisTimeout.
const publishAttempts = 3

// Write stores sets, deletes dels and publishes msg on channel, so a write
// is never left unannounced. A nil msg publishes nothing.
//
// On a *redis.Client (standalone or Sentinel) the commands run in one
// script, atomically, one round trip: Redis publishes the message exactly
// when, and only if, it executes the writes, even when the reply is lost
// or the request lands after the client gave up on it. The script is
// fenced (see fence.go): after a write of this Store fails, a late arrival
// of it can no longer overwrite a newer write of this Store; a write
// caught by the fence returns [ErrFenced] and writes nothing.
//
// On Redis Cluster the writes of each hash slot run in one script that
// also publishes the message, and once every node has answered the message
// is published again through the node that serves the channel's
// subscribers (package internal/publish).
// The scripts' copies, which Cluster relays between nodes, make a write
// that executes announce itself, like the transaction above; the last copy
// is the one whose order against the subscribers' heartbeats is known,
// which the staleness proof needs. (Publishing only in the same pipeline
// as the writes would let a subscriber hear of a write before a slower
// node executed it.) Subscribers get one copy per hash slot written plus
// one, and apply each. Writes to several slots are not atomic: a failed node
// leaves its keys unwritten while the others are written; the final
// message is still published and the returned error says what failed, so
// the caller must treat every key as possibly changed.
//
// On any other client (a Ring, a wrapper) the writes go in one pipeline
// and the message follows, through the channel's shard. A Ring's shards
// do not relay messages, so there a write whose publish keeps failing is
// not announced; the error says so, and a write that fails and still
// lands after the caller's resend of its message is never announced.
//
// Write never returns nil for a write it did not announce: after writes
// that succeeded the publish is sent whatever the breaker says (another
// call may have opened it meanwhile). A publish after the writes that
// fails is tried again, up to three times within a timeout of its own. Setting or deleting a key also removes any
// lease on it, so a pending [Store.Fill] of that key is refused, and (on a
// single server or Cluster, where refreshes run) any refresh lock, in the
// same script, so a pending [Store.FinishRefresh] is refused too. Write returns a
// *[KeyError] or *[ValueSizeError] for bad input before sending anything,
// and otherwise the first command error, wrapped.
func (s *Store) Write(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) error {
	_, err := s.WriteCounted(ctx, sets, dels, channel, msg)
	return err
}

// WriteCounted is [Store.Write], and also returns how many subscribers of
// channel received msg when the write succeeded: PUBLISH's count, from the
// server that ran it (on a single server, every subscriber; on Cluster,
// those of the channel's node; on a Ring, those of the channel's shard).
// A confirmed write waits for that many acknowledgements.
func (s *Store) WriteCounted(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) (receivers int, err error) {
	if err := s.checkWrite(sets, dels, channel, msg); err != nil {
		return 0, err
	}
	if len(sets) == 0 && len(dels) == 0 && msg == nil {
		return 0, nil
	}
	if s.topo != topoSingle && len(sets) == 0 && len(dels) == 0 {
		// A message alone (a Clear): one publish, through the breaker like
		// every other call.
		rctx, cancel, start, ok := s.begin(ctx)
		defer cancel()
		if !ok {
			return 0, &OpError{Op: "write", Detail: "(message only)", Err: ErrUnavailable}
		}
		n, err := s.publish(rctx, channel, msg)
		s.end(rctx, opWrite, start, err)
		if err != nil {
			return 0, &OpError{Op: "write", Detail: "(message only)", Err: err}
		}
		s.stats.bytesWritten.Add(uint64(len(msg)))
		return n, nil
	}
	written := len(msg)
	for _, op := range sets {
		written += len(op.Data)
	}
	var cmds []redis.Cmder
	if s.topo == topoCluster {
		// The scripts' pipeline admits itself through the breaker and
		// counts its own round trip.
		cmds, err = s.writeBySlot(ctx, sets, dels, channel, msg)
		if errors.Is(err, ErrUnavailable) {
			return 0, writeError(sets, dels, ErrUnavailable)
		}
	} else {
		rctx, cancel, start, ok := s.begin(ctx)
		if !ok {
			cancel()
			return 0, writeError(sets, dels, ErrUnavailable)
		}
		if s.topo == topoSingle {
			cmds, receivers, err = s.writeFenced(rctx, sets, dels, channel, msg)
		} else {
			cmds, err = s.writePipelined(rctx, sets, dels)
		}
		cancel()
		s.end(rctx, opWrite, start, err)
	}
	if msg != nil && s.topo != topoSingle && (err == nil || !s.brk.isOpen()) {
		// After the writes, whatever their outcome: a write that failed on
		// one node may have landed on another. With a budget of its own:
		// writes that timed out have used up theirs. A write that failed
		// while the breaker is open skips it: Redis is not answering, and
		// the error hands the message to the caller's resend path. A write
		// that succeeded is always announced, whatever other calls did to
		// the breaker meanwhile, or its error says it was not.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
		n, perr := s.publish(pctx, channel, msg)
		pcancel()
		receivers = n
		if perr != nil {
			s.stats.errors.Add(1)
			if err == nil {
				err = perr
			}
		}
	}
	if err == nil {
		s.stats.bytesWritten.Add(uint64(written))
		return receivers, nil
	}
	failed := 0
	for _, c := range cmds {
		if c.Err() != nil {
			failed++
		}
	}
	return 0, writeError(sets, dels, fmt.Errorf("%d of %d commands failed: %w", failed, len(cmds), err))
}

func writeError(sets []SetOp, dels []string, err error) error {
	return &OpError{Op: "write", Detail: fmt.Sprintf("(%d sets, %d deletes)", len(sets), len(dels)), Err: err}
}

// writePipelined runs the writes as single-key commands in one plain
// pipeline, which any client can route.
func (s *Store) writePipelined(ctx context.Context, sets []SetOp, dels []string) ([]redis.Cmder, error) {
	pipe := s.rdb.Pipeline()
	for _, op := range sets {
		pipe.Set(ctx, s.prefix+op.Key, op.Data, time.Duration(millis(op.TTL))*time.Millisecond)
	}
	for _, k := range s.fullKeys(dels) {
		pipe.Del(ctx, k)
	}
	if pipe.Len() == 0 {
		return nil, nil
	}
	var cmds []redis.Cmder // read only when the call was not abandoned
	err := s.do(ctx, func() error {
		var err error
		cmds, err = pipe.Exec(ctx)
		return err
	})
	if isAbandoned(err) {
		return nil, err
	}
	return cmds, err
}

// writeBySlot runs one writeScript per hash slot in one pipeline, which
// go-redis splits by node. Every script carries msg: the node a script
// runs on is known only once it runs (a MOVED redirect sends it elsewhere),
// and each must announce its own keys when it lands, however late.
func (s *Store) writeBySlot(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) ([]redis.Cmder, error) {
	n := len(sets) + len(dels)
	if n == 0 {
		return nil, nil
	}
	keys := make([]string, 0, n)
	for _, op := range sets {
		keys = append(keys, op.Key)
	}
	keys = append(keys, dels...)
	full := s.fullKeys(keys)
	groups := groupBySlot(full)
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		c := scriptCall{keys: make([]string, len(idx)), args: make([]any, 2, 2+2*len(idx))}
		c.args[0], c.args[1] = channel, ""
		if msg != nil {
			c.args[1] = msg
		}
		for j, i := range idx {
			c.keys[j] = full[i]
			if i < len(sets) {
				c.args = append(c.args, sets[i].Data, millis(sets[i].TTL))
			} else {
				c.args = append(c.args, "", 0)
			}
		}
		c.keys = appendRefreshLocks(c.keys, c.keys)
		calls[g] = c
	}
	rcmds, _ := s.evalMany(ctx, opWrite, writeScript, calls)
	cmds := make([]redis.Cmder, len(rcmds))
	var err error
	for i, c := range rcmds {
		cmds[i] = c
		if e := c.Err(); e != nil && err == nil {
			err = e
		}
	}
	return cmds, err
}

// publish sends msg through the channel's own node, trying again after a
// failure while attempts and ctx last, and returns PUBLISH's count.
func (s *Store) publish(ctx context.Context, channel string, msg []byte) (receivers int, err error) {
	backoff := 5 * time.Millisecond
	for attempt := range publishAttempts {
		s.stats.roundTrips.Add(1)
		var n int64 // read only when the call was not abandoned
		if err = s.do(ctx, func() error {
			var err error
			n, err = publish.Count(ctx, s.rdb, channel, msg)
			return err
		}); err == nil {
			return int(n), nil
		}
		if attempt == publishAttempts-1 || !sleepCtx(ctx, backoff) {
			break
		}
		backoff *= 2
	}
	return 0, fmt.Errorf("publish after the writes, %d attempts: %w", publishAttempts, err)
}

// sleepCtx waits d unless ctx ends first; it reports whether d elapsed.
// It spaces retries; it synchronizes nothing.
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

// checkWrite validates the arguments of Write.
func (s *Store) checkWrite(sets []SetOp, dels []string, channel string, msg []byte) error {
	for _, op := range sets {
		if err := s.CheckKey(op.Key); err != nil {
			return err
		}
		if len(op.Data) > s.opts.MaxValueSize {
			return &ValueSizeError{Key: shortKey(op.Key), Size: len(op.Data), Limit: s.opts.MaxValueSize}
		}
		if len(op.Data) == 0 {
			return fmt.Errorf("remote write %q: empty data; use Encode or EncodeNegative", shortKey(op.Key))
		}
		if op.TTL < 0 {
			return fmt.Errorf("remote write %q: negative TTL %v", shortKey(op.Key), op.TTL)
		}
	}
	for _, k := range dels {
		if err := s.CheckKey(k); err != nil {
			return err
		}
	}
	if msg != nil && channel == "" {
		return errors.New("remote write: a message needs a channel")
	}
	return nil
}
