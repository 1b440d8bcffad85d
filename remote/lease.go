package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The lease scripts touch only KEYS[1], so Redis Cluster routes each to the
// node of its key. A lease marker is a 29-byte envelope: the header, whose
// first three bytes are magic, version and KindLease ("\193\001\003" in Lua),
// then the 16-byte token.
var (
	// leaseScript returns the stored envelope if there is one; otherwise it
	// stores the lease marker ARGV[1] for ARGV[2] milliseconds and returns 1.
	// It serves servers older than Redis 7.0; newer ones take leases with
	// one SET ... NX PX ... GET (see setLease), which does the same without
	// running Lua: about 1 µs of server time instead of 11 µs, paid on every
	// L2 hit of GetOrLoad.
	leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

	// fillScript replaces our lease marker (token ARGV[1]) with ARGV[2],
	// expiring after ARGV[3] milliseconds (0: never), and returns 1; it
	// returns 0 when the key holds anything else. STRLEN first keeps a large
	// value that replaced the lease from being copied into Lua. When KEYS[2],
	// the key's waiters mark (see Await), exists, it deletes it and
	// publishes ARGV[5] on ARGV[4]: the waiters look again at once.
	fillScript = redis.NewScript(`
if redis.call('STRLEN', KEYS[1]) ~= 13 + #ARGV[1] then return 0 end
local v = redis.call('GET', KEYS[1])
if string.sub(v, 1, 3) ~= '\193\001\003' or string.sub(v, 14) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if KEYS[2] and redis.call('DEL', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1`)

	// releaseScript deletes the key if it holds our lease marker (token
	// ARGV[1]) and returns 1, else 0.
	releaseScript = redis.NewScript(`
if redis.call('STRLEN', KEYS[1]) ~= 13 + #ARGV[1] then return 0 end
local v = redis.call('GET', KEYS[1])
if string.sub(v, 1, 3) ~= '\193\001\003' or string.sub(v, 14) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`)
)

// LeaseState is the outcome of [Store.GetOrLease] for one key.
type LeaseState uint8

// Lease states.
const (
	LeaseHit     LeaseState = iota + 1 // the key holds a value or a negative entry, in Lease.Item
	LeaseGranted                       // the key was missing and now holds our lease, Lease.Token
	LeaseHeld                          // another caller holds the lease
)

// String returns "hit", "granted", "held", or "LeaseState(n)".
func (l LeaseState) String() string {
	switch l {
	case LeaseHit:
		return "hit"
	case LeaseGranted:
		return "granted"
	case LeaseHeld:
		return "held"
	}
	return "LeaseState(" + strconv.Itoa(int(l)) + ")"
}

// Lease is the result of [Store.GetOrLease]: Item is set for LeaseHit and
// Token for LeaseGranted.
type Lease struct {
	State LeaseState
	Item  Item
	Token []byte // 16 random bytes that Fill and Release present
}

// GetOrLease reads key and, if it is missing, takes a lease on it, in one
// round trip. A value or negative entry is LeaseHit; another caller's lease
// is LeaseHeld; a missing key gets a new lease marker that Redis expires
// after leaseTTL, and LeaseGranted with its token. The holder then calls
// [Store.Fill] or, if it has nothing to fill, [Store.Release].
//
// An entry whose header expiry has passed by our clock, while Redis still
// keeps it (clock skew between writer and reader), is LeaseHeld: it cannot
// be leased until Redis drops it. Bytes that do not decode, and a key of
// another Redis type, return a zero Lease and a *[DecodeError], counted in
// [Stats]; the caller should load without filling. When the command ran
// but its reply was lost and the client sent it again, the second run
// finds our own marker: that is LeaseGranted too, with our token. A failed
// round trip returns an error and a Lease with no State but the token of
// the marker the command may still have stored (its reply timed out, say):
// the caller releases it with [Store.Release] before loading without
// filling, so that other nodes need not wait for it to expire.
func (s *Store) GetOrLease(ctx context.Context, key string, leaseTTL time.Duration) (Lease, error) {
	if err := s.checkLease(key, leaseTTL); err != nil {
		return Lease{}, err
	}
	marker, token := newLeaseMarker(leaseTTL)
	res, now, err := s.leaseOne(ctx, s.prefix+key, marker, millis(leaseTTL))
	if isWrongType(err) {
		return Lease{}, s.decodeError(key, "not a string (WRONGTYPE)", err)
	}
	if errors.Is(err, ErrUnavailable) { // nothing was sent
		return Lease{}, opError("lease", key, err)
	}
	var re redis.Error
	if err != nil && !errors.As(err, &re) {
		// The command may have run and stored our marker (a reply that
		// timed out): hand back the token, so the caller can release it.
		// A reply error (OOM, NOPERM) says it stored nothing.
		return Lease{Token: token}, opError("lease", key, err)
	}
	if err != nil {
		return Lease{}, opError("lease", key, err)
	}
	return s.leaseResult(key, res, token, now)
}

// leaseOne runs one lease command: SET NX PX GET, or leaseScript on a
// server that refuses that form. Its reply is the stored envelope (a
// string) or int64(1) when our marker was stored, as the script's.
func (s *Store) leaseOne(ctx context.Context, key string, marker []byte, ms int64) (any, time.Time, error) {
	if !s.scriptLease.Load() {
		rctx, cancel, start, ok := s.begin(ctx)
		if !ok {
			return nil, start, ErrUnavailable
		}
		var got any // read only when the call was not abandoned
		err := s.do(rctx, func() error {
			var err error
			got, err = setLease(rctx, s.rdb, key, marker, ms).Result()
			return err
		})
		cancel()
		var res any
		if !isAbandoned(err) {
			res = got
		}
		if !s.refusesSetNXGet(err) {
			now := s.end(rctx, opLease, start, err)
			if err == redis.Nil {
				return int64(1), now, nil
			}
			return res, now, err
		}
		s.end(rctx, opLease, start, nil)
	}
	return s.evalOne(ctx, opLease, leaseScript, key, marker, ms)
}

// setLease queues SET key marker NX PX ms GET: it stores the marker only if
// the key is missing, and replies with what the key held (nil if nothing).
func setLease(ctx context.Context, c doer, key string, marker []byte, ms int64) *redis.Cmd {
	return c.Do(ctx, "SET", key, marker, "NX", "PX", ms, "GET")
}

// doer is what both a client and a pipeline offer for a raw command.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// refusesSetNXGet reports whether err is a server's refusal of SET with NX
// and GET together (Redis before 7.0), and if so switches the store to the
// lease script for good.
func (s *Store) refusesSetNXGet(err error) bool {
	if err == nil || err == redis.Nil || !strings.Contains(err.Error(), "syntax error") {
		return false
	}
	s.scriptLease.Store(true)
	return true
}

// GetOrLeaseMany does what [Store.GetOrLease] does for each key, in one
// round trip: one pipeline, which go-redis splits by node on Redis Cluster.
// The result is aligned with keys. An entry that did not decode or whose
// command failed has the zero Lease; err is then the first such error.
func (s *Store) GetOrLeaseMany(ctx context.Context, keys []string, leaseTTL time.Duration) ([]Lease, error) {
	for _, k := range keys {
		if err := s.checkLease(k, leaseTTL); err != nil {
			return nil, err
		}
	}
	leases := make([]Lease, len(keys))
	if len(keys) == 0 {
		return leases, nil
	}
	calls := make([]scriptCall, len(keys))
	tokens := make([][]byte, len(keys))
	ms := millis(leaseTTL)
	for i, k := range keys {
		var marker []byte
		marker, tokens[i] = newLeaseMarker(leaseTTL)
		calls[i] = scriptCall{key: s.prefix + k, args: []any{marker, ms}}
	}
	cmds, now := s.leaseMany(ctx, calls)
	var firstErr error
	for i, c := range cmds {
		res, err := c.Result()
		if err == redis.Nil { // SET NX GET found nothing and stored our marker
			res, err = int64(1), nil
		}
		switch {
		case isWrongType(err):
			leases[i], err = Lease{}, s.decodeError(keys[i], "not a string (WRONGTYPE)", err)
		case err == nil:
			leases[i], err = s.leaseResult(keys[i], res, tokens[i], now)
		case errors.Is(err, ErrUnavailable): // nothing was sent
		case errors.As(err, new(redis.Error)): // Redis refused it: nothing stored
		default:
			leases[i] = Lease{Token: tokens[i]} // as in GetOrLease
		}
		if err != nil && firstErr == nil {
			firstErr = opError("lease", keys[i], err)
		}
	}
	return leases, firstErr
}

// leaseResult turns the lease script's reply into a Lease.
func (s *Store) leaseResult(key string, res any, token []byte, now time.Time) (Lease, error) {
	switch v := res.(type) {
	case int64:
		s.stats.leasesGranted.Add(1)
		s.stats.bytesWritten.Add(headerLen + tokenLen)
		return Lease{State: LeaseGranted, Token: token}, nil
	case string:
		b := stringBytes(v)
		if isOwnLease(b, token) {
			// Our own marker: the command ran, its reply was lost, and
			// go-redis sent it again, which found what the first run
			// stored. The lease is ours.
			s.stats.leasesGranted.Add(1)
			s.stats.bytesWritten.Add(headerLen + tokenLen)
			return Lease{State: LeaseGranted, Token: token}, nil
		}
		it, r, err := s.read(key, b, now)
		switch r {
		case readEntry:
			return Lease{State: LeaseHit, Item: it}, nil
		case readBad:
			return Lease{}, err
		}
		s.stats.leasesHeld.Add(1)
		return Lease{State: LeaseHeld}, nil
	}
	return Lease{}, fmt.Errorf("unexpected lease script reply %T", res)
}

// Fill stores data (from [Store.Encode] or [Store.EncodeNegative]) under
// key, expiring after ttl (0: never), only if key still holds the lease
// with token. It reports whether it did: false means a write, a delete or
// the lease's expiry came first, and the caller's value may be stale, so it
// must not be installed anywhere (counted in [Stats].FillsRefused).
func (s *Store) Fill(ctx context.Context, key string, token, data []byte, ttl time.Duration) (bool, error) {
	if err := s.checkFill(FillOp{Key: key, Token: token, Data: data, TTL: ttl}); err != nil {
		return false, err
	}
	res, _, err := s.evalOne(ctx, opFill, fillScript, s.prefix+key, token, data, millis(ttl))
	if err != nil {
		return false, opError("fill", key, err)
	}
	return s.fillResult(res, len(data)), nil
}

// FillOp is one fill for [Store.FillMany].
type FillOp struct {
	Key         string
	Token, Data []byte
	TTL         time.Duration
	// Announce, if set, is published on Channel when a node waits on the
	// key's lease (it called [Store.Await]), so that it looks again at
	// once rather than at its next poll.
	Channel  string
	Announce []byte
}

// FillMany does what [Store.Fill] does for each op, in one round trip. The
// result is aligned with ops; an op whose command failed is false, and err
// is the first such error.
func (s *Store) FillMany(ctx context.Context, ops []FillOp) ([]bool, error) {
	for _, op := range ops {
		if err := s.checkFill(op); err != nil {
			return nil, err
		}
	}
	installed := make([]bool, len(ops))
	if len(ops) == 0 {
		return installed, nil
	}
	calls := make([]scriptCall, len(ops))
	for i, op := range ops {
		full := s.prefix + op.Key
		calls[i] = scriptCall{key: full, args: []any{op.Token, op.Data, millis(op.TTL)}}
		if wait, ok := sideKey(full, "wait"); ok && op.Announce != nil {
			calls[i] = scriptCall{keys: []string{full, wait}, args: []any{op.Token, op.Data, millis(op.TTL), op.Channel, op.Announce}}
		}
	}
	cmds, _ := s.evalMany(ctx, opFill, fillScript, calls)
	var firstErr error
	for i, c := range cmds {
		res, err := c.Result()
		if err != nil {
			if firstErr == nil {
				firstErr = opError("fill", ops[i].Key, err)
			}
			continue
		}
		installed[i] = s.fillResult(res, len(ops[i].Data))
	}
	return installed, firstErr
}

// Await marks keys as waited for, for ttl (the longest a lease may be held),
// so that the fill of each (FillMany with Announce) tells the waiters at
// once. One round trip; a key that cannot have a mark is left out.
func (s *Store) Await(ctx context.Context, keys []string, ttl time.Duration) error {
	var marks []string
	for _, k := range s.fullKeys(keys) {
		if m, ok := sideKey(k, "wait"); ok {
			marks = append(marks, m)
		}
	}
	if len(marks) == 0 {
		return nil
	}
	cmds := make([]*redis.StatusCmd, len(marks))
	if _, err := s.pipeline(ctx, opLease, func(rctx context.Context, pipe redis.Pipeliner) {
		for i, m := range marks {
			cmds[i] = pipe.Set(rctx, m, "1", time.Duration(millis(ttl))*time.Millisecond)
		}
	}); err != nil {
		return opError("await", keys[0], err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return opError("await", keys[0], err)
		}
	}
	return nil
}

func (s *Store) fillResult(res any, size int) bool {
	if n, _ := res.(int64); n == 1 {
		s.stats.bytesWritten.Add(uint64(size))
		return true
	}
	s.stats.fillsRefused.Add(1)
	return false
}

// Release deletes key only if it still holds the lease with token, so
// waiters need not wait for the lease to expire. The holder calls it when
// its load failed or was abandoned, usually with a context detached from
// the one that was cancelled (context.WithoutCancel). A lease that is
// already gone is not an error.
func (s *Store) Release(ctx context.Context, key string, token []byte) error {
	if err := s.CheckKey(key); err != nil {
		return err
	}
	if _, _, err := s.evalOne(ctx, opRelease, releaseScript, s.prefix+key, token); err != nil {
		return opError("release", key, err)
	}
	return nil
}

// ReleaseMany does what [Store.Release] does for each key (with the token
// of the same index), in one round trip. It returns the first error.
func (s *Store) ReleaseMany(ctx context.Context, keys []string, tokens [][]byte) error {
	if len(keys) != len(tokens) {
		return fmt.Errorf("remote release: %d keys but %d tokens", len(keys), len(tokens))
	}
	for _, k := range keys {
		if err := s.CheckKey(k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	calls := make([]scriptCall, len(keys))
	for i, k := range keys {
		calls[i] = scriptCall{key: s.prefix + k, args: []any{tokens[i]}}
	}
	// EVAL, not EVALSHA: a release follows a failure, often a timeout, and
	// must run even if its reply never comes back in time, which a
	// NOSCRIPT answer would need to. Releases are rare; the script's bytes
	// cost nothing that matters.
	cmds := make([]*redis.Cmd, len(calls))
	if _, err := s.pipeline(ctx, opRelease, func(rctx context.Context, pipe redis.Pipeliner) {
		for i, c := range calls {
			cmds[i] = releaseScript.Eval(rctx, pipe, c.scriptKeys(), c.args...)
		}
	}); err != nil {
		return opError("release", keys[0], err)
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return opError("release", keys[i], err)
		}
	}
	return nil
}

func (s *Store) checkLease(key string, leaseTTL time.Duration) error {
	if err := s.CheckKey(key); err != nil {
		return err
	}
	if leaseTTL <= 0 {
		return fmt.Errorf("remote lease %q: leaseTTL must be positive, got %v", shortKey(key), leaseTTL)
	}
	return nil
}

func (s *Store) checkFill(op FillOp) error {
	if err := s.CheckKey(op.Key); err != nil {
		return err
	}
	switch {
	case len(op.Data) > s.opts.MaxValueSize:
		return &ValueSizeError{Key: shortKey(op.Key), Size: len(op.Data), Limit: s.opts.MaxValueSize}
	case len(op.Data) == 0:
		return fmt.Errorf("remote fill %q: empty data; use Encode or EncodeNegative", shortKey(op.Key))
	case op.TTL < 0:
		return fmt.Errorf("remote fill %q: negative TTL %v", shortKey(op.Key), op.TTL)
	}
	return nil
}

// isOwnLease reports whether b is a lease marker carrying token.
func isOwnLease(b, token []byte) bool {
	e, reason := parseEnvelope(b)
	return reason == "" && e.kind == KindLease && bytes.Equal(e.payload, token)
}

// newLeaseMarker returns a lease envelope expiring after ttl and its token,
// which aliases the envelope's payload.
func newLeaseMarker(ttl time.Duration) (marker, token []byte) {
	marker = make([]byte, headerLen+tokenLen)
	putHeader(marker, KindLease, codecNone, 0, expiryAt(time.Now(), ttl))
	token = marker[headerLen:]
	_, _ = rand.Read(token) // never fails (crypto/rand, Go 1.24+)
	return marker, token
}

// leaseMany runs the lease command for every call in one pipeline: SET NX
// PX GET, or leaseScript once the server has refused that.
func (s *Store) leaseMany(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, time.Time) {
	if s.scriptLease.Load() {
		return s.evalMany(ctx, opLease, leaseScript, calls)
	}
	cmds := make([]*redis.Cmd, len(calls))
	now, err := s.pipeline(ctx, opLease, func(rctx context.Context, pipe redis.Pipeliner) {
		for i, c := range calls {
			cmds[i] = setLease(rctx, pipe, c.key, c.args[0].([]byte), c.args[1].(int64))
		}
	})
	if err != nil {
		return failedCmds(ctx, len(calls), err), now
	}
	// Only the commands a server refused go again, through the script: on
	// a cluster in mid-upgrade, the others have already taken their leases.
	var retry []scriptCall
	var at []int
	for i, c := range cmds {
		if s.refusesSetNXGet(c.Err()) {
			retry, at = append(retry, calls[i]), append(at, i)
		}
	}
	if len(retry) > 0 {
		var again []*redis.Cmd
		again, now = s.evalMany(ctx, opLease, leaseScript, retry)
		for n, i := range at {
			cmds[i] = again[n]
		}
	}
	return cmds, now
}

// scriptCall is one script invocation for evalMany: key, or keys when
// the script takes several (all of one hash slot, for Cluster).
type scriptCall struct {
	key  string
	keys []string
	args []any
}

// scriptKeys returns the KEYS of c.
func (c scriptCall) scriptKeys() []string {
	if c.keys != nil {
		return c.keys
	}
	return []string{c.key}
}

// evalOne runs script on key with EVALSHA, and with EVAL when the server
// has lost the script (NOSCRIPT, after a restart or SCRIPT FLUSH); EVAL
// loads it again. It returns the reply and the time the reply arrived.
func (s *Store) evalOne(ctx context.Context, o op, script *redis.Script, key string, args ...any) (any, time.Time, error) {
	return s.evalKeys(ctx, o, script, []string{key}, args...)
}

// evalKeys is evalOne for a script of several keys (in one hash slot).
func (s *Store) evalKeys(ctx context.Context, o op, script *redis.Script, keys []string, args ...any) (any, time.Time, error) {
	rctx, cancel, start, ok := s.begin(ctx)
	if !ok {
		return nil, start, ErrUnavailable
	}
	var got any // read only when the call was not abandoned
	err := s.do(rctx, func() error {
		var err error
		got, err = script.EvalSha(rctx, s.rdb, keys, args...).Result()
		return err
	})
	cancel()
	now := s.end(rctx, o, start, err)
	if isAbandoned(err) {
		return nil, now, err
	}
	if !isNoScript(err) {
		return got, now, err
	}
	rctx, cancel, start, ok = s.begin(ctx)
	if !ok {
		return nil, start, ErrUnavailable
	}
	var again any // read only when the call was not abandoned
	err = s.do(rctx, func() error {
		var err error
		again, err = script.Eval(rctx, s.rdb, keys, args...).Result()
		return err
	})
	cancel()
	now = s.end(rctx, o, start, err)
	if isAbandoned(err) {
		return nil, now, err
	}
	return again, now, err
}

// evalMany runs script once per call in one pipeline of EVALSHA, then, only
// if some got NOSCRIPT, runs those again with EVAL in a second pipeline.
// NOSCRIPT means the script did not run, so the retry is safe. The caller
// reads each command's error; the pipeline's own error is the first of them.
func (s *Store) evalMany(ctx context.Context, o op, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, time.Time) {
	cmds := make([]*redis.Cmd, len(calls))
	now, err := s.pipeline(ctx, o, func(rctx context.Context, pipe redis.Pipeliner) {
		for i, c := range calls {
			cmds[i] = script.EvalSha(rctx, pipe, c.scriptKeys(), c.args...)
		}
	})
	if err != nil {
		return failedCmds(ctx, len(calls), err), now
	}
	var retry []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return cmds, now
	}
	again := make([]*redis.Cmd, len(retry))
	now, err = s.pipeline(ctx, o, func(rctx context.Context, pipe redis.Pipeliner) {
		for n, i := range retry {
			again[n] = script.Eval(rctx, pipe, calls[i].scriptKeys(), calls[i].args...)
		}
	})
	if err != nil {
		again = failedCmds(ctx, len(retry), err)
	}
	for n, i := range retry {
		cmds[i] = again[n]
	}
	return cmds, now
}

// pipeline runs the commands that add queues in one round trip and returns
// the time the replies arrived. When the call was abandoned (see do), it
// returns an error: the commands add queued are still being written by the
// client and must not be read; the caller treats every one as failed with
// that error (failedCmds).
func (s *Store) pipeline(ctx context.Context, o op, add func(context.Context, redis.Pipeliner)) (time.Time, error) {
	pipe := s.rdb.Pipeline()
	rctx, cancel, start, ok := s.begin(ctx)
	add(rctx, pipe)
	if !ok { // rctx was cancelled: nothing is sent
		cmds, _ := pipe.Exec(rctx)
		cancel()
		for _, c := range cmds {
			c.SetErr(ErrUnavailable)
		}
		return start, nil
	}
	err := s.do(rctx, func() error {
		cmds, _ := pipe.Exec(rctx)
		// Exec returns the first command's error, which may be a NOSCRIPT
		// that evalMany handles; a failed round trip is any other error.
		for _, c := range cmds {
			if e := c.Err(); e != nil && e != redis.Nil && !isNoScript(e) {
				return e
			}
		}
		return nil
	})
	cancel()
	now := s.end(rctx, o, start, err)
	if isAbandoned(err) {
		return now, err
	}
	return now, nil
}

// failedCmds returns n commands that failed with err, in place of those of
// an abandoned pipeline.
func failedCmds(ctx context.Context, n int, err error) []*redis.Cmd {
	cmds := make([]*redis.Cmd, n)
	for i := range cmds {
		cmds[i] = redis.NewCmd(ctx)
		cmds[i].SetErr(err)
	}
	return cmds
}
