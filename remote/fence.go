package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The write fence. A write whose round trip failed may still land later:
// its request can sit in the network past the timeout and reach Redis
// after a newer write of the same key, which it would then overwrite. So
// on a single server (standalone or Sentinel) every write of a Store
// carries the Store's write generation and runs in fencedWriteScript,
// which refuses it when the Store's fence key in Redis holds a higher
// generation. After a write fails, the Store raises its fence before it
// sends anything newer: the late write then either landed before the
// raise, and so before every newer write, or finds the fence raised and
// does nothing. Writes of other Stores (other nodes) are not ordered by
// it: two nodes writing one key race as they always do.
//
// Redis Cluster writes run one script per hash slot (writeScript) and are
// not fenced; the README lists that. The fence sees a failure only if the
// client reports it: a client that resends a command whose reply timed
// out (go-redis does, up to MaxRetries, when its ReadTimeout fires before
// the context's deadline) can hide a first attempt that lands later. With
// ContextTimeoutEnabled and a ReadTimeout no shorter than Options.Timeout,
// as tiered asks for, the deadline fires first and is not retried.

// fencedWriteScript is writeScript with a fence: KEYS[1] is the Store's
// fence key and ARGV[1] the write's generation; it returns 0, writing
// nothing, when the fence is higher, and 1 after the writes and the
// publish. KEYS[2..n+1] are the n keys, and ARGV[2] the channel, ARGV[3]
// the message (empty: none), then each key's data (empty: delete) and TTL
// in milliseconds (0: none); any KEYS after the n are refresh locks to
// delete (see refresh.go).
var fencedWriteScript = redis.NewScript(`
local f = redis.call('GET', KEYS[1])
if f and tonumber(f) > tonumber(ARGV[1]) then return 0 end
local n = (#ARGV - 3) / 2
for i = n + 2, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 2, n + 1 do
  local d, ms = ARGV[2*i], ARGV[2*i+1]
  if d == '' then
    redis.call('DEL', KEYS[i])
  elseif ms == '0' then
    redis.call('SET', KEYS[i], d)
  else
    redis.call('SET', KEYS[i], d, 'PX', ms)
  end
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1`)

// raiseScript raises the fence key KEYS[1] to ARGV[1], expiring after
// ARGV[2] milliseconds, and never lowers it: a raise that timed out and
// lands after a later, higher one must not bring the fence back down.
var raiseScript = redis.NewScript(`
local f = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > f then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`)

// fenceTTL is how long a raised fence lives. A request held in the network
// longer than that could still land; none is.
const fenceTTL = time.Hour

// ErrFenced is returned by [Store.Write] when Redis refused a write because
// another write of the same Store failed while this one was on its way:
// nothing was written. Retrying is safe.
var ErrFenced = errors.New("tiercache: write refused by the write fence: an earlier write of this node failed; retry")

// fence is a Store's write fence.
type fence struct {
	key string        // the fence key: "Namespace:\x00fence:" and a random id
	gen atomic.Uint64 // the generation writes carry now

	mu      sync.Mutex // guards pending, and serializes raises
	pending bool       // a write failed; raise before the next write
}

func (f *fence) init(prefix string) {
	id := make([]byte, 12)
	_, _ = rand.Read(id) // never fails (crypto/rand, Go 1.24+)
	f.key = prefix + "\x00fence:" + hex.EncodeToString(id)
	f.gen.Store(1)
}

// raiseIfPending raises the fence in Redis if a write failed since the last
// raise, and only then lets the caller write. It is one round trip, after
// a failure only, on the caller's round trip context: the caller has been
// admitted by the breaker and records the outcome once, with the write's.
func (s *Store) raiseIfPending(rctx context.Context) error {
	f := &s.fence
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending {
		return nil
	}
	next := f.gen.Load() + 1
	keys := []string{f.key}
	args := []any{next, fenceTTL.Milliseconds()}
	err := raiseScript.EvalSha(rctx, s.rdb, keys, args...).Err()
	if isNoScript(err) { // it did not run; EVAL loads it
		err = raiseScript.Eval(rctx, s.rdb, keys, args...).Err()
	}
	if err != nil {
		return fmt.Errorf("raise the write fence after a failed write: %w", err)
	}
	f.gen.Store(next)
	f.pending = false
	return nil
}

// writeFenced runs the writes and the publish in fencedWriteScript.
func (s *Store) writeFenced(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) ([]redis.Cmder, error) {
	keys := make([]string, 0, 1+len(sets)+len(dels))
	args := make([]any, 0, 3+2*(len(sets)+len(dels)))
	keys = append(keys, s.fence.key)
	args = append(args, s.fence.gen.Load(), channel, msg)
	for _, op := range sets {
		keys = append(keys, s.prefix+op.Key)
		args = append(args, op.Data, millis(op.TTL))
	}
	for _, k := range s.fullKeys(dels) {
		keys = append(keys, k)
		args = append(args, "", 0)
	}
	keys = appendRefreshLocks(keys, keys[1:])
	cmd := fencedWriteScript.EvalSha(ctx, s.rdb, keys, args...)
	if isNoScript(cmd.Err()) { // it did not run; EVAL loads it
		cmd = fencedWriteScript.Eval(ctx, s.rdb, keys, args...)
	}
	n, err := cmd.Int64()
	if err == nil && n == 0 {
		err = ErrFenced
	}
	var re redis.Error
	if err != nil && !errors.Is(err, ErrFenced) && !errors.As(err, &re) {
		// No reply: the write may still land. Fence it off before the next.
		s.fence.mu.Lock()
		s.fence.pending = true
		s.fence.mu.Unlock()
	}
	return []redis.Cmder{cmd}, err
}
