package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The write fence. A write whose round trip failed may still land later:
// its request can sit in the network past the timeout and reach Redis
// after a newer write of the same key, which it would then overwrite. So on
// a single server (standalone or Sentinel) every write runs in
// fencedWriteScript, which checks a fence key in Redis first.
//
// The fence key holds a random token. A write carries the token it was
// sent with and runs only if the key holds exactly that token. After a
// write fails (or is refused), the fence is raised: a fresh token is
// stored, and only once Redis has acknowledged it are newer writes sent,
// carrying the new token. A write that was held in the network then finds
// another token and does nothing, however late it lands. Tokens are
// compared for equality, never ordered, so nothing that lands late can make
// an old token current again: a raise whose reply was lost carries a token
// no write ever used, and at worst makes the next write raise once more.
//
// The fence fails safe. Redis may evict the fence key under maxmemory (every
// policy but noeviction can take it), or its TTL may run out, or someone may
// delete it: a write that finds no fence is refused like one that finds
// another token, and the Store raises and sends it again. So a late write
// never finds "no fence" and runs; its only way to run is to find its own
// token, which the Store replaced before it sent anything newer.
//
// One Fence orders the writes of every Store that shares it: tiered gives
// the caches of one namespace on one bus the same Fence, so a write that
// timed out in one of them cannot overwrite a newer write of another.
// Writes of other processes are not ordered by it: two nodes writing one
// key race as they always do.
//
// Redis Cluster writes run one script per hash slot (writeScript) and are
// not fenced; the README lists that. The fence sees a failure only if the
// client reports it: a client that resends a command whose reply timed out
// (go-redis does, up to MaxRetries, when its ReadTimeout fires before the
// context's deadline) can hide a first attempt that lands later, a raise
// included. With ContextTimeoutEnabled and a ReadTimeout no shorter than
// Options.Timeout, as tiered asks for, the deadline fires first and is not
// retried.

// fencedWriteScript is writeScript behind the fence: KEYS[1] is the fence
// key and ARGV[1] the write's token. It returns -1 when the fence key is
// missing and 0 when it holds another token, writing nothing in either
// case, and after the writes and the publish 1 plus the subscribers that
// received the message (PUBLISH's count). Like writeScript, it
// refuses with NOPERM, writing nothing, a user who may not publish the
// message (Redis 7 can tell). KEYS[2..n+1] are the n
// keys, and ARGV[2] the channel, ARGV[3] the message (empty: none), then
// each key's data (empty: delete) and TTL in milliseconds (0: none); any
// KEYS after the n are refresh locks to delete (see refresh.go).
var fencedWriteScript = redis.NewScript(`
local f = redis.call('GET', KEYS[1])
if not f then return -1 end
if f ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[2], ARGV[3]) then
  return redis.error_reply('NOPERM tiercache: this user may not publish to the invalidation channel; nothing was written')
end
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
if ARGV[3] == '' then return 1 end
return 1 + redis.call('PUBLISH', ARGV[2], ARGV[3])`)

// raiseScript stores a fence token: KEYS[1] the fence key, ARGV[1] the
// token, ARGV[2] its lifetime in ms. It is a script flagged allow-oom,
// which a full Redis (maxmemory with noeviction) still runs: the writes a
// raise comes before may be deletes, which such a Redis accepts, and a
// plain SET of the token would be refused there.
var raiseScript = redis.NewScript("#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])")

// raise stores token in the fence key, through raiseScript where the server
// runs scripts with flags (Redis 7), and with a plain SET elsewhere.
func (s *Store) raise(ctx context.Context, key string, token []byte) error {
	if !s.plainRaise.Load() {
		err := raiseScript.Run(ctx, s.rdb, []string{key}, token, fenceTTL.Milliseconds()).Err()
		if err == nil || !strings.Contains(err.Error(), "Error compiling script") {
			return err
		}
		s.plainRaise.Store(true) // Redis before 7.0, miniredis
	}
	return s.rdb.Set(ctx, key, token, fenceTTL).Err()
}

// fenceTTL is how long a raised fence lives in Redis, so that the fences of
// processes long gone do not stay forever. A Store raises its fence again
// once half of it has passed; a fence that ran out anyway is a lost fence.
const fenceTTL = time.Hour

// fenceAttempts bounds how often one write is refused by the fence and sent
// again after a new raise before Write gives up with ErrFenced.
const fenceAttempts = 3

// ErrFenced is returned by [Store.Write] when Redis refused a write
// [fenceAttempts] times in a row because the fence it carried was no longer
// current (another write of the fence failed meanwhile, or Redis evicted
// the fence key each time): nothing was written. Retrying is safe.
var ErrFenced = errors.New("tiercache: write refused by the write fence: the fence changed while the write was on its way; retry")

// Fence is the write fence of the [Store]s that share it through
// [Options.Fence]: on a single server (standalone or Sentinel) a write of
// one of them that failed can no longer land after a newer write of any of
// them. Its zero value is ready to use. It is safe for concurrent use by
// multiple goroutines. Share one Fence only between Stores of one namespace
// on one Redis deployment.
type Fence struct {
	cur atomic.Pointer[fenceToken] // the token writes carry now; nil: raise before the next write

	mu  sync.Mutex // serializes raises; guards key
	key string     // "Namespace:\x00fence:" and a random id, fixed by the first Store that writes
}

// fenceToken is one raised token and when it was raised.
type fenceToken struct {
	token  []byte
	raised time.Time // monotonic
}

// fenceKey returns the fence's key, naming it under prefix on first use.
func (f *Fence) fenceKey(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key == "" {
		id := make([]byte, 12)
		_, _ = rand.Read(id) // never fails (crypto/rand, Go 1.24+)
		f.key = prefix + "\x00fence:" + hex.EncodeToString(id)
	}
	return f.key
}

// fenceToken returns the token to send a write with, raising a new one first
// when there is none, when the last was spoiled, or when half of fenceTTL
// has passed since it was raised. The raise is one round trip on the
// caller's round-trip context; concurrent writers wait for it.
func (s *Store) fenceToken(rctx context.Context) (*fenceToken, error) {
	f := s.fence
	if t := f.cur.Load(); t != nil && time.Since(t.raised) < fenceTTL/2 {
		return t, nil
	}
	key := f.fenceKey(s.prefix)
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.cur.Load(); t != nil && time.Since(t.raised) < fenceTTL/2 {
		return t, nil // raised while we waited
	}
	t := &fenceToken{token: make([]byte, tokenLen)}
	_, _ = rand.Read(t.token) // never fails (crypto/rand, Go 1.24+)
	if err := s.do(rctx, func() error { return s.raise(rctx, key, t.token) }); err != nil {
		// It may still land; its token was never sent with a write, so it
		// makes the next write raise once more, nothing worse. (The
		// write's end counts this round trip, the only one it made.)
		return nil, fmt.Errorf("raise the write fence: %w", err)
	}
	s.stats.roundTrips.Add(1) // the write that follows is counted by its end
	s.stats.fenceRaises.Add(1)
	t.raised = time.Now()
	f.cur.Store(t)
	return t, nil
}

// spoil marks t as no longer safe to send writes with: a write that carried
// it failed (it may land later) or was refused. The next write raises a new
// token, unless another writer already has.
func (f *Fence) spoil(t *fenceToken) { f.cur.CompareAndSwap(t, nil) }

// writeFenced runs the writes and the publish in fencedWriteScript, raising
// the fence first when needed, and again when Redis refuses the write
// because the fence changed or is gone (evicted, expired, deleted): a
// refused write wrote nothing, so sending it again with a new token is safe.
func (s *Store) writeFenced(ctx context.Context, sets []SetOp, dels []string, channel string, msg []byte) ([]redis.Cmder, int, error) {
	keys := make([]string, 0, 1+len(sets)+len(dels))
	args := make([]any, 0, 3+2*(len(sets)+len(dels)))
	keys = append(keys, s.fence.fenceKey(s.prefix))
	args = append(args, nil, channel, msg) // args[0]: the token, per attempt
	for _, op := range sets {
		keys = append(keys, s.prefix+op.Key)
		args = append(args, op.Data, millis(op.TTL))
	}
	for _, k := range s.fullKeys(dels) {
		keys = append(keys, k)
		args = append(args, "", 0)
	}
	keys = appendRefreshLocks(keys, keys[1:])
	for attempt := 1; ; attempt++ {
		t, err := s.fenceToken(ctx)
		if err != nil {
			return nil, 0, err
		}
		args[0] = t.token
		if attempt > 1 { // Write's end counts the first
			s.stats.roundTrips.Add(1)
		}
		cmd, wait, err := s.runFenced(ctx, fencedWriteScript.EvalSha, keys, args)
		if err == nil && isNoScript(cmd.Err()) { // it did not run; EVAL loads it
			s.stats.roundTrips.Add(1)
			cmd, wait, err = s.runFenced(ctx, fencedWriteScript.Eval, keys, args)
		}
		if err != nil { // abandoned: the write may still land
			s.fence.spoil(t)
			return nil, 0, err
		}
		n, err := cmd.Int64()
		var re redis.Error
		switch {
		case err == nil && n >= 1:
			return []redis.Cmder{cmd}, int(n - 1), s.checkReplicated(wait)
		case err == nil:
			// Refused, nothing written: the fence is gone (n == -1) or
			// holds another token (a raise after a failed write of a
			// Store that shares it, or a raise that landed late).
			s.fence.spoil(t)
			s.stats.fenceRefusals.Add(1)
			if attempt < fenceAttempts {
				continue
			}
			return []redis.Cmder{cmd}, 0, ErrFenced
		case !errors.As(err, &re):
			// No reply: the write may still land. Fence it off before the
			// next one.
			s.fence.spoil(t)
		}
		return []redis.Cmder{cmd}, 0, err
	}
}

// runFenced sends the fenced write with run (the script's EvalSha or Eval)
// and, with Options.WaitReplicas, a WAIT in the same round trip. err is
// set only when the call was abandoned (see do): cmd and wait are then nil.
func (s *Store) runFenced(ctx context.Context, run func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd,
	keys []string, args []any) (cmd *redis.Cmd, wait *redis.IntCmd, err error) {
	var c *redis.Cmd
	var w *redis.IntCmd
	err = s.do(ctx, func() error {
		if s.opts.WaitReplicas <= 0 {
			c = run(ctx, s.rdb, keys, args...)
			return c.Err()
		}
		pipe := s.rdb.Pipeline()
		c = run(ctx, pipe, keys, args...)
		w = redis.NewIntCmd(ctx, "wait", s.opts.WaitReplicas, max(s.opts.Timeout/2, time.Millisecond).Milliseconds())
		_ = pipe.Process(ctx, w)
		_, _ = pipe.Exec(ctx) // each command's error is read by the caller
		return c.Err()
	})
	if isAbandoned(err) {
		return nil, nil, err
	}
	return c, w, nil
}

// ErrNotReplicated is returned, wrapped, by [Store.Write] with
// [Options.WaitReplicas] when the write was applied and announced on the
// master, but fewer replicas than asked acknowledged it within half of
// [Options.Timeout]: a failover now could lose it. Writing again is safe.
var ErrNotReplicated = errors.New("tiercache: write not acknowledged by enough replicas")

// checkReplicated reads the WAIT sent with a write that succeeded.
func (s *Store) checkReplicated(wait *redis.IntCmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Result()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %v", ErrNotReplicated, err)
	}
	if n < int64(s.opts.WaitReplicas) {
		s.stats.notReplicated.Add(1)
		return fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, s.opts.WaitReplicas, max(s.opts.Timeout/2, time.Millisecond))
	}
	return nil
}
