package remote

import (
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/internal/rediserr"
)

// OpError is the error of a [Store] call that reached for Redis and failed,
// or was refused at once by the circuit breaker: the operation, what it was
// about, and the cause, which Unwrap returns ([ErrUnavailable],
// [ErrFenced], a codec's error, or the go-redis client's). Bad input is
// reported by *[KeyError] and *[ValueSizeError] instead.
type OpError struct {
	Op     string // "get", "get many", "lease", "fill", "release", "write", "refresh" or "encode"
	Detail string // the key, quoted, or a count of keys; may be empty
	Err    error
}

func (e *OpError) Error() string {
	if e.Detail == "" {
		return "remote " + e.Op + ": " + e.Err.Error()
	}
	return "remote " + e.Op + " " + e.Detail + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// As makes errors.As find a *[ConfigError] in e when Redis refused the call
// for a reason that only a change of configuration fixes.
func (e *OpError) As(target any) bool {
	t, ok := target.(**ConfigError)
	if !ok {
		return false
	}
	ce := AsConfigError(e.Err)
	if ce == nil {
		return false
	}
	*t = ce
	return true
}

// ConfigError reports a Redis reply that no retry fixes: the account lacks
// a permission (NOPERM, or a script's ACL refusal), the credentials are
// wrong (WRONGPASS, NOAUTH), or the server does not know a command this
// library sends (too old a Redis, a renamed command). It is not an outage:
// the breaker does not count it. Find it with errors.As in an error of any
// [Store] method, or make one from a raw go-redis error with
// [AsConfigError].
type ConfigError struct {
	Hint string // what to grant or change
	Err  error  // the server's reply
}

func (e *ConfigError) Error() string { return e.Err.Error() + " (" + e.Hint + ")" }

// Unwrap returns the server's reply.
func (e *ConfigError) Unwrap() error { return e.Err }

// AsConfigError returns err as a *ConfigError if it is, or carries, such a
// reply, and nil otherwise.
func AsConfigError(err error) *ConfigError {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce
	}
	hint, ok := rediserr.Config(err)
	if !ok {
		return nil
	}
	return &ConfigError{Hint: hint, Err: err}
}

// opError makes the *OpError of op on key.
func opError(op, key string, err error) error {
	return &OpError{Op: op, Detail: fmt.Sprintf("%q", shortKey(key)), Err: err}
}

// The messages of KeyError, ValueSizeError and DecodeError name no
// package: package tiered returns them too, wrapped in its own operation.

// KeyError reports a key that cannot be stored: empty, longer than
// [Options.MaxKeySize], or reserved (it starts with a NUL byte).
// [Store.CheckKey] and every method that takes keys return it.
type KeyError struct {
	Key    string // the key as given, cut to 64 bytes for readability
	Len    int    // length of the key in bytes
	Limit  int    // Options.MaxKeySize
	Reason string // "empty", "too long" or "reserved (it starts with a NUL byte)"
}

func (e *KeyError) Error() string {
	switch {
	case e.Len == 0:
		return "key is empty"
	case e.Len <= e.Limit:
		return fmt.Sprintf("key %q is %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("key %q is %s: %d bytes, limit %d", e.Key, e.Reason, e.Len, e.Limit)
}

// ValueSizeError reports an envelope larger than [Options.MaxValueSize].
// [Store.Encode], [Store.Write] and [Store.Fill] return it.
type ValueSizeError struct {
	Key   string
	Size  int // bytes of the envelope, with the value counted before compression
	Limit int // Options.MaxValueSize
}

func (e *ValueSizeError) Error() string {
	return fmt.Sprintf("value of key %q is %d bytes, limit %d", e.Key, e.Size, e.Limit)
}

// DecodeError reports bytes read from Redis that are not a valid envelope for
// this [Store]: garbage, a truncated or unknown header, another codec, corrupt
// compression, or a payload the codec rejects. Reads treat such a key as a
// miss, count it in [Stats].DecodeErrors and return this error next to ok=false.
type DecodeError struct {
	Key    string
	Reason string
	Err    error // the codec's or decompressor's error, if any
}

func (e *DecodeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("decode %q: %s: %v", e.Key, e.Reason, e.Err)
	}
	return fmt.Sprintf("decode %q: %s", e.Key, e.Reason)
}

// Unwrap returns the underlying codec or decompressor error, if any.
func (e *DecodeError) Unwrap() error { return e.Err }

// shortKey cuts a key for an error message, so a megabyte of key does not
// end up in a log line.
func shortKey(key string) string {
	const max = 64
	if len(key) <= max {
		return key
	}
	return key[:max] + "..."
}
