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

// Write stores sets, deletes dels and publishes msg on channel, so a write
// is never left unannounced. A nil msg publishes nothing.
//
// On a *redis.Client (standalone or Sentinel) the commands run in one
// MULTI/EXEC transaction, one round trip, so no client sees a key written
// whose message was not published with it. On Redis Cluster, and on any
// other client, the writes go in one plain pipeline, which Cluster cannot
// make atomic across slots, and the message follows in a second round trip
// once every write has answered, through the node that serves the
// channel's subscribers (package internal/publish). Publishing in the same
// pipeline would let a subscriber hear of the write before a slower node
// executed it, and then refill its L1 with the old value. A failed node
// leaves its keys unwritten while the others are written; the message is
// still published and the returned error says what failed, so the caller
// must treat every key as possibly changed.
//
// Setting or deleting a key also removes any lease on it, so a pending
// [Store.Fill] of that key is refused. Write returns a *[KeyError] or
// *[ValueSizeError] for bad input before sending anything, and otherwise the
// first command error, wrapped.
func (s *Store) Write(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) error {
	if err := s.checkWrite(sets, dels, channel, msg); err != nil {
		return err
	}
	if len(sets) == 0 && len(dels) == 0 && msg == nil {
		return nil
	}
	var pipe redis.Pipeliner
	if s.topo == topoSingle {
		pipe = s.rdb.TxPipeline()
	} else {
		pipe = s.rdb.Pipeline()
	}
	rctx, cancel, start := s.begin(ctx)
	written := len(msg)
	for _, op := range sets {
		pipe.Set(rctx, s.prefix+op.Key, op.Data, time.Duration(millis(op.TTL))*time.Millisecond)
		written += len(op.Data)
	}
	switch {
	case len(dels) == 0:
	case s.topo == topoSingle:
		pipe.Del(rctx, s.fullKeys(dels)...)
	default:
		for _, k := range s.fullKeys(dels) {
			pipe.Del(rctx, k)
		}
	}
	if msg != nil && s.topo == topoSingle {
		pipe.Publish(rctx, channel, msg)
	}
	var cmds []redis.Cmder
	var err error
	if pipe.Len() > 0 {
		cmds, err = pipe.Exec(rctx)
	}
	if msg != nil && s.topo != topoSingle {
		// After the writes, whatever their outcome: a write that failed on
		// one node may have landed on another.
		s.stats.roundTrips.Add(1)
		if perr := publish.Publish(rctx, s.rdb, channel, msg); perr != nil && err == nil {
			err = perr
		}
	}
	cancel()
	s.end(opWrite, start, err)
	if err == nil {
		s.stats.bytesWritten.Add(uint64(written))
		return nil
	}
	failed := 0
	for _, c := range cmds {
		if c.Err() != nil {
			failed++
		}
	}
	return fmt.Errorf("remote write (%d sets, %d deletes, %d of %d commands failed): %w",
		len(sets), len(dels), failed, len(cmds), err)
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
