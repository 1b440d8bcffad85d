package tiered

import (
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/remote"
)

// ErrNotFound is returned by [Cache.Get] and [Cache.GetOrLoad] when the key
// has no value, and by a loader to report that the key has no value;
// [Cache.GetOrLoad] then caches that answer for [Options.NegativeTTL].
var ErrNotFound = errors.New("tiered: not found")

// ErrUnavailable is returned, wrapped, by every method that needs Redis
// while the circuit breaker around L2 is open: Redis failed
// [Options.BreakerThreshold] round trips in a row, and the cache skips it
// until a probe succeeds. Set, SetMany, Delete and Clear return it at
// once (and still drop the keys from this node's L1); Get and GetMany
// return it at once; GetOrLoad and GetOrLoadMany never do: they call the
// loader. Match it with errors.Is.
var ErrUnavailable = remote.ErrUnavailable

// ErrFenced is returned, wrapped, by a write (Set, SetMany, Delete, Clear)
// on a single Redis server (standalone or Sentinel) when Redis refused it
// three times in a row because the write fence changed while it was on
// its way (another write of a cache of the namespace on this bus failed,
// or Redis kept evicting the fence key): nothing was written, and retrying
// is safe. The fence is what keeps a failed write that lands late from
// overwriting a newer one (promise 3).
var ErrFenced = remote.ErrFenced

// ErrNotReplicated is returned, wrapped, by a write on a single Redis server
// with [Options.WaitReplicas] set when Redis applied and announced it but
// fewer replicas than asked acknowledged it within half of RedisTimeout:
// every node drops the replaced value as usual, but a failover now could
// lose the write and bring that value back to L2. Writing again is safe.
var ErrNotReplicated = remote.ErrNotReplicated

// ErrClosed is returned by every method of a [Cache] after [Cache.Close].
var ErrClosed = errors.New("tiered: cache closed")

// KeyError reports an empty key or one longer than [Options.MaxKeySize].
// Every method that takes keys returns it before touching either tier.
type KeyError = remote.KeyError

// ValueSizeError reports a value whose encoding is larger than
// [Options.MaxValueSize]. [Cache.Set] and [Cache.SetMany] return it and
// write nothing; a loaded value over the limit is returned to the caller but
// not cached.
type ValueSizeError = remote.ValueSizeError

// ConfigError reports a Redis reply that no retry fixes: the account lacks
// a permission (NOPERM), the credentials are wrong (WRONGPASS, NOAUTH), or
// the server does not know a command the cache sends (too old a Redis).
// Every method that reaches Redis, and [Cache.WaitReady], return it
// wrapped; find it with errors.As. Its Hint says what to grant or change.
// It is not an outage: the circuit breaker does not count it, and the
// cache logs it at Error level.
type ConfigError = remote.ConfigError

// DecodeError reports an L2 entry that could not be decoded (garbage bytes,
// another codec, an unknown format). Reads treat it as a miss and count it in
// [Stats]; it is never returned from Get.
type DecodeError = remote.DecodeError

// PanicError is what every caller waiting on a load gets when the loader
// (or the codec, while the load stored its value) panicked. The panic is
// recovered, so the process keeps running.
type PanicError struct {
	// Value is what the loader passed to panic.
	Value any
	// Stack is the loader goroutine's stack at the panic.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("tiered load: loader panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns Value if it is an error, so that errors.Is and errors.As
// see what the loader panicked with; otherwise nil.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// opError names op, and for an error from L2 the keys it concerned, in
// front of err's cause. L2's own name for the call is dropped: a caller
// knows the method it called, and the remote store is how the cache does
// it, not part of its API.
func opError(op string, keys []string, err error) error {
	if err == nil || err == ErrClosed || err == ErrNotFound {
		return err
	}
	var oe *remote.OpError
	if !errors.As(err, &oe) {
		return fmt.Errorf("tiered %s: %w", op, err)
	}
	cause := oe.Err
	if ce := remote.AsConfigError(cause); ce != nil {
		cause = ce // its text says what to grant or change
	}
	switch len(keys) {
	case 0:
		return fmt.Errorf("tiered %s: %w", op, cause)
	case 1:
		return fmt.Errorf("tiered %s %q: %w", op, logKey(keys[0]), cause)
	}
	return fmt.Errorf("tiered %s (%d keys, first %q): %w", op, len(keys), logKey(keys[0]), cause)
}
